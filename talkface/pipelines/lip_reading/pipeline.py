"""Lip reading with AV-HuBERT: video -> transcript.

`LipReader` runs the reference recipe end to end: mouth crops from the face backend's landmarks
(`talkface.faces.mouth_roi`), the fine-tuned AV-HuBERT seq2seq model (`AVHubertForLipReading`) with beam search,
and the SentencePiece tokenizer that came with the checkpoint. Word error rates follow the reference: references
are lower-cased and round-tripped through the tokenizer, and the corpus WER is the total word edit distance over
the total number of reference words (`talkface.metrics.wer`).

    reader = LipReader.from_pretrained("path/to/avhubert-base-vox-433h")
    result = reader.transcribe("speaker.mp4")
    print(result.text)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...errors import MediaError, TalkFaceUserError
from ...faces.mouth_roi import MouthVideo, prepare_mouth_video

logger = logging.getLogger(__name__)

MODALITIES = ("video", "audio", "audiovisual")
DEFAULT_NUM_BEAMS = 5  # the reference decodes with beam 50 (s2s_decode.yaml); 5 is close and 10x cheaper
VIDEO_FPS = 25.0
#: a sound track whose loudest sample stays below this (-60 dBFS) is silence: the audio modalities hear nothing
SILENCE_PEAK = 10 ** (-60 / 20)


def modality_audio(audio, modality: str, sampling_rate: int = 16000):
    """The waveform the "audio" / "audiovisual" modalities hear (None for "video"), checked before any video work:
    a file without an audio stream, or whose sound track is silent, is a `MediaError` naming that cause and the
    fix (the lips alone: the video modality; or a file with sound). `audio`: a path or a 16 kHz waveform."""
    if modality == "video":
        return None
    flag = f"--modality {modality}"
    fix = "use --modality video (reading the lips alone) or a file with sound"
    if isinstance(audio, (str, Path)):
        from ...media import probe, read_audio

        if not probe(audio).has_audio:
            raise MediaError(f"{audio} has no audio stream, so {flag} has nothing to hear; {fix}")
        name, waveform = f"the sound track of {audio}", read_audio(audio, sampling_rate)
    else:
        name, waveform = "the audio given", np.asarray(audio, dtype=np.float32)
    if waveform.size == 0 or float(np.abs(waveform).max()) < SILENCE_PEAK:
        raise MediaError(f"{name} is silent (nothing above -60 dBFS), so {flag} has nothing to hear; {fix}")
    return waveform


@dataclass
class LipReadingResult:
    """Transcript of one video: text, token ids (without start/eos/pad), score (length-normalised log-prob)."""

    text: str
    token_ids: list
    score: float
    num_frames: int
    video: str | None = None
    timings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"video": self.video, "text": self.text, "score": self.score, "num_frames": self.num_frames}


def read_reference_text(value: str) -> str:
    """A reference transcript given as text, or as a file path (LRS2/LRS3 `.txt`: the text after "Text:")."""
    path = Path(value).expanduser()
    if len(value) < 4096 and path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        for line in lines:
            if line.startswith("Text:"):
                return line[len("Text:") :].strip()
        return " ".join(line.strip() for line in lines if line.strip())
    return value.strip()


class LipReader:
    """Transcribes videos with a fine-tuned AV-HuBERT.

    Args:
        model: an `AVHubertForLipReading` (eval mode).
        tokenizer: its `AVHubertTokenizer`.
        feature_extractor: its `AVHubertFeatureExtractor` (defaults to the reference preprocessing).
        face_backend: face backend name or object for the mouth crops.
        landmark_stride: detect landmarks on every n-th frame and interpolate between.
    """

    def __init__(self, model, tokenizer, feature_extractor=None, face_backend="mediapipe", landmark_stride: int = 1):
        from ...models.avhubert.feature_extraction_avhubert import AVHubertFeatureExtractor

        if not hasattr(model, "generate") or not hasattr(model, "decoder"):
            raise TalkFaceUserError(f"{type(model).__name__} cannot lip-read; load a fine-tuned AV-HuBERT "
                                    "(AVHubertForLipReading) folder")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor or AVHubertFeatureExtractor()
        self.face_backend = face_backend
        self.landmark_stride = landmark_stride

    @classmethod
    def from_pretrained(cls, path_or_id, device="cpu", **kwargs) -> "LipReader":
        """Load a lip-reading folder (or Hub id) made by `talkface convert avhubert` from a fine-tuned checkpoint."""
        from ...errors import ModelLoadError
        from ..loading import load_avhubert
        from ...models.avhubert.tokenization_avhubert import AVHubertTokenizer

        model, feature_extractor = load_avhubert(path_or_id, lip_reading=True, device=device)
        try:
            tokenizer = AVHubertTokenizer.from_pretrained(path_or_id)
        except ModelLoadError as err:
            raise ModelLoadError(f"{err}; re-run talkface convert avhubert on the fine-tuned checkpoint, which "
                                 "carries the tokenizer") from err
        return cls(model, tokenizer, feature_extractor, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _face_backend(self):
        if isinstance(self.face_backend, str):
            from ...faces.backends import get_face_backend

            self.face_backend = get_face_backend(self.face_backend)
        return self.face_backend

    def prepare_video(self, video) -> MouthVideo:
        """A path, (T, H, W, 3) uint8 RGB frames at 25 fps, or a `MouthVideo`."""
        if isinstance(video, MouthVideo):
            return video
        if isinstance(video, (str, Path)) and not Path(video).is_file():
            raise MediaError(f"video not found: {video}; check the path")
        extractor = self.feature_extractor
        return prepare_mouth_video(video, self._face_backend(), fps=VIDEO_FPS, landmark_stride=self.landmark_stride,
                                   crop_size=extractor.image_crop_size, image_mean=extractor.image_mean,
                                   image_std=extractor.image_std)

    @torch.inference_mode()
    def transcribe(self, video, audio=None, modality: str = "video", num_beams: int = DEFAULT_NUM_BEAMS,
                   **generate_kwargs) -> LipReadingResult:
        """Transcript of one video.

        Args:
            video: path or frames (see `prepare_video`).
            audio: speech for the "audio"/"audiovisual" modalities (path or 16 kHz waveform; defaults to the
                video's own track).
            modality: "video" (lip reading, default), "audio" (speech recognition) or "audiovisual".
            num_beams: beam size (1 = greedy).
            generate_kwargs: passed to `AVHubertForLipReading.generate` (max_len_a, length_penalty, ...).
        """
        if modality not in MODALITIES:
            raise TalkFaceUserError(f"unknown modality {modality!r}; use one of {', '.join(MODALITIES)}")
        if num_beams < 1:
            raise TalkFaceUserError(f"the beam size must be at least 1, got {num_beams}")
        timings = {}
        if modality != "video" and audio is None:
            if not isinstance(video, (str, Path)):
                raise TalkFaceUserError(f"the {modality} modality needs the speech: frames have no sound track, so "
                                        "pass audio=PATH_OR_WAVEFORM, or use modality='video'")
            audio = video
        # read and checked (an audio stream, not silence) before the expensive video work
        audio = modality_audio(audio, modality, self.feature_extractor.sampling_rate)
        mouth_video = self.prepare_video(video)
        timings.update(mouth_video.timings)
        num_frames = mouth_video.num_frames
        inputs = {}
        if modality in ("video", "audiovisual"):
            inputs["video"] = torch.from_numpy(mouth_video.mouths).to(self.device)[None, None]  # (1, 1, T, 88, 88)
        if modality in ("audio", "audiovisual"):
            inputs["audio_features"] = self._audio_features(audio, num_frames)
        started = time.perf_counter()
        output = self.model.generate(**inputs, num_beams=num_beams, return_dict_in_generate=True, **generate_kwargs)
        timings["decoder"] = time.perf_counter() - started
        special = {self.tokenizer.bos_token_id, self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
        token_ids = [int(i) for i in output.sequences[0].tolist() if int(i) not in special]
        return LipReadingResult(text=self.tokenizer.decode(token_ids), token_ids=token_ids,
                                score=float(output.sequences_scores[0]), num_frames=num_frames,
                                video=str(video) if isinstance(video, (str, Path)) else None, timings=timings)

    __call__ = transcribe

    def _audio_features(self, audio, num_frames):
        sampling_rate = self.feature_extractor.sampling_rate
        if isinstance(audio, (str, Path)):
            from ...media import read_audio

            audio = read_audio(audio, sampling_rate)
        features = self.feature_extractor(np.asarray(audio, dtype=np.float32), sampling_rate=sampling_rate,
                                          num_video_frames=num_frames)
        return features["audio_features"].to(self.device)

    def normalize_reference(self, text: str) -> str:
        """The reference's view of a transcript: lower-cased and round-tripped through the tokenizer."""
        return self.tokenizer.decode(self.tokenizer.encode(text, add_eos=False))
