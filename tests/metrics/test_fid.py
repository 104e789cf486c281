"""FID: the Fréchet distance against independent computations, streaming statistics, and model loading."""

import numpy as np
import pytest
import torch
from scipy import linalg

from talkface.errors import ModelLoadError, TalkFaceUserError
from talkface.metrics.fid import (
    ActivationStatistics,
    activation_statistics,
    compute_fid,
    frechet_distance,
    load_fid_model,
)
from talkface.models.fid_inception import FIDInceptionConfig, FIDInceptionModel

WEIGHT_FILE = "pt_inception-2015-12-05-6726825d.pth"


def random_gaussian_statistics(rng, dim, samples, shift=0.0):
    mixing = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    data = rng.normal(size=(samples, dim)) @ mixing + shift
    return data.mean(axis=0), np.cov(data, rowvar=False)


def frechet_distance_symmetric_form(mu1, sigma1, mu2, sigma2):
    """Tr((S1 S2)^1/2) = Tr((S1^1/2 S2 S1^1/2)^1/2): the square root of a symmetric PSD matrix instead."""
    root1 = linalg.sqrtm(sigma1).real
    cross = linalg.sqrtm(root1 @ sigma2 @ root1).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(cross))


@pytest.fixture(scope="module")
def tiny_fid_model():
    torch.manual_seed(0)
    return FIDInceptionModel(FIDInceptionConfig(channel_divisor=16, image_size=75, num_classes=12)).eval()


def random_frames(rng, count, height=40, width=48):
    return rng.integers(0, 256, size=(count, height, width, 3), dtype=np.uint8)


# --- Fréchet distance ------------------------------------------------------------------------------------------


def test_frechet_distance_matches_direct_scipy_computation():
    rng = np.random.default_rng(1)
    mu1, sigma1 = random_gaussian_statistics(rng, dim=24, samples=400)
    mu2, sigma2 = random_gaussian_statistics(rng, dim=24, samples=400, shift=0.5)
    expected = frechet_distance_symmetric_form(mu1, sigma1, mu2, sigma2)
    assert expected > 1.0
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(mu2, sigma2, mu1, sigma1) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_closed_form_for_diagonal_covariances():
    # for diagonal covariances FID = |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = 1.0 + 4.0 + ((1 - 3) ** 2 + (2 - 1) ** 2 + 0.0)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-9)


def test_identical_statistics_give_zero():
    rng = np.random.default_rng(2)
    mu, sigma = random_gaussian_statistics(rng, dim=32, samples=200)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-8


def test_singular_covariances_stay_finite():
    # 5 samples in 16 dimensions: both covariances have rank 4
    rng = np.random.default_rng(3)
    first, second = rng.normal(size=(5, 16)), rng.normal(size=(5, 16)) + 1.0
    mu1, sigma1 = first.mean(0), np.cov(first, rowvar=False)
    mu2, sigma2 = second.mean(0), np.cov(second, rowvar=False)
    value = frechet_distance(mu1, sigma1, mu2, sigma2)
    assert np.isfinite(value)
    offset = np.eye(16) * 1e-6  # the regularised form must agree up to the regularisation
    expected = frechet_distance_symmetric_form(mu1, sigma1 + offset, mu2, sigma2 + offset)
    assert value == pytest.approx(expected, abs=1e-3)


def test_invalid_statistics_raise():
    # a "covariance" with a negative eigenvalue has an imaginary square root
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance(np.zeros(2), np.diag([1.0, -4.0]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="mean vectors"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="covariances"):
        frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))


# --- activation statistics and FID on frames -------------------------------------------------------------------


