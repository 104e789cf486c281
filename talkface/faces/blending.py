"""Face crops for the generator and paste-back of the generated face into the frame.

A generator sees the face box resized to a small square (96x96 for Wav2Lip) and regenerates its lower half; the
upper half of its output only reconstructs what it was shown, blurred by the 96-pixel bottleneck. Pasting the
whole square back (Wav2Lip's way, `blend="hard"`) therefore blurs the eyes and leaves a visible square edge.

`blend="feather"` (default) pastes only the region that had to change, shaped by the face: with the face's 68
landmarks, the mask is the lower face, the polygon of the jaw line (iBUG points 2-14) closed under the nose (the
nostril base, 31-35), cut to the generated half of the crop. It is feathered *inwards* (a smoothstep of the
distance to the polygon's edge), so it is exactly 0 on and outside the edge: nothing changes on the neck, the
background or the upper face. The ramp is `feather` x the box's shorter side wide, but never reaches the lips
(it is narrowed to the lips' distance from the edge, so the whole mouth is the generated one).

Without landmarks (a forced box, a boxes-only face backend, a frame where no landmarks could be fitted) feather
falls back to `blend="box"`: the box-shaped soft mask, 1 over the lower part of the box, falling smoothly to 0
towards the box's sides and bottom and, above, towards the middle of the box (where the generator's masked half
begins), with `feather` x box size wide smoothstep ramps.

`blend="poisson"` does Poisson (gradient-domain) cloning of the same region (the face-shaped one when landmarks
are given) with OpenCV's `seamlessClone`, which also evens out colour differences; it is slower. `blend="none"`
leaves frames untouched (debugging).

`roll_degrees` (roll.py): when the crop was turned upright by the head's roll, the generated face is turned back
through the same transform (the box and hard masks turn with it); with 0 everything is axis-aligned.
"""

from __future__ import annotations

import functools

import numpy as np

from .roll import face_crop_transform

BLEND_MODES = ("feather", "box", "hard", "poisson", "none")
#: iBUG indices of the lower-face polygon: the jaw from image left over the chin, back under the nose
LOWER_FACE_POLYGON = (*range(2, 15), 35, 34, 33, 32, 31)
OUTER_LIPS = slice(48, 60)
#: OpenCV's distance transform of the face mask's ramp: 5 = the 5x5 chamfer mask (cv2.DIST_MASK_5), whose distances
#: are within ~2 % of the exact Euclidean ones (0 = cv2.DIST_MASK_PRECISE) at a third of the cost (~3 ms less per
#: 1080p frame): the mask differs from the exact one by at most 0.018 (mean 0.002) on real faces, with the same
#: zero pixels and the lips still at 1 (tests/faces/test_face_paste.py); pasted pixels move by a mean of 0.06 grey
#: levels, at most 4
DISTANCE_MASK_SIZE = 5


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


def _smoothstep_inplace(x: np.ndarray) -> np.ndarray:
    """`_smoothstep` of a float array, computed in `x` and one scratch array (the same operations in the same
    order, so the same values; the paste-back's mask is large at 1080p)."""
    np.minimum(x, 1.0, out=x)
    np.maximum(x, 0.0, out=x)
    ramp = np.multiply(x, -2.0)
    ramp += 3.0  # 3 - 2x
    x *= x
    x *= ramp
    return x


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


def _fill(shape, polygon, origin=(0, 0)) -> np.ndarray:
    """uint8 (h, w) image: 1 inside the float polygon (sub-pixel vertices), 0 elsewhere; the image's pixel (0, 0)
    is the polygon's pixel `origin` (whole pixels, so the vertices' sub-pixel bits stay the same)."""
    import cv2

    image = np.zeros(shape, np.uint8)
    points = np.round((np.asarray(polygon, dtype=np.float64) + 0.5) * 16 - 8).astype(np.int32)  # 4 fraction bits
    points -= np.asarray(origin, dtype=np.int32) * 16
    cv2.fillPoly(image, [points], 1, lineType=cv2.LINE_8, shift=4)
    return image


