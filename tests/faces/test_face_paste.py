"""Face-shaped paste-back and roll alignment: mask geometry, the crop transform and its round trip, sideways
landmarks (talkface.faces.blending, talkface.faces.roll, the mediapipe backend's refit)."""

import cv2
import numpy as np
import pytest

from talkface import media
from talkface.faces.blending import (
    LOWER_FACE_POLYGON,
    crop_face,
    generated_region,
    landmark_face_mask,
    lower_face_mask,
    paste_face,
)
from talkface.faces.roll import (
    aligned_box_size,
    apply_affine,
    crop_face_aligned,
    face_crop_transform,
    invert_affine,
    roll_angle,
)
from tests.utils import data_file

CLIP = "clip05_retalking_face5_woman_glasses.mp4"  # 524x524, glasses, face about half the frame


@pytest.fixture(scope="module")
def real_face(mediapipe_backend):
    """(frame, padded box, landmarks) of the first frame of a real clip."""
    frame = media.read_frames(data_file(CLIP), max_frames=1)[0]
    face = mediapipe_backend.detect(frame, landmarks=True)[0]
    box = face.box.copy()
    box[3] = min(frame.shape[0], box[3] + 10)
    return frame, box, face.landmarks


def rotate_points(points, quarter_turns, shape):
    """Where (x, y) pixel indices go under np.rot90(image, quarter_turns) of an image of `shape`."""
    height, width = shape[:2]
    points = np.asarray(points, dtype=np.float64)
    for _ in range(quarter_turns % 4):
        points = np.stack([points[:, 1], width - 1 - points[:, 0]], axis=1)
        height, width = width, height
    return points


def rotate_box(box, quarter_turns, shape):
    x1, y1, x2, y2 = box
    # pixel edges: rotate the corner pixels and take the covering box
    corners = rotate_points([(x1, y1), (x2 - 1, y2 - 1)], quarter_turns, shape)
    (a, b), (c, d) = corners.min(axis=0), corners.max(axis=0)
    return np.array([a, b, c + 1, d + 1])


def inside_polygon(polygon, shape):
    image = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(image, [np.round(polygon).astype(np.int32)], 1)
    return image.astype(bool)


# ------------------------------------------------------------------------------------------------- roll and crops


def test_roll_angle_follows_the_eye_line():
    points = np.zeros((68, 2))
    for degrees in (0.0, 12.5, -30.0, 90.0, -90.0, 179.0):
        theta = np.radians(degrees)
        direction = np.array([np.cos(theta), np.sin(theta)])
        points[36:42] = np.array([100.0, 50.0]) - 20 * direction  # subject's right eye
        points[42:48] = np.array([100.0, 50.0]) + 20 * direction
        assert roll_angle(points) == pytest.approx(degrees)
    with pytest.raises(ValueError):
        roll_angle(np.zeros((5, 2)))


def test_crop_transform_maps_the_box_and_inverts():
    box = (40, 60, 140, 180)
    size = 96
    upright = face_crop_transform(box, 0.0, size)
    # roll 0: the box resized to the crop, pixel centres as cv2.resize maps them
    corners = apply_affine(upright, [(-0.5, -0.5), (size - 0.5, size - 0.5)])
    np.testing.assert_allclose(corners, [(39.5, 59.5), (139.5, 179.5)], atol=1e-9)
    for roll in (0.0, 17.0, 90.0, -135.0):
        to_frame = face_crop_transform(box, roll, size)
        centre = apply_affine(to_frame, [((size - 1) / 2, (size - 1) / 2)])[0]
        np.testing.assert_allclose(centre, (89.5, 119.5), atol=1e-9)  # turned about the box centre
        points = np.random.default_rng(0).uniform(0, size, (10, 2))
        np.testing.assert_allclose(apply_affine(invert_affine(to_frame), apply_affine(to_frame, points)), points,
                                   atol=1e-9)
        # the crop's rows run along the roll: one crop pixel to the right moves along the eye line
        step = apply_affine(to_frame, [(1, 0)])[0] - apply_affine(to_frame, [(0, 0)])[0]
        assert np.degrees(np.arctan2(step[1], step[0])) == pytest.approx(roll if roll != -135.0 else -135.0)
    # sideways: the face is as tall as its box is wide
    assert aligned_box_size(box, 90.0) == (120.0, 100.0) and aligned_box_size(box, 30.0) == (100.0, 120.0)


