"""`LipSyncGenerator` adapter for TalkLip (model_type "talklip"): the global audio encoder runs once per utterance.

Audio (global encoder), in `prepare_audio`:

1. AV-HuBERT features of the whole utterance at their native rate (`AVHubertFeatureExtractor.fps`, 25 Hz: log
   filterbanks stacked by 4), one row per 40 ms.
2. Aligned to the native-rate frame count the audio covers (the extractor's `num_video_frames`,
   `ceil(seconds * 25)`), the way TalkLip's inference script does (inf_test.py): surplus rows are trimmed
   *centred* (half at each end, the extra one at the end); missing rows are zeros appended at the end
   (AV-HuBERT's convention). Then each row is layer-normalised.
3. The encoder runs once (audio only; final layer after the final LayerNorm) and `audio_map` turns every row into
   a 512-d decoder embedding. Utterances longer than `max_chunk_seconds` are encoded in overlapping chunks whose
   central rows (with 4 s of context on each side, except at the utterance ends) are kept, since attention cost
   grows with the square of the length.
4. Output video frame i (at any fps) takes the row of the 40 ms interval containing its centre,
   `floor((i + 0.5) * 25 / fps)`; the output has the generator's `num_video_frames` at that fps. At 25 fps this
   is row i; the video is never resampled to 25 fps for this (the pipeline writes its own fps), so at other
   rates rows are repeated (fps > 25) or skipped (fps < 25).

`PreparedAudio.per_frame` is (frames, 512): the embeddings after `audio_map`. Local-encoder TalkLip models get
per-frame mel windows, as Wav2Lip.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ....errors import ModelLoadError
from ..generator import LipSyncGenerator, PreparedAudio, register_generator

if TYPE_CHECKING:  # imported when used: registering this adapter must stay light (start-up, issue 14)
    from ....models.talklip.modeling_talklip import TalkLipModel

logger = logging.getLogger(__name__)

DEFAULT_MAX_CHUNK_SECONDS = 60.0
CHUNK_CONTEXT_SECONDS = 4.0


def align_rows_centered(features: np.ndarray, num_rows: int) -> np.ndarray:
    """TalkLip inference alignment: trim surplus rows half at the start, half (+1) at the end; pad zeros at the end."""
    difference = len(features) - num_rows
    if difference > 0:
        left = difference // 2
        return features[left: left + num_rows]
    if difference < 0:
        return np.concatenate([features, np.zeros((-difference, features.shape[1]), dtype=features.dtype)])
    return features


def video_frame_rows(num_frames: int, fps: float, num_rows: int, feature_rate: float):
    """Row of the `feature_rate` (Hz) feature sequence for each video frame: the interval containing its centre."""
    rows = np.floor((np.arange(num_frames) + 0.5) * feature_rate / fps).astype(np.int64)
    return np.clip(rows, 0, num_rows - 1)


@register_generator("talklip")
class TalkLipGenerator(LipSyncGenerator):
    """TalkLip behind the pipeline interface (RGB faces in and out; the network works in BGR).

    Args:
        model: a `TalkLipModel`.
        feature_extractor: `AVHubertFeatureExtractor` (global encoder) or `TalkingFaceAudioFeatureExtractor`
            (local encoder); the default matches the model.
        max_chunk_seconds: longest audio encoded in one pass by the global encoder (see the module docstring).
        chunk_context_seconds: context kept on each side of a chunk's central rows.
    """

    frames_per_step = 1
    # the utterance-level audio encoder runs in prepare_audio, once per file; generate takes one embedding (or mel
    # window) row per face, every face on its own: files may share a call
    per_frame_audio = True

    def __init__(self, model: TalkLipModel, feature_extractor=None,
                 max_chunk_seconds: float = DEFAULT_MAX_CHUNK_SECONDS,
                 chunk_context_seconds: float = CHUNK_CONTEXT_SECONDS):
        if feature_extractor is None:
            from ....models.talklip.convert_talklip_original_checkpoint import feature_extractor_for

            feature_extractor = feature_extractor_for(model.config)
        super().__init__(model, feature_extractor)
        self.img_size = model.config.image_size
        if max_chunk_seconds <= 2 * chunk_context_seconds or chunk_context_seconds < 0:
            raise ValueError(f"max_chunk_seconds={max_chunk_seconds} must exceed twice chunk_context_seconds="
                             f"{chunk_context_seconds} (the context kept on each side of a chunk)")
        self.max_chunk_seconds = float(max_chunk_seconds)
        self.chunk_context_seconds = float(chunk_context_seconds)

    @classmethod
    def from_pretrained(cls, path_or_repo_id, device=None, dtype=None, max_chunk_seconds=DEFAULT_MAX_CHUNK_SECONDS,
                        chunk_context_seconds=CHUNK_CONTEXT_SECONDS, **kwargs) -> "TalkLipGenerator":
        from ....models.talklip.modeling_talklip import TalkLipModel

        try:
            model = TalkLipModel.from_pretrained(path_or_repo_id, **kwargs)
        except OSError as err:
            raise ModelLoadError(
                f"cannot load a TalkLip model from {path_or_repo_id} ({str(err).splitlines()[0][:200]}); "
                "pass a folder made by `talkface convert talklip` or a Hub id"
            ) from err
        if model.config.is_global:
            from ....models.avhubert.feature_extraction_avhubert import AVHubertFeatureExtractor as extractor_class
        else:
            from ....models.wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor as extractor_class
        try:
            feature_extractor = extractor_class.from_pretrained(path_or_repo_id)
        except OSError:
            logger.warning("%s has no preprocessor_config.json; using the standard %s parameters", path_or_repo_id,
                           extractor_class.__name__)
            feature_extractor = None
        generator = cls(model, feature_extractor, max_chunk_seconds=max_chunk_seconds,
                        chunk_context_seconds=chunk_context_seconds)
        if device is not None or dtype is not None:
            generator.to(device=device, dtype=dtype)
        return generator

    # -- audio ------------------------------------------------------------------------------------------------------

    def audio_features(self, waveform: np.ndarray, sampling_rate: int) -> torch.Tensor:
        """(rows, 104) normalised AV-HuBERT features of the whole utterance, centre-aligned to its 25 Hz frames."""
        extractor = self.feature_extractor
        if int(sampling_rate) != extractor.sampling_rate:
            from ....models.avhubert.feature_extraction_avhubert import AVHubertInputError

            raise AVHubertInputError(f"audio at {sampling_rate} Hz but TalkLip expects {extractor.sampling_rate} Hz; "
                                     f"resample it first (e.g. ffmpeg -ar {extractor.sampling_rate})")
        num_rows = extractor.num_video_frames(len(waveform))  # rows at the features' native rate
        rows = align_rows_centered(extractor.stacked_features(waveform), num_rows)
        features = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))  # (rows, 104)
        if extractor.normalize:
            features = F.layer_norm(features, features.shape[1:], eps=extractor.layer_norm_eps)
        return features

    @torch.no_grad()
    def encode_utterance(self, features: torch.Tensor) -> torch.Tensor:
        """(rows, 104) -> (rows, hidden_size) decoder embeddings, in overlapping chunks for long utterances."""
        device, dtype = self.device, self.dtype
        num_rows = features.shape[0]
        feature_rate = self.feature_extractor.fps  # rows per second
        chunk = int(self.max_chunk_seconds * feature_rate)
        context = int(self.chunk_context_seconds * feature_rate)
        core = chunk - 2 * context
        if num_rows <= chunk:
            spans = [(0, num_rows)]
        else:
            spans = [(start, min(num_rows, start + core)) for start in range(0, num_rows, core)]
        embeddings = []
        for start, stop in spans:
            window_start, window_stop = max(0, start - context), min(num_rows, stop + context)
            window = features[window_start:window_stop].T[None].to(device=device, dtype=dtype)  # (1, 104, rows)
            hidden = self.model.encode_audio(window)[0]  # (rows, D)
            embeddings.append(self.model.project_audio(hidden[start - window_start: stop - window_start]))
        return torch.cat(embeddings).float().cpu()

    def prepare_audio(self, waveform: np.ndarray, sampling_rate: int, fps: float) -> PreparedAudio:
        waveform = np.asarray(waveform)
        num_frames = self.num_video_frames(len(waveform), fps)
        if not self.model.config.is_global:
            extractor = self.feature_extractor
            mel = extractor.mel_spectrogram(waveform, sampling_rate=sampling_rate)
            windows = extractor.frame_mel_chunks(mel, fps=fps, num_frames=num_frames)
            return PreparedAudio(per_frame=torch.from_numpy(windows), num_frames=num_frames, fps=fps)
        embeddings = self.encode_utterance(self.audio_features(waveform, sampling_rate))  # (rows, hidden_size)
        rows = video_frame_rows(num_frames, fps, embeddings.shape[0], feature_rate=self.feature_extractor.fps)
        return PreparedAudio(per_frame=embeddings[torch.from_numpy(rows)], num_frames=num_frames, fps=fps)

    # -- faces ------------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, masked_faces: torch.Tensor, reference_faces: torch.Tensor, audio: PreparedAudio,
                 frame_indices: torch.Tensor) -> torch.Tensor:
        device, dtype = self.device, self.dtype
        conditioning = audio.per_frame[frame_indices.cpu()].to(device=device, dtype=dtype)
        # RGB -> BGR on the channel axis; then (batch, 6, H, W): masked target frame first, reference second
        masked_and_reference = torch.cat((masked_faces.flip(1), reference_faces.flip(1)), dim=1)
        masked_and_reference = masked_and_reference.to(device=device, dtype=dtype)  # (N, 6, S, S) BGR
        if self.model.config.is_global:
            generated_bgr = self.model(masked_and_reference, audio_embeds=conditioning).generated_faces
        else:
            generated_bgr = self.model(masked_and_reference, mel_chunks=conditioning).generated_faces
        return generated_bgr.flip(1).float()  # (batch, 3, H, W) RGB


__all__ = ["TalkLipGenerator", "align_rows_centered", "video_frame_rows"]
