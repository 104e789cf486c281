"""The Wav2Lip mel spectrogram and the per-video-frame mel windows, as a transformers feature extractor.

The computation (Wav2Lip's `audio.melspectrogram` as run with librosa 0.7, in numpy, float64 throughout) is
`talkface.networks.wav2lip_audio.Wav2LipMelFeatures`, which the generation path uses without importing
transformers; see that module for the formula. The parameters are saved as `preprocessor_config.json` beside the
model weights.
"""

import numpy as np
from transformers.feature_extraction_utils import BatchFeature, FeatureExtractionMixin

from ...hub.mixin import FeatureExtractorHubMixin
from ...networks.wav2lip_audio import (  # noqa: F401  (these names stay importable from here)
    PAD_MODES,
    SamplingRateMismatchError,
    Wav2LipMelFeatures,
    hz_to_slaney_mel,
    periodic_hann_window,
    slaney_mel_filterbank,
    slaney_mel_to_hz,
)


class TalkingFaceAudioFeatureExtractor(FeatureExtractorHubMixin, Wav2LipMelFeatures, FeatureExtractionMixin):
    r"""Wav2Lip's mel spectrogram and its per-video-frame windows, as a transformers feature extractor.

    The arguments (sampling_rate, n_fft, hop_length, ..., mel_step_size, fps; see `Wav2LipMelFeatures` in
    talkface.networks.wav2lip_audio) and the computation are those of its numpy base class; this class adds what
    transformers needs (`from_pretrained` / `save_pretrained` of preprocessor_config.json, `__call__` returning a
    `BatchFeature`, `AutoFeatureExtractor`) and the Hub mixin.
    """

    card_preprocessing = "mel"  # the model card preprocessing table these defaults fill

    model_input_names = ["mel_chunks"]

    def to_dict(self):
        output = super().to_dict()
        output.pop("_mel_filters", None)
        return output

    # --- transformers entry point ---------------------------------------------------------------------------------
    def __call__(self, raw_speech, sampling_rate: int | None = None, fps: float | None = None,
                 num_frames: int | None = None, return_tensors=None, **kwargs) -> BatchFeature:
        """Mel spectrogram and per-frame windows of one waveform (or a list of waveforms).

        Returns a `BatchFeature` with `mel_spectrogram` (num_mel_bins, mel_frames) and `mel_chunks`
        (frames, 1, num_mel_bins, mel_step_size); lists of those for a list of waveforms. `num_frames` defaults to
        the number of video frames that cover the audio (`num_video_frames`).
        """
        self._check_sampling_rate(sampling_rate)
        is_batched = isinstance(raw_speech, (list, tuple)) and len(raw_speech) > 0 and np.ndim(raw_speech[0]) > 0
        waveforms = list(raw_speech) if is_batched else [raw_speech]
        spectrograms, chunks = [], []
        for waveform in waveforms:
            mel = self.mel_spectrogram(waveform, sampling_rate=self.sampling_rate)
            frames = num_frames or self.num_video_frames(np.asarray(waveform).shape[0], fps)
            spectrograms.append(mel)
            chunks.append(self.frame_mel_chunks(mel, fps=fps, num_frames=frames))
        data = {"mel_spectrogram": spectrograms, "mel_chunks": chunks} if is_batched else \
            {"mel_spectrogram": spectrograms[0], "mel_chunks": chunks[0]}
        return BatchFeature(data=data, tensor_type=return_tensors)


__all__ = ["TalkingFaceAudioFeatureExtractor", "SamplingRateMismatchError", "slaney_mel_filterbank"]
