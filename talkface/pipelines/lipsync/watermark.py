"""Marking generated videos: an invisible watermark in every frame, and container metadata.

Watermark design (spread spectrum in the block DCT of the luma):
  * A key-seeded tile of 256x256 pixels (32x32 blocks of 8x8) carries one pseudo-random sign (a "chip") per block
    and per coefficient in a mid-frequency band of the 8x8 DCT: (1,2), (2,1), (2,2), (1,3), (3,1). Low frequencies
    carry most of the image's own energy (noise for the detector) and high frequencies are what H.264 quantises
    away; this band survives re-encoding at crf 23-28 while leaving the picture's look unchanged.
  * The 5120 chips spell a 64-bit payload ("TKFC" magic, format version, CRC-16), each bit spread over 80 chips
    with its own pseudo-random signs. The tile is turned into pixels by the inverse DCT once, repeated over the
    frame from the top-left corner (aligned with the codec's 8x8 / 16x16 grid), and added to R, G and B alike,
    which changes the luma only (the colour-difference channels are untouched). Every frame gets the same mark, so
    any subset of frames, in any order, can be checked.
  * The strength is set by a PSNR target (default 42 dB: a luma change of about 2 grey levels RMS).
  * Detection folds each frame onto the tile (summing its repeats), takes the band coefficients, sums them over
    frames, and correlates their signs with the expected chips:
        score = sum_j chip_j * sign(c_j) / sqrt(n)        (n = chips with c_j != 0)
    On a video that does not carry this mark, the chips are independent of the picture, so the score is a sum of n
    random signs scaled by 1/sqrt(n): whatever the content, P(score >= t) <= exp(-t^2 / 2) (Hoeffding). The
    default threshold 5 bounds the false-positive rate per video by 3.7e-6 (about 3e-7 with the normal
    approximation). Marked videos score 20-80 after an H.264 re-encode at crf 23-28 on 2-second clips (see
    docs/enhancement_and_watermark.md and benchmarks/bench_watermark.py).

What it does not survive: resizing, cropping or rotating the picture (the tile loses its alignment), and anyone who
knows the key (it is public in this file) can subtract the pattern. Container metadata is easier still to strip;
the two marks together label honest use, they do not stop a determined forger.
"""

import binascii
import hashlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ...errors import MediaError

logger = logging.getLogger(__name__)

#: the public key of talkface's watermark (changing it makes marks from other keys undetectable)
DEFAULT_KEY = "talkface-watermark-v1"
PAYLOAD_MAGIC = b"TKFC"
FORMAT_VERSION = 1
PAYLOAD_BITS = 64
#: DCT coefficients (row, column) of each 8x8 block that carry the mark
BAND = ((1, 2), (2, 1), (2, 2), (1, 3), (3, 1))
BLOCK = 8
TILE_BLOCKS = 32  # the tile is 32x32 blocks = 256x256 pixels
DEFAULT_PSNR_DB = 42.0
#: decision threshold on the score; P(score >= 5 | unmarked) <= exp(-12.5) = 3.7e-6
DEFAULT_THRESHOLD = 5.0
#: frames read by `detect_video` unless told otherwise (30 s at 25 fps; far more than a decision needs)
DEFAULT_MAX_FRAMES = 750
# PyAV pixel formats whose first plane is the 8-bit luma, read without conversion
_LUMA_FIRST_FORMATS = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray"}


def _dct_matrix(n: int = BLOCK) -> np.ndarray:
    """Orthonormal DCT-II matrix: coefficients = M @ block @ M.T."""
    k = np.arange(n)
    matrix = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n))
    matrix[0] /= np.sqrt(2.0)
    return matrix


def _payload_bits(version: int) -> np.ndarray:
    body = PAYLOAD_MAGIC + int(version).to_bytes(2, "big")
    crc = binascii.crc_hqx(body, 0xFFFF).to_bytes(2, "big")  # CRC-16/CCITT
    return np.unpackbits(np.frombuffer(body + crc, dtype=np.uint8))  # (64,) of 0/1


