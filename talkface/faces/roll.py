"""Roll alignment: the head's in-plane tilt from its eye line, and face crops turned upright by it.

A generator is trained on upright faces whose mouth sits in the lower half of the crop. For a tilted head (or a
video recorded sideways) an axis-aligned box puts the cheek or an ear there instead, and the redrawn mouth lands on
the cheek. `face_crop_transform(box, roll_degrees)` gives the affine map between the generator's crop (an upright
square) and the frame: the crop is the face box turned by the roll angle about its centre. `crop_face_aligned`
cuts that crop out of the frame; `talkface.faces.blending.paste_face(..., roll_degrees=...)` maps the generated
face back through the same transform, so only the region the crop covered changes.

Conventions: image coordinates (x right, y down), angles in degrees, positive = clockwise on screen. The roll of a
face is the direction of the line from the subject's right eye (iBUG 36-41, image left on a frontal face) to the
left eye (42-47): 0 for an upright face, +90 for a head lying with its crown towards the right of the picture.
"""

from __future__ import annotations

import math

import numpy as np

RIGHT_EYE = slice(36, 42)
LEFT_EYE = slice(42, 48)


def roll_angle(landmarks: np.ndarray) -> float:
    """Roll of a face in degrees, in (-180, 180], from its (68, 2) iBUG landmarks' eye centres."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {points.shape}")
    dx, dy = points[LEFT_EYE].mean(axis=0) - points[RIGHT_EYE].mean(axis=0)
    return math.degrees(math.atan2(dy, dx))


def rotation_matrix(centre, roll_degrees: float, scale_xy=(1.0, 1.0)) -> np.ndarray:
    """(2, 3) affine taking offsets from the centre in the face's own axes (scaled per axis) to frame points."""
    theta = math.radians(roll_degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    sx, sy = scale_xy
    return np.array([[cos * sx, -sin * sy, centre[0]], [sin * sx, cos * sy, centre[1]]], dtype=np.float64)


def aligned_box_size(box, roll_degrees: float) -> tuple[float, float]:
    """(width, height) of the face in its own upright axes, from an axis-aligned frame box: the box's own sides,
    swapped when the roll is nearer a quarter turn than upright (a face lying sideways is as tall as its box is
    wide)."""
    width, height = float(box[2] - box[0]), float(box[3] - box[1])
    quarter_turns = int(round(roll_degrees / 90.0))
    return (height, width) if quarter_turns % 2 else (width, height)


def face_crop_transform(box, roll_degrees: float, size: int, height: int | None = None) -> np.ndarray:
    """(2, 3) affine taking crop pixel indices (u, v) of a size x size crop (size x height when given) to frame
    pixel indices (x, y).

    The crop is the face box turned by `roll_degrees` about the box centre, so its rows run along the eye line.
    With a roll of 0 it is exactly the axis-aligned box resized to the crop (pixel centres map as in
    `cv2.resize`).
    """
    crop_w, crop_h = size, size if height is None else height
    x1, y1, x2, y2 = (float(v) for v in box)
    face_w, face_h = aligned_box_size(box, roll_degrees)
    centre = ((x1 + x2) / 2 - 0.5, (y1 + y2) / 2 - 0.5)  # pixel centres sit at integer indices
    to_frame = rotation_matrix(centre, roll_degrees, (face_w / crop_w, face_h / crop_h))
    # crop index u is (u + 0.5 - crop_w / 2) crop pixels from the crop centre
    to_frame[:, 2] += to_frame[:, :2] @ np.array([0.5 - crop_w / 2.0, 0.5 - crop_h / 2.0])
    return to_frame


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine map."""
    linear = np.linalg.inv(matrix[:, :2])
    return np.concatenate([linear, -linear @ matrix[:, 2:]], axis=1)


def apply_affine(matrix: np.ndarray, points) -> np.ndarray:
    """(n, 2) points mapped through a (2, 3) affine."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return points @ matrix[:, :2].T + matrix[:, 2]


def crop_face_aligned(frame: np.ndarray, box, roll_degrees: float, size: int = 96) -> np.ndarray:
    """The face box of `frame` turned upright by `roll_degrees`, resized to (size, size, 3), same dtype.

    The box is first resampled once at its own resolution (bilinear rotation), then shrunk with pixel-area
    averaging like `crop_face`; pixels beyond the frame repeat its edge. A roll of 0 is `crop_face` exactly.
    """
    import cv2

    from .blending import crop_face, integer_box

    if roll_degrees == 0.0:
        return crop_face(frame, box, size)
    box = integer_box(box, frame.shape)
    width, height = aligned_box_size(box, roll_degrees)
    patch_w, patch_h = max(2, int(round(width))), max(2, int(round(height)))
    to_frame = face_crop_transform(box, roll_degrees, patch_w, patch_h)
    patch = cv2.warpAffine(frame, to_frame, (patch_w, patch_h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REPLICATE)
    interpolation = cv2.INTER_AREA if patch_w > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interpolation)


__all__ = ["aligned_box_size", "apply_affine", "crop_face_aligned", "face_crop_transform", "invert_affine",
           "roll_angle", "rotation_matrix"]
