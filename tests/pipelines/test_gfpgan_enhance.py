"""GFPGAN face enhancement: alignment to the FFHQ template, paste-back, the pipeline hook, and loading."""

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from talkface.errors import ModelLoadError, TalkFaceUserError
from talkface.models.gfpgan import GFPGANConfig, GFPGANModel
from talkface.pipelines.lipsync.enhancer import (
    GFPGANEnhancer,
    estimate_similarity,
    five_points_from_68,
    load_enhancer,
)
from talkface.models.gfpgan.modeling_gfpgan import GFPGANOutput
from tests.utils import data_file

TINY = dict(image_size=64, num_style_feat=16, num_mlp=2, channel_multiplier=1, narrow=0.125)

# 5 points of photo01 (image-left eye centre, image-right eye centre, nose tip, mouth corners), measured once
# with mediapipe FaceMesh (iris centres 468/473, nose 4, mouth corners 61/291) on the 474x474 photo.
PHOTO01_FIVE_POINTS = np.array([[194.0, 144.8], [265.5, 141.6], [229.9, 187.1], [203.2, 220.5], [261.4, 217.5]])


def landmarks68_from_five(five):
    """A (68, 2) landmark array whose alignment points are `five` (the rest is irrelevant to alignment)."""
    landmarks = np.tile(five.mean(axis=0), (68, 1))
    landmarks[36:42] = five[0] + np.array([[-6, 0], [-3, -2], [3, -2], [6, 0], [3, 2], [-3, 2]])  # mean = five[0]
    landmarks[42:48] = five[1] + np.array([[-6, 0], [-3, -2], [3, -2], [6, 0], [3, 2], [-3, 2]])
    landmarks[30], landmarks[48], landmarks[54] = five[2], five[3], five[4]
    return landmarks


def read_photo():
    return cv2.imread(str(data_file("photo01_sadtalker_people_0.png")))[:, :, ::-1].copy()


class IdentityFaceModel(torch.nn.Module):
    """Stands in for GFPGAN and returns its input: isolates the geometry of align + paste-back."""

    def __init__(self, image_size):
        super().__init__()
        self.config = GFPGANConfig(image_size=image_size, narrow=0.125, num_style_feat=8, num_mlp=1)
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, pixel_values):
        return GFPGANOutput(restored_pixel_values=pixel_values)


def face_square_in_frame(matrix, size):
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], float) @ inverse[:, :2].T + inverse[:, 2]
    return corners.min(axis=0), corners.max(axis=0)


def test_five_points_from_68():
    landmarks = np.arange(136, dtype=float).reshape(68, 2)
    five = five_points_from_68(landmarks)
    np.testing.assert_allclose(five[0], landmarks[36:42].mean(axis=0))
    np.testing.assert_allclose(five[1], landmarks[42:48].mean(axis=0))
    np.testing.assert_allclose(five[2:], landmarks[[30, 48, 54]])
    with pytest.raises(ValueError, match="68, 2"):
        five_points_from_68(np.zeros((5, 2)))


@pytest.mark.parametrize("method", ["least_squares", "lmeds"])
def test_similarity_recovers_known_transform(method):
    template = np.array(GFPGANConfig().template_points())
    angle, scale = 0.3, 0.45
    truth = np.array([[scale * np.cos(angle), -scale * np.sin(angle), 40.0],
                      [scale * np.sin(angle), scale * np.cos(angle), -12.0]])
    landmarks = template @ truth[:, :2].T + truth[:, 2]  # the template seen in a frame
    matrix = estimate_similarity(landmarks, template, method)  # frame -> template
    # warping the template points back with the inverse lands them on the landmarks
    inverse = cv2.invertAffineTransform(matrix)
    np.testing.assert_allclose(template @ inverse[:, :2].T + inverse[:, 2], landmarks, atol=1e-3)


