"""The LSE metric on SyncNet embeddings: distances over offsets, LSE-D / LSE-C / AV offset, data-set means.

Steps 1-4 of the reference (`talkface.metrics.sync` describes them); the scorer that makes the embeddings is
`talkface.metrics.sync_scorer`, the face tracks of track mode are `talkface.metrics.sync_tracking`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

#: reference default: distances are compared over offsets -15..15 video frames
DEFAULT_VSHIFT = 15
#: eps that torch.nn.functional.pairwise_distance adds to the difference (the reference uses it)
PAIRWISE_DISTANCE_EPS = 1e-6
#: kernel of the median filter syncnet_python applies to the framewise confidence
FRAMEWISE_MEDIAN_KERNEL = 9
#: windows whose distances are computed at once (bounds memory to about chunk * (2 vshift + 1) * 1024 floats)
_DISTANCE_CHUNK = 512
#: ffmpeg's float -> s16 conversion scale
_INT16_SCALE = 32768.0


@dataclass
class SyncScore:
    """LSE result of one clip (or one face track).

    lse_d: minimum over offsets of the mean distance (lower is better).
    lse_c: median minus minimum of the mean distances (higher is better).
    offset: AV offset in video frames at the minimum (vshift - argmin).
    num_windows: scored 5-frame windows.
    mean_distances: (2 vshift + 1,) mean distance per offset, offset +vshift first (index j <-> offset vshift - j).
    framewise_distance: (num_windows,) distance of each window at the best offset.
    framewise_confidence: (num_windows,) median(mean_distances) - framewise_distance (syncnet_python's `fconf`).
    framewise_confidence_smoothed: the same after a median filter of 9 windows (what syncnet_python prints).
    start_frame: first video frame of window 0 in the source video (non-zero for face tracks).
    """

    lse_d: float
    lse_c: float
    offset: int
    num_windows: int
    mean_distances: np.ndarray
    framewise_distance: np.ndarray
    framewise_confidence: np.ndarray
    framewise_confidence_smoothed: np.ndarray
    start_frame: int = 0

    def to_dict(self, curves: bool = True) -> dict:
        out = {k: v for k, v in asdict(self).items() if not isinstance(v, np.ndarray)}
        if curves:
            out.update({k: np.asarray(v).tolist() for k, v in asdict(self).items() if isinstance(v, np.ndarray)})
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "SyncScore":
        arrays = {k: np.asarray(data[k], dtype=np.float32) for k in (
            "mean_distances", "framewise_distance", "framewise_confidence", "framewise_confidence_smoothed")}
        return cls(lse_d=float(data["lse_d"]), lse_c=float(data["lse_c"]), offset=int(data["offset"]),
                   num_windows=int(data["num_windows"]), start_frame=int(data.get("start_frame", 0)), **arrays)


@dataclass
class VideoSyncResult:
    """LSE of one video: one `SyncScore` per face track (exactly one in pre-cropped mode).

    The video's lse_d / lse_c / offset are the unweighted means over its tracks (the reference prints one line per
    track and papers average all lines); `skipped_tracks` lists (start, end, reason) of tracks too short to score.
    """

    tracks: list[SyncScore]
    skipped_tracks: list[tuple[int, int, str]] = field(default_factory=list)

    @property
    def lse_d(self) -> float:
        return float(np.mean([t.lse_d for t in self.tracks]))

    @property
    def lse_c(self) -> float:
        return float(np.mean([t.lse_c for t in self.tracks]))

    @property
    def offset(self) -> float:
        return float(np.mean([t.offset for t in self.tracks]))

    def to_dict(self, curves: bool = True) -> dict:
        return {"lse_d": self.lse_d, "lse_c": self.lse_c, "offset": self.offset,
                "tracks": [t.to_dict(curves) for t in self.tracks],
                "skipped_tracks": [list(t) for t in self.skipped_tracks]}




def sync_distances(video_embeddings: torch.Tensor, audio_embeddings: torch.Tensor, vshift: int = DEFAULT_VSHIFT
                   ) -> torch.Tensor:
    """Distances (windows, 2 vshift + 1) between each video window and the audio windows vshift..-vshift away.

    Column j compares video window i with audio window i + j - vshift; audio outside 0..N-1 is a zero vector,
    as in the reference's zero padding.
    """
    video_embeddings = torch.as_tensor(video_embeddings)
    audio_embeddings = torch.as_tensor(audio_embeddings)
    if video_embeddings.shape != audio_embeddings.shape or video_embeddings.dim() != 2:
        raise ValueError(
            f"video and audio embeddings must both be (windows, dim), got {tuple(video_embeddings.shape)} and "
            f"{tuple(audio_embeddings.shape)}"
        )
    num_windows = video_embeddings.shape[0]
    num_shifts = 2 * vshift + 1
    padded_audio = torch.nn.functional.pad(audio_embeddings, (0, 0, vshift, vshift))  # (windows + 2 vshift, dim)
    distances = []
    for start in range(0, num_windows, _DISTANCE_CHUNK):
        stop = min(start + _DISTANCE_CHUNK, num_windows)
        # shifted[i, :, j] = padded_audio[i + j]: the 2 vshift + 1 audio candidates of window i
        shifted = padded_audio[start : stop + 2 * vshift].unfold(0, num_shifts, 1)  # (chunk, dim, shifts)
        difference = video_embeddings[start:stop, :, None] - shifted + PAIRWISE_DISTANCE_EPS
        distances.append(torch.linalg.vector_norm(difference, dim=1))  # (chunk, shifts)
    return torch.cat(distances)


def lse_from_distances(distances: torch.Tensor, vshift: int = DEFAULT_VSHIFT, start_frame: int = 0) -> SyncScore:
    """LSE-D, LSE-C, offset and framewise curves from the (windows, 2 vshift + 1) distance matrix."""
    from scipy.signal import medfilt

    distances = torch.as_tensor(distances)
    if distances.dim() != 2 or distances.shape[1] != 2 * vshift + 1 or distances.shape[0] < 1:
        raise ValueError(f"distances must be (windows >= 1, {2 * vshift + 1}), got {tuple(distances.shape)}")
    mean_distances = distances.mean(dim=0)
    min_distance, min_index = torch.min(mean_distances, dim=0)
    # 2 vshift + 1 values: torch.median is the true middle value, as in the reference
    median_distance = torch.median(mean_distances)
    framewise_distance = distances[:, min_index]
    framewise_confidence = (median_distance - framewise_distance).numpy().astype(np.float32)
    return SyncScore(
        lse_d=float(min_distance),
        lse_c=float(median_distance - min_distance),
        offset=int(vshift - int(min_index)),
        num_windows=int(distances.shape[0]),
        mean_distances=mean_distances.numpy().astype(np.float32),
        framewise_distance=framewise_distance.numpy().astype(np.float32),
        framewise_confidence=framewise_confidence,
        framewise_confidence_smoothed=medfilt(framewise_confidence, kernel_size=FRAMEWISE_MEDIAN_KERNEL).astype(
            np.float32),
        start_frame=start_frame,
    )


def lse_from_embeddings(video_embeddings, audio_embeddings, vshift: int = DEFAULT_VSHIFT, start_frame: int = 0
                        ) -> SyncScore:
    """LSE of one clip from its per-window video and audio embeddings (windows, dim)."""
    return lse_from_distances(sync_distances(video_embeddings, audio_embeddings, vshift), vshift, start_frame)


def aggregate_lse(scores) -> dict:
    """Data-set LSE: arithmetic means of the per-video values (as Wav2Lip's calculate_scores_LRS.py)."""
    scores = list(scores)
    if not scores:
        raise ValueError("no scores to aggregate")
    return {
        "lse_d": float(np.mean([s.lse_d for s in scores])),
        "lse_c": float(np.mean([s.lse_c for s in scores])),
        "num_videos": len(scores),
    }


def audio_to_int16_scale(audio: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] -> int16 samples, rounding like ffmpeg's s16 conversion (int16 input passes)."""
    audio = np.asarray(audio)
    if np.issubdtype(audio.dtype, np.integer):
        return audio.astype(np.int16, copy=False)
    return np.clip(np.rint(audio.astype(np.float64) * _INT16_SCALE), -32768, 32767).astype(np.int16)