def test_aligned_crop_of_a_rotated_frame_is_the_upright_crop():
    frame = media.read_frames(data_file(CLIP), max_frames=1)[0]
    box = (150, 230, 380, 470)
    upright = crop_face(frame, box, 96)
    assert np.array_equal(crop_face_aligned(frame, box, 0.0, 96), upright)
    for quarter_turns, roll in ((1, -90.0), (3, 90.0), (2, 180.0)):
        turned = np.ascontiguousarray(np.rot90(frame, quarter_turns))
        turned_box = rotate_box(box, quarter_turns, frame.shape)
        crop = crop_face_aligned(turned, turned_box, roll, 96)
        assert np.abs(crop.astype(int) - upright.astype(int)).max() <= 1, quarter_turns
        # without turning, the crop is a rotated face: far from the upright one
        assert np.abs(crop_face(turned, turned_box, 96).astype(int) - upright.astype(int)).mean() > 20


@pytest.mark.parametrize("blend", ["box", "hard", "feather"])
def test_paste_round_trip_through_a_rotation(blend, real_face):
    """Pasting into a frame turned a quarter turn, with the roll, is the upright paste turned the same way."""
    frame, box, landmarks = real_face
    # a smooth face (noise would turn the warps' 1/32-pixel sampling grid into grey-level differences)
    ramp = np.linspace(0.0, 1.0, 96, dtype=np.float32)
    generated = np.stack([np.outer(ramp, ramp), np.outer(1 - ramp, ramp), np.outer(ramp, 1 - ramp)], axis=2)
    upright = paste_face(frame, generated, box, blend=blend, landmarks=landmarks if blend == "feather" else None,
                         roll_degrees=1e-9)  # the warped path, at no rotation
    turned = np.ascontiguousarray(np.rot90(frame, 1))
    turned_landmarks = rotate_points(landmarks, 1, frame.shape) if blend == "feather" else None
    pasted = paste_face(turned, generated, rotate_box(integer_box_of(box, frame), 1, frame.shape), blend=blend,
                        landmarks=turned_landmarks, roll_degrees=-90.0)
    difference = np.abs(np.rot90(upright, 1).astype(int) - pasted.astype(int)).max(axis=2)
    # equal up to interpolation rounding, and to where the rasterized edge falls: for hard, which pixels of the
    # square's one-pixel edge it covers; for feather, the polygon's outline moving by a pixel (mask values < 0.1)
    edge_pixels = {"box": 40, "hard": 4 * 300, "feather": 1000}[blend]
    assert difference.mean() < 0.05 and (difference > 2).sum() < edge_pixels
    changed = np.abs(upright.astype(int) - frame.astype(int)).sum(axis=2) > 0
    assert changed.sum() > 2000  # something was pasted


def integer_box_of(box, frame):
    from talkface.faces.blending import integer_box

    return np.array(integer_box(box, frame.shape))


# ------------------------------------------------------------------------------------------------- the face mask


