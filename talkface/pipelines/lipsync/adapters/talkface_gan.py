"""`LipSyncGenerator` adapter of `TalkFaceModel` (model_type "talkface"): `LipSyncPipeline` drives our generator.

TalkFaceModel works directly in the interface's convention (RGB in [0, 1]); this adapter only turns the utterance
into per-frame mel windows (with the feature extractor saved beside the weights) and groups frames into the
k-frame passes the model was trained with, padding the last group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ..generator import LipSyncGenerator, PreparedAudio, register_generator

if TYPE_CHECKING:  # the model classes are imported when used: registering this adapter must stay light (issue 14)
    from ....models.talkface_gan.modeling_talkface_gan import TalkFaceModel
    from ....models.wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor


@register_generator("talkface")
class TalkFaceGenerator(LipSyncGenerator):
    """Runs `TalkFaceModel` for the pipeline, `frames_per_step` (= k) frames per pass."""

    per_frame_audio = True  # mel windows per frame; each k-frame group is generated on its own

    def __init__(self, model: TalkFaceModel, feature_extractor: TalkingFaceAudioFeatureExtractor | None = None):
        from ....models.wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor

        super().__init__(model, feature_extractor or TalkingFaceAudioFeatureExtractor())
        self.img_size = model.config.image_size
        self.frames_per_step = model.config.num_frames

    @classmethod
    def from_pretrained(cls, path_or_repo_id, **kwargs) -> "TalkFaceGenerator":
        from ....models.talkface_gan.modeling_talkface_gan import TalkFaceModel
        from ....models.wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor

        model = TalkFaceModel.from_pretrained(path_or_repo_id, **kwargs)
        try:
            feature_extractor = TalkingFaceAudioFeatureExtractor.from_pretrained(path_or_repo_id)
        except OSError:  # a folder without preprocessor_config.json: the Wav2Lip defaults the expert was trained on
            feature_extractor = TalkingFaceAudioFeatureExtractor()
        return cls(model, feature_extractor)

    def prepare_audio(self, waveform: np.ndarray, sampling_rate: int, fps: float) -> PreparedAudio:
        mel = self.feature_extractor.mel_spectrogram(waveform, sampling_rate=sampling_rate)
        num_frames = self.num_video_frames(np.asarray(waveform).shape[0], fps)
        windows = self.feature_extractor.frame_mel_chunks(mel, fps=fps, num_frames=num_frames)
        return PreparedAudio(per_frame=torch.from_numpy(windows), num_frames=num_frames, fps=fps)

    @torch.no_grad()
    def generate(self, masked_faces, reference_faces, audio: PreparedAudio, frame_indices) -> torch.Tensor:
        num_faces = masked_faces.shape[0]
        if reference_faces.shape != masked_faces.shape or frame_indices.shape != (num_faces,):
            raise ValueError(
                f"masked_faces {tuple(masked_faces.shape)}, reference_faces {tuple(reference_faces.shape)} and "
                f"frame_indices {tuple(frame_indices.shape)} must describe the same {num_faces} faces"
            )
        k = self.frames_per_step
        # the model sees k-frame groups; pad the batch to a multiple of k by repeating its last face
        padding = (-num_faces) % k
        indices = frame_indices.long()
        if padding:
            masked_faces = torch.cat([masked_faces, masked_faces[-1:].expand(padding, -1, -1, -1)])
            reference_faces = torch.cat([reference_faces, reference_faces[-1:].expand(padding, -1, -1, -1)])
            indices = torch.cat([indices, indices[-1:].expand(padding)])
        mel_chunks = audio.per_frame[indices.cpu()].to(device=self.device, dtype=self.dtype)
        face_groups = (-1, k, *masked_faces.shape[1:])  # (batch, k, 3, size, size)
        generated = self.model(
            reference_frames=reference_faces.to(self.device, self.dtype).reshape(face_groups),
            masked_frames=masked_faces.to(self.device, self.dtype).reshape(face_groups),
            mel_chunks=mel_chunks.reshape(-1, k, *mel_chunks.shape[1:]),  # (batch, k, 1, 80, 16)
            return_dict=True,
        ).generated_frames
        return generated.reshape(-1, *generated.shape[2:])[:num_faces].float().clamp(0, 1)


__all__ = ["TalkFaceGenerator"]
