"""Datasets of k-frame training windows for the talkface generator.

`TalkFaceDataset` reads the preprocessed layout (talkface/data/layout.py). Item i is a window of video
`i % num_videos` (a dataset can be "longer" than its video count with `samples_per_video`); what is drawn is a
deterministic function of (seed, epoch, index), so a run resumed at a given step sees exactly the data it would
have seen, and `set_epoch` changes the draws from one epoch to the next. An item holds:

* target_frames: k consecutive faces starting at a random frame s;
* masked_frames: the same with the lower half set to 0 (the pose input);
* reference_frames: k consecutive faces from another part of the same video (identity input; a window that does
  not overlap [s, s + k) whenever the video is long enough);
* mel_chunks: each target frame's Wav2Lip mel chunk (`TalkingFaceAudioFeatureExtractor`);
* with `context=True`, what the AV-HuBERT lip-sync loss needs: the ground-truth faces of the utterance (or of
  `context_frames` frames around the window), their mouth transforms, the AV-HuBERT audio features aligned to
  them, and the window's position inside the context.

`SyntheticTalkFaceDataset` gives random items of the same shapes, for smoke tests and benchmarks.
"""

import logging
import zlib

import numpy as np
import torch
from torch.utils.data import Dataset

from ...errors import TalkFaceUserError
from .layout import AFFINES_NAME, AUDIO_NAME, FaceFrames, read_manifest, read_wav, video_folder

logger = logging.getLogger(__name__)

AVHUBERT_AUDIO_DIM = 104


def _rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, index])


def split_of(video_id: str, val_fraction: float) -> str:
    """Deterministic train/val split by id hash (stable across runs and machines)."""
    return "val" if (zlib.crc32(video_id.encode()) % 10000) < val_fraction * 10000 else "train"


def resize_faces(faces: np.ndarray, size: int) -> np.ndarray:
    """(T, S, S, 3) uint8 -> (T, size, size, 3); a no-op when S == size."""
    if faces.shape[1] == size and faces.shape[2] == size:
        return faces
    import cv2

    interpolation = cv2.INTER_AREA if faces.shape[1] > size else cv2.INTER_LINEAR
    return np.stack([cv2.resize(face, (size, size), interpolation=interpolation) for face in faces])


def scale_affines(affines: np.ndarray, from_size: int, to_size: int) -> np.ndarray:
    """Re-express patch -> crop maps for a crop resized from `from_size` to `to_size` (pixel-centre convention)."""
    if from_size == to_size:
        return affines
    scale = to_size / from_size
    out = affines.copy()
    out[:, :, :2] *= scale
    out[:, :, 2] = (affines[:, :, 2] + 0.5) * scale - 0.5
    return out


def to_frames_tensor(faces: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(faces)).permute(0, 3, 1, 2).float().div_(255.0)


def align_audio_features(features: np.ndarray, num_frames: int) -> np.ndarray:
    """Pad (zeros at the end) or trim AV-HuBERT audio features to the video length, as AV-HuBERT does."""
    if len(features) >= num_frames:
        return features[:num_frames]
    return np.concatenate([features, np.zeros((num_frames - len(features), features.shape[1]), features.dtype)])


def default_avhubert_audio_features():
    """A function (16 kHz waveform, num_frames) -> (num_frames, 104) AV-HuBERT audio features aligned to the video
    (`AVHubertFeatureExtractor`: stacked log filterbanks, per-frame normalised, zero rows appended / rows dropped at
    the end to match the frame count, as AV-HuBERT does)."""
    from ...models.avhubert.feature_extraction_avhubert import AVHubertFeatureExtractor

    extractor = AVHubertFeatureExtractor()

    def compute(waveform: np.ndarray, num_frames: int) -> np.ndarray:
        features = extractor(waveform, sampling_rate=16000, num_video_frames=num_frames, return_tensors="np")
        return np.asarray(features["audio_features"][0], dtype=np.float32).T  # (104, T) -> (T, 104)

    return compute