def test_alignment_of_a_real_face_matches_the_template():
    enhancer = GFPGANEnhancer(IdentityFaceModel(512))
    landmarks = landmarks68_from_five(PHOTO01_FIVE_POINTS)
    _, matrix = enhancer.align(read_photo(), landmarks)
    template = enhancer.template
    inverse = cv2.invertAffineTransform(matrix)
    back = template @ inverse[:, :2].T + inverse[:, 2]
    eye_distance = np.linalg.norm(PHOTO01_FIVE_POINTS[1] - PHOTO01_FIVE_POINTS[0])
    # a real face is not an exact similarity of the template; the fit is still within a few % of the eye distance
    assert np.abs(back - PHOTO01_FIVE_POINTS).max() < 0.1 * eye_distance
    # the eyes land on the template's eye line, level and at the template's spacing
    aligned_points = PHOTO01_FIVE_POINTS @ matrix[:, :2].T + matrix[:, 2]
    assert abs(aligned_points[0, 1] - aligned_points[1, 1]) < 3
    assert abs(np.linalg.norm(aligned_points[1] - aligned_points[0]) - (template[1, 0] - template[0, 0])) < 10


def test_identity_network_gives_back_the_frame():
    frame = read_photo()
    enhancer = GFPGANEnhancer(IdentityFaceModel(512))
    out = enhancer(frame, landmarks68_from_five(PHOTO01_FIVE_POINTS))
    diff = np.abs(out.astype(int) - frame.astype(int))
    assert diff.mean() < 0.5 and np.percentile(diff, 99) <= 6  # only resampling error from the two warps


def test_enhance_real_photo_with_tiny_random_gfpgan():
    frame = read_photo()
    model = GFPGANModel(GFPGANConfig(**TINY))
    enhancer = GFPGANEnhancer(model)
    landmarks = landmarks68_from_five(PHOTO01_FIVE_POINTS)
    out = enhancer(frame, SimpleNamespace(landmarks=landmarks, box=(150, 80, 320, 260)))
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert out is not frame

    _, matrix = enhancer.align(frame, landmarks)
    (x0, y0), (x1, y1) = face_square_in_frame(matrix, TINY["image_size"])
    outside = np.ones(frame.shape[:2], bool)
    outside[max(int(y0) - 3, 0) : int(y1) + 3, max(int(x0) - 3, 0) : int(x1) + 3] = False
    assert outside.mean() > 0.3
    assert np.array_equal(out[outside], frame[outside])  # far from the face: untouched

    cx, cy = PHOTO01_FIVE_POINTS[2].astype(int)  # around the nose: replaced by the (random) network's output
    nose = np.s_[cy - 20 : cy + 20, cx - 20 : cx + 20]
    face_diff = np.abs(out[nose].astype(int) - frame[nose])
    assert face_diff.mean() > 10


def test_strength_blends_towards_the_input():
    frame = read_photo()
    landmarks = landmarks68_from_five(PHOTO01_FIVE_POINTS)
    model = GFPGANModel(GFPGANConfig(**TINY))
    full = GFPGANEnhancer(model, strength=1.0)(frame, landmarks)
    half = GFPGANEnhancer(model, strength=0.5)(frame, landmarks)
    cx, cy = PHOTO01_FIVE_POINTS[2].astype(int)
    region = np.s_[cy - 20 : cy + 20, cx - 20 : cx + 20]
    full_change = np.abs(full[region].astype(int) - frame[region]).mean()
    half_change = np.abs(half[region].astype(int) - frame[region]).mean()
    assert 0.3 * full_change < half_change < 0.7 * full_change


