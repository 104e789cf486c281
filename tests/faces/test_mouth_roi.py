"""Mouth ROIs: parity with the av_hubert reference crops, the differentiable crop, and the helpers around them."""

import hashlib

import numpy as np
import pytest
import torch

from talkface.errors import NoFaceError
from talkface.faces import mouth_alignment, mouth_roi
from tests.utils import golden_file, load_golden

MEAN_FACE_SHA256 = "dbf68b2044171e1160716df7c53e8bbfaa0ee8c61fb41171d04cb6092bb81422"


@pytest.fixture(scope="module")
def roi_golden():
    golden = load_golden("avhubert_roi.npz")
    return {key: golden[key] for key in golden.files}


# ----------------------------------------------------------------------------------------------------------
# The packaged mean face
# ----------------------------------------------------------------------------------------------------------


def test_mean_face_resource_checksum():
    assert hashlib.sha256(mouth_roi.MEAN_FACE_PATH.read_bytes()).hexdigest() == MEAN_FACE_SHA256
    mean_face = mouth_roi.load_mean_face()
    assert mean_face.shape == (68, 2) and mean_face.dtype == np.float64
    assert 0 < mean_face.min() and mean_face.max() < mouth_roi.STANDARD_FRAME_SIZE


def test_mean_face_matches_shared_copy():
    shared = np.load(golden_file("20words_mean_face.npy"))
    np.testing.assert_array_equal(mouth_roi.load_mean_face(), shared)
    assert hashlib.sha256(golden_file("20words_mean_face.npy").read_bytes()).hexdigest() == MEAN_FACE_SHA256


def test_mean_face_copy_is_independent():
    first = mouth_roi.load_mean_face()
    first[:] = 0
    assert mouth_roi.load_mean_face().max() > 0


# ----------------------------------------------------------------------------------------------------------
# Golden parity
# ----------------------------------------------------------------------------------------------------------


def test_crops_match_reference_golden(roi_golden):
    rois = mouth_roi.crop_mouth_rois(roi_golden["frames_bgr"], roi_golden["landmarks"])
    reference = roi_golden["mouth_rois_bgr"]
    assert rois.shape == reference.shape == (30, 96, 96, 3) and rois.dtype == np.uint8
    difference = np.abs(rois.astype(np.int16) - reference.astype(np.int16))
    # Tolerance of golden/README.md: +-1 grey level (float truncation). Measured: 0 pixels differ.
    assert difference.max() <= 1
    assert (difference > 0).mean() < 1e-3


def test_reference_parameters_match_golden(roi_golden):
    assert tuple(roi_golden["stable_point_ids"]) == mouth_roi.STABLE_POINT_IDS
    assert tuple(roi_golden["mouth_landmark_range"]) == mouth_roi.MOUTH_POINT_RANGE
    assert int(roi_golden["window_margin"]) == mouth_roi.WINDOW_MARGIN
    assert tuple(roi_golden["std_size"]) == (mouth_roi.STANDARD_FRAME_SIZE,) * 2
    assert tuple(roi_golden["crop_size"]) == (mouth_roi.ROI_SIZE,) * 2
    np.testing.assert_array_equal(roi_golden["mean_face"], mouth_roi.load_mean_face())


def test_crops_do_not_depend_on_chunking(roi_golden):
    frames, landmarks = roi_golden["frames_bgr"][:13], roi_golden["landmarks"][:13]
    np.testing.assert_array_equal(mouth_roi.crop_mouth_rois(frames, landmarks, chunk_size=4),
                                  mouth_roi.crop_mouth_rois(frames, landmarks, chunk_size=100))


def test_normalisation_matches_avhubert_golden():
    golden = load_golden("avhubert.npz")
    video_in = mouth_roi.normalize_mouth_rois(golden["mouth96_uint8"])
    np.testing.assert_allclose(video_in, golden["video_in"], atol=1e-6)
    assert mouth_roi.center_crop_offset(96) == 4 and mouth_roi.center_crop_offset(160) == 36