class TalkFaceDataset(Dataset):
    """k-frame windows from a preprocessed set. See the module docstring.

    Args:
        root: folder written by train/preprocess.py.
        split: "train", "val" or "all"; videos are split by `val_fraction` on a hash of their id, unless `ids`
            lists the videos to use.
        ids: explicit video ids (e.g. LRS2's val.txt), overriding the hash split.
        num_frames: k.
        img_size: side of the faces given to the model (crops are resized when stored larger).
        context: include the utterance context for the AV-HuBERT sync loss.
        context_frames: cap on the context length (a window of this many frames around the target window);
            None uses the whole utterance.
        audio_feature_extractor: a `TalkingFaceAudioFeatureExtractor` (default: Wav2Lip's parameters).
        avhubert_audio_features: (waveform, num_frames) -> (num_frames, 104) function (default:
            `AVHubertFeatureExtractor`); only used with `context=True`.
        samples_per_video: items per video per epoch.
        seed: base of the per-item random draws.
        allow_empty: give an empty dataset instead of raising when no video is usable (e.g. an optional val split).
    """

    def __init__(self, root, split="train", ids=None, num_frames=5, img_size=96, context=True, context_frames=None,
                 audio_feature_extractor=None, avhubert_audio_features=None, val_fraction=0.05,
                 samples_per_video=1, seed=0, allow_empty=False):
        self.root = root
        records = [r for r in read_manifest(root) if r.status == "ok"]
        if ids is not None:
            wanted = set(ids)
            records = [r for r in records if r.id in wanted]
            missing = wanted - {r.id for r in records}
            if missing:
                logger.warning("%d listed video(s) are not usable in %s (failed or absent), e.g. %s", len(missing),
                               root, sorted(missing)[0])
        elif split != "all":
            if split not in ("train", "val"):
                raise ValueError(f"split={split!r} must be 'train', 'val' or 'all'")
            records = [r for r in records if split_of(r.id, val_fraction) == split]
        too_short = [r for r in records if r.num_frames < num_frames]
        if too_short:
            logger.warning("skipping %d video(s) shorter than k=%d frames in %s (e.g. %s)", len(too_short),
                           num_frames, root, too_short[0].id)
        self.records = [r for r in records if r.num_frames >= num_frames]
        self.num_skipped = len(too_short)
        if not self.records and not allow_empty:
            raise TalkFaceUserError(f"no usable {split} videos in {root} (of {len(records)} listed); preprocess more "
                                    "videos, lower val_fraction, or check manifest.jsonl for failures")
        if context_frames is not None and context_frames < num_frames:
            raise ValueError(f"context_frames={context_frames} must be >= num_frames={num_frames}")
        self.num_frames = num_frames
        self.img_size = img_size
        self.context = context
        self.context_frames = context_frames
        if audio_feature_extractor is None:
            from ...models.wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor

            audio_feature_extractor = TalkingFaceAudioFeatureExtractor()
        self.audio_feature_extractor = audio_feature_extractor
        self._avhubert_audio_features = avhubert_audio_features
        self.samples_per_video = samples_per_video
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.records) * self.samples_per_video

    def _window_starts(self, rng, total):
        k = self.num_frames
        start = int(rng.integers(0, total - k + 1))
        # reference window: any start whose window does not overlap the target's, when the video allows it
        candidates = [s for s in range(total - k + 1) if abs(s - start) >= k]
        if not candidates:
            candidates = [s for s in range(total - k + 1) if s != start] or [start]
        return start, int(candidates[int(rng.integers(0, len(candidates)))])

    def __getitem__(self, index):
        record = self.records[index % len(self.records)]
        rng = _rng(self.seed, self.epoch, index)
        folder = video_folder(self.root, record.id)
        k = self.num_frames
        faces = FaceFrames(folder, record.storage)
        total = min(len(faces), record.num_frames)
        start, reference_start = self._window_starts(rng, total)

        target = resize_faces(faces[start:start + k], self.img_size)
        reference = resize_faces(faces[reference_start:reference_start + k], self.img_size)
        target_frames = to_frames_tensor(target)
        masked_frames = target_frames.clone()
        masked_frames[:, :, self.img_size // 2:] = 0  # hide the lower half: the mouth must come from the audio

        waveform, sampling_rate = read_wav(folder / AUDIO_NAME)
        extractor = self.audio_feature_extractor
        mel = extractor.mel_spectrogram(waveform, sampling_rate=sampling_rate)
        mel_chunks = extractor.frame_mel_chunks(mel, fps=record.fps, num_frames=total)[start:start + k]

        item = {
            "reference_frames": to_frames_tensor(reference),
            "masked_frames": masked_frames,
            "target_frames": target_frames,
            "mel_chunks": torch.from_numpy(mel_chunks),
            "video_id": record.id,
            "frame_start": start,
        }
        if self.context:
            item.update(self._context(faces, folder, record, waveform, start, total, rng))
        return item

    def _context(self, faces, folder, record, waveform, start, total, rng):
        k = self.num_frames
        if self.context_frames is None or self.context_frames >= total:
            context_start, context_end = 0, total
        else:
            # a random context window that contains the target window
            lowest = max(0, start + k - self.context_frames)
            highest = min(start, total - self.context_frames)
            context_start = int(rng.integers(lowest, highest + 1))
            context_end = context_start + self.context_frames
        frames = resize_faces(faces[context_start:context_end], self.img_size)
        affines = np.load(folder / AFFINES_NAME, mmap_mode="r")[context_start:context_end].astype(np.float32)
        affines = scale_affines(affines, faces[0].shape[0], self.img_size)
        if self._avhubert_audio_features is None:
            self._avhubert_audio_features = default_avhubert_audio_features()
        audio_features = align_audio_features(self._avhubert_audio_features(waveform, total), total)
        return {
            "context_frames": torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2),  # (T, 3, S, S) uint8
            "context_affines": torch.from_numpy(np.ascontiguousarray(affines)),
            "context_audio_features": torch.from_numpy(
                np.ascontiguousarray(audio_features[context_start:context_end], dtype=np.float32)),
            "window_start": start - context_start,
        }


