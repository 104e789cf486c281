"""Face crops for the generator and paste-back of the generated face into the frame.

A generator sees the face box resized to a small square (96x96 for Wav2Lip) and regenerates its lower half; the
upper half of its output only reconstructs what it was shown, blurred by the 96-pixel bottleneck. Pasting the
whole square back (Wav2Lip's way, `blend="hard"`) therefore blurs the eyes and leaves a visible square edge.

`blend="feather"` (default) pastes only the region that had to change: a mask that is 1 over the lower part of
the box and falls smoothly to 0 towards the box's sides and bottom and, above, towards the middle of the box
(where the generator's masked half begins). The ramps are `feather` x box size wide (smoothstep profile), so
there is no seam; the original frame is kept everywhere else, eyes included.

`blend="poisson"` does Poisson (gradient-domain) cloning of the same region with OpenCV's `seamlessClone`, which
also evens out colour differences; it is slower. `blend="none"` leaves frames untouched (debugging).
"""

from __future__ import annotations

import functools

import numpy as np

BLEND_MODES = ("feather", "hard", "poisson", "none")


def integer_box(box, frame_shape) -> tuple[int, int, int, int]:
    """Round a float box to pixel indices inside the frame, at least 2 pixels wide and high."""
    height, width = frame_shape[:2]
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    x1, y1 = min(max(0, x1), width - 2), min(max(0, y1), height - 2)
    x2, y2 = max(min(width, x2), x1 + 2), max(min(height, y2), y1 + 2)
    return x1, y1, x2, y2


def crop_face(frame: np.ndarray, box, size: int = 96) -> np.ndarray:
    """The face box of `frame` (H, W, 3) resized to (size, size, 3), same dtype."""
    import cv2

    x1, y1, x2, y2 = integer_box(box, frame.shape)
    face = frame[y1:y2, x1:x2]
    # INTER_AREA when shrinking: averaging avoids the aliasing bilinear sampling gives on large faces
    interpolation = cv2.INTER_AREA if (x2 - x1) > size else cv2.INTER_LINEAR
    return cv2.resize(face, (size, size), interpolation=interpolation)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


@functools.lru_cache(maxsize=16)
def lower_face_mask(size: int = 96, feather: float = 0.15, top: float = 0.5) -> np.ndarray:
    """(size, size) float32 mask in crop coordinates: ~1 over the lower face, 0 at the box edges and above `top`.

    `top` is where the generated half starts (0.5: the lower half); the upward ramp ends `feather` below it, so
    the transition stays inside the generated region. The ramps at the sides and the bottom are `feather` wide.
    """
    if not 0.0 < feather <= 0.5:
        raise ValueError(f"feather must be in (0, 0.5], got {feather}")
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size  # pixel centres in (0, 1)
    horizontal = _smoothstep(coords / feather) * _smoothstep((1.0 - coords) / feather)
    vertical = _smoothstep((coords - top) / feather) * _smoothstep((1.0 - coords) / feather)
    mask = np.outer(vertical, horizontal).astype(np.float32)
    mask.setflags(write=False)
    return mask


def _to_uint8_face(face: np.ndarray, truncate: bool) -> np.ndarray:
    if face.dtype == np.uint8:
        return face
    scaled = np.clip(face, 0.0, 1.0) * 255.0
    return scaled.astype(np.uint8) if truncate else np.round(scaled).astype(np.uint8)


def paste_face(frame: np.ndarray, face: np.ndarray, box, blend: str = "feather", feather: float = 0.15,
               top: float = 0.5) -> np.ndarray:
    """Return `frame` with the generated `face` (size, size, 3; uint8 or float in [0, 1]) pasted into `box`.

    `frame` is not modified. See the module docstring for the blend modes.
    """
    import cv2

    if blend not in BLEND_MODES:
        raise ValueError(f"blend must be one of {BLEND_MODES}, got {blend!r}")
    if blend == "none":
        return frame
    x1, y1, x2, y2 = integer_box(box, frame.shape)
    box_w, box_h = x2 - x1, y2 - y1
    output = frame.copy()
    if blend == "hard":
        # Wav2Lip exactly: truncate to uint8 at 96x96, bilinear resize, overwrite the box
        output[y1:y2, x1:x2] = cv2.resize(_to_uint8_face(face, truncate=True), (box_w, box_h))
        return output

    face_float = face.astype(np.float32) / 255.0 if face.dtype == np.uint8 else face.astype(np.float32)
    resized = cv2.resize(face_float, (box_w, box_h), interpolation=cv2.INTER_CUBIC)
    mask = cv2.resize(lower_face_mask(face.shape[0], feather, top), (box_w, box_h), interpolation=cv2.INTER_LINEAR)
    if blend == "poisson":
        binary = (mask > 0.5).astype(np.uint8) * 255
        if binary.any():
            source = np.zeros_like(frame)
            source[y1:y2, x1:x2] = _to_uint8_face(resized, truncate=False)
            full_mask = np.zeros(frame.shape[:2], np.uint8)
            full_mask[y1:y2, x1:x2] = binary
            ys, xs = np.nonzero(full_mask)
            centre = (int((xs.min() + xs.max() + 1) // 2), int((ys.min() + ys.max() + 1) // 2))
            return cv2.seamlessClone(source, np.ascontiguousarray(frame), full_mask, centre, cv2.NORMAL_CLONE)
        return output
    region = output[y1:y2, x1:x2].astype(np.float32) / 255.0
    alpha = mask[:, :, None]
    blended = region + alpha * (np.clip(resized, 0.0, 1.0) - region)
    output[y1:y2, x1:x2] = np.round(blended * 255.0).astype(np.uint8)
    return output