def test_gray_conversion_is_opencv_on_uint8(roi_golden):
    import cv2

    rois = roi_golden["mouth_rois_bgr"][:3]
    gray = mouth_roi.rois_to_gray(rois, "bgr")
    np.testing.assert_array_equal(gray, np.stack([cv2.cvtColor(r, cv2.COLOR_BGR2GRAY) for r in rois]))
    np.testing.assert_array_equal(mouth_roi.rois_to_gray(rois[..., ::-1], "rgb"), gray)


def test_extract_mouth_rois_is_avhubert_video_input(roi_golden):
    frames_rgb = roi_golden["frames_bgr"][..., ::-1]
    video = mouth_roi.extract_mouth_rois(frames_rgb, roi_golden["landmarks"], channel_order="rgb")
    expected = mouth_roi.normalize_mouth_rois(mouth_roi.rois_to_gray(roi_golden["mouth_rois_bgr"], "bgr"))
    assert video.shape == (30, 88, 88) and video.dtype == np.float32
    # one grey level of the golden tolerance = 1 / 255 / 0.165 in normalised units
    assert np.abs(video - expected).max() <= 1 / 255 / 0.165 + 1e-6


# ----------------------------------------------------------------------------------------------------------
# Cross-check with scikit-image on cases the golden does not cover
# ----------------------------------------------------------------------------------------------------------


def _skimage_reference_crops(frames, landmarks):
    """The reference recipe written plainly with scikit-image: a loop over frames, a full 256x256 warp each."""
    transform = pytest.importorskip("skimage.transform")
    mean_face = mouth_roi.load_mean_face()
    ids = list(mouth_roi.STABLE_POINT_IDS)
    num_frames = len(frames)
    margin = min(num_frames, mouth_roi.WINDOW_MARGIN)
    crops = []
    tform = None
    for index in range(num_frames):
        if index <= num_frames - margin:
            smoothed = np.mean(landmarks[index : index + margin], axis=0)
            tform = transform.estimate_transform("similarity", smoothed[ids], mean_face[ids])
        warped = (transform.warp(frames[index], inverse_map=tform.inverse, output_shape=(256, 256)) * 255)
        warped = warped.astype("uint8")
        center_x, center_y = np.mean(tform(landmarks[index])[48:68], axis=0)
        center_x, center_y = min(max(center_x, 48), 208), min(max(center_y, 48), 208)
        top, left = int(round(center_y) - 48), int(round(center_x) - 48)
        crops.append(warped[top : top + 96, left : left + 96])
    return np.stack(crops)


