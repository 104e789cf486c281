"""SSIM and PSNR between generated and ground-truth frames, computed on uint8 frames without overflow.

* PSNR: 10 log10(255^2 / MSE) per frame with the MSE taken in float64; identical frames give +inf. (TalkLip's
  visual_quality.py subtracts uint8 arrays, which wraps around; we do not reproduce that bug.) Reports may cap
  per-frame values (`cap_psnr`, 100 dB by default in `talkface evaluate`) so that a mean stays finite.
* SSIM: scikit-image's `structural_similarity` with the settings of the lip-sync papers' evaluation scripts
  (TalkLip visual_quality.py): Gaussian window sigma 1.5 truncated at 3.5 sigma (11 taps), population
  covariance, data_range 255, K1 0.01, K2 0.03, SSIM map cropped by the window radius, averaged over pixels and
  then over colour channels. `window="uniform"` gives scikit-image's default instead (7 x 7 box, sample
  covariance). Everything is float64; values agree with scikit-image to about 1e-12.
* Region (`face_region`): the whole frame, or, as TalkLip does, the face box of the ground-truth frame cropped
  from both frames and resized to 96 x 96.

Both metrics average per-frame values; a data set's value is the mean over all frames of all videos.
"""

from __future__ import annotations

import numpy as np

from ..errors import NoFaceError
from .base import GENERATED, REFERENCE, Metric, register_metric

#: TalkLip / Wav2Lip evaluation: face crops resized to this side before SSIM / PSNR
FACE_CROP_SIZE = 96
#: per-frame PSNR cap used in reports (identical frames would otherwise give +inf)
DEFAULT_PSNR_CAP_DB = 100.0

_SSIM_K1, _SSIM_K2 = 0.01, 0.03
_GAUSSIAN_SIGMA, _GAUSSIAN_TRUNCATE = 1.5, 3.5
_UNIFORM_WINDOW = 7
_FRAMES_PER_CHUNK = 16


def _as_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None, :, :, None]
    elif frames.ndim == 3:
        frames = frames[None] if frames.shape[-1] in (1, 3, 4) else frames[..., None]
    if frames.ndim != 4:
        raise ValueError(f"frames must be (H, W), (H, W, C) or (frames, H, W, C), got shape {frames.shape}")
    return frames


def _check_pair(generated, reference) -> tuple[np.ndarray, np.ndarray]:
    generated, reference = _as_frames(generated), _as_frames(reference)
    if generated.shape != reference.shape:
        raise ValueError(f"generated frames {generated.shape} and reference frames {reference.shape} differ in shape")
    return generated, reference


def psnr_per_frame(generated, reference, data_range: float = 255.0) -> np.ndarray:
    """PSNR in dB of each frame pair ((frames, H, W, C) or single images); identical frames give +inf."""
    generated, reference = _check_pair(generated, reference)
    mse = np.empty(len(generated))
    for start in range(0, len(generated), _FRAMES_PER_CHUNK):
        stop = start + _FRAMES_PER_CHUNK
        difference = generated[start:stop].astype(np.float64) - reference[start:stop].astype(np.float64)
        mse[start:stop] = np.mean(difference * difference, axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range**2 / mse)


def psnr(generated, reference, data_range: float = 255.0, cap_db: float | None = None) -> float:
    """Mean per-frame PSNR; with `cap_db`, each frame's value is capped first (so identical frames give cap_db)."""
    values = psnr_per_frame(generated, reference, data_range)
    if cap_db is not None:
        values = np.minimum(values, cap_db)
    return float(np.mean(values))


