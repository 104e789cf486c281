"""LMD (talkface.metrics.lmd): the normalisation on constructed landmarks, and real detection."""

import numpy as np
import pytest

from talkface.errors import NoFaceError
from talkface.faces.backends import FaceBackend, FaceDetection
from talkface.metrics.lmd import LMD_FACE_SIZE, MOUTH_POINTS, landmark_distances, lmd_between_videos
from tests.utils import data_file


def face_landmarks(num_frames=4, seed=0):
    """Plausible 68-point sets: a 100-pixel face with some random jitter per frame."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 100, (68, 2))
    base[0], base[16] = [0, 50], [100, 50]  # the face spans exactly 100 pixels
    return np.stack([base + rng.normal(0, 0.5, (68, 2)) * (k > 0) for k in range(num_frames)])


def test_identical_landmarks_give_zero():
    landmarks = face_landmarks()
    np.testing.assert_array_equal(landmarks_distances := landmark_distances(landmarks, landmarks), 0.0)
    assert landmarks_distances.shape == (4,)


def test_head_translation_does_not_count():
    reference = face_landmarks()
    moved = reference + np.array([[[7.0, -3.0]]])
    np.testing.assert_allclose(landmark_distances(moved, reference), 0.0, atol=1e-9)


def test_mouth_shape_change_in_256_pixel_units():
    reference = face_landmarks(1)
    generated = reference.copy()
    # open the mouth: lower lip points move down by 2 px, upper ones up by 2 px (the centre stays put)
    mouth = generated[0, MOUTH_POINTS]
    centre_y = mouth[:, 1].mean()
    mouth[:, 1] += np.where(mouth[:, 1] > centre_y, 2.0, -2.0)
    generated[0, MOUTH_POINTS] = mouth
    face_size = np.max(reference[0].max(0) - reference[0].min(0))
    shift = np.where(reference[0, MOUTH_POINTS, 1] > centre_y, 2.0, -2.0)
    expected = np.mean(np.abs(shift - shift.mean())) * LMD_FACE_SIZE / face_size
    assert landmark_distances(generated, reference)[0] == pytest.approx(expected, rel=1e-9)


def test_generated_resolution_is_mapped_to_the_reference():
    reference = face_landmarks()
    half_size = reference / 2  # the same face in a video of half the resolution
    np.testing.assert_allclose(landmark_distances(half_size, reference, generated_to_reference_scale=(2, 2)), 0,
                               atol=1e-9)


def test_missing_frames_are_nan():
    reference, generated = face_landmarks(), face_landmarks()
    generated[2] = np.nan
    distances = landmark_distances(generated, reference)
    assert np.isnan(distances[2]) and np.isfinite(distances[[0, 1, 3]]).all()


class ListBackend(FaceBackend):
    """Returns the landmarks stored under each frame's first pixel value (frames encode their index)."""

    def __init__(self, landmarks):
        self.landmarks = landmarks

    def _detect(self, frame, landmarks):
        points = self.landmarks[int(frame[0, 0, 0])]
        if points is None:
            return []
        box = np.array([*points.min(0), *points.max(0)], dtype=np.float32)
        return [FaceDetection(box=box, landmarks=points.astype(np.float32), score=1.0)]


def test_lmd_between_videos_with_a_stand_in_backend():
    frames = np.zeros((4, 32, 32, 3), np.uint8)
    frames[:, 0, 0, 0] = np.arange(4)
    reference = face_landmarks()
    backend = ListBackend(list(reference))
    result = lmd_between_videos(frames, frames, backend=backend)
    assert result.lmd == 0.0 and result.num_frames == 4 and result.missing_frames == 0
    backend.landmarks[1] = None
    result = lmd_between_videos(frames, frames, backend=backend)
    assert result.num_frames == 3 and result.missing_frames == 1 and np.isnan(result.per_frame[1])
    with pytest.raises(NoFaceError, match="reference"):
        lmd_between_videos(frames, frames, backend=ListBackend([None] * 4))


def test_real_clip_against_itself_and_a_moved_copy():
    pytest.importorskip("mediapipe")
    from talkface.media import read_frames

    frames = read_frames(data_file("clip05_retalking_face5_woman_glasses.mp4"), max_frames=6)
    assert lmd_between_videos(frames, frames).lmd == 0.0
    moved = np.roll(frames, (5, 9), axis=(1, 2))  # the head moves; the mouth shape does not change
    other_moment = read_frames(data_file("clip05_retalking_face5_woman_glasses.mp4"), max_frames=60)[-6:]
    small = lmd_between_videos(moved, frames).lmd
    large = lmd_between_videos(other_moment, frames).lmd
    assert 0 < small < 2.0  # detector noise only, in pixels of a 256-pixel face
    assert large > small
