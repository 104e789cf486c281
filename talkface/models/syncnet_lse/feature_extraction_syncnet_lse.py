"""Preprocessing of SyncNet LSE inputs: MFCC windows from int16 audio and BGR 0..255 frame windows.

The recipe is syncnet_python's `SyncNetInstance.evaluate`: `python_speech_features.mfcc` with its defaults on the
**int16-scaled** signal (a float signal in [-1, 1] shifts coefficient 0, the log energy, by 2 ln 32768), four MFCC
frames per video frame at 25 fps, and frames fed as BGR floats in 0..255 without mean/std, resized to 224 x 224.
"""

import numpy as np
import torch
from transformers.feature_extraction_utils import FeatureExtractionMixin

from ...hub.mixin import FeatureExtractorHubMixin
from ...errors import MediaError


class SyncNetLSEFeatureExtractor(FeatureExtractorHubMixin, FeatureExtractionMixin):
    r"""
    Args:
        sampling_rate (`int`, defaults to 16000): audio sample rate the MFCCs are computed at.
        fps (`float`, defaults to 25.0): video frame rate the model was trained at.
        num_cepstral (`int`, defaults to 13): MFCC coefficients (`numcep`).
        num_filters (`int`, defaults to 26): mel filters (`nfilt`).
        fft_size (`int`, defaults to 512): FFT size (`nfft`).
        window_length (`float`, defaults to 0.025): analysis window in seconds (`winlen`, rectangular window).
        window_step (`float`, defaults to 0.01): hop in seconds (`winstep`), so 100 MFCC frames per second.
        preemphasis (`float`, defaults to 0.97): pre-emphasis coefficient (`preemph`).
        cepstral_lifter (`int`, defaults to 22): liftering coefficient (`ceplifter`).
        append_energy (`bool`, defaults to `True`): replace coefficient 0 by the log frame energy (`appendEnergy`).
        audio_window (`int`, defaults to 20): MFCC frames per audio window (0.2 s).
        video_window (`int`, defaults to 5): video frames per window (0.2 s).
        image_size (`int`, defaults to 224): side the face frames are resized to.
        channel_order (`str`, defaults to `"bgr"`): colour order the *network* expects (it was trained on cv2
            frames). Inputs are RGB (`pixel_values(frames, channel_order="rgb")`) and converted to it.
    """

    card_preprocessing = "mfcc"  # the model card preprocessing table these defaults fill

    model_input_names = ["pixel_values", "input_features"]

    def __init__(
        self,
        sampling_rate=16000,
        fps=25.0,
        num_cepstral=13,
        num_filters=26,
        fft_size=512,
        window_length=0.025,
        window_step=0.01,
        preemphasis=0.97,
        cepstral_lifter=22,
        append_energy=True,
        audio_window=20,
        video_window=5,
        image_size=224,
        channel_order="bgr",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.sampling_rate = sampling_rate
        self.fps = fps
        self.num_cepstral = num_cepstral
        self.num_filters = num_filters
        self.fft_size = fft_size
        self.window_length = window_length
        self.window_step = window_step
        self.preemphasis = preemphasis
        self.cepstral_lifter = cepstral_lifter
        self.append_energy = append_energy
        self.audio_window = audio_window
        self.video_window = video_window
        self.image_size = image_size
        self.channel_order = channel_order
        if channel_order not in ("bgr", "rgb"):
            raise ValueError(f"channel_order must be 'bgr' or 'rgb', got {channel_order!r}")
        ratio = 1.0 / (window_step * fps)
        if abs(ratio - round(ratio)) > 1e-6:
            raise ValueError(
                f"window_step={window_step} and fps={fps} give {ratio:.3f} MFCC frames per video frame; "
                "it must be an integer"
            )

    @property
    def mfcc_frames_per_video_frame(self) -> int:
        """4 at 100 MFCC frames/s and 25 fps: video window i reads MFCC frames [4i, 4i + 20)."""
        return round(1.0 / (self.window_step * self.fps))

    @property
    def samples_per_video_frame(self) -> float:
        """640 at 16 kHz and 25 fps; the reference counts floor(samples / 640) video frames of audio."""
        return self.sampling_rate / self.fps

    def num_windows(self, num_frames: int, num_samples: int) -> int:
        """Windows the reference scores: min(frames, floor(samples / 640)) - video_window (may be <= 0)."""
        covered = min(num_frames, int(num_samples // self.samples_per_video_frame))
        return covered - self.video_window

    def mfcc(self, audio: np.ndarray, sampling_rate: int | None = None) -> np.ndarray:
        """MFCCs (num_cepstral, mfcc_frames) of a mono signal. Pass int16 samples (or floats on the int16 scale)."""
        from python_speech_features import mfcc

        if sampling_rate is not None and sampling_rate != self.sampling_rate:
            raise MediaError(
                f"audio is sampled at {sampling_rate} Hz but SyncNet expects {self.sampling_rate} Hz; resample it "
                "first (talkface's media loader does this when asked for 16000 Hz)"
            )
        audio = np.asarray(audio)
        if audio.ndim != 1:
            raise MediaError(f"audio must be mono (samples,), got shape {audio.shape}; mix it down first")
        if np.issubdtype(audio.dtype, np.floating) and audio.size and np.abs(audio).max() <= 1.0:
            # A float signal in [-1, 1] would shift the log-energy coefficient by 2 ln 32768 = 20.79.
            raise MediaError(
                "audio looks like floats in [-1, 1]; SyncNet needs int16-scaled samples (multiply by 32768)")
        features = mfcc(
            audio,
            samplerate=self.sampling_rate,
            winlen=self.window_length,
            winstep=self.window_step,
            numcep=self.num_cepstral,
            nfilt=self.num_filters,
            nfft=self.fft_size,
            preemph=self.preemphasis,
            ceplifter=self.cepstral_lifter,
            appendEnergy=self.append_energy,
        )
        return np.ascontiguousarray(features.T.astype(np.float32))  # (num_cepstral, mfcc_frames)

    def audio_windows(self, mfcc: np.ndarray | torch.Tensor, num_windows: int) -> torch.Tensor:
        """MFCC windows (num_windows, 1, num_cepstral, audio_window); window i reads frames [4i, 4i + 20)."""
        mfcc = torch.as_tensor(mfcc, dtype=torch.float32)
        step = self.mfcc_frames_per_video_frame
        needed = (num_windows - 1) * step + self.audio_window
        if num_windows < 1 or mfcc.shape[1] < needed:
            raise ValueError(f"{num_windows} windows need {needed} MFCC frames, got {mfcc.shape[1]}")
        windows = mfcc[:, :needed].unfold(1, self.audio_window, step)  # (num_cepstral, num_windows, audio_window)
        return windows.permute(1, 0, 2).unsqueeze(1).contiguous()  # (num_windows, 1, num_cepstral, audio_window)

    def pixel_values(self, frames: np.ndarray, channel_order: str = "rgb") -> torch.Tensor:
        """Face frames (frames, H, W, 3) uint8 -> (1, 3, frames, image_size, image_size) float32 in 0..255.

        `channel_order` is the order of `frames`: RGB by default, as everywhere in talkface; they are converted to
        the order the network expects (`self.channel_order`, BGR for the released weights).

        Frames that are not image_size x image_size are resized with bilinear interpolation (cv2 INTER_LINEAR),
        as the Wav2Lip evaluation script does.
        """
        import cv2

        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise MediaError(f"frames must have shape (frames, height, width, 3), got {frames.shape}")
        if channel_order != self.channel_order:
            frames = frames[..., ::-1]
        size = self.image_size
        if frames.shape[1:3] != (size, size):
            frames = np.stack([cv2.resize(np.ascontiguousarray(f), (size, size)) for f in frames])
        video = torch.from_numpy(np.ascontiguousarray(frames)).to(torch.float32)  # (frames, size, size, 3)
        return video.permute(3, 0, 1, 2).unsqueeze(0)  # (1, 3, frames, size, size)