def ssim_per_frame(generated, reference, data_range: float = 255.0, window: str = "gaussian") -> np.ndarray:
    """SSIM of each frame pair, equal to `skimage.metrics.structural_similarity(g, r, channel_axis=-1,
    data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)` for `window="gaussian"`, or
    to its defaults (`data_range=255, channel_axis=-1`) for `window="uniform"`."""
    import cv2

    generated, reference = _check_pair(generated, reference)
    # cv2 filters in float64 equal scipy.ndimage's (which scikit-image uses) to ~1e-13 and run about twice as fast;
    # BORDER_REFLECT (abc|cba) is ndimage's mode="reflect".
    if window == "gaussian":
        radius = int(_GAUSSIAN_TRUNCATE * _GAUSSIAN_SIGMA + 0.5)
        win_size, covariance_norm = 2 * radius + 1, 1.0
        kernel = cv2.getGaussianKernel(win_size, _GAUSSIAN_SIGMA, cv2.CV_64F)  # normalised, like ndimage's

        def filter_frame(image):
            return cv2.sepFilter2D(image, cv2.CV_64F, kernel, kernel, borderType=cv2.BORDER_REFLECT)
    elif window == "uniform":
        win_size = _UNIFORM_WINDOW
        covariance_norm = win_size**2 / (win_size**2 - 1)  # sample covariance, scikit-image's default

        def filter_frame(image):
            return cv2.blur(image, (win_size, win_size), borderType=cv2.BORDER_REFLECT)
    else:
        raise ValueError(f"window must be 'gaussian' or 'uniform', got {window!r}")

    def local_mean(frames):  # (frames, H, W, C) float64, filtered over H and W
        return np.stack([filter_frame(f).reshape(f.shape) for f in frames])

    height, width = generated.shape[1:3]
    if min(height, width) < win_size:
        raise ValueError(f"frames of {height} x {width} are smaller than the {win_size}-pixel SSIM window")
    c1, c2 = (_SSIM_K1 * data_range) ** 2, (_SSIM_K2 * data_range) ** 2
    pad = (win_size - 1) // 2
    values = np.empty(len(generated))
    for start in range(0, len(generated), _FRAMES_PER_CHUNK):
        x = generated[start : start + _FRAMES_PER_CHUNK].astype(np.float64)
        y = reference[start : start + _FRAMES_PER_CHUNK].astype(np.float64)
        mean_x, mean_y = local_mean(x), local_mean(y)
        var_x = covariance_norm * (local_mean(x * x) - mean_x * mean_x)
        var_y = covariance_norm * (local_mean(y * y) - mean_y * mean_y)
        cov_xy = covariance_norm * (local_mean(x * y) - mean_x * mean_y)
        ssim_map = ((2 * mean_x * mean_y + c1) * (2 * cov_xy + c2)) / (
            (mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2))
        cropped = ssim_map[:, pad : height - pad, pad : width - pad, :]  # drop the window radius at the edges
        values[start : start + len(x)] = cropped.mean(axis=(1, 2)).mean(axis=1)  # pixels, then channels
    return values


def ssim(generated, reference, data_range: float = 255.0, window: str = "gaussian") -> float:
    """Mean per-frame SSIM (see `ssim_per_frame`)."""
    return float(np.mean(ssim_per_frame(generated, reference, data_range, window)))


def crop_face_regions(frames, boxes, size: int = FACE_CROP_SIZE) -> np.ndarray:
    """Crop box k (x1, y1, x2, y2, clipped to the frame) from frame k and resize it to size x size (TalkLip)."""
    import cv2

    frames = _as_frames(frames)
    crops = np.empty((len(frames), size, size, frames.shape[-1]), dtype=frames.dtype)
    for k, (frame, box) in enumerate(zip(frames, boxes)):
        height, width = frame.shape[:2]
        x1, y1 = int(max(0, np.floor(box[0]))), int(max(0, np.floor(box[1])))
        x2, y2 = int(min(width, np.ceil(box[2]))), int(min(height, np.ceil(box[3])))
        if x2 - x1 < 2 or y2 - y1 < 2:
            raise ValueError(f"face box {list(box)} of frame {k} is empty inside the {width} x {height} frame")
        crop = cv2.resize(np.ascontiguousarray(frame[y1:y2, x1:x2]), (size, size))
        crops[k] = crop.reshape(size, size, -1)
    return crops


# ----------------------------------------------------------------------------------------------------------------
# The metrics of `talkface evaluate`
# ----------------------------------------------------------------------------------------------------------------


