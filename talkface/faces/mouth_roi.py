"""Mouth regions of interest (ROIs) for AV-HuBERT, made the way its reference preparation makes them.

The reference (av_hubert `preparation/align_mouth.py`, after mpc001's `crop_mouth_from_video.py`) turns a face
video into the 96x96 mouth crops AV-HuBERT was trained on:

1. 68 iBUG landmarks per frame; frames without landmarks are filled by linear interpolation between the nearest
   detected frames (the first/last detection is copied to the edges).
2. For frame j, the five stable points (nose tip 33, eye corners 36/39/42/45) are averaged over the window of
   frames j..j+11 and a least-squares similarity transform maps them onto the same points of a mean face that
   lives in a 256x256 standard frame. The last 11 frames reuse the transform of the last full window.
3. The frame is warped into the standard frame (bilinear, zeros outside, values x255 and *truncated* to uint8),
   and a 96x96 patch is cut around the mean of the frame's transformed mouth points 48..67 (rounded, clamped to
   stay inside the 256x256 frame).
4. AV-HuBERT then reads the patches as grayscale uint8 (OpenCV BGR2GRAY), keeps the centre 88x88 and
   normalises with /255, then (x - 0.421) / 0.165.

Steps 1-3 (the geometry) live in `talkface.faces.mouth_alignment` and are re-exported here; step 4, the landmark
detection over a clip and `prepare_mouth_video` live here. Everything is vectorised over frames, and only the 96x96
output pixels are ever sampled (the 256x256 frame is never materialised). The warp reproduces scikit-image's
`warp(order=1)` arithmetic, so crops match the reference within one grey level (see tests/faces/test_mouth_roi.py and
docs/avs.md).

`crop_mouth_differentiable` is the same crop on float images with `torch.nn.functional.grid_sample`, for losses
on generated faces; `mouth_transforms_from_landmarks` gives it (or a dataset) the per-frame affine maps.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import NoFaceError
from .mouth_alignment import (  # noqa: F401  (re-exported: the reference geometry is part of this module's API)
    MEAN_FACE_PATH,
    MOUTH_POINT_RANGE,
    NUM_LANDMARKS,
    ROI_SIZE,
    STABLE_POINT_IDS,
    STANDARD_FRAME_SIZE,
    WINDOW_MARGIN,
    MouthCropPlan,
    _as_frame_array,
    alignment_transforms,
    apply_transforms,
    crop_mouth_rois,
    estimate_similarity_transforms,
    interpolate_landmarks,
    load_mean_face,
    mouth_crop_origins,
    mouth_roi_affines,
    mouth_transforms_from_landmarks,
    plan_mouth_crops,
    rebase_transforms_to_crop,
    warp_mouth_patches,
)

logger = logging.getLogger(__name__)

# AV-HuBERT's eval transform of the patches (av_hubert hubert_pretraining.py / utils.py defaults). These are the
# defaults of `AVHubertFeatureExtractor`, which saves them with the weights; callers that hold an extractor pass
# its values.
CROP_SIZE = 88  # AV-HuBERT's centre crop of the patch
IMAGE_MEAN = 0.421
IMAGE_STD = 0.165
# ITU-R BT.601 luma weights: cv2.COLOR_BGR2GRAY / RGB2GRAY use these (in 14-bit fixed point on uint8 input).
LUMA_WEIGHTS_RGB = (0.299, 0.587, 0.114)
# frames normalised at once (bounds the float64 temporary: 256 x 88 x 88 x 8 bytes = 16 MB)
_NORMALIZE_CHUNK_FRAMES = 256


def center_crop_offset(size: int, crop_size: int = CROP_SIZE) -> int:
    """Offset of AV-HuBERT's `CenterCrop`: `int(round(size - crop_size) / 2.)`, i.e. 4 for 96 -> 88."""
    return int(round(size - crop_size) / 2.0)


# ----------------------------------------------------------------------------------------------------------
# Grey conversion and normalisation
# ----------------------------------------------------------------------------------------------------------


