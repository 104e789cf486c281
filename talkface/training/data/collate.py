"""The training batch of the talkface generator, as a named dataclass instead of a tuple."""

from dataclasses import dataclass, fields

import torch


@dataclass
class TalkFaceBatch:
    """One batch of k-frame windows plus the utterance context the lip-sync losses need.

    Window (what the generator sees and is compared with), float32, RGB in [0, 1]:
        reference_frames: (batch, k, 3, S, S) identity references from another part of the same video.
        masked_frames: (batch, k, 3, S, S) the target frames with the lower half set to 0 (head pose).
        target_frames: (batch, k, 3, S, S) the ground truth.
        mel_chunks: (batch, k, 1, 80, 16) each frame's Wav2Lip mel chunk.
    Context (for the AV-HuBERT sync loss; None when the dataset was built without it):
        context_frames: (batch, T, 3, S, S) uint8 ground-truth faces of the utterance (or of a window around the
            generated frames), padded to the longest in the batch.
        context_affines: (batch, T, 2, 3) float32 mouth-patch -> face-crop pixel maps.
        context_audio_features: (batch, T, 104) float32 AV-HuBERT audio features aligned to the frames.
        context_padding_mask: (batch, T) bool, True at padding.
        window_start: (batch,) long, where the k generated frames sit in the context.
    Bookkeeping:
        video_ids: list of the source video ids; frame_start: (batch,) long, first frame of the window in the video.
    """

    reference_frames: torch.Tensor
    masked_frames: torch.Tensor
    target_frames: torch.Tensor
    mel_chunks: torch.Tensor
    context_frames: torch.Tensor | None = None
    context_affines: torch.Tensor | None = None
    context_audio_features: torch.Tensor | None = None
    context_padding_mask: torch.Tensor | None = None
    window_start: torch.Tensor | None = None
    frame_start: torch.Tensor | None = None
    video_ids: list | None = None

    def to(self, device=None, dtype=None, non_blocking=False):
        """Move tensors to `device` (accelerate calls this); `dtype` only applies to floating tensors."""
        moved = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, torch.Tensor):
                value = value.to(device=device, non_blocking=non_blocking,
                                 dtype=dtype if dtype is not None and value.is_floating_point() else None)
            moved[item.name] = value
        return type(self)(**moved)  # subclasses (e.g. TalkLipBatch) keep their type

    @property
    def batch_size(self) -> int:
        return self.target_frames.shape[0]

    @property
    def has_context(self) -> bool:
        return self.context_frames is not None


def _pad_stack(tensors, length, value=0):
    """Stack (T_i, ...) tensors into (batch, length, ...), padding the time dim with `value`."""
    out = tensors[0].new_full((len(tensors), length, *tensors[0].shape[1:]), value)
    for index, tensor in enumerate(tensors):
        out[index, : tensor.shape[0]] = tensor
    return out


# a valid (identity-like) affine for padded frames: keeps the differentiable crop finite; the frames are masked anyway
_PAD_AFFINE = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def collate_talkface(samples: list[dict]) -> TalkFaceBatch:
    """Collate dataset items (dicts with the `TalkFaceBatch` field names, without the batch dim)."""
    stack = {name: torch.stack([s[name] for s in samples])
             for name in ("reference_frames", "masked_frames", "target_frames", "mel_chunks")}
    batch = TalkFaceBatch(**stack, video_ids=[s.get("video_id") for s in samples],
                          frame_start=torch.tensor([int(s.get("frame_start", 0)) for s in samples]))
    if all(s.get("context_frames") is not None for s in samples):
        lengths = [s["context_frames"].shape[0] for s in samples]
        length = max(lengths)
        batch.context_frames = _pad_stack([s["context_frames"] for s in samples], length)
        affines = _pad_stack([s["context_affines"] for s in samples], length)
        for index, n in enumerate(lengths):
            affines[index, n:] = _PAD_AFFINE
        batch.context_affines = affines
        batch.context_audio_features = _pad_stack([s["context_audio_features"] for s in samples], length)
        batch.context_padding_mask = torch.arange(length)[None, :] >= torch.tensor(lengths)[:, None]
        batch.window_start = torch.tensor([int(s["window_start"]) for s in samples])
    return batch


__all__ = ["TalkFaceBatch", "collate_talkface"]
