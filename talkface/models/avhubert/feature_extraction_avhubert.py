"""AV-HuBERT inputs: stacked log filterbanks for the audio, normalised mouth crops for the video.

Audio (av_hubert `hubert_dataset.py`), reproduced in numpy with `python_speech_features.logfbank` semantics:

    16 kHz waveform on the int16 scale (float input in [-1, 1] is multiplied by 32768 first)
    -> pre-emphasis y[n] = x[n] - 0.97 x[n-1] (y[0] = x[0])
    -> frames of 400 samples every 160 (the last one zero-padded), rectangular window, |rfft_512|^2 / 512
    -> 26 triangular mel filters over 0-8000 Hz, exact zeros replaced by float eps, natural log  (100 frames/s)
    -> stack 4 consecutive frames into one 104-dim row, frame-major (25 rows/s = the video rate); when the frame
       count is not a multiple of 4, zero 26-dim sub-frames complete the last row
    -> align to the video: append all-zero rows or drop rows at the end
    -> layer norm of each row over its 104 values (no affine); all-zero rows stay zero

Every step above happens in the reference in this order; the int16 scale matters only for the log filterbank
values before the per-row normalisation (the normalised features are almost scale-free).

Video (av_hubert `utils.py` eval transform): grayscale 96x96 mouth crops -> /255 -> centre crop 88x88 ->
(x - 0.421) / 0.165. The crops and this transform are implemented once, in `talkface.faces.mouth_roi`; the extractor
holds (and saves with the weights) the crop size, mean and std it is run with.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from transformers.feature_extraction_utils import BatchFeature, FeatureExtractionMixin

from ...hub.mixin import FeatureExtractorHubMixin
from ...errors import TalkFaceUserError
from ...faces.mouth_roi import CROP_SIZE, IMAGE_MEAN, IMAGE_STD, normalize_mouth_rois

# python_speech_features uses numpy's float64 epsilon in place of exact zeros before the log
_FLOAT_EPS = np.finfo(float).eps


class AVHubertInputError(TalkFaceUserError, ValueError):
    """Input that AV-HuBERT cannot take as is (audio at the wrong rate, not mono or empty; mouth crops too small)."""


def hz_to_mel(hz):
    """HTK-style mel scale used by python_speech_features: 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(num_filters: int, n_fft: int, sampling_rate: int, low_freq: float, high_freq: float) -> np.ndarray:
    """(num_filters, n_fft // 2 + 1) triangular filters on FFT bins, as python_speech_features builds them.

    Filter edges are mel-spaced points mapped to bins with floor((n_fft + 1) * f / sampling_rate); each triangle
    rises from 0 at its left edge to 1 at its centre bin and falls back towards its right edge (exclusive).
    """
    mel_points = np.linspace(hz_to_mel(low_freq), hz_to_mel(high_freq), num_filters + 2)
    edges = np.floor((n_fft + 1) * mel_to_hz(mel_points) / sampling_rate)
    filters = np.zeros((num_filters, n_fft // 2 + 1))
    for index in range(num_filters):
        left, centre, right = edges[index], edges[index + 1], edges[index + 2]
        for fft_bin in range(int(left), int(centre)):
            filters[index, fft_bin] = (fft_bin - left) / (centre - left)
        for fft_bin in range(int(centre), int(right)):
            filters[index, fft_bin] = (right - fft_bin) / (right - centre)
    return filters


def _round_half_up(value: float) -> int:
    return int(math.floor(value + 0.5))


def normalize_mouth_frames(mouth_frames, crop_size: int = CROP_SIZE, mean: float = IMAGE_MEAN,
                           std: float = IMAGE_STD):
    """Reference eval transform of grayscale mouth crops with the released models' defaults: /255, centre crop,
    (x - mean) / std.

    A name for `talkface.faces.mouth_roi.normalize_mouth_rois` (the one implementation) as the model folder
    documents it; prefer `AVHubertFeatureExtractor.normalize_mouth_frames`, which uses the values saved with the
    weights. numpy input (e.g. (frames, 96, 96) uint8) gives float32 computed in float64 like the reference; a
    torch tensor of any leading shape on the 0..255 scale gives a differentiable tensor in its floating dtype.
    """
    _check_mouth_size(mouth_frames, crop_size)
    return normalize_mouth_rois(mouth_frames, crop_size, mean, std)


def _check_mouth_size(mouth_frames, crop_size: int):
    height, width = mouth_frames.shape[-2], mouth_frames.shape[-1]
    if height < crop_size or width < crop_size:
        raise AVHubertInputError(
            f"mouth crops of {height}x{width} are smaller than the {crop_size}x{crop_size} centre crop; "
            "extract 96x96 mouth regions first"
        )


class AVHubertFeatureExtractor(FeatureExtractorHubMixin, FeatureExtractionMixin):
    r"""Turns 16 kHz speech into AV-HuBERT audio features and mouth crops into video input.

    Args:
        sampling_rate (`int`, defaults to 16000): expected audio sampling rate; other rates are refused.
        num_filters (`int`, defaults to 26): mel filters per audio frame.
        window_length (`int`, defaults to 400): samples per analysis frame (25 ms).
        hop_length (`int`, defaults to 160): samples between frames (10 ms, i.e. 100 frames/s).
        n_fft (`int`, defaults to 512): FFT size.
        preemphasis (`float`, defaults to 0.97): pre-emphasis coefficient.
        low_freq (`float`, defaults to 0), high_freq (`float`, defaults to None = sampling_rate / 2): filter range.
        stack_order (`int`, defaults to 4): audio frames stacked into one feature row (100 Hz -> 25 Hz).
        normalize (`bool`, defaults to `True`): per-row layer norm of the stacked features (all released models).
        waveform_scale (`float`, defaults to 32768.0): factor applied to floating-point waveforms before the
            filterbank; the reference reads int16 PCM, so float audio in [-1, 1] is brought to that scale.
            Integer (int16) arrays are used as they are.
        fps (`float`, defaults to 25): video frame rate; one feature row per video frame.
        image_crop_size (`int`, defaults to 88), image_mean (`float`, defaults to 0.421),
        image_std (`float`, defaults to 0.165): the mouth-crop transform.
        layer_norm_eps (`float`, defaults to 1e-5): epsilon of the per-row normalisation.
    """

    card_preprocessing = "avhubert"  # the model card preprocessing table these defaults fill

    model_input_names = ["audio_features", "padding_mask"]

    def __init__(
        self,
        sampling_rate=16000,
        num_filters=26,
        window_length=400,
        hop_length=160,
        n_fft=512,
        preemphasis=0.97,
        low_freq=0.0,
        high_freq=None,
        stack_order=4,
        normalize=True,
        waveform_scale=32768.0,
        fps=25.0,
        image_crop_size=CROP_SIZE,
        image_mean=IMAGE_MEAN,
        image_std=IMAGE_STD,
        layer_norm_eps=1e-5,
        **kwargs,
    ):
        kwargs.pop("feature_extractor_type", None)
        super().__init__(**kwargs)
        self.sampling_rate = int(sampling_rate)
        self.num_filters = int(num_filters)
        self.window_length = int(window_length)
        self.hop_length = int(hop_length)
        self.n_fft = int(n_fft)
        self.preemphasis = float(preemphasis)
        self.low_freq = float(low_freq)
        self.high_freq = float(high_freq) if high_freq is not None else self.sampling_rate / 2
        self.stack_order = int(stack_order)
        self.normalize = bool(normalize)
        self.waveform_scale = float(waveform_scale)
        self.fps = float(fps)
        self.image_crop_size = int(image_crop_size)
        self.image_mean = float(image_mean)
        self.image_std = float(image_std)
        self.layer_norm_eps = float(layer_norm_eps)
        self._validate()

    def _validate(self):
        for name in ("sampling_rate", "num_filters", "window_length", "hop_length", "n_fft", "stack_order",
                     "image_crop_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.window_length > self.n_fft:
            raise ValueError(f"window_length ({self.window_length}) must not exceed n_fft ({self.n_fft})")
        if not 0 <= self.low_freq < self.high_freq <= self.sampling_rate / 2:
            raise ValueError(
                f"need 0 <= low_freq < high_freq <= sampling_rate / 2, got {self.low_freq}, {self.high_freq}"
            )
        if self.image_std <= 0:
            raise ValueError(f"image_std must be positive, got {self.image_std}")
        # one stacked row must cover exactly one video frame, otherwise audio and video drift apart
        if not math.isclose(self.audio_frames_per_video_frame, self.stack_order):
            raise ValueError(
                f"stack_order ({self.stack_order}) must equal the audio frames per video frame "
                f"({self.audio_frames_per_video_frame:g} = sampling_rate / hop_length / fps)"
            )

    # -- derived constants ------------------------------------------------------------------------------------------

    @property
    def audio_frames_per_second(self) -> float:
        return self.sampling_rate / self.hop_length

    @property
    def audio_frames_per_video_frame(self) -> float:
        return self.audio_frames_per_second / self.fps

    @property
    def feature_size(self) -> int:
        """Size of one stacked row (104 by default = the model's `audio_feat_dim`)."""
        return self.num_filters * self.stack_order

    # -- audio ------------------------------------------------------------------------------------------------------

    def _to_reference_scale(self, waveform) -> np.ndarray:
        if isinstance(waveform, torch.Tensor):
            waveform = waveform.detach().cpu().numpy()
        waveform = np.asarray(waveform)
        if waveform.ndim != 1:
            raise AVHubertInputError(
                f"expected a mono waveform (samples,), got shape {waveform.shape}; average the channels first"
            )
        if waveform.size == 0:
            raise AVHubertInputError("the waveform is empty; pass at least one sample of speech")
        if np.issubdtype(waveform.dtype, np.integer):
            return waveform.astype(np.float64)
        return waveform.astype(np.float64) * self.waveform_scale

    def log_filterbank(self, waveform) -> np.ndarray:
        """(audio_frames, num_filters) float32 log filterbank energies (python_speech_features.logfbank)."""
        signal = self._to_reference_scale(waveform)
        signal = np.append(signal[0], signal[1:] - self.preemphasis * signal[:-1])
        num_samples = len(signal)
        if num_samples <= self.window_length:
            num_frames = 1
        else:
            num_frames = 1 + int(math.ceil((num_samples - self.window_length) / self.hop_length))
        padded_length = (num_frames - 1) * self.hop_length + self.window_length
        signal = np.concatenate([signal, np.zeros(padded_length - num_samples)])
        starts = np.arange(num_frames)[:, None] * self.hop_length
        frames = signal[starts + np.arange(self.window_length)[None, :]]  # (frames, window_length); rectangular window
        power = np.square(np.abs(np.fft.rfft(frames, self.n_fft))) / self.n_fft
        filters = mel_filterbank(self.num_filters, self.n_fft, self.sampling_rate, self.low_freq, self.high_freq)
        energies = power @ filters.T
        energies = np.where(energies == 0, _FLOAT_EPS, energies)
        return np.log(energies).astype(np.float32)

    def stack_frames(self, filterbank: np.ndarray) -> np.ndarray:
        """(audio_frames, F) -> (ceil(audio_frames / stack_order), stack_order * F), zero sub-frames at the end."""
        remainder = len(filterbank) % self.stack_order
        if remainder:
            padding = np.zeros((self.stack_order - remainder, filterbank.shape[1]), dtype=filterbank.dtype)
            filterbank = np.concatenate([filterbank, padding], axis=0)
        return filterbank.reshape(-1, self.stack_order * filterbank.shape[1])  # frame-major rows

    @staticmethod
    def align_to_video(features: np.ndarray, num_video_frames: int) -> np.ndarray:
        """Reference alignment: append zero rows or drop the last rows so there is one row per video frame."""
        difference = len(features) - num_video_frames
        if difference < 0:
            return np.concatenate([features, np.zeros((-difference, features.shape[1]), dtype=features.dtype)])
        return features[:num_video_frames]

    def stacked_features(self, waveform, num_video_frames: int | None = None) -> np.ndarray:
        """(rows, feature_size) stacked log filterbanks before normalisation, aligned when a frame count is given."""
        features = self.stack_frames(self.log_filterbank(waveform))
        if num_video_frames is not None:
            features = self.align_to_video(features, int(num_video_frames))
        return features

    # Copied from talkface.networks.wav2lip_audio.Wav2LipMelFeatures.num_video_frames
    def num_video_frames(self, num_samples: int, fps: float | None = None) -> int:
        """Video frames needed to cover `num_samples` of audio (rounded up, so no audio is left uncovered)."""
        return max(1, math.ceil(num_samples * (fps or self.fps) / self.sampling_rate - 1e-9))

    def num_video_frames_for(self, num_samples: int) -> int:
        """Feature rows the audio alone gives: ceil(audio frames / stack_order)."""
        audio_frames = 1 if num_samples <= self.window_length else 1 + math.ceil(
            (num_samples - self.window_length) / self.hop_length
        )
        return math.ceil(audio_frames / self.stack_order)

    def __call__(
        self,
        raw_speech,
        sampling_rate: int | None = None,
        num_video_frames=None,
        return_tensors: str | None = "pt",
    ) -> BatchFeature:
        """Features of one waveform or a list of waveforms.

        Args:
            raw_speech: 1-D array/tensor (float in [-1, 1], or int16), or a list of them.
            sampling_rate: the audio's rate; must equal `self.sampling_rate` (pass it to avoid silent errors).
            num_video_frames: int (or one int per waveform): align the features to the video length.
            return_tensors: "pt" (default) or "np".

        Returns:
            `BatchFeature` with `audio_features` (batch, feature_size, frames) float32 and `padding_mask`
            (batch, frames) bool, True at rows added to pad a shorter item to the longest one.
        """
        if sampling_rate is not None and int(sampling_rate) != self.sampling_rate:
            raise AVHubertInputError(
                f"audio at {sampling_rate} Hz but AV-HuBERT expects {self.sampling_rate} Hz; resample it first "
                f"(e.g. ffmpeg -ar {self.sampling_rate})"
            )
        is_batch = isinstance(raw_speech, (list, tuple))
        waveforms = list(raw_speech) if is_batch else [raw_speech]
        if not waveforms:
            raise AVHubertInputError("no waveforms given")
        if num_video_frames is None or isinstance(num_video_frames, (int, np.integer)):
            frame_counts = [num_video_frames] * len(waveforms)
        else:
            frame_counts = list(num_video_frames)
            if len(frame_counts) != len(waveforms):
                raise ValueError(f"got {len(waveforms)} waveforms but {len(frame_counts)} video frame counts")

        rows = []
        for waveform, count in zip(waveforms, frame_counts):
            features = torch.from_numpy(self.stacked_features(waveform, count))  # (frames, feature_size)
            if self.normalize:
                # per-row layer norm over the stacked filterbank, as the reference dataset does in float32
                features = F.layer_norm(features, features.shape[1:], eps=self.layer_norm_eps)
            rows.append(features)
        longest = max(len(features) for features in rows)
        audio_features = torch.zeros(len(rows), self.feature_size, longest)
        padding_mask = torch.ones(len(rows), longest, dtype=torch.bool)
        for index, features in enumerate(rows):
            audio_features[index, :, : len(features)] = features.T
            padding_mask[index, : len(features)] = False
        data = {"audio_features": audio_features, "padding_mask": padding_mask}
        if return_tensors == "np":
            data = {key: value.numpy() for key, value in data.items()}
        elif return_tensors not in (None, "pt"):
            raise ValueError(f"return_tensors must be 'pt' or 'np', got {return_tensors!r}")
        return BatchFeature(data=data)

    # -- video ------------------------------------------------------------------------------------------------------

    def normalize_mouth_frames(self, mouth_frames):
        """The reference eval transform with this extractor's crop size, mean and std (saved with the weights).

        Runs `talkface.faces.mouth_roi.normalize_mouth_rois`, the one implementation (numpy in -> float32 computed in
        float64 like the reference; torch in -> differentiable tensor).
        """
        _check_mouth_size(mouth_frames, self.image_crop_size)
        return normalize_mouth_rois(mouth_frames, self.image_crop_size, self.image_mean, self.image_std)

    def prepare_video(self, mouth_frames) -> torch.Tensor:
        """Mouth crops (frames, H, W) or (batch, frames, H, W), 0..255 -> model input (batch, 1, frames, 88, 88)."""
        frames = self.normalize_mouth_frames(mouth_frames)
        if not isinstance(frames, torch.Tensor):
            frames = torch.from_numpy(frames)
        if frames.dim() == 3:
            frames = frames.unsqueeze(0)
        if frames.dim() != 4:
            raise ValueError(
                f"expected (frames, H, W) or (batch, frames, H, W) mouth crops, got {tuple(frames.shape)}"
            )
        return frames.unsqueeze(1)  # (batch, 1, frames, crop, crop)


__all__ = ["AVHubertFeatureExtractor", "normalize_mouth_frames", "AVHubertInputError"]
