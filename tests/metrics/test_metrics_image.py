"""SSIM / PSNR (talkface.metrics.image_quality) against scikit-image on real frames."""

import numpy as np
import pytest

from talkface.metrics.image_quality import (
    crop_face_regions,
    psnr,
    psnr_per_frame,
    ssim,
    ssim_per_frame,
)
from tests.utils import data_file

skimage_metrics = pytest.importorskip("skimage.metrics")


@pytest.fixture(scope="module")
def frames():
    """Six real frames of two clips at different moments (different faces, poses and mouths)."""
    from talkface.media import read_frames

    clip = read_frames(data_file("clip05_retalking_face5_woman_glasses.mp4"), max_frames=40)[::8]  # (5, 524, 524, 3)
    return clip[:, 100:340, 120:360]  # 240 x 240 around the face keeps the test fast


def test_ssim_matches_scikit_image_gaussian(frames):
    generated, reference = frames[1:], frames[:-1]
    ours = ssim_per_frame(generated, reference)
    expected = [skimage_metrics.structural_similarity(g, r, channel_axis=-1, data_range=255, gaussian_weights=True,
                                                      sigma=1.5, use_sample_covariance=False)
                for g, r in zip(generated, reference)]
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(ours, expected, atol=1e-10, rtol=0)  # in fact equal to round-off
    assert ssim(generated, reference) == pytest.approx(np.mean(expected), abs=1e-10)


def test_ssim_matches_scikit_image_uniform_and_gray(frames):
    generated, reference = frames[1:3], frames[2:4]
    ours = ssim_per_frame(generated, reference, window="uniform")
    expected = [skimage_metrics.structural_similarity(g, r, channel_axis=-1, data_range=255)
                for g, r in zip(generated, reference)]
    np.testing.assert_allclose(ours, expected, atol=1e-10, rtol=0)
    gray_ours = ssim(generated[0, ..., 1], reference[0, ..., 1])
    gray_expected = skimage_metrics.structural_similarity(generated[0, ..., 1], reference[0, ..., 1], data_range=255,
                                                          gaussian_weights=True, sigma=1.5,
                                                          use_sample_covariance=False)
    assert gray_ours == pytest.approx(gray_expected, abs=1e-10)


def test_ssim_of_identical_frames_is_one(frames):
    np.testing.assert_allclose(ssim_per_frame(frames, frames), 1.0, atol=1e-12)


def test_psnr_matches_scikit_image_and_has_no_uint8_overflow(frames):
    generated, reference = frames[1:], frames[:-1]
    expected = [skimage_metrics.peak_signal_noise_ratio(r, g, data_range=255) for g, r in zip(generated, reference)]
    np.testing.assert_allclose(psnr_per_frame(generated, reference), expected, atol=1e-10)
    # 10 - 250 wraps to 16 in uint8 (TalkLip's bug); the true squared error is 240^2
    dark, bright = np.full((8, 8, 3), 10, np.uint8), np.full((8, 8, 3), 250, np.uint8)
    assert psnr(dark, bright) == pytest.approx(10 * np.log10(255**2 / 240**2), abs=1e-12)
    assert psnr(bright, dark) == psnr(dark, bright)


def test_psnr_of_identical_frames_is_infinite_or_capped(frames):
    assert np.all(np.isinf(psnr_per_frame(frames, frames)))
    assert psnr(frames, frames) == np.inf
    assert psnr(frames, frames, cap_db=100.0) == 100.0
    mixed = frames.copy()
    mixed[0, 0, 0, 0] ^= 1  # one frame differs by one level at one pixel
    per_frame = psnr_per_frame(mixed, frames)
    assert np.isfinite(per_frame[0]) and per_frame[0] > 100 and np.isinf(per_frame[1:]).all()
    assert psnr(mixed, frames, cap_db=100.0) == 100.0


def test_shape_mismatch_and_tiny_frames_raise(frames):
    with pytest.raises(ValueError, match="differ in shape"):
        ssim(frames[:2], frames[:3])
    with pytest.raises(ValueError, match="SSIM window"):
        ssim(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="window must be"):
        ssim(frames[:1], frames[:1], window="box")


def test_crop_face_regions():
    frames = np.arange(2 * 50 * 60 * 3, dtype=np.uint8).reshape(2, 50, 60, 3)
    crops = crop_face_regions(frames, np.array([[10, 5, 30, 25], [-5, -5, 200, 200]]), size=20)
    assert crops.shape == (2, 20, 20, 3)
    np.testing.assert_array_equal(crops[0], frames[0, 5:25, 10:30])  # same size: no resampling
    with pytest.raises(ValueError, match="empty"):
        crop_face_regions(frames[:1], np.array([[70, 5, 80, 25]]))
