"""Faces: detection backends (boxes + 68 iBUG landmarks), tracking, crops (roll-aligned) and face-shaped
paste-back, mouth regions.

Nothing here imports a face library at import time; backends import theirs when built.
"""

from .backends import (
    FACE_BACKENDS,
    MEDIAPIPE_TO_IBUG68,
    DlibFaceBackend,
    FaceAlignmentBackend,
    FaceBackend,
    FaceDetection,
    MediaPipeFaceBackend,
    S3FDFaceBackend,
    box_iou,
    get_face_backend,
    register_face_backend,
)
from .blending import BLEND_MODES, crop_face, integer_box, landmark_face_mask, lower_face_mask, paste_face
from .roll import crop_face_aligned, roll_angle
from .tracking import DEFAULT_PADS, FaceTracker

__all__ = [
    "BLEND_MODES",
    "DEFAULT_PADS",
    "FACE_BACKENDS",
    "MEDIAPIPE_TO_IBUG68",
    "DlibFaceBackend",
    "FaceAlignmentBackend",
    "FaceBackend",
    "FaceDetection",
    "FaceTracker",
    "MediaPipeFaceBackend",
    "S3FDFaceBackend",
    "box_iou",
    "crop_face",
    "crop_face_aligned",
    "get_face_backend",
    "integer_box",
    "landmark_face_mask",
    "lower_face_mask",
    "paste_face",
    "register_face_backend",
    "roll_angle",
]
