"""The Wav2Lip mel spectrogram and the per-video-frame mel windows, in numpy only (no transformers).

`Wav2LipMelFeatures` reproduces Wav2Lip's `audio.melspectrogram` (as run with librosa 0.7, which the
released models were trained with) in plain numpy, float64 throughout:

    pre-emphasis y[n] = x[n] - 0.97 x[n-1]
    -> |STFT| (n_fft 800, hop 200, periodic Hann window of 800, centred frames, REFLECT padding of n_fft // 2)
    -> 80 Slaney-scale mel bands, 55-7600 Hz, Slaney (area) normalisation
    -> 20 log10(max(1e-5, x)) - 20 dB
    -> clip(8 (S + 100) / 100 - 4, -4, 4)

The result has `1 + num_samples // hop_length` frames, 80 per second of 16 kHz audio. A video frame i at `fps` is
conditioned on the 16 mel frames (0.2 s) starting at `int(i * (mel_frames_per_second / fps))`; a window that would
run past the end is replaced by the last 16 frames (Wav2Lip `inference.py`).

librosa >= 0.10 pads the STFT with zeros (`pad_mode="constant"`) by default, which changes the first and last two
frames; `pad_mode="constant"` is available to reproduce that, but the released models expect "reflect".

The parameters are saved as `preprocessor_config.json` beside the model weights by the transformers feature
extractor built on this class, `talkface.models.wav2lip.TalkingFaceAudioFeatureExtractor`; the generation path
reads that file with `Wav2LipMelFeatures.from_json_file` without importing transformers (issue 14, start-up).
"""

import json
import logging
import math
import warnings

import numpy as np

from ..errors import MediaError, TalkFaceUserError

logger = logging.getLogger(__name__)

PAD_MODES = ("reflect", "constant")


class SamplingRateMismatchError(TalkFaceUserError, ValueError):
    """Audio given at a sampling rate other than the one the feature extractor (and model) expects."""


# --- Slaney mel scale (Malcolm Slaney's Auditory Toolbox; librosa's default with htk=False) ---------------------
# Linear below 1 kHz (3 mels per 200 Hz), logarithmic above (27 mels per factor 6.4).
_SLANEY_HZ_PER_MEL = 200.0 / 3.0
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_BREAK_MEL = _SLANEY_BREAK_HZ / _SLANEY_HZ_PER_MEL
_SLANEY_LOG_STEP = math.log(6.4) / 27.0


def hz_to_slaney_mel(frequencies):
    frequencies = np.asarray(frequencies, dtype=np.float64)
    mels = frequencies / _SLANEY_HZ_PER_MEL
    above = frequencies >= _SLANEY_BREAK_HZ
    mels = np.where(
        above,
        _SLANEY_BREAK_MEL + np.log(np.maximum(frequencies, _SLANEY_BREAK_HZ) / _SLANEY_BREAK_HZ) / _SLANEY_LOG_STEP,
        mels,
    )
    return mels


def slaney_mel_to_hz(mels):
    mels = np.asarray(mels, dtype=np.float64)
    frequencies = _SLANEY_HZ_PER_MEL * mels
    above = mels >= _SLANEY_BREAK_MEL
    return np.where(above, _SLANEY_BREAK_HZ * np.exp(_SLANEY_LOG_STEP * (mels - _SLANEY_BREAK_MEL)), frequencies)


