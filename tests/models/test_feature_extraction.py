"""TalkingFaceAudioFeatureExtractor: the Wav2Lip mel spectrogram (golden parity) and the frame <-> mel arithmetic."""

import json

import numpy as np
import pytest
import torch

from talkface.errors import MediaError, TalkFaceUserError
from talkface.models.wav2lip.feature_extraction_wav2lip import (
    SamplingRateMismatchError,
    TalkingFaceAudioFeatureExtractor,
    slaney_mel_filterbank,
)
from tests.utils import load_golden

MEL_ATOL = 1e-4  # golden/README.md: mel spectrograms within 1e-4


@pytest.fixture(scope="module")
def extractor():
    return TalkingFaceAudioFeatureExtractor()


@pytest.fixture(scope="module")
def golden():
    return load_golden("wav2lip.npz")


def test_speech02_mel_matches_golden_reflect_padding(extractor, golden):
    mel = extractor.mel_spectrogram(golden["speech02_wav_float"], sampling_rate=16000)
    assert mel.shape == golden["speech02_mel"].shape == (80, 641)
    assert mel.dtype == np.float32
    np.testing.assert_allclose(mel, golden["speech02_mel"], rtol=0, atol=MEL_ATOL)


def test_constant_padding_reproduces_new_librosa_and_differs_from_reflect(golden):
    constant = TalkingFaceAudioFeatureExtractor(pad_mode="constant")
    mel = constant.mel_spectrogram(golden["speech02_wav_float"], sampling_rate=16000)
    np.testing.assert_allclose(mel, golden["speech02_mel_constantpad"], rtol=0, atol=MEL_ATOL)
    # the two paddings differ only in the first and last two frames, and there clearly
    difference = np.abs(mel - golden["speech02_mel"]).max(axis=0)
    assert set(np.nonzero(difference > 1e-3)[0]) <= {0, 1, 639, 640}
    assert difference.max() > 0.5


def test_clip05_mel_from_int16_matches_golden(extractor, golden):
    audio_int16 = load_golden("syncnet_lse.npz")["audio_int16"]
    np.testing.assert_allclose(extractor.mel_spectrogram(audio_int16 / 32768.0, 16000), golden["clip05_mel"],
                               rtol=0, atol=MEL_ATOL)
    # int16 input is scaled by 1/32768, as the reference does
    np.testing.assert_allclose(extractor.mel_spectrogram(audio_int16, 16000), golden["clip05_mel"],
                               rtol=0, atol=MEL_ATOL)


def test_frame_windows_match_golden_generator_and_expert_inputs(extractor, golden):
    mel = golden["clip05_mel"]
    np.testing.assert_array_equal(extractor.frame_mel_chunks(mel, fps=25, num_frames=4), golden["gen_mel_in"])
    starts = [extractor.mel_chunk_start(int(frame), fps=25) for frame in golden["sync_window_starts"]]
    expert_windows = np.stack([mel[None, :, s : s + 16] for s in starts])
    np.testing.assert_array_equal(expert_windows, golden["sync_mel_in"])


def test_derived_constants_and_window_starts(extractor):
    assert extractor.mel_frames_per_second == 80
    assert extractor.mel_frames_per_video_frame(25) == pytest.approx(3.2)
    assert extractor.window_seconds == pytest.approx(0.2)
    assert [extractor.mel_chunk_start(i, 25) for i in range(6)] == [0, 3, 6, 9, 12, 16]
    assert [extractor.mel_chunk_start(i, 30) for i in range(4)] == [0, 2, 5, 8]
    assert extractor.num_video_frames(16000, 25) == 25
    assert extractor.num_video_frames(16001, 25) == 26  # rounded up: no audio left without a frame


def test_former_method_names_still_work_with_a_warning(extractor, golden):
    mel = golden["clip05_mel"]
    with pytest.warns(FutureWarning, match="frame_mel_chunks"):
        old = extractor.frame_mel_windows(mel, fps=25, num_frames=4)
    np.testing.assert_array_equal(old, extractor.frame_mel_chunks(mel, fps=25, num_frames=4))
    with pytest.warns(FutureWarning, match="mel_chunk_start"):
        assert extractor.mel_window_start(5, 25) == extractor.mel_chunk_start(5, 25) == 16