def _polygon_bounds(polygon, shape) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): whole pixels of `shape` (h, w) that hold every pixel `_fill` may set for `polygon`."""
    points = np.asarray(polygon, dtype=np.float64)
    x0, y0 = (max(0, int(np.floor(v)) - 1) for v in points.min(axis=0))
    x1, y1 = (int(np.ceil(v)) + 2 for v in points.max(axis=0))
    return x0, y0, min(shape[1], x1), min(shape[0], y1)


def generated_region(box, size: int, top: float = 0.5, roll_degrees: float = 0.0) -> np.ndarray:
    """(4, 2) frame-pixel corners of the part of the crop the generator redraws (crop rows from `top` down)."""
    from .roll import apply_affine

    to_frame = face_crop_transform(box, roll_degrees, size)
    edge, first_row = -0.5, top * size - 0.5
    last = size - 0.5
    return apply_affine(to_frame, [(edge, first_row), (last, first_row), (last, last), (edge, last)])


def landmark_face_mask(shape, landmarks, box, feather: float = 0.15, top: float = 0.5, roll_degrees: float = 0.0,
                       size: int = 96, origin=(0, 0)) -> np.ndarray:
    """float32 mask of `shape` (h, w): the lower face of the 68 landmarks, feathered inwards (see the module).

    The mask covers frame pixels origin + (0..w, 0..h). It is 0 on and outside the polygon `LOWER_FACE_POLYGON`
    and outside the generated part of the crop (`generated_region`); inside it rises along a smoothstep of the
    distance to that edge over `feather` x the box's shorter side, narrowed so that it is 1 at the outer lips.
    """
    height, width = shape[:2]
    mask = np.zeros((height, width), np.float32)
    patch, (x0, y0) = _landmark_mask_patch(shape, landmarks, box, feather, top, roll_degrees, size, origin)
    mask[y0:y0 + patch.shape[0], x0:x0 + patch.shape[1]] = patch
    return mask


def _landmark_mask_patch(shape, landmarks, box, feather, top, roll_degrees, size, origin):
    """`landmark_face_mask` on the bounding rectangle of its non-zero pixels only: (patch, (x0, y0) in the mask).
    Everything outside that rectangle is 0, and the distances inside it are the same as over the whole mask (the
    zero ring around the rectangle is nearer than any zero pixel beyond it), so the patch is the mask's own."""
    import cv2

    if not 0.0 < feather <= 0.5:
        raise ValueError(f"feather must be in (0, 0.5], got {feather}")
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {points.shape}")
    points = points - np.asarray(origin, dtype=np.float64)
    height, width = shape[:2]
    region = generated_region(box, size, top, roll_degrees) - np.asarray(origin, dtype=np.float64)
    polygon = points[list(LOWER_FACE_POLYGON)]
    # the pixels inside are within the lower face's bounding rectangle: only that much is searched (the generated
    # region is filled on the whole image as before: OpenCV clips a polygon at the image's edges with its own
    # rounding, so a smaller image would move some of its edge pixels)
    bx0, by0, bx1, by1 = _polygon_bounds(polygon, (height, width))
    if bx1 <= bx0 or by1 <= by0:
        return np.zeros((0, 0), np.float32), (0, 0)
    inside = _fill((by1 - by0, bx1 - bx0), polygon, (bx0, by0))
    inside &= _fill((height, width), region)[by0:by1, bx0:bx1]
    x0, y0, patch_w, patch_h = cv2.boundingRect(inside)
    if patch_w == 0 or patch_h == 0:
        return np.zeros((0, 0), np.float32), (0, 0)
    inside = inside[y0:y0 + patch_h, x0:x0 + patch_w]
    x0, y0 = x0 + bx0, y0 + by0
    distance = cv2.distanceTransform(np.pad(inside, 1), cv2.DIST_L2, DISTANCE_MASK_SIZE)[1:-1, 1:-1]
    ramp = feather * min(float(box[2] - box[0]), float(box[3] - box[1]))
    lips = np.round(points[OUTER_LIPS]).astype(int)
    on_frame = (lips[:, 0] >= 0) & (lips[:, 0] < width) & (lips[:, 1] >= 0) & (lips[:, 1] < height)
    lips = lips[on_frame] - (x0, y0)
    in_patch = (lips[:, 0] >= 0) & (lips[:, 0] < patch_w) & (lips[:, 1] >= 0) & (lips[:, 1] < patch_h)
    if lips.size and in_patch.all():  # a lip point outside the patch is outside the polygon: distance 0
        lip_distances = distance[lips[:, 1], lips[:, 0]]
        if lip_distances.min() > 0:
            ramp = min(ramp, float(lip_distances.min()))
    # the filled polygon's outermost ring (distance 1) may hold pixels whose centre is just outside the polygon:
    # the ramp starts beyond it, so every changed pixel lies inside the landmarks' polygon
    distance -= 1.0
    distance /= max(ramp - 1.0, 1.0)
    return _smoothstep_inplace(distance), (x0, y0)