def test_no_face_and_bad_input():
    frame = read_photo()
    enhancer = GFPGANEnhancer(GFPGANModel(GFPGANConfig(**TINY)))
    assert enhancer(frame, None) is frame
    assert enhancer(frame, SimpleNamespace(landmarks=None)) is frame
    tiny_face = landmarks68_from_five(PHOTO01_FIVE_POINTS * 0.02)  # eyes 1.4 px apart: left alone
    assert enhancer(frame, tiny_face) is frame
    with pytest.raises(ValueError, match="uint8"):
        enhancer(frame.astype(np.float32), landmarks68_from_five(PHOTO01_FIVE_POINTS))
    with pytest.raises(ValueError, match="strength"):
        GFPGANEnhancer(GFPGANModel(GFPGANConfig(**TINY)), strength=2)


def test_load_enhancer(tmp_path):
    with pytest.raises(ModelLoadError, match=r"GFPGANv1\.4\.pth.*talkface convert gfpgan"):
        load_enhancer("gfpgan", tmp_path / "missing-folder")
    with pytest.raises(ModelLoadError, match="GFPGANv1.4.pth"):
        load_enhancer("gfpgan", None)
    with pytest.raises(TalkFaceUserError, match="unknown face enhancer"):
        load_enhancer("codeformer", tmp_path)

    model = GFPGANModel(GFPGANConfig(**TINY))
    model.save_pretrained(tmp_path / "gfpgan")
    enhancer = load_enhancer("gfpgan", tmp_path / "gfpgan", strength=0.8)
    assert isinstance(enhancer, GFPGANEnhancer) and enhancer.strength == 0.8
    assert torch.equal(enhancer.model.final_linear.weight, model.final_linear.weight)

    # the original release file is converted in memory
    torch.save({"params_ema": model.state_dict()}, tmp_path / "GFPGANv1.4.pth")
    from_pth = load_enhancer("gfpgan", tmp_path / "GFPGANv1.4.pth")
    assert torch.equal(from_pth.model.toRGB[0].weight, model.toRGB[0].weight)

    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "wav2lip"}')
    with pytest.raises(ModelLoadError, match="not GFPGAN"):
        load_enhancer("gfpgan", other)


def test_box_only_detections_get_landmarks_from_a_face_backend():
    from talkface.faces.backends import FaceBackend, FaceDetection

    class FixedFaceBackend(FaceBackend):  # one face, the photo's, with known landmarks
        def _detect(self, frame_rgb, landmarks):
            return [FaceDetection(box=np.array([160, 90, 300, 260], np.float32),
                                  landmarks=landmarks68_from_five(PHOTO01_FIVE_POINTS).astype(np.float32), score=1.0)]

    frame = read_photo()
    model = GFPGANModel(GFPGANConfig(**TINY))
    expected = GFPGANEnhancer(model)(frame, landmarks68_from_five(PHOTO01_FIVE_POINTS).astype(np.float32))
    enhancer = GFPGANEnhancer(model, landmark_backend=FixedFaceBackend())
    from_box = enhancer(frame, SimpleNamespace(box=np.array([150, 80, 310, 270]), landmarks=None))
    assert np.array_equal(from_box, expected)
    # a box elsewhere is another face: no landmarks for it, the frame is left alone and counted
    assert enhancer(frame, SimpleNamespace(box=np.array([0, 300, 100, 470]), landmarks=None)) is frame
    assert enhancer.frames_without_landmarks == 1
    assert GFPGANEnhancer(model, landmark_backend=None)(frame, SimpleNamespace(box=(150, 80, 310, 270),
                                                                               landmarks=None)) is frame


def test_box_only_detection_with_mediapipe():
    pytest.importorskip("mediapipe")
    frame = read_photo()
    enhancer = GFPGANEnhancer(GFPGANModel(GFPGANConfig(**TINY)))  # landmark_backend="mediapipe"
    out = enhancer(frame, SimpleNamespace(box=np.array([150, 80, 310, 270], np.float32), landmarks=None))
    cx, cy = PHOTO01_FIVE_POINTS[2].astype(int)
    nose = np.s_[cy - 20 : cy + 20, cx - 20 : cx + 20]
    assert np.abs(out[nose].astype(int) - frame[nose]).mean() > 10
    assert enhancer.frames_without_landmarks == 0
