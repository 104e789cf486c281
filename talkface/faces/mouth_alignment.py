"""The reference geometry of AV-HuBERT's mouth regions: landmarks -> similarity transforms -> 96x96 patches.

Steps 1-3 of the recipe described in `talkface.faces.mouth_roi` (av_hubert `preparation/align_mouth.py`): fill
missing landmarks, smooth the stable points over a window of frames and map them onto the mean face, then warp
each frame into the 256x256 standard frame and cut the patch around the mouth. Everything is vectorised over
frames and only the 96x96 output pixels are ever sampled; the warp reproduces scikit-image's `warp(order=1)`
arithmetic. The grey conversion and normalisation (step 4) live in `talkface.faces.mouth_roi`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import NoFaceError, TalkFaceUserError

# Constants of the reference method (av_hubert preparation/align_mouth.py).
STABLE_POINT_IDS = (33, 36, 39, 42, 45)  # nose tip, outer/inner corners of both eyes
MOUTH_POINT_RANGE = (48, 68)  # landmarks 48..67: the outer and inner lip contours
STANDARD_FRAME_SIZE = 256  # the mean face lives in a 256x256 frame
WINDOW_MARGIN = 12  # frames averaged for the stable points (smooths the alignment in time)
ROI_SIZE = 96  # side of the mouth patch cut from the standard frame
NUM_LANDMARKS = 68

MEAN_FACE_PATH = Path(__file__).with_name("resources") / "20words_mean_face.npy"


@functools.lru_cache(maxsize=1)
def _cached_mean_face() -> np.ndarray:
    mean_face = np.load(MEAN_FACE_PATH)
    if mean_face.shape != (NUM_LANDMARKS, 2):
        raise TalkFaceUserError(f"{MEAN_FACE_PATH} holds an array of shape {mean_face.shape}, expected (68, 2); "
                                "reinstall talkface")
    mean_face.setflags(write=False)
    return mean_face


def load_mean_face() -> np.ndarray:
    """The reference 68-point mean face, (68, 2) float64 (x, y) in a 256x256 frame (see resources/NOTICE.md)."""
    return _cached_mean_face().copy()


# ----------------------------------------------------------------------------------------------------------
# Landmarks
# ----------------------------------------------------------------------------------------------------------


def interpolate_landmarks(landmarks) -> np.ndarray:
    """Fill frames without landmarks, as the reference's `landmarks_interpolate` does.

    Args:
        landmarks: a sequence with one (68, 2) array or `None` per frame, or a (T, 68, 2) array in which missing
            frames are all-NaN.

    Returns:
        (T, 68, 2) float64. A gap between detected frames a < b is filled with
        `L[a] + (i - a) / (b - a) * (L[b] - L[a])`; frames before the first / after the last detection copy it.

    Raises:
        NoFaceError: when no frame has landmarks.
    """
    if isinstance(landmarks, np.ndarray):
        array = np.asarray(landmarks, dtype=np.float64)
        if array.ndim != 3 or array.shape[1:] != (NUM_LANDMARKS, 2):
            raise ValueError(f"landmarks must have shape (T, 68, 2), got {array.shape}")
        present = ~np.isnan(array).any(axis=(1, 2))
    else:
        num_frames = len(landmarks)
        array = np.full((num_frames, NUM_LANDMARKS, 2), np.nan)
        present = np.zeros(num_frames, dtype=bool)
        for index, points in enumerate(landmarks):
            if points is None:
                continue
            points = np.asarray(points, dtype=np.float64)
            if points.shape != (NUM_LANDMARKS, 2):
                raise ValueError(f"landmarks of frame {index} have shape {points.shape}, expected (68, 2)")
            array[index] = points
            present[index] = True
    if array.shape[0] == 0 or not present.any():
        raise NoFaceError("no face landmarks in any frame; check that the video shows a face (or try another "
                          "--face-backend)")
    detected = np.flatnonzero(present)
    filled = array.copy()
    # Gaps between consecutive detections: the same arithmetic as the reference (start + i/n * delta).
    for start, stop in zip(detected[:-1], detected[1:]):
        if stop - start > 1:
            steps = np.arange(1, stop - start, dtype=np.float64) / float(stop - start)  # (gap,)
            filled[start + 1 : stop] = array[start] + steps[:, None, None] * (array[stop] - array[start])
    filled[: detected[0]] = array[detected[0]]
    filled[detected[-1] + 1 :] = array[detected[-1]]
    return filled


# ----------------------------------------------------------------------------------------------------------
# Similarity transforms
# ----------------------------------------------------------------------------------------------------------


def estimate_similarity_transforms(source_points: np.ndarray, target_points: np.ndarray) -> np.ndarray:
    """Least-squares 2-D similarity (rotation, uniform scale, translation) from source to target points.

    Umeyama's method, written with the same operations as scikit-image's `estimate_transform('similarity')`
    so the numbers agree to the last bits, but batched over frames.

    Args:
        source_points: (..., N, 2) points (x, y).
        target_points: (N, 2) or (..., N, 2) points.

    Returns:
        (..., 3, 3) float64 homogeneous matrices mapping source -> target.
    """
    source_points = np.asarray(source_points, dtype=np.float64)
    target_points = np.broadcast_to(np.asarray(target_points, dtype=np.float64), source_points.shape)
    num_points = source_points.shape[-2]
    source_mean = source_points.mean(axis=-2, keepdims=True)  # (..., 1, 2)
    target_mean = target_points.mean(axis=-2, keepdims=True)
    source_centered = source_points - source_mean
    target_centered = target_points - target_mean
    covariance = np.swapaxes(target_centered, -1, -2) @ source_centered / num_points  # (..., 2, 2)

    # Forbid reflections: flip the last singular direction when the covariance has a negative determinant.
    signs = np.ones(covariance.shape[:-2] + (2,))
    signs[..., 1] = np.where(np.linalg.det(covariance) < 0, -1.0, 1.0)
    left, singular_values, right = np.linalg.svd(covariance)
    tolerance = singular_values.max(axis=-1) * 2 * np.finfo(float).eps
    rank = np.count_nonzero(singular_values > tolerance[..., None], axis=-1)
    # Rank-1 (collinear points): the reference picks the sign from det(U) det(V) instead.
    rank_one = rank == 1
    if rank_one.any():
        signs[rank_one, 1] = np.where(np.linalg.det(left[rank_one]) * np.linalg.det(right[rank_one]) > 0, 1.0, -1.0)
    rotation = (left * signs[..., None, :]) @ right  # U @ diag(d) @ V, (..., 2, 2)
    # scale = trace(S D) / source variance, written `1.0 / var * (S @ d)` as the reference does (same rounding)
    scale = 1.0 / source_centered.var(axis=-2).sum(axis=-1) * (singular_values * signs).sum(axis=-1)

    matrices = np.zeros(covariance.shape[:-2] + (3, 3))
    matrices[..., 2, 2] = 1.0
    translation = target_mean[..., 0, :] - scale[..., None] * (rotation @ source_mean[..., 0, :, None])[..., 0]
    matrices[..., :2, 2] = translation
    matrices[..., :2, :2] = rotation * scale[..., None, None]
    degenerate = rank == 0
    if degenerate.any():
        matrices[degenerate] = np.nan
    return matrices


def apply_transforms(matrices: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply (..., 3, 3) homogeneous matrices to (..., N, 2) points -> (..., N, 2)."""
    homogeneous = np.concatenate([points, np.ones(points.shape[:-1] + (1,))], axis=-1)  # (..., N, 3)
    mapped = homogeneous @ np.swapaxes(matrices, -1, -2)
    divisor = mapped[..., 2:3]
    divisor = np.where(divisor == 0, np.finfo(float).eps, divisor)
    return mapped[..., :2] / divisor


