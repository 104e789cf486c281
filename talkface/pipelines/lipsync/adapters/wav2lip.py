"""`LipSyncGenerator` adapter for Wav2Lip (model_type "wav2lip"): RGB faces in, Wav2Lip's BGR network in the middle.

Start-up (issue 14): a local folder written by `talkface convert wav2lip` (config.json + model.safetensors) is loaded
into `talkface.networks.wav2lip.Wav2LipNetwork`, the same layers, state dict and outputs as `Wav2LipModel` without
importing transformers or `talkface.models` (which registers every model folder: seconds of imports); its mel
parameters are read into `Wav2LipMelFeatures`, the numpy base of `TalkingFaceAudioFeatureExtractor`. Anything else
(a Hub id, sharded or non-float32 weights, loading options, an old or unusual config) goes through
`Wav2LipModel.from_pretrained` as before.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ....errors import ModelLoadError
from ....networks.wav2lip import load_wav2lip_network
from ....networks.wav2lip_audio import Wav2LipMelFeatures
from ..generator import LipSyncGenerator, PreparedAudio, register_generator

logger = logging.getLogger(__name__)


@register_generator("wav2lip")
class Wav2LipGenerator(LipSyncGenerator):
    """Wav2Lip behind the pipeline interface.

    `prepare_audio` computes the mel spectrogram of the whole utterance once and stacks every video frame's 16-step
    window, (frames, 1, 80, 16). `generate` flips the pipeline's RGB faces to BGR, stacks masked + reference frames
    into the 6-channel input, runs the network and flips the result back to RGB.
    """

    frames_per_step = 1
    per_frame_audio = True  # one mel window per face, every face on its own: files may share a call

    def __init__(self, model, feature_extractor: Wav2LipMelFeatures | None = None):
        """model: a `Wav2LipModel` or a `Wav2LipNetwork`; feature_extractor: a `TalkingFaceAudioFeatureExtractor`
        or a `Wav2LipMelFeatures` (the standard Wav2Lip mel parameters when None)."""
        super().__init__(model, feature_extractor or Wav2LipMelFeatures())
        self.img_size = model.config.image_size

    @classmethod
    def from_pretrained(cls, path_or_repo_id, device=None, dtype=None, **kwargs) -> "Wav2LipGenerator":
        generator = None if kwargs else cls._load_plain(path_or_repo_id)
        if generator is None:
            generator = cls._load_transformers(path_or_repo_id, **kwargs)
        if device is not None or dtype is not None:
            generator.to(device=device, dtype=dtype)
        return generator

    @classmethod
    def _load_plain(cls, path_or_repo_id) -> "Wav2LipGenerator | None":
        """The generator of a local converted folder without transformers, or None (see the module docstring)."""
        folder = Path(path_or_repo_id)
        preprocessor = folder / "preprocessor_config.json"
        if not (folder.is_dir() and preprocessor.is_file()):
            return None
        network = load_wav2lip_network(folder)
        if network is None:
            return None
        try:
            feature_extractor = Wav2LipMelFeatures.from_json_file(preprocessor)
        except (OSError, TypeError, ValueError):
            return None  # from_pretrained reports a bad preprocessor_config.json its own way
        logger.debug("%s: loaded into the plain Wav2LipNetwork (no transformers)", folder)
        return cls(network, feature_extractor)

    @classmethod
    def _load_transformers(cls, path_or_repo_id, **kwargs) -> "Wav2LipGenerator":
        from ....models.wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor
        from ....models.wav2lip.modeling_wav2lip import Wav2LipModel

        try:
            model = Wav2LipModel.from_pretrained(path_or_repo_id, **kwargs)
        except OSError as err:
            raise ModelLoadError(
                f"cannot load a Wav2Lip model from {path_or_repo_id} ({str(err).splitlines()[0][:200]}); "
                "pass a folder made by `talkface convert wav2lip` or a Hub id"
            ) from err
        try:
            feature_extractor = TalkingFaceAudioFeatureExtractor.from_pretrained(path_or_repo_id)
        except OSError:
            logger.warning("%s has no preprocessor_config.json; using the standard Wav2Lip mel parameters",
                           path_or_repo_id)
            feature_extractor = TalkingFaceAudioFeatureExtractor(num_mel_bins=model.config.num_mel_bins,
                                                                 mel_step_size=model.config.mel_step_size)
        return cls(model, feature_extractor)

    def prepare_audio(self, waveform: np.ndarray, sampling_rate: int, fps: float) -> PreparedAudio:
        mel = self.feature_extractor.mel_spectrogram(waveform, sampling_rate=sampling_rate)
        num_frames = self.num_video_frames(np.asarray(waveform).shape[0], fps)
        windows = self.feature_extractor.frame_mel_chunks(mel, fps=fps, num_frames=num_frames)
        return PreparedAudio(per_frame=torch.from_numpy(windows), num_frames=num_frames, fps=fps)

    @torch.no_grad()
    def generate(self, masked_faces: torch.Tensor, reference_faces: torch.Tensor, audio: PreparedAudio,
                 frame_indices: torch.Tensor) -> torch.Tensor:
        device, dtype = self.device, self.dtype
        mel_chunks = audio.per_frame[frame_indices.cpu()].to(device=device, dtype=dtype)  # (batch, 1, mels, steps)
        # RGB -> BGR on the channel axis; then (batch, 6, H, W): masked target frame first, reference second
        masked_and_reference = torch.cat((masked_faces.flip(1), reference_faces.flip(1)), dim=1)
        masked_and_reference = masked_and_reference.to(device=device, dtype=dtype)
        generated_bgr = self.model(masked_and_reference_faces=masked_and_reference,
                                   mel_chunks=mel_chunks).generated_faces
        return generated_bgr.flip(1).float()  # (batch, 3, H, W) RGB


__all__ = ["Wav2LipGenerator"]
