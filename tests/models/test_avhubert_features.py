"""AV-HuBERT audio features (stacked log filterbanks) and the mouth-crop transform, against the golden vectors."""

import numpy as np
import pytest
import torch

from talkface.errors import TalkFaceUserError
from talkface.models.avhubert.feature_extraction_avhubert import (
    AVHubertFeatureExtractor,
    mel_filterbank,
    normalize_mouth_frames,
)
from tests.utils import load_golden


@pytest.fixture(scope="module")
def golden():
    return load_golden("avhubert.npz")


@pytest.fixture(scope="module")
def extractor():
    return AVHubertFeatureExtractor()


def test_frame_arithmetic(extractor):
    assert extractor.feature_size == 104
    assert extractor.audio_frames_per_second == 100 and extractor.audio_frames_per_video_frame == 4
    assert extractor.log_filterbank(np.zeros(16000, np.int16) + 1).shape == (99, 26)  # 1 + ceil((16000 - 400) / 160)
    assert extractor.num_video_frames_for(16000) == 25 and extractor.num_video_frames_for(32000) == 50
    assert extractor.log_filterbank(np.ones(10, np.int16)).shape == (1, 26)  # shorter than one window


def test_stacked_filterbank_matches_golden_int16_and_float(golden, extractor):
    audio_int16 = golden["audio_int16"]
    stacked = extractor.stacked_features(audio_int16, num_video_frames=50)
    np.testing.assert_allclose(stacked, golden["audio_fbank_stacked"], atol=1e-4, rtol=0)
    # float audio in [-1, 1] is brought back to the int16 scale the reference reads
    from_float = extractor.stacked_features(audio_int16.astype(np.float32) / 32768.0, num_video_frames=50)
    np.testing.assert_allclose(from_float, golden["audio_fbank_stacked"], atol=1e-4, rtol=0)
    # 199 audio frames -> 50 rows: the last row's final 26 values are the zero sub-frame
    assert np.all(stacked[-1, 78:] == 0) and np.all(stacked[-1, :78] != 0)


def test_model_input_matches_golden(golden, extractor):
    features = extractor(golden["audio_int16"], sampling_rate=16000, num_video_frames=50)
    assert features["audio_features"].shape == (1, 104, 50) and features["audio_features"].dtype == torch.float32
    np.testing.assert_allclose(features["audio_features"][0].numpy(), golden["audio_in"], atol=1e-4, rtol=0)
    assert not features["padding_mask"].any()


def test_matches_python_speech_features(golden, extractor):
    psf = pytest.importorskip("python_speech_features")
    audio = golden["audio_int16"][:5000]
    np.testing.assert_allclose(extractor.log_filterbank(audio), psf.logfbank(audio, 16000).astype(np.float32),
                               atol=1e-4, rtol=0)
    np.testing.assert_allclose(mel_filterbank(26, 512, 16000, 0, 8000), psf.get_filterbanks(26, 512, 16000, 0, 8000))


def test_alignment_pads_and_trims_at_the_end(golden, extractor):
    audio = golden["audio_int16"]
    longer = extractor(audio, num_video_frames=53)["audio_features"][0]
    shorter = extractor(audio, num_video_frames=47)["audio_features"][0]
    assert longer.shape == (104, 53) and torch.all(longer[:, 50:] == 0)  # appended rows stay exactly zero
    torch.testing.assert_close(longer[:, :50], torch.from_numpy(golden["audio_in"]), atol=1e-4, rtol=0)
    torch.testing.assert_close(shorter, torch.from_numpy(golden["audio_in"][:, :47]), atol=1e-4, rtol=0)


def test_batch_is_padded_with_a_mask(golden, extractor):
    audio = golden["audio_int16"]
    batch = extractor([audio, audio[:16000]], num_video_frames=[50, 25])
    assert batch["audio_features"].shape == (2, 104, 50)
    assert batch["padding_mask"][0].sum() == 0 and batch["padding_mask"][1].tolist() == [False] * 25 + [True] * 25
    single = extractor(audio[:16000], num_video_frames=25)["audio_features"][0]
    torch.testing.assert_close(batch["audio_features"][1, :, :25], single)
    assert torch.all(batch["audio_features"][1, :, 25:] == 0)