def rois_to_gray(rois: np.ndarray, channel_order: str = "rgb") -> np.ndarray:
    """(T, H, W, 3) uint8 colour patches -> (T, H, W) uint8 grey, with OpenCV's conversion as AV-HuBERT reads them."""
    import cv2

    rois = np.ascontiguousarray(rois)
    if rois.ndim == 3:
        return rois
    if rois.shape[-1] == 1:
        return rois[..., 0]
    codes = {"rgb": cv2.COLOR_RGB2GRAY, "bgr": cv2.COLOR_BGR2GRAY}
    if channel_order not in codes:
        raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
    num, height, width, _ = rois.shape
    # cvtColor works on one image; stack the patches vertically: (T*H, W, 3) -> (T*H, W)
    return cv2.cvtColor(rois.reshape(num * height, width, 3), codes[channel_order]).reshape(num, height, width)



def normalize_mouth_rois(gray_rois, crop_size: int = CROP_SIZE, image_mean: float = IMAGE_MEAN,
                         image_std: float = IMAGE_STD):
    """AV-HuBERT's eval transform of grey mouth patches: /255, centre crop, (x - mean) / std.

    This is the one implementation: `AVHubertFeatureExtractor.normalize_mouth_frames`, the AVS scorer and the lip
    reader all end here (with the extractor's saved crop size, mean and std).

    Args:
        gray_rois: patches with height and width as the last two axes, on the 0..255 scale: a numpy array, e.g.
            (T, 96, 96) uint8, or a torch tensor of any leading shape.

    Returns:
        numpy input: float32, computed in float64 as the reference does (numpy promotes `uint8 / 255.0` to float64)
        and cast to float32 once at the end, as the reference dataset does before the model; large clips are
        processed in chunks of frames so the float64 temporary stays small.
        torch input: a tensor in the input's floating dtype (float32 for integer tensors), differentiable.

    Raises:
        ValueError: patches smaller than the centre crop.
    """
    height, width = gray_rois.shape[-2], gray_rois.shape[-1]
    if height < crop_size or width < crop_size:
        raise ValueError(f"mouth crops of {height}x{width} are smaller than the {crop_size}x{crop_size} centre "
                         "crop; extract 96x96 mouth regions first")
    top, left = center_crop_offset(height, crop_size), center_crop_offset(width, crop_size)
    torch = sys.modules.get("torch")  # a tensor can only exist when torch is imported already
    if torch is not None and isinstance(gray_rois, torch.Tensor):
        frames = gray_rois if gray_rois.is_floating_point() else gray_rois.float()
        frames = frames[..., top : top + crop_size, left : left + crop_size] / 255.0
        return (frames - image_mean) / image_std
    cropped = np.asarray(gray_rois)[..., top : top + crop_size, left : left + crop_size]
    flat = cropped.reshape(-1, crop_size, crop_size)  # (frames, crop, crop), a view
    normalized = np.empty(flat.shape, dtype=np.float32)
    for start in range(0, len(flat), _NORMALIZE_CHUNK_FRAMES):
        chunk = flat[start : start + _NORMALIZE_CHUNK_FRAMES].astype(np.float64) / 255.0
        normalized[start : start + _NORMALIZE_CHUNK_FRAMES] = (chunk - image_mean) / image_std
    return normalized.reshape(cropped.shape)


def extract_mouth_rois(frames, landmarks, channel_order: str = "rgb", crop_size: int = CROP_SIZE,
                       image_mean: float = IMAGE_MEAN, image_std: float = IMAGE_STD) -> np.ndarray:
    """Frames + landmarks -> AV-HuBERT video input for one clip, (T, 88, 88) float32 (feed as [1, 1, T, 88, 88])."""
    rois = crop_mouth_rois(frames, landmarks)
    return normalize_mouth_rois(rois_to_gray(rois, channel_order), crop_size, image_mean, image_std)


# ----------------------------------------------------------------------------------------------------------
# Landmark detection over a clip
# ----------------------------------------------------------------------------------------------------------


