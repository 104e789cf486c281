"""LMD: mouth landmark distance between generated and ground-truth frames.

Following Chen et al. 2018 ("Lip Movements Generation at a Glance", ECCV), LMD is the mean Euclidean distance
between corresponding mouth landmarks of the generated and the real frame, averaged over the landmarks and the
frames. The paper measured it on its own fixed-size face crops; for videos of any size we fix the normalisation:

1. 68 iBUG landmarks per frame from a talkface face backend (mediapipe by default; the same backend for both
   videos, largest face). The 20 mouth points are 48-67 (outer lips 48-59, inner lips 60-67).
2. Generated landmarks are mapped into the reference frame's pixel grid when the resolutions differ.
3. Scale: both sets are multiplied by 256 / F, where F is the reference video's face size: the median over frames
   of the side of the square bounding the 68 reference landmarks. Distances are therefore "pixels of a 256-pixel
   face", comparable across resolutions.
4. Mouth-centre alignment, per frame: each set has its own mouth centre (the mean of its 20 mouth points)
   subtracted, so head translation does not count; only the mouth shape and opening do.
5. LMD = mean over frames and the 20 points of the distances. Frames where either video has no face are left out
   and counted.

LMD(x, x) = 0; lower is better.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import NoFaceError
from .base import GENERATED, REFERENCE, Metric, register_metric

#: iBUG-68 indices of the mouth (outer lips 48-59, inner lips 60-67)
MOUTH_POINTS = slice(48, 68)
#: landmark coordinates are scaled so that the reference face measures this many pixels
LMD_FACE_SIZE = 256.0


@dataclass
class LMDResult:
    """lmd: mean distance (pixels of a 256-pixel face); per_frame: (frames,) distance, NaN where a face is missing."""

    lmd: float
    per_frame: np.ndarray
    num_frames: int
    missing_frames: int

    def to_dict(self, curves: bool = True) -> dict:
        out = {"lmd": self.lmd, "num_frames": self.num_frames, "missing_frames": self.missing_frames}
        if curves:
            out["per_frame"] = [None if np.isnan(v) else float(v) for v in self.per_frame]
        return out


def reference_face_size(reference_landmarks: np.ndarray) -> float:
    """Median over frames of the side of the square bounding the 68 landmarks (frames with NaN are ignored)."""
    landmarks = np.asarray(reference_landmarks, dtype=np.float64)
    landmarks = landmarks[np.isfinite(landmarks).all(axis=(1, 2))]  # frames with a face
    if not len(landmarks):
        return float("nan")
    extent = landmarks.max(axis=1) - landmarks.min(axis=1)  # (frames, 2)
    return float(np.median(extent.max(axis=1)))


def landmark_distances(generated_landmarks, reference_landmarks, face_size: float | None = None,
                       generated_to_reference_scale=(1.0, 1.0)) -> np.ndarray:
    """Per-frame LMD (frames,) of (frames, 68, 2) landmark arrays (NaN rows mark missing faces -> NaN)."""
    generated = np.asarray(generated_landmarks, dtype=np.float64) * np.asarray(generated_to_reference_scale)
    reference = np.asarray(reference_landmarks, dtype=np.float64)
    if generated.shape != reference.shape or generated.ndim != 3 or generated.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must both be (frames, 68, 2), got {generated.shape} and {reference.shape}")
    face_size = reference_face_size(reference) if face_size is None else face_size
    if not np.isfinite(face_size) or face_size <= 0:
        raise NoFaceError("no usable face landmarks in the reference video; LMD needs a visible face")
    scale = LMD_FACE_SIZE / face_size
    generated_mouth = generated[:, MOUTH_POINTS] * scale
    reference_mouth = reference[:, MOUTH_POINTS] * scale
    generated_mouth -= generated_mouth.mean(axis=1, keepdims=True)  # mouth-centre alignment per frame
    reference_mouth -= reference_mouth.mean(axis=1, keepdims=True)
    return np.linalg.norm(generated_mouth - reference_mouth, axis=-1).mean(axis=1)


def detect_landmarks(frames, backend, every: int = 1) -> np.ndarray:
    """(frames, 68, 2) landmarks of the largest face in each RGB frame; NaN where none is found.

    With `every` > 1 only every n-th frame is processed (the others stay NaN and are left out of the mean).
    """
    landmarks = np.full((len(frames), 68, 2), np.nan)
    for index in range(0, len(frames), every):
        faces = backend.detect(np.ascontiguousarray(frames[index]), landmarks=True)
        if faces and faces[0].landmarks is not None:
            landmarks[index] = faces[0].landmarks
    return landmarks


def lmd_between_videos(generated_frames, reference_frames, backend="mediapipe", every: int = 1) -> LMDResult:
    """LMD of two RGB frame sequences (the first min(len) frames of each are compared)."""
    from ..faces.backends import get_face_backend

    num_frames = min(len(generated_frames), len(reference_frames))
    if num_frames == 0:
        raise NoFaceError("no frames to compare for LMD")
    own_backend = isinstance(backend, str)
    backend = get_face_backend(backend)
    try:
        generated = detect_landmarks(generated_frames[:num_frames], backend, every)
        reference = detect_landmarks(reference_frames[:num_frames], backend, every)
    finally:
        if own_backend:
            backend.close()
    ref_height, ref_width = np.asarray(reference_frames[0]).shape[:2]
    gen_height, gen_width = np.asarray(generated_frames[0]).shape[:2]
    if np.isnan(reference).all():
        raise NoFaceError("no face found in the reference video; LMD needs a visible face")
    if np.isnan(generated).all():
        raise NoFaceError("no face found in the generated video; LMD needs a visible face")
    per_frame = landmark_distances(generated, reference,
                                   generated_to_reference_scale=(ref_width / gen_width, ref_height / gen_height))
    scored = ~np.isnan(per_frame)
    if every > 1:
        processed = np.zeros(num_frames, dtype=bool)
        processed[::every] = True
        missing = int(np.sum(processed & ~scored))
    else:
        missing = int(np.sum(~scored))
    if not scored.any():
        raise NoFaceError("no frame has a face in both videos; LMD needs faces in the same frames")
    return LMDResult(lmd=float(np.mean(per_frame[scored])), per_frame=per_frame.astype(np.float32),
                     num_frames=int(scored.sum()), missing_frames=missing)


@register_metric
class LMDMetric(Metric):
    """Mouth landmark distance of the generated video to the reference (face backend landmarks).

    Options read: lmd_every (landmarks on every n-th frame), face_backend.
    """

    name = "lmd"
    fields = ("lmd",)
    needs = frozenset({GENERATED, REFERENCE})
    aggregate = "frame_mean"
    higher_is_better = {"lmd": False}
    description = "mouth landmark distance, pixels of a 256-pixel face after mouth-centre alignment"
    field_help = {"lmd": "mouth landmark distance to the ground truth, lower is better"}

    def needs_face_backend(self, options) -> bool:
        return True

    def settings(self, options) -> dict:
        return {"every": options.lmd_every, "face_backend": options.face_backend}

    def compute(self, media, context) -> dict:
        result = lmd_between_videos(media.generated_frames, media.reference_frames, backend=context.face_backend(),
                                    every=context.options.lmd_every)
        return {"values": {"lmd": result.lmd}, "num_frames": result.num_frames,
                "details": {"missing_frames": result.missing_frames}}

    def summarise(self, results, context) -> dict:
        return self.mean_over_frames(results)