def paste_face(frame: np.ndarray, face: np.ndarray, box, blend: str = "feather", feather: float = 0.15,
               top: float = 0.5, landmarks: np.ndarray | None = None, roll_degrees: float = 0.0) -> np.ndarray:
    """Return `frame` with the generated `face` (size, size, 3; uint8 or float in [0, 1]) pasted into `box`.

    `landmarks` (68, 2) in frame pixels shape the feather and poisson masks; `roll_degrees` is the roll the crop
    was turned by (`talkface.faces.roll.crop_face_aligned`). `frame` is not modified. See the module docstring
    for the blend modes.
    """
    import cv2

    if blend not in BLEND_MODES:
        raise ValueError(f"blend must be one of {BLEND_MODES}, got {blend!r}")
    if blend == "none":
        return frame
    if (landmarks is not None and blend in ("feather", "poisson")) or roll_degrees != 0.0:
        return _paste_warped(frame, face, box, blend, feather, top,
                             landmarks if blend in ("feather", "poisson") else None, roll_degrees)
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
        return _poisson(frame, _to_uint8_face(resized, truncate=False), mask > 0.5, (x1, y1))
    region = output[y1:y2, x1:x2].astype(np.float32) / 255.0
    alpha = mask[:, :, None]
    blended = region + alpha * (np.clip(resized, 0.0, 1.0) - region)
    output[y1:y2, x1:x2] = np.round(blended * 255.0).astype(np.uint8)
    return output


