"""The lossy media steps of syncnet_python's LSE procedure, with the same encoders and parameters.

syncnet_python runs the `ffmpeg` program five times and OpenCV's video writer once; each step is lossy or moves
timestamps, and the printed LSE numbers depend on all of them (docs/evaluation.md lists the effect of each). The
steps here run the same `ffmpeg` command lines (the same libavcodec encoders: mpeg4, libmp3lame, mjpeg) and write
the crop video with the encoder settings of OpenCV's `cv2.VideoWriter(XVID)` through PyAV. Outputs are read through
pipes instead of files where that changes no byte (the JPEG streams, the PCM audio).

Which ffmpeg: `$TALKFACE_FFMPEG`, else `ffmpeg` on the PATH. Bit-exact agreement with a given syncnet_python run
needs the same builds: the goldens used ffmpeg 5.1 (libavcodec 59.37.100, LAME 3.100) and OpenCV 4.14's bundled
FFmpeg (libavcodec 62.28.102, which PyAV 18.1 also bundles).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import MediaError, TalkFaceUserError

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FRAME_RATE = 25
#: encoder threads of step 1. ffmpeg's default ("auto") is the number of CPU cores + 1, and the mpeg4 encoder cuts
#: each picture into one slice per thread, so syncnet_python's video.avi, and its LSE, depend on the machine. 3 is
#: what "auto" gives on the 2-core machine the golden runs were made on.
DEFAULT_CONVERT_THREADS = 3


def ffmpeg_binary() -> str:
    """The ffmpeg program the protocol runs (`$TALKFACE_FFMPEG` or `ffmpeg` on the PATH)."""
    binary = os.environ.get("TALKFACE_FFMPEG") or shutil.which("ffmpeg")
    if not binary:
        raise TalkFaceUserError(
            "--lse-protocol syncnet_python runs the ffmpeg program as syncnet_python does, and none was found; "
            "install it (e.g. `apt install ffmpeg`) or set TALKFACE_FFMPEG to its path")
    return binary


def run_ffmpeg(args: list[str], what: str, capture: bool = True) -> bytes:
    """Run `ffmpeg -nostdin -hide_banner -loglevel error ARGS`; return stdout, or raise MediaError naming `what`."""
    command = [ffmpeg_binary(), "-nostdin", "-hide_banner", "-loglevel", "error", *args]
    logger.debug("running %s", " ".join(command))
    try:
        result = subprocess.run(command, stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                                stderr=subprocess.PIPE, check=False)
    except OSError as err:
        raise TalkFaceUserError(f"cannot run {command[0]} ({err}); set TALKFACE_FFMPEG to a working ffmpeg") from err
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise MediaError(f"ffmpeg could not {what}: {message[-1] if message else 'exit code %d' % result.returncode}")
    return result.stdout if capture else b""


@functools.lru_cache(maxsize=4)
def ffmpeg_versions(binary: str | None = None) -> dict:
    """{"ffmpeg": "5.1.9-...", "libavcodec": "59.37.100", "libmp3lame": bool} of the ffmpeg program."""
    binary = binary or ffmpeg_binary()
    try:
        version = subprocess.run([binary, "-hide_banner", "-version"], capture_output=True, text=True).stdout
        encoders = subprocess.run([binary, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    except OSError as err:
        raise TalkFaceUserError(f"cannot run {binary} ({err}); set TALKFACE_FFMPEG to a working ffmpeg") from err
    first = re.search(r"ffmpeg version (\S+)", version)
    codec = re.search(r"libavcodec\s+(\d+\.\s*\d+\.\s*\d+)", version)
    return {"ffmpeg": first.group(1) if first else "unknown",
            "libavcodec": codec.group(1).replace(" ", "") if codec else "unknown",
            "libmp3lame": " libmp3lame " in encoders, "mpeg4": " mpeg4 " in encoders, "mjpeg": " mjpeg " in encoders}


def check_encoders():
    """The reference's steps need ffmpeg's mpeg4, libmp3lame and mjpeg encoders (avi's defaults)."""
    versions = ffmpeg_versions(ffmpeg_binary())
    missing = [name for name in ("mpeg4", "libmp3lame", "mjpeg") if not versions[name]]
    if missing:
        raise TalkFaceUserError(
            f"the ffmpeg program ({ffmpeg_binary()}) lacks the {', '.join(missing)} encoder(s) syncnet_python's "
            "procedure uses (the .avi audio is MP3 through LAME); install a full ffmpeg build")
    return versions


# --- step 1: the re-encode of the input ---------------------------------------------------------------------------


def convert_to_avi(source, avi_path, threads: int | str = DEFAULT_CONVERT_THREADS):
    """Step 1: `ffmpeg -y -i SRC -qscale:v 2 -async 1 -r 25 video.avi` (mpeg4 at q 2, audio to MP3 with LAME).

    `threads` is the encoder's thread count ("auto" = ffmpeg's default, which depends on the machine)."""
    args = ["-y", "-i", str(source), "-qscale:v", "2", "-async", "1", "-r", str(FRAME_RATE)]
    if str(threads) != "auto":
        args += ["-threads", str(int(threads))]
    run_ffmpeg(args + [str(avi_path)], f"re-encode {source} to syncnet_python's 25 fps avi", capture=False)


def mux_audio(video_path, audio_path, out_path) -> Path:
    """The video's picture with another file's sound, both stream-copied (no re-encode) into a Matroska file."""
    run_ffmpeg(["-y", "-i", str(video_path), "-i", str(audio_path), "-map", "0:v:0", "-map", "1:a:0", "-c", "copy",
                str(out_path)], f"put the sound of {Path(audio_path).name} beside the picture of "
                f"{Path(video_path).name}", capture=False)
    return Path(out_path)


def has_audio_stream(avi_path) -> bool:
    from .. import media

    try:
        return media.probe(avi_path).has_audio
    except MediaError:
        return False


# --- steps 2 and 10: JPEG round trips -------------------------------------------------------------------------------


def split_jpeg_stream(data: bytes) -> list[bytes]:
    """The JPEG files of an mjpeg `image2pipe` stream (what `-f image2` would have written, byte for byte).

    Each picture is walked by its marker segments up to the scan, then to the EOI marker (0xFF 0xD9) that ends the
    entropy-coded data (inside which 0xFF is always followed by 0x00 or a restart marker)."""
    images, position, size = [], 0, len(data)
    while position < size:
        if data[position : position + 2] != b"\xff\xd8":
            raise MediaError(f"unexpected bytes in ffmpeg's JPEG stream at offset {position}")
        cursor = position + 2
        while True:  # header segments
            if cursor + 4 > size or data[cursor] != 0xFF:
                raise MediaError("truncated JPEG in ffmpeg's JPEG stream")
            marker = data[cursor + 1]
            length = int.from_bytes(data[cursor + 2 : cursor + 4], "big")
            cursor += 2 + length
            if marker == 0xDA:  # start of scan: entropy-coded data follows
                break
        while True:
            cursor = data.find(b"\xff", cursor)
            if cursor < 0 or cursor + 1 >= size:
                raise MediaError("truncated JPEG in ffmpeg's JPEG stream")
            following = data[cursor + 1]
            if following == 0xD9:
                cursor += 2
                break
            cursor += 2 if (following == 0x00 or 0xD0 <= following <= 0xD7) else 1
        images.append(data[position:cursor])
        position = cursor
    return images


def extract_jpegs(video_path, qscale: int | None, what: str) -> list[bytes]:
    """Steps 2 / 10: `ffmpeg -y -i VIDEO [-qscale:v Q] -threads 1 -f image2 %06d.jpg`, as the JPEG bytes.

    image2pipe gives the same bytes as image2 files: the same mjpeg encoder, rate control and frame-rate handling
    (both muxers are constant-frame-rate, so timestamp gaps become duplicated frames)."""
    args = ["-y", "-i", str(video_path)]
    if qscale is not None:
        args += ["-qscale:v", str(qscale)]
    args += ["-threads", "1", "-f", "image2pipe", "-c:v", "mjpeg", "pipe:1"]
    return split_jpeg_stream(run_ffmpeg(args, what))


def decode_jpeg(data: bytes) -> np.ndarray:
    """`cv2.imread` of a JPEG file: BGR uint8 (libjpeg-turbo, as the reference)."""
    import cv2

    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise MediaError("OpenCV could not decode a JPEG of ffmpeg's frame stream")
    return image


# --- step 3: the 16 kHz mono audio -----------------------------------------------------------------------------------


def extract_audio(avi_path) -> np.ndarray:
    """Step 3: `ffmpeg -y -i video.avi -ac 1 -vn -acodec pcm_s16le -ar 16000 audio.wav`, as int16 samples.

    The MP3 of video.avi is decoded with its encoder delay (1105 samples at the MP3 rate, not trimmed in AVI), then
    downmixed and resampled with swresample's defaults."""
    raw = run_ffmpeg(["-y", "-i", str(avi_path), "-ac", "1", "-vn", "-acodec", "pcm_s16le", "-ar", str(SAMPLE_RATE),
                      "-f", "s16le", "pipe:1"], "extract the 16 kHz audio of the re-encoded video")
    return np.frombuffer(raw, dtype="<i2").astype(np.int16)


def iter_opencv_frames(video_path):
    """BGR frames as `cv2.VideoCapture` decodes them (PySceneDetect's VideoManager reads the avi this way)."""
    import cv2

    capture = cv2.VideoCapture(str(video_path))
    if not capture.isOpened():
        raise MediaError(f"OpenCV cannot open {video_path} for scene detection")
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            yield frame
    finally:
        capture.release()


# --- step 7: the crop video --------------------------------------------------------------------------------------------


def opencv_xvid_settings(width: int, height: int, fps: float = FRAME_RATE) -> dict:
    """The encoder settings `cv2.VideoWriter(path.avi, fourcc('XVID'), fps, (w, h))` gives FFmpeg's mpeg4 encoder
    (OpenCV's cap_ffmpeg_impl.hpp): bit rate fps * w * h raised by half twice (= 2 fps w h, also the tolerance),
    qmin 3, GOP 12, time base 1 / fps, one thread, yuv420p from BGR through swscale's bicubic filter."""
    bitrate = fps * width * height
    rate = int(bitrate + 0.5)
    rate = rate + rate // 2 + int(bitrate / 2)
    return {"bit_rate": rate, "bit_rate_tolerance": rate, "qmin": 3, "gop_size": 12, "codec_tag": "XVID",
            "pix_fmt": "yuv420p", "thread_count": 1, "interpolation": "BICUBIC"}


class OpenCVStyleXvidWriter:
    """Writes BGR frames to an .avi exactly as OpenCV's FFmpeg backend does for fourcc XVID (see
    `opencv_xvid_settings`), through PyAV's libavcodec (the same FFmpeg release OpenCV 4.14 bundles for PyAV 18.1)."""

    def __init__(self, path, width: int = 224, height: int = 224, fps: int = FRAME_RATE):
        import av

        self.settings = opencv_xvid_settings(width, height, fps)
        self._container = av.open(str(path), mode="w", format="avi")
        stream = self._container.add_stream("mpeg4", rate=fps)
        codec = stream.codec_context
        codec.width, codec.height = width, height
        codec.pix_fmt = self.settings["pix_fmt"]
        codec.bit_rate = self.settings["bit_rate"]
        codec.bit_rate_tolerance = self.settings["bit_rate_tolerance"]
        codec.gop_size = self.settings["gop_size"]
        codec.qmin = self.settings["qmin"]
        codec.codec_tag = self.settings["codec_tag"]
        codec.time_base = Fraction(1, fps)
        codec.thread_count = self.settings["thread_count"]
        stream.time_base = Fraction(1, fps)
        self._stream = stream
        self._index = 0

    def write(self, frame_bgr: np.ndarray):
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_bgr), format="bgr24")
        frame = frame.reformat(format=self.settings["pix_fmt"], interpolation=self.settings["interpolation"])
        frame.pts = self._index
        self._index += 1
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self):
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()


def decode_yuv420p(video_path) -> np.ndarray:
    """(frames, H * W * 3 / 2) raw yuv420p planes as ffmpeg decodes a video (`-f rawvideo -pix_fmt yuv420p`)."""
    from .. import media

    info = media.probe(video_path)
    raw = run_ffmpeg(["-i", str(video_path), "-f", "rawvideo", "-pix_fmt", "yuv420p", "pipe:1"],
                     f"decode {Path(video_path).name}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, info.width * info.height * 3 // 2)