def test_face_mask_stays_inside_the_lower_face_and_covers_the_lips(real_face):
    frame, box, landmarks = real_face
    mask = landmark_face_mask(frame.shape[:2], landmarks, box, feather=0.15)
    polygon = landmarks[list(LOWER_FACE_POLYGON)]
    assert mask.dtype == np.float32 and 0.0 <= mask.min() and mask.max() == 1.0
    # nothing outside the jaw-and-nose polygon, nor above the generated half of the crop
    outside = ~inside_polygon(polygon, frame.shape) | ~inside_polygon(generated_region(box, 96), frame.shape)
    dilated_outside = cv2.erode(outside.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert mask[dilated_outside].max() == 0.0
    # in particular nothing on the neck below the chin or beside the jaw
    chin_y = int(landmarks[8, 1])
    assert mask[chin_y + 3:].max() == 0.0
    assert mask[:, : int(landmarks[2:15, 0].min())].max() == 0.0
    # the lips are fully the generated ones; the ramp is inside the face: 0 at the edge, rising inwards
    lips = np.round(landmarks[48:60]).astype(int)
    assert mask[lips[:, 1], lips[:, 0]].min() == pytest.approx(1.0)
    inside = mask > 0
    edge = inside & ~cv2.erode(inside.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    deep_inside = cv2.erode(inside.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    assert mask[edge].max() < 0.05 and mask[deep_inside].min() > 0
    # a wider feather gives a softer (smaller total) mask, never a larger support
    wide = landmark_face_mask(frame.shape[:2], landmarks, box, feather=0.4)
    assert wide.sum() <= mask.sum() and np.array_equal(wide > 0, mask > 0)
    # the box mask, by contrast, reaches beyond the jaw (what the face mask is for)
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    box_mask = np.zeros(frame.shape[:2], np.float32)
    box_mask[y1:y2, x1:x2] = cv2.resize(lower_face_mask(96), (x2 - x1, y2 - y1))
    assert box_mask[outside].max() > 0.5


def test_face_mask_origin_and_validation(real_face):
    frame, box, landmarks = real_face
    full = landmark_face_mask(frame.shape[:2], landmarks, box)
    x1, y1 = (int(v) - 20 for v in landmarks.min(axis=0))
    x2, y2 = (int(v) + 20 for v in landmarks.max(axis=0))
    part = landmark_face_mask((y2 - y1, x2 - x1), landmarks, box, origin=(x1, y1))  # a window holding the face
    np.testing.assert_allclose(part, full[y1:y2, x1:x2], atol=1e-6)
    with pytest.raises(ValueError, match="feather"):
        landmark_face_mask(frame.shape[:2], landmarks, box, feather=0.0)
    with pytest.raises(ValueError, match="68"):
        landmark_face_mask(frame.shape[:2], landmarks[:10], box)


def test_feather_paste_changes_nothing_outside_the_face(real_face):
    frame, box, landmarks = real_face
    generated = np.zeros((96, 96, 3), np.float32)
    generated[..., 0] = 1.0  # red
    for roll in (0.0, roll_angle(landmarks)):
        pasted = paste_face(frame, generated, box, blend="feather", landmarks=landmarks, roll_degrees=roll)
        changed = np.abs(pasted.astype(int) - frame.astype(int)).sum(axis=2) > 0
        hull = cv2.convexHull(landmarks.astype(np.float32))
        assert changed.sum() > 3000
        assert all(cv2.pointPolygonTest(hull, (float(x), float(y)), False) >= 0 for y, x in np.argwhere(changed))
        mouth = np.round(landmarks[48:60].mean(axis=0)).astype(int)
        assert tuple(pasted[mouth[1], mouth[0]]) == (255, 0, 0)
    # without landmarks, feather is the box mask (the previous default)
    assert np.array_equal(paste_face(frame, generated, box, blend="feather"),
                          paste_face(frame, generated, box, blend="box"))
    poisson = paste_face(frame, generated, box, blend="poisson", landmarks=landmarks)
    assert poisson.shape == frame.shape and np.abs(poisson.astype(int) - frame.astype(int)).max() > 50


# ------------------------------------------------------------------------------------------------- sideways heads


@pytest.mark.parametrize("quarter_turns, roll", [(1, -90.0), (3, 90.0)])
def test_mediapipe_landmarks_of_a_sideways_head(mediapipe_backend, real_face, quarter_turns, roll):
    frame, _, landmarks = real_face
    turned = np.ascontiguousarray(np.rot90(frame, quarter_turns))
    faces = mediapipe_backend.detect(turned, landmarks=True)
    assert faces and faces[0].landmarks is not None
    expected = rotate_points(landmarks, quarter_turns, frame.shape)
    # FaceMesh alone puts a sideways head's eye line ~15 degrees off; the upright refit finds the same points
    assert np.abs(faces[0].landmarks - expected).mean() < 3.0
    assert abs(roll_angle(faces[0].landmarks) - (roll + roll_angle(landmarks))) < 5.0


@pytest.mark.parametrize("roll", [0.0, 4.0, -30.0])
@pytest.mark.parametrize("box", [(254, 338, 854, 958), (251.6, 340.3, 829.2, 949.7)])
def test_large_faces_resize_then_turn_as_well_as_one_bicubic_warp(monkeypatch, box, roll):
    """A face enlarged 2x or more is resized (bicubic) and then turned (bilinear) instead of one bicubic warp
    (issue 14's per-frame cost at 1080p): against the single warp the pasted pixels move by a mean below 0.3 grey
    levels, at most 8; against the real high-resolution face the paste is as close."""
    from talkface.faces import blending

    small = media.read_frames(data_file("clip01_sadtalker_WDA_AlexandriaOcasioCortez_000.mp4"), max_frames=1)[0]
    frame = cv2.resize(small, (1024, 1024), interpolation=cv2.INTER_CUBIC)  # a face box of ~600 px, as at 1080p
    box = np.array(box, np.float32)
    face = crop_face_aligned(frame, box, roll, 96).astype(np.float32) / 255  # the face the generator sees
    pasted = paste_face(frame, face, box, blend="box", roll_degrees=roll)
    monkeypatch.setattr(blending, "RESIZE_THEN_TURN_SCALE", float("inf"))  # the single bicubic warp
    single = paste_face(frame, face, box, blend="box", roll_degrees=roll)
    changed = (pasted != frame).any(axis=2) | (single != frame).any(axis=2)
    assert changed.sum() > 100_000
    diff = np.abs(pasted.astype(int) - single.astype(int))[changed]

    def error(image):  # against the full-resolution frame the 96-pixel face was made from
        return np.abs(image.astype(int) - frame.astype(int))[changed].mean()

    assert diff.mean() < 0.3 and diff.max() <= 8, (diff.mean(), diff.max())

    assert error(pasted) <= error(single) * 1.02 + 0.02, (error(pasted), error(single))


def test_face_mask_chamfer_distances_are_close_to_exact(monkeypatch, real_face):
    """The face mask's ramp uses the 5x5 chamfer distance (issue 14's per-frame cost); against the exact Euclidean
    distance transform the mask moves by at most 0.02, keeps exactly the same zero pixels and its 1 at the lips."""
    from talkface.faces import blending

    frame, box, landmarks = real_face
    for roll in (0.0, roll_angle(landmarks), 25.0):
        chamfer = landmark_face_mask(frame.shape, landmarks, box, roll_degrees=roll)
        monkeypatch.setattr(blending, "DISTANCE_MASK_SIZE", cv2.DIST_MASK_PRECISE)
        exact = landmark_face_mask(frame.shape, landmarks, box, roll_degrees=roll)
        monkeypatch.undo()
        assert np.array_equal(chamfer > 0, exact > 0) and (exact > 0).sum() > 1000
        diff = np.abs(chamfer - exact)
        assert diff.max() <= 0.02 and diff[exact > 0].mean() < 0.005, (diff.max(), diff[exact > 0].mean())
        if roll == 0.0:
            lips = np.round(landmarks[48:60]).astype(int)
            assert (chamfer[lips[:, 1], lips[:, 0]] == 1.0).all()