def slaney_mel_filterbank(sampling_rate: int, n_fft: int, num_mel_bins: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular mel filters on the Slaney scale with area (slaney) normalisation: (num_mel_bins, 1 + n_fft // 2).

    The filters are stored as float32, as librosa does (`filters.mel(dtype=np.float32)`), so that the spectrogram
    matches the reference to the last bits; the rest of the computation is float64.
    """
    fft_frequencies = np.linspace(0.0, sampling_rate / 2.0, 1 + n_fft // 2)
    # num_mel_bins + 2 equally spaced points on the mel scale: filter i rises from edge i to i+1 and falls to i+2
    band_edges_hz = slaney_mel_to_hz(np.linspace(hz_to_slaney_mel(fmin), hz_to_slaney_mel(fmax), num_mel_bins + 2))
    edge_spacing = np.diff(band_edges_hz)
    offsets = band_edges_hz[:, None] - fft_frequencies[None, :]  # (num_mel_bins + 2, num_fft_bins)
    filters = np.zeros((num_mel_bins, fft_frequencies.size), dtype=np.float32)
    for band in range(num_mel_bins):
        rising = -offsets[band] / edge_spacing[band]
        falling = offsets[band + 2] / edge_spacing[band + 1]
        filters[band] = np.maximum(0.0, np.minimum(rising, falling))
    # area normalisation: each filter integrates to (roughly) the same energy whatever its width
    area_norm = 2.0 / (band_edges_hz[2 : num_mel_bins + 2] - band_edges_hz[:num_mel_bins])
    filters *= area_norm[:, None]
    return filters


def periodic_hann_window(length: int) -> np.ndarray:
    """The 'periodic' (DFT-even) Hann window used by STFTs (scipy `get_window('hann', N, fftbins=True)`)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


class Wav2LipMelFeatures:
    r"""Wav2Lip's mel spectrogram and its per-video-frame windows.

    Args:
        sampling_rate (`int`, defaults to 16000): sampling rate the audio must have, in Hz.
        n_fft (`int`, defaults to 800): FFT size (50 ms at 16 kHz).
        hop_length (`int`, defaults to 200): samples between STFT frames (12.5 ms, i.e. 80 mel frames per second).
        win_length (`int`, defaults to 800): Hann window length; zero-padded to `n_fft` when shorter.
        num_mel_bins (`int`, defaults to 80): number of mel bands.
        fmin (`float`, defaults to 55.0) / fmax (`float`, defaults to 7600.0): frequency range of the mel bands.
        preemphasis (`float`, defaults to 0.97): pre-emphasis coefficient k in y[n] = x[n] - k x[n-1]; 0 disables.
        pad_mode (`str`, defaults to `"reflect"`): how the signal is padded by n_fft // 2 on each side so that STFT
            frames are centred: "reflect" (librosa 0.7, what the released Wav2Lip models saw) or "constant" (zeros,
            librosa >= 0.10's default).
        min_level_db (`float`, defaults to -100.0): floor of the dB scale; amplitudes below 10^(min_level_db / 20)
            are clamped.
        ref_level_db (`float`, defaults to 20.0): reference level subtracted from the dB values.
        max_abs_value (`float`, defaults to 4.0): the normalised spectrogram spans [-max_abs_value, max_abs_value]
            (symmetric normalisation, clipped).
        mel_step_size (`int`, defaults to 16): mel frames in the window that conditions one video frame (0.2 s).
        fps (`float`, defaults to 25.0): video frame rate the model was trained at; the default for `fps` arguments.
    """

    def __init__(
        self,
        sampling_rate: int = 16000,
        n_fft: int = 800,
        hop_length: int = 200,
        win_length: int = 800,
        num_mel_bins: int = 80,
        fmin: float = 55.0,
        fmax: float = 7600.0,
        preemphasis: float = 0.97,
        pad_mode: str = "reflect",
        min_level_db: float = -100.0,
        ref_level_db: float = 20.0,
        max_abs_value: float = 4.0,
        mel_step_size: int = 16,
        fps: float = 25.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in (("sampling_rate", sampling_rate), ("n_fft", n_fft), ("hop_length", hop_length),
                            ("win_length", win_length), ("num_mel_bins", num_mel_bins),
                            ("mel_step_size", mel_step_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if win_length > n_fft:
            raise ValueError(f"win_length must be <= n_fft ({n_fft}), got {win_length}")
        if not 0 <= fmin < fmax <= sampling_rate / 2:
            raise ValueError(
                f"fmin/fmax must satisfy 0 <= fmin < fmax <= sampling_rate / 2 ({sampling_rate / 2}), "
                f"got fmin={fmin}, fmax={fmax}"
            )
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        if not 0 <= preemphasis < 1:
            raise ValueError(f"preemphasis must be in [0, 1), got {preemphasis}")
        if min_level_db >= 0:
            raise ValueError(f"min_level_db must be negative, got {min_level_db}")
        if max_abs_value <= 0:
            raise ValueError(f"max_abs_value must be positive, got {max_abs_value}")
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.sampling_rate = sampling_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.win_length = win_length
        self.num_mel_bins = num_mel_bins
        self.fmin = float(fmin)
        self.fmax = float(fmax)
        self.preemphasis = float(preemphasis)
        self.pad_mode = pad_mode
        self.min_level_db = float(min_level_db)
        self.ref_level_db = float(ref_level_db)
        self.max_abs_value = float(max_abs_value)
        self.mel_step_size = mel_step_size
        self.fps = float(fps)
        self._mel_filters = None

    #: the constructor's arguments: the keys of preprocessor_config.json that this class reads
    PARAMETERS = ("sampling_rate", "n_fft", "hop_length", "win_length", "num_mel_bins", "fmin", "fmax", "preemphasis",
                  "pad_mode", "min_level_db", "ref_level_db", "max_abs_value", "mel_step_size", "fps")

    @classmethod
    def from_json_file(cls, path) -> "Wav2LipMelFeatures":
        """The parameters of a preprocessor_config.json (the keys in `PARAMETERS`; other keys, such as
        feature_extractor_type, are the transformers class's business and ignored here)."""
        with open(path, encoding="utf-8") as file:
            config = json.load(file)
        if not isinstance(config, dict):
            raise ValueError(f"{path} does not hold a JSON object")
        return cls(**{key: config[key] for key in cls.PARAMETERS if key in config})

    # --- derived constants --------------------------------------------------------------------------------------
    @property
    def mel_frames_per_second(self) -> float:
        """Mel frames per second of audio (80 for 16 kHz with hop 200)."""
        return self.sampling_rate / self.hop_length

    def mel_frames_per_video_frame(self, fps: float | None = None) -> float:
        """How far (in mel frames) the window moves from one video frame to the next (3.2 at 25 fps)."""
        return self.mel_frames_per_second / (fps or self.fps)

    @property
    def window_seconds(self) -> float:
        """Audio duration seen by one video frame (0.2 s)."""
        return self.mel_step_size / self.mel_frames_per_second

    @property
    def mel_filters(self) -> np.ndarray:
        if self._mel_filters is None:
            self._mel_filters = slaney_mel_filterbank(self.sampling_rate, self.n_fft, self.num_mel_bins,
                                                      self.fmin, self.fmax)
        return self._mel_filters

    # --- checks ---------------------------------------------------------------------------------------------------
    def _check_sampling_rate(self, sampling_rate):
        if sampling_rate is None:
            logger.warning(
                "No sampling_rate given to %s; assuming %d Hz. Pass sampling_rate to catch mismatched audio.",
                type(self).__name__, self.sampling_rate,
            )
        elif int(sampling_rate) != self.sampling_rate:
            raise SamplingRateMismatchError(
                f"audio is sampled at {sampling_rate} Hz but this model expects {self.sampling_rate} Hz; resample it "
                f"first (talkface.media loads audio at {self.sampling_rate} Hz mono)"
            )

    @staticmethod
    def _as_mono_float(waveform) -> np.ndarray:
        waveform = np.asarray(waveform)
        if waveform.ndim != 1:
            raise MediaError(
                f"expected a mono waveform (num_samples,), got shape {waveform.shape}; average the channels first"
            )
        if waveform.dtype == np.int16:
            return waveform.astype(np.float64) / 32768.0
        if not np.issubdtype(waveform.dtype, np.floating):
            raise MediaError(f"expected float or int16 samples, got {waveform.dtype}; convert the audio to float32")
        return waveform.astype(np.float64)

    # --- spectrogram ----------------------------------------------------------------------------------------------
    def mel_spectrogram(self, waveform, sampling_rate: int | None = None) -> np.ndarray:
        """Normalised mel spectrogram (num_mel_bins, 1 + num_samples // hop_length), float32 in [-4, 4]."""
        self._check_sampling_rate(sampling_rate)
        signal = self._as_mono_float(waveform)
        if signal.size == 0:
            raise MediaError("the audio is empty; give a recording with speech in it")
        if self.preemphasis:
            signal = np.concatenate([signal[:1], signal[1:] - self.preemphasis * signal[:-1]])

        half_window = self.n_fft // 2
        if self.pad_mode == "reflect" and signal.size <= half_window:
            raise MediaError(
                f"the audio is too short ({signal.size} samples); reflect padding needs more than {half_window}"
            )
        padded = np.pad(signal, half_window, mode=self.pad_mode)
        num_frames = 1 + (padded.size - self.n_fft) // self.hop_length
        # (num_frames, n_fft) strided view: frame t covers padded[t * hop : t * hop + n_fft]
        frames = np.lib.stride_tricks.sliding_window_view(padded, self.n_fft)[:: self.hop_length][:num_frames]
        window = np.zeros(self.n_fft)
        left = (self.n_fft - self.win_length) // 2  # a shorter window is centred inside the FFT frame
        window[left : left + self.win_length] = periodic_hann_window(self.win_length)
        magnitudes = np.abs(np.fft.rfft(frames * window, n=self.n_fft, axis=1)).T  # (1 + n_fft // 2, num_frames)

        mel = self.mel_filters @ magnitudes  # (num_mel_bins, num_frames), float64
        min_level = math.exp(self.min_level_db / 20.0 * math.log(10.0))
        decibels = 20.0 * np.log10(np.maximum(min_level, mel)) - self.ref_level_db
        scaled = (decibels - self.min_level_db) / -self.min_level_db  # [min_level_db, 0] dB -> [0, 1]
        normalised = 2.0 * self.max_abs_value * scaled - self.max_abs_value
        return np.clip(normalised, -self.max_abs_value, self.max_abs_value).astype(np.float32)

    # --- frame <-> mel arithmetic ---------------------------------------------------------------------------------
    def mel_chunk_start(self, frame_index: int, fps: float | None = None) -> int:
        """First mel frame of video frame `frame_index`'s chunk: int(i * (mel_frames_per_second / fps))."""
        return int(frame_index * self.mel_frames_per_video_frame(fps))

    def num_video_frames(self, num_samples: int, fps: float | None = None) -> int:
        """Video frames needed to cover `num_samples` of audio (rounded up, so no audio is left uncovered)."""
        return max(1, math.ceil(num_samples * (fps or self.fps) / self.sampling_rate - 1e-9))

    def frame_mel_chunks(self, mel: np.ndarray, fps: float | None = None,
                         num_frames: int | None = None) -> np.ndarray:
        """Stack the mel chunk of every video frame: `mel_chunks` (num_frames, 1, num_mel_bins, mel_step_size) float32.

        Chunk i starts at `mel_chunk_start(i, fps)`; a chunk that would run past the end of `mel` is replaced by
        the last `mel_step_size` frames. With `num_frames=None` the count is Wav2Lip inference's: chunks up to and
        including the first one that would overrun.
        """
        num_mel_frames = mel.shape[-1]
        if num_mel_frames < self.mel_step_size:
            raise MediaError(
                f"the audio is too short: {num_mel_frames} mel frames, at least {self.mel_step_size} "
                f"({self.window_seconds:.2f} s) are needed; give a longer recording"
            )
        last_start = num_mel_frames - self.mel_step_size
        if num_frames is None:
            starts = []
            while True:
                start = self.mel_chunk_start(len(starts), fps)
                if start > last_start:
                    starts.append(last_start)  # Wav2Lip appends the tail window and stops
                    break
                starts.append(start)
        else:
            if num_frames <= 0:
                raise ValueError(f"num_frames must be positive, got {num_frames}")
            starts = [min(self.mel_chunk_start(i, fps), last_start) for i in range(num_frames)]
        # (num_frames, num_mel_bins, mel_step_size): gather window columns for every frame at once
        columns = np.asarray(starts)[:, None] + np.arange(self.mel_step_size)[None, :]
        chunks = mel[:, columns].transpose(1, 0, 2)
        return np.ascontiguousarray(chunks[:, None], dtype=np.float32)  # (num_frames, 1, num_mel_bins, steps)

    def frame_mel_windows(self, mel: np.ndarray, fps: float | None = None, num_frames: int | None = None):
        """Former name of `frame_mel_chunks` (kept for one release, with a FutureWarning)."""
        warnings.warn("frame_mel_windows is now called frame_mel_chunks", FutureWarning, stacklevel=2)
        return self.frame_mel_chunks(mel, fps=fps, num_frames=num_frames)

    def mel_window_start(self, frame_index: int, fps: float | None = None) -> int:
        """Former name of `mel_chunk_start` (kept for one release, with a FutureWarning)."""
        warnings.warn("mel_window_start is now called mel_chunk_start", FutureWarning, stacklevel=2)
        return self.mel_chunk_start(frame_index, fps)


__all__ = ["PAD_MODES", "SamplingRateMismatchError", "Wav2LipMelFeatures", "hz_to_slaney_mel", "periodic_hann_window",
           "slaney_mel_filterbank", "slaney_mel_to_hz"]