def test_mel_frame_count():
    extractor = TalkingFaceAudioFeatureExtractor()
    for num_samples in (801, 3200, 16000, 16199):
        waveform = np.random.default_rng(num_samples).standard_normal(num_samples).astype(np.float32) * 0.1
        assert extractor.mel_spectrogram(waveform, 16000).shape == (80, 1 + num_samples // 200)


def test_tail_rule_of_wav2lip_inference(extractor):
    mel = np.random.default_rng(0).standard_normal((80, 100)).astype(np.float32)
    windows = extractor.frame_mel_chunks(mel, fps=25)
    # inference.py: windows while int(i * 3.2) + 16 <= 100 (i = 0..26), then the tail window, then stop
    assert windows.shape == (28, 1, 80, 16)
    np.testing.assert_array_equal(windows[26, 0], mel[:, 83:99])
    np.testing.assert_array_equal(windows[-1, 0], mel[:, -16:])
    # with an explicit frame count every window that would overrun is the tail window
    longer = extractor.frame_mel_chunks(mel, fps=25, num_frames=40)
    assert longer.shape == (40, 1, 80, 16)
    np.testing.assert_array_equal(longer[:27], windows[:27])
    for window in longer[27:]:
        np.testing.assert_array_equal(window[0], mel[:, -16:])


def test_call_returns_spectrogram_and_per_frame_windows(extractor):
    waveform = np.random.default_rng(1).standard_normal(16000).astype(np.float32) * 0.1
    features = extractor(waveform, sampling_rate=16000, fps=25, return_tensors="pt")
    assert isinstance(features["mel_chunks"], torch.Tensor)
    assert tuple(features["mel_chunks"].shape) == (25, 1, 80, 16)
    assert tuple(features["mel_spectrogram"].shape) == (80, 81)
    batch = extractor([waveform, waveform[:8000]], sampling_rate=16000, fps=25)
    assert [c.shape[0] for c in batch["mel_chunks"]] == [25, 13]


def test_refuses_mismatched_sampling_rate(extractor):
    waveform = np.zeros(44100, dtype=np.float32)
    with pytest.raises(SamplingRateMismatchError, match="44100 Hz.*16000 Hz"):
        extractor.mel_spectrogram(waveform, sampling_rate=44100)
    with pytest.raises(TalkFaceUserError):
        extractor(waveform, sampling_rate=22050)
    assert issubclass(SamplingRateMismatchError, ValueError)


def test_refuses_bad_audio(extractor):
    with pytest.raises(MediaError, match="mono"):
        extractor.mel_spectrogram(np.zeros((1000, 2), dtype=np.float32), 16000)
    with pytest.raises(MediaError, match="empty"):
        extractor.mel_spectrogram(np.zeros(0, dtype=np.float32), 16000)
    short_mel = extractor.mel_spectrogram(np.zeros(2000, dtype=np.float32), 16000)  # 11 mel frames
    with pytest.raises(MediaError, match="too short"):
        extractor.frame_mel_chunks(short_mel, fps=25)


@pytest.mark.parametrize(
    "kwargs, field",
    [({"pad_mode": "edge"}, "pad_mode"), ({"hop_length": 0}, "hop_length"), ({"fmax": 9000}, "fmax"),
     ({"win_length": 1024}, "win_length"), ({"fps": 0}, "fps"), ({"preemphasis": 1.5}, "preemphasis")],
)
def test_bad_parameters_raise(kwargs, field):
    with pytest.raises(ValueError, match=field):
        TalkingFaceAudioFeatureExtractor(**kwargs)


def test_save_load_round_trip(tmp_path):
    extractor = TalkingFaceAudioFeatureExtractor(pad_mode="constant", fps=30.0)
    extractor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["pad_mode"] == "constant" and saved["hop_length"] == 200 and saved["fps"] == 30.0
    assert "_mel_filters" not in saved
    loaded = TalkingFaceAudioFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.to_dict() == extractor.to_dict()
    waveform = np.random.default_rng(2).standard_normal(4000).astype(np.float32)
    np.testing.assert_array_equal(loaded.mel_spectrogram(waveform, 16000), extractor.mel_spectrogram(waveform, 16000))


def test_slaney_filterbank_shape_and_normalisation():
    filters = slaney_mel_filterbank(16000, 800, 80, 55.0, 7600.0)
    assert filters.shape == (80, 401) and filters.dtype == np.float32
    assert (filters >= 0).all()
    # triangles move up in frequency, and area normalisation makes wider (higher) filters lower
    peaks = filters.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all()
    assert filters[-1].max() < filters[10].max()
    # no energy outside [fmin, fmax]: bins are 20 Hz apart
    assert filters[:, : 55 // 20 + 1].sum() == 0 and filters[:, 7600 // 20 + 1 :].sum() == 0