def test_refuses_wrong_sampling_rate_and_stereo(extractor):
    with pytest.raises(TalkFaceUserError, match="16000 Hz"):
        extractor(np.zeros(1000, np.float32), sampling_rate=8000)
    with pytest.raises(TalkFaceUserError, match="mono"):
        extractor(np.zeros((1000, 2), np.float32), sampling_rate=16000)
    with pytest.raises(ValueError, match="stack_order"):
        AVHubertFeatureExtractor(stack_order=3)


def test_save_load_round_trip(tmp_path):
    extractor = AVHubertFeatureExtractor(image_mean=0.5, normalize=False)
    extractor.save_pretrained(tmp_path)
    assert (tmp_path / "preprocessor_config.json").is_file()
    reloaded = AVHubertFeatureExtractor.from_pretrained(tmp_path)
    assert reloaded.to_dict() == extractor.to_dict()
    assert reloaded.image_mean == 0.5 and reloaded.normalize is False


def test_video_transform_matches_golden(golden, extractor):
    mouths = golden["mouth96_uint8"]
    np.testing.assert_allclose(normalize_mouth_frames(mouths), golden["video_in"], atol=1e-6, rtol=0)
    video = extractor.prepare_video(mouths)
    assert video.shape == (1, 1, 50, 88, 88)
    # the crop offset is 4 for 96 -> 88 (the reference's int(round(96 - 88) / 2.))
    np.testing.assert_array_equal(mouths[:, 4:92, 4:92], golden["mouth88_uint8"])


def test_video_transform_is_differentiable_for_tensors(golden):
    frames = torch.from_numpy(golden["mouth96_uint8"][:3]).float().requires_grad_(True)
    normalized = normalize_mouth_frames(frames)
    torch.testing.assert_close(normalized, torch.from_numpy(golden["video_in"][:3]), atol=1e-5, rtol=0)
    normalized.sum().backward()
    assert frames.grad[:, 4:92, 4:92].eq(1 / (255 * 0.165)).all() and frames.grad[:, :4].eq(0).all()
    with pytest.raises(TalkFaceUserError, match="smaller"):
        normalize_mouth_frames(np.zeros((2, 64, 64), np.uint8))


def test_one_mouth_normalisation_for_every_caller(golden, monkeypatch):
    """The extractor, its module-level name and the scoring path (faces.mouth_roi) run the same code, in float64
    like the reference (numpy promotes uint8 / 255.0), cast to float32 once at the end."""
    from talkface.faces import mouth_roi

    mouths = golden["mouth96_uint8"]  # (50, 96, 96) uint8
    reference = ((mouths[:, 4:92, 4:92] / 255.0 - 0.421) / 0.165).astype(np.float32)
    extractor = AVHubertFeatureExtractor()
    for normalized in (mouth_roi.normalize_mouth_rois(mouths), normalize_mouth_frames(mouths),
                       extractor.normalize_mouth_frames(mouths)):
        assert normalized.dtype == np.float32
        np.testing.assert_array_equal(normalized, reference)
    # the float64 temporary is bounded by chunking frames; chunk boundaries do not change a bit
    monkeypatch.setattr(mouth_roi, "_NORMALIZE_CHUNK_FRAMES", 7)
    np.testing.assert_array_equal(mouth_roi.normalize_mouth_rois(mouths), reference)
    # float input on the 0..255 scale is computed in float64 as well, and extra leading axes are kept
    batched = mouth_roi.normalize_mouth_rois(mouths.astype(np.float32).reshape(5, 10, 96, 96))
    np.testing.assert_array_equal(batched.reshape(50, 88, 88), reference)
    # the extractor's saved values are the ones used
    custom = AVHubertFeatureExtractor(image_crop_size=80, image_mean=0.5, image_std=0.25)
    expected = ((mouths[:, 8:88, 8:88] / 255.0 - 0.5) / 0.25).astype(np.float32)
    np.testing.assert_array_equal(custom.normalize_mouth_frames(mouths), expected)