def comparable_frames(media, context) -> tuple[np.ndarray, np.ndarray, dict]:
    """Generated and reference frames made comparable (same count, same size, or the reference face region
    with `image_region="face"`) and notes on what was done; computed once per pair for SSIM and PSNR."""

    def compute():
        import cv2

        generated, reference = media.generated_frames, media.reference_frames
        count = min(len(generated), len(reference))
        notes = {}
        if len(generated) != len(reference):
            notes["frames_compared"] = f"{count} of {len(generated)} generated / {len(reference)} reference"
        generated, reference = generated[:count], reference[:count]
        if context.options.image_region == "face":
            boxes = reference_face_boxes(reference, context.face_backend())
            scale = np.array([generated.shape[2] / reference.shape[2], generated.shape[1] / reference.shape[1]] * 2)
            return crop_face_regions(generated, boxes * scale), crop_face_regions(reference, boxes), notes
        if generated.shape[1:3] != reference.shape[1:3]:
            height, width = reference.shape[1:3]
            notes["resized"] = f"generated {generated.shape[2]}x{generated.shape[1]} resized to {width}x{height}"
            generated = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in generated])
        return generated, reference, notes

    return media.value("image_pair", compute)


def reference_face_boxes(frames: np.ndarray, backend) -> np.ndarray:
    """Largest face box per reference frame; frames without a face take the nearest detected box."""
    boxes = np.full((len(frames), 4), np.nan)
    for index, frame in enumerate(frames):
        faces = backend.detect(frame, landmarks=False)
        if faces:
            boxes[index] = faces[0].box
    found = np.flatnonzero(~np.isnan(boxes[:, 0]))
    if not len(found):
        raise NoFaceError("no face in the reference video; use --image-region full")
    for column in range(4):
        boxes[:, column] = np.interp(np.arange(len(frames)), found, boxes[found, column])
    return boxes


class _ImageMetric(Metric):
    """SSIM and PSNR: generated against reference frames, whole frames or the reference face region."""

    needs = frozenset({GENERATED, REFERENCE})
    aggregate = "frame_mean"

    def needs_face_backend(self, options) -> bool:
        return options.image_region == "face"

    def settings(self, options) -> dict:
        settings = {"image_region": options.image_region}
        if options.image_region == "face":
            settings["face_backend"] = options.face_backend
        return settings

    def summarise(self, results, context) -> dict:
        return self.mean_over_frames(results)


@register_metric
class SSIMMetric(_ImageMetric):
    """Structural similarity per frame (options: image_region, ssim_window, face_backend for the face region)."""

    name = "ssim"
    fields = ("ssim",)
    higher_is_better = {"ssim": True}
    description = "structural similarity (Gaussian window sigma 1.5, as scikit-image / TalkLip)"
    field_help = {"ssim": "SSIM to the ground truth, higher is better"}

    def settings(self, options) -> dict:
        return {**super().settings(options), "window": options.ssim_window}

    def compute(self, media, context) -> dict:
        generated, reference, notes = comparable_frames(media, context)
        values = ssim_per_frame(generated, reference, window=context.options.ssim_window)
        return {"values": {"ssim": float(values.mean())}, "num_frames": len(values), "details": notes}


@register_metric
class PSNRMetric(_ImageMetric):
    """Peak signal-to-noise ratio per frame, capped at psnr_cap_db (options: image_region, psnr_cap_db)."""

    name = "psnr"
    fields = ("psnr",)
    higher_is_better = {"psnr": True}
    description = "peak signal-to-noise ratio in dB (per frame, capped for identical frames)"
    field_help = {"psnr": "PSNR to the ground truth (dB), higher is better"}

    def settings(self, options) -> dict:
        return {**super().settings(options), "cap_db": options.psnr_cap_db}

    def compute(self, media, context) -> dict:
        generated, reference, notes = comparable_frames(media, context)
        values = psnr_per_frame(generated, reference)
        cap = context.options.psnr_cap_db
        if cap is not None:
            values = np.minimum(values, cap)
        return {"values": {"psnr": float(values.mean())}, "num_frames": len(values),
                "details": {**notes, "identical_frames": int(np.isinf(psnr_per_frame(generated, reference)).sum())}}