def test_streaming_statistics_equal_numpy_on_all_activations(tiny_fid_model):
    rng = np.random.default_rng(4)
    video_a, video_b = random_frames(rng, 7), random_frames(rng, 5, height=56, width=56)
    # items mix whole videos and single frames, of two frame sizes; batches of 3 straddle items
    frames = [video_a, video_b[0], video_b[1:]]
    statistics = activation_statistics(frames, tiny_fid_model, batch_size=3)

    with torch.no_grad():
        activations = torch.cat([
            tiny_fid_model(torch.from_numpy(v).permute(0, 3, 1, 2).float() / 255).pooled_features
            for v in (video_a, video_b)
        ]).double().numpy()
    assert statistics.num_frames == 12
    np.testing.assert_allclose(statistics.mu, activations.mean(axis=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(statistics.sigma, np.cov(activations, rowvar=False), rtol=1e-4, atol=1e-8)


def test_fid_of_a_set_with_itself_is_zero_and_of_different_sets_positive(tiny_fid_model):
    rng = np.random.default_rng(5)
    frames = random_frames(rng, 24)
    assert abs(compute_fid(frames, iter(list(frames[::-1])), tiny_fid_model, batch_size=8)) < 1e-6
    # smooth dark images against noise
    dark = np.repeat(np.linspace(0, 60, 48, dtype=np.uint8)[None, None, :, None], 40, axis=1)
    dark = np.repeat(dark, 3, axis=3) + rng.integers(0, 5, size=(24, 40, 48, 3), dtype=np.uint8)
    assert compute_fid(dark, frames, tiny_fid_model) > 1e-3


def test_statistics_round_trip_and_precomputed_reference(tmp_path, tiny_fid_model):
    rng = np.random.default_rng(6)
    generated, reference = random_frames(rng, 10), random_frames(rng, 10)
    reference_statistics = activation_statistics(reference, tiny_fid_model)
    reference_statistics.save(tmp_path / "reference.npz")
    loaded = ActivationStatistics.load(tmp_path / "reference.npz")
    assert loaded.num_frames == 10 and np.array_equal(loaded.sigma, reference_statistics.sigma)
    assert compute_fid(generated, loaded, tiny_fid_model) == pytest.approx(
        compute_fid(generated, reference, tiny_fid_model), rel=1e-9
    )


def test_bad_frames_raise_user_errors(tiny_fid_model):
    with pytest.raises(TalkFaceUserError, match="uint8 RGB"):
        activation_statistics([np.zeros((32, 32, 3), dtype=np.float32)], tiny_fid_model)
    with pytest.raises(TalkFaceUserError, match="uint8 RGB"):
        activation_statistics([np.zeros((32, 32), dtype=np.uint8)], tiny_fid_model)
    with pytest.raises(TalkFaceUserError, match="at least 2 frames"):
        activation_statistics([np.zeros((32, 32, 3), dtype=np.uint8)], tiny_fid_model)


def test_model_mode_is_restored(tiny_fid_model):
    tiny_fid_model.train()
    try:
        activation_statistics(random_frames(np.random.default_rng(7), 3), tiny_fid_model)
        assert tiny_fid_model.training
    finally:
        tiny_fid_model.eval()


# --- loading the model ----------------------------------------------------------------------------------------


def test_missing_weights_give_a_clear_error(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "fid_inception"
    with pytest.raises(ModelLoadError) as error:
        load_fid_model(missing)
    message = str(error.value)
    assert WEIGHT_FILE in message and "\n" not in message
    assert "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" in message
    assert f"talkface convert fid-inception --checkpoint {WEIGHT_FILE} --out models/fid_inception" in message

    # no argument: $TALKFACE_FID_MODEL, else ./models/fid_inception when present, else the name fid-inception
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TALKFACE_FID_MODEL", raising=False)
    with pytest.raises(ModelLoadError, match="run: talkface download fid-inception"):
        load_fid_model()
    (tmp_path / "models" / "fid_inception").mkdir(parents=True)
    with pytest.raises(ModelLoadError, match=WEIGHT_FILE):
        compute_fid(random_frames(np.random.default_rng(8), 2), random_frames(np.random.default_rng(9), 2))
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("TALKFACE_FID_MODEL", str(tmp_path / "empty"))
    with pytest.raises(ModelLoadError, match="empty"):
        load_fid_model()


def test_load_from_folder_weight_file_and_env(tmp_path, monkeypatch, tiny_fid_model):
    folder = tmp_path / "fid_inception"
    tiny_fid_model.save_pretrained(folder)
    # the original weight-file format is our state dict without the batch-norm counters
    original = {k: v for k, v in tiny_fid_model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(original, tmp_path / WEIGHT_FILE)
    monkeypatch.setenv("TALKFACE_FID_MODEL", str(folder))

    images = torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        expected = tiny_fid_model(images).pooled_features
        for model in (load_fid_model(folder), load_fid_model()):
            assert isinstance(model, FIDInceptionModel) and not model.training
            assert model.config.image_size == 75  # the folder's preprocessing travels with it
            assert torch.equal(model(images).pooled_features, expected)

    # the weight file holds no preprocessing: it gets the standard one (299x299)
    from_weight_file = load_fid_model(tmp_path / WEIGHT_FILE)
    assert not from_weight_file.training and from_weight_file.config.image_size == 299
    converted = from_weight_file.state_dict()
    assert all(torch.equal(converted[k], v) for k, v in tiny_fid_model.state_dict().items())


def test_wrong_model_folder_is_refused(tmp_path):
    from talkface.models.vgg19 import VGG19Config, VGG19Model

    VGG19Model(VGG19Config(block_channels=(2, 2, 2, 2, 2))).save_pretrained(tmp_path / "vgg")
    with pytest.raises(ModelLoadError, match="'vgg19'"):
        load_fid_model(tmp_path / "vgg")
    (tmp_path / "weights.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match=WEIGHT_FILE):
        load_fid_model(tmp_path / "weights.bin")