def _synthetic_clip(num_frames, frame_size, scale, shift, seed=0, value_range=(0, 256)):
    """Frames of smooth noise and landmarks = the mean face scaled/rotated into the frame with jitter."""
    rng = np.random.default_rng(seed)
    small = rng.integers(*value_range, size=(num_frames, frame_size // 8, frame_size // 8, 3)).astype(np.uint8)
    frames = np.repeat(np.repeat(small, 8, axis=1), 8, axis=2)
    frames = np.clip(frames.astype(int) + rng.integers(-3, 4, frames.shape), *value_range).astype(np.uint8)
    mean_face = mouth_roi.load_mean_face()
    landmarks = []
    for index in range(num_frames):
        angle = 0.1 * np.sin(index)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        points = (mean_face - 128) @ rotation.T * scale + np.asarray(shift) + rng.normal(0, 1.0, (68, 2))
        landmarks.append(np.round(points).astype(np.int32))
    return frames, np.stack(landmarks)


@pytest.mark.parametrize("case", ["inside", "mouth_at_border", "short_clip", "no_black_pixels"])
def test_crops_match_skimage_recipe(case):
    if case == "inside":
        frames, landmarks = _synthetic_clip(14, 200, scale=0.7, shift=(100, 95))
    elif case == "mouth_at_border":
        # a face partly out of the frame: the standard frame and the mouth patch sample outside the image
        frames, landmarks = _synthetic_clip(13, 160, scale=0.9, shift=(80, 40), seed=1)
    elif case == "short_clip":  # fewer frames than the 12-frame window
        frames, landmarks = _synthetic_clip(5, 200, scale=0.6, shift=(90, 100), seed=2)
    else:  # input minimum > 0 while zeros come in from outside: scikit-image's clip keeps 0 in range
        frames, landmarks = _synthetic_clip(12, 160, scale=0.9, shift=(80, 110), seed=3, value_range=(40, 220))
    expected = _skimage_reference_crops(frames, landmarks)
    rois = mouth_roi.crop_mouth_rois(frames, landmarks)
    difference = np.abs(rois.astype(np.int16) - expected.astype(np.int16))
    assert difference.max() <= 1
    assert (difference > 0).mean() < 1e-3


def test_similarity_estimate_matches_skimage():
    transform = pytest.importorskip("skimage.transform")
    rng = np.random.default_rng(0)
    source = rng.normal(100, 30, size=(6, 5, 2))
    target = rng.normal(100, 30, size=(5, 2))
    batched = mouth_roi.estimate_similarity_transforms(source, target)
    for index in range(len(source)):
        expected = transform.estimate_transform("similarity", source[index], target).params
        np.testing.assert_allclose(batched[index], expected, rtol=0, atol=1e-12)


def test_similarity_estimate_recovers_exact_transform():
    rng = np.random.default_rng(1)
    points = rng.normal(0, 50, size=(5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = points @ rotation.T * scale + shift
    matrix = mouth_roi.estimate_similarity_transforms(points[None], moved)[0]
    np.testing.assert_allclose(matrix[:2, :2], rotation * scale, atol=1e-12)
    np.testing.assert_allclose(matrix[:2, 2], shift, atol=1e-10)
    np.testing.assert_allclose(mouth_roi.apply_transforms(matrix[None], points[None])[0], moved, atol=1e-10)


def test_alignment_transform_smoothing_window():
    _, landmarks = _synthetic_clip(20, 200, scale=0.7, shift=(100, 95))
    transforms = mouth_roi.alignment_transforms(landmarks.astype(float))
    mean_face = mouth_roi.load_mean_face()
    ids = list(mouth_roi.STABLE_POINT_IDS)
    window = landmarks[3:15].mean(axis=0)[ids]  # frame 3 averages frames 3..14
    expected = mouth_roi.estimate_similarity_transforms(window[None], mean_face[ids])[0]
    np.testing.assert_allclose(transforms[3], expected)
    # the last 11 frames reuse the transform of the last full window (frames 8..19)
    for index in range(9, 20):
        np.testing.assert_array_equal(transforms[index], transforms[8])
    assert not np.allclose(transforms[7], transforms[8])


# ----------------------------------------------------------------------------------------------------------
# Landmark interpolation
# ----------------------------------------------------------------------------------------------------------


def test_interpolate_landmarks_fills_gaps_and_edges():
    first, last = np.zeros((68, 2)), np.full((68, 2), 9.0)
    filled = mouth_roi.interpolate_landmarks([None, first, None, None, last, None])
    np.testing.assert_allclose(filled[:, 0, 0], [0, 0, 3, 6, 9, 9])
    as_array = np.full((6, 68, 2), np.nan)
    as_array[1], as_array[4] = first, last
    np.testing.assert_array_equal(mouth_roi.interpolate_landmarks(as_array), filled)


def test_interpolate_landmarks_without_any_face_raises():
    with pytest.raises(NoFaceError, match="no face"):
        mouth_roi.interpolate_landmarks([None, None])
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        mouth_roi.interpolate_landmarks([np.zeros((5, 2))])


def test_crop_with_missing_frames_equals_crop_with_interpolated_landmarks(roi_golden):
    frames, landmarks = roi_golden["frames_bgr"][:16], roi_golden["landmarks"][:16].astype(float)
    with_gaps = list(landmarks)
    with_gaps[3] = with_gaps[4] = with_gaps[15] = None
    np.testing.assert_array_equal(mouth_roi.crop_mouth_rois(frames, with_gaps),
                                  mouth_roi.crop_mouth_rois(frames, mouth_roi.interpolate_landmarks(with_gaps)))


def test_detect_landmarks_with_stride_and_downscale():
    class CenterFaceBackend:
        """Reports the same face (landmarks in pixel-centre coordinates of the frame it is given)."""

        def __init__(self):
            self.calls = []

        def detect(self, frame):
            self.calls.append(frame.shape)
            height, width = frame.shape[:2]
            points = np.stack([np.linspace(0, width - 1, 68), np.linspace(0, height - 1, 68)], axis=1)

            class Detection:
                landmarks = points

            return [Detection()]

    backend = CenterFaceBackend()
    frames = np.zeros((7, 400, 200, 3), np.uint8)
    landmarks = mouth_roi.detect_landmarks(frames, backend, stride=3, max_side=100)
    assert [index for index, points in enumerate(landmarks) if points is not None] == [0, 3, 6]
    assert backend.calls == [(100, 50, 3)] * 3
    # scaled back to the 400x200 frame with the pixel-centre convention: x in [-0.5+2, 199.5-2], y likewise
    np.testing.assert_allclose(landmarks[0][[0, -1]], [[1.5, 1.5], [197.5, 397.5]])


# ----------------------------------------------------------------------------------------------------------
# Differentiable crop
# ----------------------------------------------------------------------------------------------------------


def _float_reference(frames_rgb, affines):
    """The reference crop without the uint8 truncation: float warp, float luma, normalise (float64)."""
    size = mouth_roi.ROI_SIZE
    rows, cols = np.meshgrid(np.arange(size, dtype=float), np.arange(size, dtype=float), indexing="ij")
    sample_x = affines[:, 0, 0, None, None] * cols + affines[:, 0, 1, None, None] * rows + affines[:, 0, 2, None, None]
    sample_y = affines[:, 1, 0, None, None] * cols + affines[:, 1, 1, None, None] * rows + affines[:, 1, 2, None, None]
    colour = mouth_alignment._bilinear(frames_rgb, sample_x, sample_y, np.arange(len(frames_rgb)))  # (T, 96, 96, 3)
    gray = colour @ np.asarray(mouth_roi.LUMA_WEIGHTS_RGB)
    return (gray[:, 4:92, 4:92] - mouth_roi.IMAGE_MEAN) / mouth_roi.IMAGE_STD


def test_differentiable_crop_matches_reference_path(roi_golden):
    frames_rgb = np.ascontiguousarray(roi_golden["frames_bgr"][:16, ..., ::-1])
    landmarks = roi_golden["landmarks"][:16]
    images = torch.from_numpy(frames_rgb).permute(0, 3, 1, 2).double() / 255
    affines = mouth_roi.mouth_roi_affines(landmarks)
    mouths = mouth_roi.crop_mouth_differentiable(images, torch.from_numpy(affines[:, :2]))
    assert mouths.shape == (16, 1, 88, 88)
    # same sampling points and interpolation as the reference, before uint8 truncation
    np.testing.assert_allclose(mouths[:, 0].numpy(), _float_reference(frames_rgb, affines), atol=1e-9)
    # and within the quantisation of the uint8 reference pipeline (truncation per channel + OpenCV's rounding)
    reference = mouth_roi.extract_mouth_rois(frames_rgb, landmarks)
    difference = np.abs(mouths[:, 0].numpy() - reference)
    assert difference.max() < 2 / 255 / mouth_roi.IMAGE_STD
    assert difference.mean() < 1 / 255 / mouth_roi.IMAGE_STD


def test_differentiable_crop_float32_transforms(roi_golden):
    frames_rgb = np.ascontiguousarray(roi_golden["frames_bgr"][:4, ..., ::-1])
    images = torch.from_numpy(frames_rgb).permute(0, 3, 1, 2).float() / 255
    affines = mouth_roi.mouth_transforms_from_landmarks(roi_golden["landmarks"])[:4]
    assert affines.shape == (4, 2, 3) and affines.dtype == np.float32
    mouths = mouth_roi.crop_mouth_differentiable(images, torch.from_numpy(affines))
    reference = _float_reference(frames_rgb, mouth_roi.mouth_roi_affines(roi_golden["landmarks"])[:4])
    assert np.abs(mouths[:, 0].numpy() - reference).max() < 1e-3


def test_differentiable_crop_gradients_flow_to_mouth_only(roi_golden):
    frames_rgb = np.ascontiguousarray(roi_golden["frames_bgr"][:2, ..., ::-1])
    images = (torch.from_numpy(frames_rgb).permute(0, 3, 1, 2).float() / 255).requires_grad_(True)
    affines = torch.from_numpy(mouth_roi.mouth_transforms_from_landmarks(roi_golden["landmarks"])[:2])
    mouth_roi.crop_mouth_differentiable(images, affines).square().mean().backward()
    grad = images.grad.abs().sum(dim=(0, 1))  # (H, W)
    assert torch.isfinite(grad).all() and grad.sum() > 0
    rows, cols = torch.nonzero(grad, as_tuple=True)
    mouth = roi_golden["landmarks"][:2, 48:68].reshape(-1, 2)
    # the gradient lives in a window around the mouth (88 patch pixels, ~1.7 frame pixels each), not the face
    center_x, center_y = mouth.mean(axis=0)
    assert cols.min() < center_x < cols.max() and rows.min() < center_y < rows.max()
    assert cols.max() - cols.min() < 200 and rows.max() - rows.min() < 200
    assert grad[: int(mouth[:, 1].min()) - 100].sum() == 0  # nothing from the eyes up


def test_rebased_transforms_on_resized_face_crop(roi_golden):
    import cv2

    frames_rgb = np.ascontiguousarray(roi_golden["frames_bgr"][:4, ..., ::-1])
    affines = mouth_roi.mouth_transforms_from_landmarks(roi_golden["landmarks"])[:4]
    full = torch.from_numpy(frames_rgb).permute(0, 3, 1, 2).float() / 255
    expected = mouth_roi.crop_mouth_differentiable(full, torch.from_numpy(affines))

    # identity rebase: the whole frame "resized" to its own size
    identity = mouth_roi.rebase_transforms_to_crop(affines, (0, 0, 524, 524), crop_size=(524, 524))
    np.testing.assert_allclose(identity, affines, atol=1e-4)

    # a 2x downscaled face box (as a generator would see it): the same mouth, at half the resolution
    box = (100, 150, 460, 510)
    crops = np.stack([cv2.resize(f[box[1] : box[3], box[0] : box[2]], (180, 180), interpolation=cv2.INTER_AREA)
                      for f in frames_rgb])
    rebased = mouth_roi.rebase_transforms_to_crop(affines, box, crop_size=(180, 180))
    images = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255
    mouths = mouth_roi.crop_mouth_differentiable(images, torch.from_numpy(rebased))
    assert (mouths - expected).abs().mean() < 0.1  # ~4 grey levels: only resolution is lost
    shifted = mouth_roi.rebase_transforms_to_crop(affines, (110, 150, 470, 510), crop_size=(180, 180))
    misaligned = mouth_roi.crop_mouth_differentiable(images, torch.from_numpy(shifted))
    assert (misaligned - expected).abs().mean() > 2 * (mouths - expected).abs().mean()


def test_differentiable_crop_rejects_bad_shapes():
    with pytest.raises(ValueError, match="images"):
        mouth_roi.crop_mouth_differentiable(torch.zeros(2, 4, 10, 10), torch.zeros(2, 2, 3))
    with pytest.raises(ValueError, match="affines"):
        mouth_roi.crop_mouth_differentiable(torch.zeros(2, 3, 10, 10), torch.zeros(3, 2, 3))


def test_streamed_preparation_equals_in_memory(tmp_path, monkeypatch):
    """Large videos are decoded twice instead of held in memory; the crops are the same."""
    from talkface.faces.backends import get_face_backend
    from talkface.media import VideoWriter, read_frames
    from tests.utils import data_file

    frames = read_frames(data_file("clip05_retalking_face5_woman_glasses.mp4"), fps=25, max_frames=14)
    path = tmp_path / "clip.mp4"
    with VideoWriter(path, fps=25, width=frames.shape[2], height=frames.shape[1]) as writer:
        for frame in frames:
            writer.write(frame)
    backend = get_face_backend("mediapipe")
    in_memory = mouth_roi.prepare_mouth_video(path, backend, landmark_stride=3)
    monkeypatch.setattr(mouth_roi, "IN_MEMORY_VIDEO_BYTES", 0)
    streamed = mouth_roi.prepare_mouth_video(path, backend, landmark_stride=3)
    assert streamed.mouths.shape == (14, 88, 88)
    np.testing.assert_array_equal(streamed.mouths, in_memory.mouths)
    np.testing.assert_array_equal(streamed.detected, in_memory.detected)
    assert streamed.detected.tolist() == [i % 3 == 0 or i == 13 for i in range(14)]