def _poisson(frame, patch_uint8, inside, origin) -> np.ndarray:
    """Poisson-clone `patch_uint8` where `inside` (same h, w) into `frame` at `origin` (x, y)."""
    import cv2

    if not inside.any():
        return frame.copy()
    x0, y0 = origin
    height, width = inside.shape
    source = np.zeros_like(frame)
    source[y0:y0 + height, x0:x0 + width] = patch_uint8
    full_mask = np.zeros(frame.shape[:2], np.uint8)
    full_mask[y0:y0 + height, x0:x0 + width] = inside.astype(np.uint8) * 255
    ys, xs = np.nonzero(full_mask)
    centre = (int((xs.min() + xs.max() + 1) // 2), int((ys.min() + ys.max() + 1) // 2))
    return cv2.seamlessClone(source, np.ascontiguousarray(frame), full_mask, centre, cv2.NORMAL_CLONE)


#: crop-to-frame scale from which the generated face is enlarged by a separable bicubic resize and then only turned
#: (bilinear, at about 1:1) instead of one bicubic warp: 4-6 ms less per 1080p frame (see `_warp_face`)
RESIZE_THEN_TURN_SCALE = 2.0


def _warp_face(face_float, to_roi, roi_size, box, roll_degrees):
    """The float face warped into the ROI through `to_roi` (crop pixels -> ROI pixels).

    A bicubic `warpAffine` costs 16 taps x 3 channels per output pixel, and at 1080p a face box is 600+ pixels wide
    (7 ms per frame). When the face is enlarged `RESIZE_THEN_TURN_SCALE` times or more, it is resized to the box's
    own upright size with a separable bicubic `resize` first and then turned by the roll with a bilinear warp at
    about 1:1. On a real face (tests/faces/test_face_paste.py) the pasted pixels are the same upright and differ
    from the single warp's by a mean of 0.16 grey levels, at most 5, when turned, and are as close to the
    high-resolution original; a noise-like face (not what a generator gives) differs more, up to ~30 on single pixels."""
    import cv2

    from .roll import aligned_box_size

    size = face_float.shape[0]
    face_w, face_h = aligned_box_size(box, roll_degrees)
    up_w, up_h = int(round(face_w)), int(round(face_h))
    if min(up_w, up_h) < RESIZE_THEN_TURN_SCALE * size:
        return cv2.warpAffine(face_float, to_roi, roi_size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    enlarged = cv2.resize(face_float, (up_w, up_h), interpolation=cv2.INTER_CUBIC)
    # enlarged pixel (p, q) is crop pixel ((p + 0.5) * size / up_w - 0.5, (q + 0.5) * size / up_h - 0.5)
    to_crop = np.array([[size / up_w, 0.0, 0.5 * size / up_w - 0.5], [0.0, size / up_h, 0.5 * size / up_h - 0.5],
                        [0.0, 0.0, 1.0]])
    return cv2.warpAffine(enlarged, to_roi @ to_crop, roi_size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _paste_warped(frame, face, box, blend, feather, top, landmarks, roll_degrees) -> np.ndarray:
    """Paste through the crop transform (turned back by the roll), masked by the face's landmarks when given."""
    import cv2

    from .roll import apply_affine

    size = face.shape[0]
    box = integer_box(box, frame.shape)
    height, width = frame.shape[:2]
    to_frame = face_crop_transform(box, roll_degrees, size)
    corners = apply_affine(to_frame, [(-0.5, -0.5), (size - 0.5, -0.5), (size - 0.5, size - 0.5), (-0.5, size - 0.5)])
    rx1, ry1 = (max(0, int(np.floor(v))) for v in corners.min(axis=0))
    rx2, ry2 = min(width, int(np.ceil(corners[:, 0].max())) + 1), min(height, int(np.ceil(corners[:, 1].max())) + 1)
    if rx2 <= rx1 or ry2 <= ry1:
        return frame.copy()
    roi_w, roi_h = rx2 - rx1, ry2 - ry1
    to_roi = to_frame.copy()
    to_roi[:, 2] -= (rx1, ry1)
    output = frame.copy()
    region = output[ry1:ry2, rx1:rx2]
    if blend == "hard":
        warped = cv2.warpAffine(_to_uint8_face(face, truncate=True), to_roi, (roi_w, roi_h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        coverage = cv2.warpAffine(np.ones((size, size), np.float32), to_roi, (roi_w, roi_h), flags=cv2.INTER_LINEAR)
        inside = coverage >= 0.5
        region[inside] = warped[inside]
        return output
    face_float = face.astype(np.float32) / 255.0 if face.dtype == np.uint8 else face.astype(np.float32)
    if landmarks is not None:
        # only the bounding rectangle of the face-shaped mask changes: warp and blend that part of the region
        alpha, (px, py) = _landmark_mask_patch((roi_h, roi_w), landmarks, box, feather, top, roll_degrees, size,
                                               (rx1, ry1))
        if alpha.size == 0:
            return output
        patch_h, patch_w = alpha.shape
        region = region[py:py + patch_h, px:px + patch_w]
        to_roi[:, 2] -= (px, py)
        roi_w, roi_h, rx1, ry1 = patch_w, patch_h, rx1 + px, ry1 + py
    else:
        alpha = cv2.warpAffine(lower_face_mask(size, feather, top), to_roi, (roi_w, roi_h), flags=cv2.INTER_LINEAR)
    warped = _warp_face(face_float, to_roi, (roi_w, roi_h), box, roll_degrees)
    np.minimum(warped, 1.0, out=warped)  # clip to [0, 1] (np.clip's values, in two faster passes)
    np.maximum(warped, 0.0, out=warped)
    if blend == "poisson":
        return _poisson(frame, _to_uint8_face(warped, truncate=False), alpha > 0.5, (rx1, ry1))
    # region + alpha * (warped - region) in grey levels, in place, rounded: where alpha is 0 this is the pixel's own
    # value exactly, and a blend of two values in 0..255 stays in that range, so the cast below only drops ".0"
    original = region.astype(np.float32)
    warped *= 255.0
    warped -= original
    warped *= cv2.merge((alpha, alpha, alpha))  # the same products as alpha[:, :, None], without a broadcast
    warped += original
    np.copyto(region, np.rint(warped, out=warped), casting="unsafe")
    return output