def parse_payload(bits: np.ndarray):
    """64 decoded bits -> (hex string, valid, version); valid means the magic and the CRC check out."""
    data = np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes()
    body, crc = data[:6], data[6:8]
    valid = body[:4] == PAYLOAD_MAGIC and binascii.crc_hqx(body, 0xFFFF).to_bytes(2, "big") == crc
    return data.hex(), valid, (int.from_bytes(body[4:6], "big") if valid else None)


@dataclass
class WatermarkResult:
    """What `Watermarker.detect_*` found.

    found: score >= threshold. score: the detection statistic (about N(0, 1) on unmarked video, large on marked).
    p_value_bound: exp(-score^2 / 2), an upper bound on the chance that an unmarked video scores this high.
    payload: the 64 decoded bits as hex; payload_valid: magic and CRC check out; version: the mark's format version.
    """

    found: bool
    score: float
    frames_checked: int
    threshold: float
    p_value_bound: float
    payload: str | None = None
    payload_valid: bool = False
    version: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class Watermarker:
    """Embed and detect talkface's invisible watermark.

    >>> marker = Watermarker()
    >>> marked = [marker.embed(frame, i) for i, frame in enumerate(frames)]   # the pipeline's watermark hook
    >>> marker.detect_video("result.mp4").found

    Args:
        key: the watermark key (default: talkface's public key).
        psnr_db: embedding strength as the PSNR of a marked frame against the original (before rounding and
            clipping); lower is more robust and less invisible.
        threshold: detection threshold on the score.
        version: format version written into the payload.
    """

    def __init__(self, key: str = DEFAULT_KEY, psnr_db: float = DEFAULT_PSNR_DB, threshold: float = DEFAULT_THRESHOLD,
                 version: int = FORMAT_VERSION):
        if not 20.0 <= psnr_db <= 70.0:
            raise ValueError(f"psnr_db must be between 20 and 70 dB, got {psnr_db}")
        if threshold <= 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        self.key = key
        self.psnr_db = float(psnr_db)
        self.threshold = float(threshold)
        self.version = int(version)
        #: RMS luma change in grey levels
        self.strength = 255.0 / 10 ** (self.psnr_db / 20.0)
        seed = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
        rng = np.random.default_rng(seed)
        shape = (TILE_BLOCKS, TILE_BLOCKS, len(BAND))
        spreading = rng.choice(np.array([-1.0, 1.0]), size=shape)
        # each chip carries one payload bit; the permutation scatters a bit's chips over the whole tile
        self.bit_of_chip = (rng.permutation(spreading.size) % PAYLOAD_BITS).reshape(shape)
        self.spreading = spreading
        bit_signs = 2.0 * _payload_bits(self.version) - 1.0  # 0/1 -> -1/+1
        self.chips = spreading * bit_signs[self.bit_of_chip]  # (32, 32, 5) the expected sign of every coefficient
        dct = _dct_matrix()
        # basis[k] is the 8x8 pixel pattern of band coefficient k (orthonormal: unit energy)
        self.basis = np.stack([np.outer(dct[u], dct[v]) for u, v in BAND]).astype(np.float32)  # (5, 8, 8)
        self._basis_matrix = np.ascontiguousarray(self.basis.reshape(len(BAND), BLOCK * BLOCK).T)  # (64, 5)
        blocks = np.einsum("abk,kij->aibj", self.chips, self.basis)  # (32, 8, 32, 8)
        tile = blocks.reshape(TILE_BLOCKS * BLOCK, TILE_BLOCKS * BLOCK)
        self.tile = (tile / np.sqrt(np.mean(tile**2))).astype(np.float32)  # unit RMS
        self._delta_cache = {}

    @property
    def tile_size(self) -> int:
        return TILE_BLOCKS * BLOCK

    # ----------------------------------------------------------------------------------------------------------
    # embedding
    # ----------------------------------------------------------------------------------------------------------
    def _delta(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """The change added to a frame of that size, rounded to whole grey levels and split by sign: two
        (height, width, 3) uint8 images (rise, fall), of which at most one is non-zero at each pixel (cached)."""
        delta = self._delta_cache.get((height, width))
        if delta is None:
            reps = (-(-height // self.tile_size), -(-width // self.tile_size))
            luma = np.rint(np.tile(self.tile, reps)[:height, :width] * self.strength)
            luma = np.repeat(luma[:, :, None], 3, axis=2)  # equal change of R, G, B = a change of luma only
            delta = (np.clip(luma, 0, 255).astype(np.uint8), np.clip(-luma, 0, 255).astype(np.uint8))
            if len(self._delta_cache) > 4:
                self._delta_cache.clear()
            self._delta_cache[(height, width)] = delta
        return delta

    def embed(self, frame_rgb: np.ndarray, frame_index: int | None = None) -> np.ndarray:
        """Return the frame with the mark added (uint8 RGB (H, W, 3)). `frame_index` is accepted for the pipeline's
        hook signature; every frame gets the same mark."""
        if not (isinstance(frame_rgb, np.ndarray) and frame_rgb.dtype == np.uint8 and frame_rgb.ndim == 3
                and frame_rgb.shape[2] == 3):
            raise ValueError(f"frame_rgb must be a uint8 (H, W, 3) array, got {getattr(frame_rgb, 'shape', None)}")
        height, width = frame_rgb.shape[:2]
        rise, fall = self._delta(height, width)
        # two saturating uint8 passes (a float add over the whole frame cost 6x as much at 1080p); the mark is
        # rounded to whole grey levels first, and a pixel only rises or falls, so this is clip(frame + round(mark))
        marked = cv2.add(np.ascontiguousarray(frame_rgb), rise)
        return cv2.subtract(marked, fall, dst=marked)

    __call__ = embed

    # ----------------------------------------------------------------------------------------------------------
    # detection
    # ----------------------------------------------------------------------------------------------------------
    def band_coefficients(self, luma: np.ndarray) -> np.ndarray:
        """Fold a luma image onto the tile and return its band coefficients, (32, 32, 5) float64."""
        luma = np.asarray(luma, dtype=np.float32)
        height, width = luma.shape
        size = self.tile_size
        padded_h, padded_w = -(-height // size) * size, -(-width // size) * size
        if (padded_h, padded_w) != (height, width):
            padded = np.zeros((padded_h, padded_w), np.float32)
            padded[:height, :width] = luma
            luma = padded
        # (tiles_y, size, tiles_x, size) -> sum of the tile's repeats
        folded = luma.reshape(padded_h // size, size, padded_w // size, size).sum(axis=(0, 2))
        blocks = folded.reshape(TILE_BLOCKS, BLOCK, TILE_BLOCKS, BLOCK).transpose(0, 2, 1, 3)  # (by, bx, row, col)
        coefficients = blocks.reshape(TILE_BLOCKS * TILE_BLOCKS, BLOCK * BLOCK) @ self._basis_matrix  # (1024, 5)
        return coefficients.reshape(TILE_BLOCKS, TILE_BLOCKS, len(BAND)).astype(np.float64)

    def result_from_coefficients(self, coefficient_sum: np.ndarray, frames_checked: int) -> WatermarkResult:
        signs = np.sign(coefficient_sum)
        used = int(np.count_nonzero(signs))
        if frames_checked == 0 or used == 0:
            return WatermarkResult(False, 0.0, frames_checked, self.threshold, 1.0)
        score = float(np.sum(signs * self.chips) / np.sqrt(used))
        # payload: per bit, the agreement of the observed signs with that bit's spreading signs
        agreement = (signs * self.spreading).ravel()
        per_bit = np.bincount(self.bit_of_chip.ravel(), weights=agreement, minlength=PAYLOAD_BITS)
        payload, valid, version = parse_payload(per_bit > 0)
        p_bound = float(np.exp(-score**2 / 2)) if score > 0 else 1.0
        return WatermarkResult(score >= self.threshold, score, frames_checked, self.threshold, p_bound, payload,
                               valid, version)

    def detect_frames(self, frames) -> WatermarkResult:
        """Detect the mark in an iterable of frames: uint8 RGB (H, W, 3) or luma (H, W) arrays of one size."""
        total, count = None, 0
        for frame in frames:
            frame = np.asarray(frame)
            if frame.ndim == 3:
                frame = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
            coefficients = self.band_coefficients(frame)
            total = coefficients if total is None else total + coefficients
            count += 1
        if total is None:
            return WatermarkResult(False, 0.0, 0, self.threshold, 1.0)
        return self.result_from_coefficients(total, count)

    def detect_video(self, path, max_frames: int | None = DEFAULT_MAX_FRAMES) -> WatermarkResult:
        """Detect the mark in the first `max_frames` frames (None: all) of a video file."""
        return self.detect_frames(iter_luma_frames(path, max_frames))


# --------------------------------------------------------------------------------------------------------------
# reading videos
# --------------------------------------------------------------------------------------------------------------
def _open_video(path):
    import av

    from ... import media

    path = media.check_file(path)
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as err:
        what = media.describe_content(path)
        raise MediaError(f"cannot read {path} as a video ({f'it looks like {what}' if what else err}); pass a file "
                         "ffmpeg can decode") from err
    if not container.streams.video:
        container.close()
        raise MediaError(f"{path} has no video stream; pass a video file")
    return container


def iter_luma_frames(path, max_frames: int | None = None):
    """Yield the decoded luma planes (H, W) uint8 of a video's frames, as coded (no rotation, no resampling)."""
    import av

    container = _open_video(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        count = 0
        try:
            for frame in container.decode(stream):
                if max_frames is not None and count >= max_frames:
                    break
                if frame.format.name in _LUMA_FIRST_FORMATS:
                    plane = frame.planes[0]
                    luma = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : frame.width]
                else:
                    luma = frame.to_ndarray(format="gray")
                yield luma
                count += 1
        except av.error.FFmpegError as err:
            raise MediaError(f"cannot decode the video of {path} ({err}); is the file complete?") from err
    finally:
        container.close()


# --------------------------------------------------------------------------------------------------------------
# container metadata
# --------------------------------------------------------------------------------------------------------------
#: the mp4 tags we write; both survive `ffmpeg -i in.mp4 out.mp4` re-encodes (global metadata is copied)
METADATA_KEYS = ("comment", "description")


def generation_metadata(model_name: str, talkface_version: str | None = None, precision: str | None = None) -> dict:
    """Container tags for a generated video, naming talkface, its version, the generator model and its precision."""
    if talkface_version is None:
        from ... import __version__ as talkface_version
    from ...utils.sources import model_display_name

    model_name = model_display_name(model_name) or "unknown model"  # never a full local path
    details = f"model: {model_name}" + (f"; precision: {precision}" if precision else "")
    return {
        "comment": f"AI-generated with talkface {talkface_version} ({details})",
        "description": (
            f"Synthetic talking-face video: the lip movements were generated by talkface {talkface_version} "
            f"with the model {model_name} and do not show real speech. The frames carry an invisible talkface "
            "watermark; check it with `talkface detect`."
        ),
    }


def read_metadata(path) -> dict:
    """All container-level tags of a media file (e.g. {"comment": ..., "encoder": ...})."""
    container = _open_video(path)
    try:
        return {str(k): str(v) for k, v in container.metadata.items()}
    finally:
        container.close()


def talkface_metadata(tags: dict) -> dict:
    """The tags among `tags` that name talkface (empty when none do)."""
    return {k: v for k, v in tags.items() if k in METADATA_KEYS and "talkface" in v.lower()}