def detect_landmarks(frames, face_backend="mediapipe", stride: int = 1, max_side: int | None = None) -> list:
    """68-point landmarks of the largest face in each frame (None where no face is found).

    Args:
        frames: (T, H, W, 3) uint8 RGB frames, or any iterable of such frames (e.g. `media.iter_frames`).
        face_backend: a backend name for `talkface.faces.get_face_backend`, or an object with `detect(frame_rgb)`.
        stride: detect on every `stride`-th frame only (and the last frame); the others are left as None and
            filled by `interpolate_landmarks` (see docs/avs.md for what this costs in crop accuracy).
        max_side: downscale frames whose longer side exceeds this before detection (landmarks are scaled back).

    Note: the reference keeps the *last* of several dlib faces; we keep the largest.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    backend = _resolve_face_backend(face_backend)
    landmarks: list = []
    skipped_frame = None  # the latest frame skipped by the stride: detected at the end if it is the last one
    for index, frame in enumerate(frames):
        if index % stride == 0:
            landmarks.append(_largest_face_landmarks(backend, frame, max_side))
            skipped_frame = None
        else:
            landmarks.append(None)
            skipped_frame = frame
    if skipped_frame is not None:
        landmarks[-1] = _largest_face_landmarks(backend, skipped_frame, max_side)
    return landmarks


def _largest_face_landmarks(backend, frame, max_side):
    import cv2

    frame = np.ascontiguousarray(frame)
    scale = 1.0
    if max_side is not None and max(frame.shape[:2]) > max_side:
        scale = max(frame.shape[:2]) / max_side
        size = (round(frame.shape[1] / scale), round(frame.shape[0] / scale))
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    detections = backend.detect(frame)
    if not detections or detections[0].landmarks is None:
        return None
    points = np.asarray(detections[0].landmarks, dtype=np.float64)
    if scale != 1.0:
        points = (points + 0.5) * scale - 0.5  # pixel-centre convention of cv2.resize
    return points


def _resolve_face_backend(face_backend):
    if hasattr(face_backend, "detect"):
        return face_backend
    from .backends import get_face_backend  # the backends import their optional dependencies lazily

    return get_face_backend(face_backend)


# videos whose decoded frames would take more memory than this are streamed twice instead of held at once
IN_MEMORY_VIDEO_BYTES = 1 << 30


def _decoded_size(path, fps: float) -> float:
    from ..media import probe

    info = probe(path)
    return info.duration * fps * info.width * info.height * 3


def _chunks(frames, size: int, limit: int):
    """(start index, list of frames) chunks of an iterable, stopping after `limit` frames."""
    chunk, start = [], 0
    for index, frame in enumerate(frames):
        if index >= limit:
            break
        chunk.append(frame)
        if len(chunk) == size:
            yield start, chunk
            chunk, start = [], index + 1
    if chunk:
        yield start, chunk


@dataclass
class MouthVideo:
    """A clip prepared for AV-HuBERT.

    mouths: (T, 88, 88) float32 normalised mouth crops (feed as [1, 1, T, 88, 88]).
    landmarks: (T, 68, 2) float64 landmarks after interpolation, in frame pixels.
    detected: (T,) bool, frames where the face backend found a face (False also for frames skipped by the stride).
    timings: seconds spent per stage ("decode", "landmarks", "roi").
    """

    mouths: np.ndarray
    landmarks: np.ndarray
    detected: np.ndarray
    timings: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return len(self.mouths)


def prepare_mouth_video(video, face_backend="mediapipe", fps: float = 25.0, landmark_stride: int = 1,
                        landmark_max_side: int | None = None, crop_size: int = CROP_SIZE,
                        image_mean: float = IMAGE_MEAN, image_std: float = IMAGE_STD) -> MouthVideo:
    """Video file or RGB frames -> AV-HuBERT mouth input, with the reference crop on the backend's landmarks.

    Args:
        video: a path (read on a constant `fps` grid) or (T, H, W, 3) uint8 RGB frames already at `fps`.
        face_backend: backend name or object (see `detect_landmarks`).
        landmark_stride, landmark_max_side: speed/accuracy trade-offs of `detect_landmarks`.

    Raises:
        NoFaceError: no face in any frame. MediaError: unreadable video.
    """
    timings = {}
    started = time.perf_counter()
    streamed = isinstance(video, (str, Path)) and _decoded_size(video, fps) > IN_MEMORY_VIDEO_BYTES
    if streamed:
        from ..media import iter_frames

        frames = iter_frames(video, fps=fps)  # large video: decoded twice (landmarks, then crops), never held
    elif isinstance(video, (str, Path)):
        from ..media import read_frames

        frames = read_frames(video, fps=fps)
    else:
        frames = _as_frame_array(video)
        if frames.shape[-1] != 3:
            raise ValueError(f"frames must be RGB (T, H, W, 3), got {frames.shape}")
    timings["decode"] = time.perf_counter() - started

    started = time.perf_counter()
    landmarks = detect_landmarks(frames, face_backend, stride=landmark_stride, max_side=landmark_max_side)
    detected = np.array([points is not None for points in landmarks], dtype=bool)
    if not detected.any():
        source = f"{video}" if isinstance(video, (str, Path)) else "the frames"
        raise NoFaceError(f"no face found in any frame of {source}; use a video that shows one speaking face "
                          "(frontal, at least ~64 pixels tall)")
    timings["landmarks"] = time.perf_counter() - started

    started = time.perf_counter()
    filled = interpolate_landmarks(landmarks)
    if streamed:
        from ..media import iter_frames

        plan = plan_mouth_crops(filled)
        rois = np.empty((len(plan), ROI_SIZE, ROI_SIZE, 3), dtype=np.uint8)
        for start, chunk in _chunks(iter_frames(video, fps=fps), 16, limit=len(plan)):
            rois[start : start + len(chunk)] = warp_mouth_patches(np.stack(chunk), plan, start)
    else:
        rois = crop_mouth_rois(frames, filled)
    mouths = normalize_mouth_rois(rois_to_gray(rois, "rgb"), crop_size, image_mean, image_std)
    timings["roi"] = time.perf_counter() - started
    if not detected.all() and landmark_stride == 1:
        logger.info("no face in %d of %d frames; their landmarks were interpolated", (~detected).sum(), len(detected))
    return MouthVideo(mouths=mouths, landmarks=filled, detected=detected, timings=timings)


# ----------------------------------------------------------------------------------------------------------
# Differentiable crop (torch)
# ----------------------------------------------------------------------------------------------------------


def crop_mouth_differentiable(images, affines, crop_size: int = CROP_SIZE, roi_size: int = ROI_SIZE,
                              image_mean: float = IMAGE_MEAN, image_std: float = IMAGE_STD):
    """Differentiable AV-HuBERT mouth crop of float images.

    Matches the reference path (warp, grey, centre crop, normalise) up to its uint8 quantisation: grey uses the
    same luma weights as OpenCV (on floats, no rounding) and sampling is bilinear with zeros outside, at the same
    pixel-centre coordinates as `crop_mouth_rois`. Grey is taken before warping (both are linear, so the order
    does not change the result and it saves two thirds of the sampling).

    Args:
        images: (B, 3, H, W) RGB float in [0, 1] (or (B, 1, H, W) grey).
        affines: (B, 2, 3) maps from 96x96 mouth-patch pixel coords to `images` pixel coords
            (`mouth_transforms_from_landmarks`, rebased with `rebase_transforms_to_crop` for face crops).

    Returns:
        (B, 1, crop_size, crop_size) normalised, like one frame of AV-HuBERT's video input.
    """
    import torch
    import torch.nn.functional as F

    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (B, 3, H, W) RGB or (B, 1, H, W) grey, got {tuple(images.shape)}")
    affines = torch.as_tensor(affines, dtype=images.dtype, device=images.device)
    if affines.shape != (images.shape[0], 2, 3):
        raise ValueError(f"affines must be ({images.shape[0]}, 2, 3), got {tuple(affines.shape)}")
    if images.shape[1] == 3:
        weights = torch.tensor(LUMA_WEIGHTS_RGB, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        gray = (images * weights).sum(dim=1, keepdim=True)  # (B, 1, H, W)
    else:
        gray = images
    height, width = images.shape[-2:]
    offset = center_crop_offset(roi_size, crop_size)
    # theta maps normalised output coords to normalised input coords. With align_corners=True, pixel index i of
    # a side of n pixels sits at 2 i / (n - 1) - 1. Compose: output-normalised -> output pixel (+ crop offset)
    # -> input pixel (affine) -> input-normalised.
    output_to_patch = torch.tensor([[(crop_size - 1) / 2, 0, (crop_size - 1) / 2 + offset],
                                    [0, (crop_size - 1) / 2, (crop_size - 1) / 2 + offset],
                                    [0, 0, 1]], dtype=images.dtype, device=images.device)
    input_to_normalized = torch.tensor([[2 / (width - 1), 0, -1], [0, 2 / (height - 1), -1]],
                                       dtype=images.dtype, device=images.device)
    bottom_row = torch.tensor([[[0, 0, 1]]], dtype=images.dtype, device=images.device).expand(affines.shape[0], 1, 3)
    affines_3x3 = torch.cat([affines, bottom_row], dim=1)  # (B, 3, 3)
    theta = input_to_normalized @ affines_3x3 @ output_to_patch  # (B, 2, 3)
    grid = F.affine_grid(theta, [images.shape[0], 1, crop_size, crop_size], align_corners=True)
    mouths = F.grid_sample(gray, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return (mouths - image_mean) / image_std