class SyntheticTalkFaceDataset(Dataset):
    """Random items with the shapes of `TalkFaceDataset`'s, a deterministic function of (seed, index).

    Frames are smooth random images (so image losses behave like on faces rather than on white noise); the context
    is `context_frames` long with the window at a random position, and its affines crop a plausible mouth region.
    """

    def __init__(self, length=64, num_frames=5, img_size=96, context=True, context_frames=25, seed=0):
        if context_frames < num_frames:
            raise ValueError(f"context_frames={context_frames} must be >= num_frames={num_frames}")
        self.length = length
        self.num_frames = num_frames
        self.img_size = img_size
        self.context = context
        self.context_frames = context_frames
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)  # items do not depend on the epoch: the same set every epoch

    def __len__(self):
        return self.length

    def _frames(self, generator, count):
        low = torch.rand(count, 3, self.img_size // 8, self.img_size // 8, generator=generator)
        return torch.nn.functional.interpolate(low, size=(self.img_size, self.img_size), mode="bilinear",
                                               align_corners=False)

    def __getitem__(self, index):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        k, size = self.num_frames, self.img_size
        context_length = self.context_frames
        start = int(torch.randint(0, context_length - k + 1, (1,), generator=generator))
        context_uint8 = (self._frames(generator, context_length) * 255).round().to(torch.uint8)
        context = context_uint8.float() / 255
        target = context[start:start + k]
        masked = target.clone()
        masked[:, :, size // 2:] = 0
        item = {
            "reference_frames": self._frames(generator, k),
            "masked_frames": masked,
            "target_frames": target,
            "mel_chunks": torch.randn(k, 1, 80, 16, generator=generator).clamp_(-4, 4),
            "video_id": f"synthetic-{index}",
            "frame_start": start,
        }
        if self.context:
            # maps of the 96x96 mouth patch onto the lower-middle of the face (about half the face wide)
            scale = 0.5 * size / 96
            affine = torch.tensor([[scale, 0.0, 0.25 * size], [0.0, scale, 0.5 * size]])
            item.update({
                "context_frames": context_uint8,
                "context_affines": affine.expand(context_length, 2, 3).clone(),
                "context_audio_features": torch.randn(context_length, 104, generator=generator),
                "window_start": start,
            })
        return item


__all__ = ["SyntheticTalkFaceDataset", "TalkFaceDataset", "align_audio_features", "split_of"]