def alignment_transforms(landmarks: np.ndarray, mean_face: np.ndarray | None = None,
                         window_margin: int = WINDOW_MARGIN,
                         stable_point_ids: Sequence[int] = STABLE_POINT_IDS) -> np.ndarray:
    """Per-frame transforms from the input frame to the 256x256 standard frame, smoothed as the reference does.

    Frame j uses the stable points averaged over frames j .. j+m-1 (m = min(T, window_margin)); the last m-1 frames
    reuse the transform of the last full window.

    Args:
        landmarks: (T, 68, 2) landmarks without gaps (see `interpolate_landmarks`).

    Returns:
        (T, 3, 3) float64 matrices, input pixel coords (x, y) -> standard-frame coords.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    mean_face = load_mean_face() if mean_face is None else np.asarray(mean_face, dtype=np.float64)
    stable_ids = list(stable_point_ids)
    num_frames = landmarks.shape[0]
    margin = min(num_frames, window_margin)
    stable_points = landmarks[:, stable_ids]  # (T, 5, 2)
    # (T - m + 1, 5, 2, m): window k covers frames k .. k+m-1
    windows = np.lib.stride_tricks.sliding_window_view(stable_points, margin, axis=0)
    smoothed = windows.mean(axis=-1)  # (T - m + 1, 5, 2)
    window_transforms = estimate_similarity_transforms(smoothed, mean_face[stable_ids])
    last_window = window_transforms[-1:]
    return np.concatenate([window_transforms, np.repeat(last_window, margin - 1, axis=0)], axis=0)


def mouth_crop_origins(landmarks: np.ndarray, transforms: np.ndarray, roi_size: int = ROI_SIZE,
                       frame_size: int = STANDARD_FRAME_SIZE,
                       mouth_point_range: tuple[int, int] = MOUTH_POINT_RANGE) -> np.ndarray:
    """Top-left corner (x0, y0) of each frame's mouth patch in the standard frame (reference `cut_patch`).

    The centre is the mean of the transformed mouth points, clamped so that the patch stays inside the frame,
    then rounded half-to-even (Python's `round`).

    Returns:
        (T, 2) int64.
    """
    start, stop = mouth_point_range
    mouth_points = apply_transforms(transforms, np.asarray(landmarks, dtype=np.float64)[:, start:stop])  # (T, 20, 2)
    centers = mouth_points.mean(axis=-2)  # (T, 2) as (x, y)
    half = roi_size // 2
    centers = np.clip(centers, half, frame_size - half)
    return (np.round(centers) - half).astype(np.int64)


def mouth_roi_affines(landmarks, mean_face: np.ndarray | None = None, window_margin: int = WINDOW_MARGIN,
                      roi_size: int = ROI_SIZE) -> np.ndarray:
    """(T, 3, 3) float64 maps from mouth-patch pixel coords (x, y) to input-frame pixel coords."""
    return plan_mouth_crops(landmarks, mean_face, window_margin, roi_size).patch_to_frame_affines()


def mouth_transforms_from_landmarks(landmarks, mean_face: np.ndarray | None = None,
                                    window_margin: int = WINDOW_MARGIN) -> np.ndarray:
    """Affine maps from mouth-patch pixel coordinates to image pixel coordinates, one per frame.

    The maps are expressed in the coordinates of the image the landmarks were found in: pixel centres at
    integers, x to the right, y down. Point (u, v) of the 96x96 reference mouth patch (before the 88x88 centre
    crop) comes from image point `A @ (u, v, 1)`. Give them to `crop_mouth_differentiable`, or precompute them
    in a dataset. For images that are a resized crop of the frame (e.g. 96x96 generator faces), rebase them with
    `rebase_transforms_to_crop`.

    Args:
        landmarks: (T, 68, 2) array (NaN rows = missing) or a list of (68, 2) arrays / None.

    Returns:
        (T, 2, 3) float32.
    """
    return mouth_roi_affines(landmarks, mean_face, window_margin)[:, :2, :].astype(np.float32)


def rebase_transforms_to_crop(transforms: np.ndarray, box, crop_size=(96, 96)) -> np.ndarray:
    """Re-express frame-coordinate maps for an image made by resizing the frame region `box` to `crop_size`.

    The crop is assumed to be made with `cv2.resize(frame[y1:y2, x1:x2], (width, height))`, whose pixel-centre
    convention maps frame x to crop `(x - x1 + 0.5) * width / (x2 - x1) - 0.5` (and likewise for y).

    Args:
        transforms: (T, 2, 3) maps from patch coords to frame coords (`mouth_transforms_from_landmarks`).
        box: (x1, y1, x2, y2) in frame pixels, or (T, 4) boxes, one per frame.
        crop_size: (height, width) of the face crop.

    Returns:
        (T, 2, 3) maps from patch coords to crop coords, same dtype as `transforms`.
    """
    transforms = np.asarray(transforms)
    boxes = np.broadcast_to(np.asarray(box, dtype=np.float64), (transforms.shape[0], 4))
    height, width = crop_size
    scale_x = width / (boxes[:, 2] - boxes[:, 0])
    scale_y = height / (boxes[:, 3] - boxes[:, 1])
    frame_to_crop = np.zeros((transforms.shape[0], 2, 3))
    frame_to_crop[:, 0, 0] = scale_x
    frame_to_crop[:, 0, 2] = (0.5 - boxes[:, 0]) * scale_x - 0.5
    frame_to_crop[:, 1, 1] = scale_y
    frame_to_crop[:, 1, 2] = (0.5 - boxes[:, 1]) * scale_y - 0.5
    full = np.zeros((transforms.shape[0], 3, 3))
    full[:, :2] = transforms
    full[:, 2, 2] = 1.0
    return (frame_to_crop @ full).astype(transforms.dtype)


# ----------------------------------------------------------------------------------------------------------
# The reference crop (numpy)
# ----------------------------------------------------------------------------------------------------------


def _clip_like_reference(patches: np.ndarray, frames: np.ndarray, affines: np.ndarray,
                         frame_indices: np.ndarray, frame_size: int) -> np.ndarray:
    """scikit-image clips the warped frame to the input's value range (extended to 0 when zeros came from outside).

    Whether zeros came from outside is decided on the whole 256x256 standard frame: it does when one of its
    corners maps more than a pixel outside the input (the corners are the extreme points of an affine map).
    """
    flat = frames[frame_indices].reshape(len(frame_indices), -1)
    # the same conversion as the sampled values (x * (1/255)), so the bounds match them to the last bit
    frame_min = flat.min(axis=1).astype(np.float64) * (1.0 / 255)
    frame_max = flat.max(axis=1).astype(np.float64) * (1.0 / 255)
    height, width = frames.shape[1:3]
    corners = np.array([[0, 0], [frame_size - 1, 0], [0, frame_size - 1], [frame_size - 1, frame_size - 1]], float)
    # `affines` map standard-frame coords to input coords here
    mapped = apply_transforms(affines, np.broadcast_to(corners, (affines.shape[0], 4, 2)))  # (T, 4, 2)
    fully_outside = ((mapped[..., 0] <= -1) | (mapped[..., 0] >= width) |
                     (mapped[..., 1] <= -1) | (mapped[..., 1] >= height)).any(axis=1)
    low = np.where(fully_outside & (frame_min > 0), 0.0, frame_min)
    return np.clip(patches, low[:, None, None, None], frame_max[:, None, None, None])


@dataclass
class MouthCropPlan:
    """Where each frame's mouth patch comes from: the reference transforms, computed from landmarks alone.

    inverse_transforms: (T, 3, 3) standard-frame coords -> frame coords (scikit-image's `tform.inverse`).
    origins: (T, 2) int64 top-left (x0, y0) of the patch in the standard frame.
    """

    inverse_transforms: np.ndarray
    origins: np.ndarray
    roi_size: int = ROI_SIZE

    def __len__(self):
        return len(self.origins)

    def patch_to_frame_affines(self) -> np.ndarray:
        """(T, 3, 3) maps from patch pixel coords (u, v) to frame pixel coords."""
        patch_to_standard = np.tile(np.eye(3), (len(self), 1, 1))
        patch_to_standard[:, :2, 2] = self.origins
        return self.inverse_transforms @ patch_to_standard


def plan_mouth_crops(landmarks, mean_face: np.ndarray | None = None, window_margin: int = WINDOW_MARGIN,
                     roi_size: int = ROI_SIZE) -> MouthCropPlan:
    """The reference alignment for every frame (interpolating missing landmarks first); no pixels are touched."""
    landmarks = interpolate_landmarks(landmarks)
    transforms = alignment_transforms(landmarks, mean_face, window_margin)
    origins = mouth_crop_origins(landmarks, transforms, roi_size)
    # the reference inverts the forward transform with np.linalg.inv; do the same for identical coordinates
    return MouthCropPlan(np.linalg.inv(transforms), origins, roi_size)


def warp_mouth_patches(frames: np.ndarray, plan: MouthCropPlan, start: int = 0) -> np.ndarray:
    """Cut the patches of frames `start .. start + len(frames) - 1` of `plan` (frames may be a chunk of the clip).

    Returns (N, roi, roi, C) uint8, truncated (not rounded) from float as the reference does.
    """
    frames = _as_frame_array(frames)
    stop = start + len(frames)
    if stop > len(plan):
        raise ValueError(f"frames {start}..{stop - 1} are beyond the plan's {len(plan)} frames")
    inverse = plan.inverse_transforms[start:stop]
    local_indices = np.arange(len(frames))
    # Sample the standard frame at (u + x0, v + y0): fold the patch origin into the coordinates, not the matrix,
    # so the per-pixel arithmetic matches the reference, which evaluates the matrix at standard-frame pixels.
    values = _warp_standard_frame_patch(frames, inverse, plan.origins[start:stop], plan.roi_size, local_indices)
    values = _clip_like_reference(values, frames, inverse, local_indices, STANDARD_FRAME_SIZE)
    return (values * 255).astype(np.uint8)


def crop_mouth_rois(frames, landmarks, mean_face: np.ndarray | None = None, window_margin: int = WINDOW_MARGIN,
                    roi_size: int = ROI_SIZE, chunk_size: int = 16) -> np.ndarray:
    """The reference 96x96 colour mouth patches (`crop_patch`), one per frame.

    Args:
        frames: (T, H, W, C) uint8 frames (any channel order; channels are warped independently), or a list.
        landmarks: (T, 68, 2) array (NaN rows = missing) or a list of (68, 2) arrays / None, in frame pixels.
        chunk_size: frames per vectorised batch (bounds temporary memory; small chunks stay in cache).

    Returns:
        (T, 96, 96, C) uint8, truncated (not rounded) from float as the reference does.
    """
    frames = _as_frame_array(frames)
    plan = plan_mouth_crops(landmarks, mean_face, window_margin, roi_size)
    if len(plan) != len(frames):
        raise ValueError(f"got {len(frames)} frames but landmarks for {len(plan)}")
    patches = np.empty((len(frames), roi_size, roi_size, frames.shape[-1]), dtype=np.uint8)
    for start in range(0, len(frames), chunk_size):
        patches[start : start + chunk_size] = warp_mouth_patches(frames[start : start + chunk_size], plan, start)
    return patches


def _warp_standard_frame_patch(frames, inverse, origins, size, frame_indices):
    """Bilinear samples of the standard frame's pixels (origin + patch index) through `inverse`, like the reference.

    Returns (T, size, size, C) float64 in [0, 1], before the reference's x255 and truncation.
    """
    num = inverse.shape[0]
    rows = np.arange(size, dtype=np.float64)[None, :, None] + origins[:, 1, None, None]  # (T, size, 1)
    cols = np.arange(size, dtype=np.float64)[None, None, :] + origins[:, 0, None, None]  # (T, 1, size)
    rows = np.broadcast_to(rows, (num, size, size))
    cols = np.broadcast_to(cols, (num, size, size))
    _, height, width, _ = frames.shape
    m = inverse[:, :, :, None, None]
    sample_x = m[:, 0, 0] * cols + m[:, 0, 1] * rows + m[:, 0, 2]
    sample_y = m[:, 1, 0] * cols + m[:, 1, 1] * rows + m[:, 1, 2]
    projective = ~((inverse[:, 2, 0] == 0) & (inverse[:, 2, 1] == 0) & (inverse[:, 2, 2] == 1))
    if projective.any():
        w = m[projective, 2, 0] * cols[projective] + m[projective, 2, 1] * rows[projective] + m[projective, 2, 2]
        sample_x[projective] /= w
        sample_y[projective] /= w
    return _bilinear(frames, sample_x, sample_y, frame_indices)


def _bilinear(frames, sample_x, sample_y, frame_indices):
    """scikit-image's order-1 interpolation (`bilinear_interpolation` with mode "constant", cval 0), vectorised.

    Args:
        frames: (N, H, W, C) uint8; sample_x, sample_y: (T, h, w) float64 pixel coords; frame_indices: (T,).

    Returns:
        (T, h, w, C) float64 in [0, 1].
    """
    _, height, width, channels = frames.shape
    flat_frames = frames.reshape(-1, channels)  # (N*H*W, C)
    x_low, y_low = np.floor(sample_x), np.floor(sample_y)
    dx = (sample_x - x_low)[..., None]  # (T, h, w, 1)
    dy = (sample_y - y_low)[..., None]
    x_low, y_low = x_low.astype(np.intp), y_low.astype(np.intp)
    # ceil(): equal to floor when the coordinate is integral (then its weight is 0 anyway)
    x_high = x_low + (dx[..., 0] > 0)
    y_high = y_low + (dy[..., 0] > 0)
    frame_offset = (np.asarray(frame_indices, dtype=np.intp) * (height * width))[:, None, None]
    inverse_max = 1.0 / 255  # scikit-image's img_as_float multiplies by 1/255

    def pixel(ys, xs):
        inside = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)  # zeros outside (mode="constant", cval=0)
        index = frame_offset + np.clip(ys, 0, height - 1) * width + np.clip(xs, 0, width - 1)
        values = np.take(flat_frames, index, axis=0)  # (T, h, w, C) uint8
        values *= inside[..., None]
        return values * inverse_max

    one_minus_dx = 1 - dx
    top = one_minus_dx * pixel(y_low, x_low)
    top += dx * pixel(y_low, x_high)
    bottom = one_minus_dx * pixel(y_high, x_low)
    bottom += dx * pixel(y_high, x_high)
    top *= 1 - dy
    bottom *= dy
    top += bottom
    return top


def _as_frame_array(frames) -> np.ndarray:
    frames = np.asarray(frames) if not isinstance(frames, np.ndarray) else frames
    if frames.ndim == 3:
        frames = frames[..., None]
    if frames.ndim != 4 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, C) uint8, got {frames.shape} {frames.dtype}")
    return frames

