"""LSE-D / LSE-C: lip-sync error from the Chung & Zisserman SyncNet, computed exactly as the reference does.

The reference is syncnet_python's `SyncNetInstance.evaluate` (and its copies in Wav2Lip and TalkLip):

1. MFCCs of the int16 signal; video window i = frames [i, i + 5), audio window i = MFCC frames [4i, 4i + 20).
   N = min(frames, floor(samples / 640)) - 5 windows.
2. Audio embeddings are zero-padded by `vshift` windows on both ends; for every window i and shift j in
   0..2*vshift, d[i, j] = ||v_i - a_(i + j - vshift) + 1e-6||. Padded (zero) audio positions count.
3. mean_d[j] = mean_i d[i, j]; LSE-D = min_j mean_d; LSE-C = median_j mean_d - LSE-D;
   AV offset = vshift - argmin_j mean_d (in video frames; positive: audio leads).
4. A data set's LSE-D / LSE-C are the arithmetic means of the per-video values.

Here every window is embedded in a few batched forward passes and the 2*vshift+1 distances of all windows come
from one tensor computation; the numbers equal the reference loop's (tests/metrics/test_metrics_sync.py checks this
against golden outputs of the original code).

Two ways to get the face frames (docs/evaluation.md):
* `face_mode="precropped"` (the LRS2 protocol of Wav2Lip / TalkLip): the whole frame is the face crop and is
  resized to 224 x 224.
* `face_mode="track"` (syncnet_python's run_pipeline for in-the-wild video): faces are detected, split at scene
  cuts, tracked by box overlap, smoothed, and cropped as a square of 2.8 times the half box size (crop scale 0.4)
  resized to 224 x 224; every track long enough gets its own score.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import MediaError, NoFaceError, TalkFaceUserError
from ..faces.backends import box_iou as _box_iou

#: how to make a SyncNet LSE model folder (appended to load errors)
SYNCNET_CONVERT_HINT = "create it with: talkface convert syncnet-lse --checkpoint syncnet_v2.model --out DIR"

logger = logging.getLogger(__name__)

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


# ----------------------------------------------------------------------------------------------------------------
# The metric on embeddings
# ----------------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------------
# Face tracks for in-the-wild video (syncnet_python run_pipeline)
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class TrackingOptions:
    """Settings of `face_mode="track"`; the reference values are noted where ours differ.

    min_track_frames: shortest face track that is scored (reference: tracks longer than 100 frames, i.e. 4 s, which
        gives no score at all for short clips; the default 25 frames = 1 s scores a 2 s clip).
    min_face_size: smallest mean box side in pixels (reference 100, which drops low-resolution generated videos).
    max_missed_frames: frames a face may go undetected inside a track (reference `num_failed_det` 25).
    iou_threshold: box overlap that continues a track (reference 0.5).
    crop_scale: crop margin (reference 0.4: a square of 2 (1 + crop_scale) half-box-sides, face in its upper part).
    smoothing_kernel: median-filter length for the box size and centre (reference 13).
    detect_every: run the detector on every n-th frame and interpolate the boxes in between (reference: every
        frame). Faces in talking-head video move slowly, so 5 changes the crops by well under a pixel on average.
    detect_max_side: downscale frames so that their longer side is at most this before detecting (reference: a
        fixed 0.25 scale for S3FD); boxes are scaled back. 0 keeps the full resolution.
    scene_threshold: mean HSV change (0-255 scale) between consecutive frames that counts as a cut (PySceneDetect's
        ContentDetector default 30, which the reference uses).
    min_scene_frames: shortest scene (ContentDetector default 15).
    pad_value: grey level of the padding around the frame for crops reaching outside it (reference 110).
    face_backend: talkface.faces backend name.
    """

    min_track_frames: int = 25
    min_face_size: float = 40.0
    max_missed_frames: int = 25
    iou_threshold: float = 0.5
    crop_scale: float = 0.4
    smoothing_kernel: int = 13
    detect_every: int = 5
    detect_max_side: int = 480
    scene_threshold: float = 30.0
    min_scene_frames: int = 15
    pad_value: int = 110
    face_backend: str = "mediapipe"

    def __post_init__(self):
        if self.min_track_frames < 6:
            raise ValueError(
                f"min_track_frames must be >= 6 (one 5-frame window plus one), got {self.min_track_frames}")
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {self.detect_every}")
        if self.smoothing_kernel < 1 or self.smoothing_kernel % 2 == 0:
            raise ValueError(f"smoothing_kernel must be a positive odd number, got {self.smoothing_kernel}")


@dataclass
class FaceTrack:
    """A face followed through consecutive frames: boxes (x1, y1, x2, y2) for frames start..end inclusive."""

    start: int
    boxes: np.ndarray  # (frames, 4) float64, one per frame, interpolated between detections

    @property
    def end(self) -> int:
        return self.start + len(self.boxes) - 1


def scene_cuts(frames, threshold: float = 30.0, min_scene_frames: int = 15) -> list[int]:
    """Frame indices where a new scene starts (always includes 0).

    The content score of frame t is the mean absolute change of H, S and V between frames t-1 and t (on frames
    downscaled to at most 160 pixels; the mean barely depends on resolution), as PySceneDetect's ContentDetector.
    """
    import cv2

    cuts, previous, last_cut = [0], None, 0
    for index, frame in enumerate(frames):
        height, width = frame.shape[:2]
        scale = min(1.0, 160.0 / max(height, width))
        small = cv2.resize(frame, (max(1, round(width * scale)), max(1, round(height * scale))),
                           interpolation=cv2.INTER_AREA) if scale < 1 else frame
        hsv = cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_RGB2HSV).astype(np.int16)
        if previous is not None:
            content = float(np.abs(hsv - previous).mean())  # mean over pixels and the three channels
            if content >= threshold and index - last_cut >= min_scene_frames:
                cuts.append(index)
                last_cut = index
        previous = hsv
    return cuts


def _detection_frames(scenes: list[tuple[int, int]], detect_every: int) -> list[int]:
    """Frames to run the detector on: every `detect_every`-th frame of each scene plus each scene's last frame."""
    indices = []
    for scene_start, scene_end in scenes:
        indices += list(range(scene_start, scene_end, detect_every))
        if indices[-1] != scene_end - 1:
            indices.append(scene_end - 1)
    return indices


def _detect_faces(frames, indices, options: TrackingOptions, backend) -> dict[int, list[np.ndarray]]:
    """Boxes (x1, y1, x2, y2 in full-frame pixels) per frame index, detected on downscaled frames."""
    import cv2

    detections = {}
    for index in indices:
        frame = frames[index]
        height, width = frame.shape[:2]
        scale = 1.0
        if options.detect_max_side and max(height, width) > options.detect_max_side:
            scale = options.detect_max_side / max(height, width)
            frame = cv2.resize(frame, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        faces = backend.detect(frame, landmarks=False)
        detections[index] = [np.asarray(face.box, dtype=np.float64) / scale for face in faces]
    return detections




def track_faces(detections: dict[int, list[np.ndarray]], scene_start: int, scene_end: int,
                options: TrackingOptions) -> tuple[list[FaceTrack], list[tuple[int, int, str]]]:
    """Greedy tracks inside one scene [scene_start, scene_end), as the reference's `track_shot`.

    A track repeatedly takes, frame by frame, the first unused box overlapping its last box by more than
    `iou_threshold`, allowing gaps up to `max_missed_frames`; boxes between detections are linearly interpolated.
    Returns the kept tracks and (start, end, reason) of the dropped ones.
    """
    remaining = {i: list(boxes) for i, boxes in detections.items() if scene_start <= i < scene_end}
    tracks, dropped = [], []
    while True:
        track_frames, track_boxes = [], []
        for index in sorted(remaining):
            boxes = remaining[index]
            for k, box in enumerate(boxes):
                if not track_frames:
                    track_frames.append(index), track_boxes.append(box)
                    del boxes[k]
                    break
                if index - track_frames[-1] <= options.max_missed_frames:
                    if _box_iou(box, track_boxes[-1]) > options.iou_threshold:
                        track_frames.append(index), track_boxes.append(box)
                        del boxes[k]
                        break
                else:
                    break
        if not track_frames:
            break
        start, end = track_frames[0], track_frames[-1]
        all_frames = np.arange(start, end + 1)
        boxes = np.stack(track_boxes)
        interpolated = np.stack([np.interp(all_frames, track_frames, boxes[:, c]) for c in range(4)], axis=1)
        size = max(np.mean(interpolated[:, 2] - interpolated[:, 0]), np.mean(interpolated[:, 3] - interpolated[:, 1]))
        if len(all_frames) < options.min_track_frames:
            dropped.append((int(start), int(end), f"track of {len(all_frames)} frames < min_track_frames "
                                                  f"{options.min_track_frames}"))
        elif size < options.min_face_size:
            dropped.append((int(start), int(end), f"face of {size:.0f} px < min_face_size {options.min_face_size:g}"))
        else:
            tracks.append(FaceTrack(start=int(start), boxes=interpolated))
    return tracks, dropped


def crop_track(frames, track: FaceTrack, options: TrackingOptions, size: int = 224) -> np.ndarray:
    """The reference crop of a track: (frames, size, size, 3) uint8, same channel order as `frames`.

    Half box size s and centre (x, y) are median-filtered; the crop spans rows [y - s, y + s (1 + 2 cs)) and
    columns [x - s (1 + cs), x + s (1 + cs)) of the frame padded with `pad_value` (cs = crop_scale).
    """
    import cv2
    from scipy.signal import medfilt

    boxes = track.boxes
    half = np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
    kernel = options.smoothing_kernel
    half, centre_y, centre_x = (medfilt(v, kernel_size=kernel) for v in (half, centre_y, centre_x))
    cs = options.crop_scale
    crops = np.empty((len(boxes), size, size, 3), dtype=np.uint8)
    for k in range(len(boxes)):
        frame = frames[track.start + k]
        s = half[k]
        pad = int(s * (1 + 2 * cs))
        # padding only the window we need is equivalent to padding the whole frame (and much cheaper)
        top, bottom = int(centre_y[k] + pad - s), int(centre_y[k] + pad + s * (1 + 2 * cs))
        left, right = int(centre_x[k] + pad - s * (1 + cs)), int(centre_x[k] + pad + s * (1 + cs))
        crops[k] = cv2.resize(_padded_window(frame, pad, top, bottom, left, right, options.pad_value), (size, size))
    return crops


def _padded_window(frame, pad, top, bottom, left, right, value) -> np.ndarray:
    """frame padded by `pad` on every side with `value`, then [top:bottom, left:right], without padding it all."""
    height, width = frame.shape[:2]
    padded_height, padded_width = height + 2 * pad, width + 2 * pad
    # numpy slicing of the padded frame clips the window to it; do the same
    top, bottom = max(0, min(top, padded_height)), max(0, min(bottom, padded_height))
    left, right = max(0, min(left, padded_width)), max(0, min(right, padded_width))
    window = np.full((bottom - top, right - left, frame.shape[2]), value, dtype=frame.dtype)
    src_top, src_bottom = max(top - pad, 0), min(bottom - pad, height)
    src_left, src_right = max(left - pad, 0), min(right - pad, width)
    if src_bottom > src_top and src_right > src_left:
        window[src_top + pad - top : src_bottom + pad - top, src_left + pad - left : src_right + pad - left] = (
            frame[src_top:src_bottom, src_left:src_right])
    return window


def find_face_tracks(frames, options: TrackingOptions | None = None, backend=None
                     ) -> tuple[list[FaceTrack], list[tuple[int, int, str]]]:
    """Scene cuts, detection and tracking over RGB frames (a sequence of (H, W, 3) uint8)."""
    from ..faces.backends import get_face_backend

    options = options or TrackingOptions()
    cuts = scene_cuts(frames, options.scene_threshold, options.min_scene_frames) + [len(frames)]
    scenes = list(zip(cuts[:-1], cuts[1:]))
    own_backend = backend is None
    backend = get_face_backend(options.face_backend) if own_backend else get_face_backend(backend)
    try:
        detections = _detect_faces(frames, _detection_frames(scenes, options.detect_every), options, backend)
    finally:
        if own_backend:
            backend.close()
    tracks, dropped = [], []
    for scene_start, scene_end in scenes:
        scene_tracks, scene_dropped = track_faces(detections, scene_start, scene_end, options)
        tracks += scene_tracks
        dropped += scene_dropped
    return sorted(tracks, key=lambda t: t.start), dropped


# ----------------------------------------------------------------------------------------------------------------
# The scorer
# ----------------------------------------------------------------------------------------------------------------


class _FoldedVideoStream:
    """Inference-only form of SyncNet's video stream, built from a model optimised by
    `talkface.models.optimization.inference_copy` (batch norm already folded into the convolutions).

    Every layer after the first has a temporal kernel of 1, so the stream is 2-D convolutions on each window; the
    first 3-D convolution is a 2-D convolution over the window's 5 frames stacked on the channel axis. Tensors are
    channels-last, which oneDNN runs faster. Results equal the model's `get_video_embeddings` to float32 round-off
    (tests/metrics/test_metrics_sync.py).
    """

    def __init__(self, folded_model):
        from torch import nn

        self.video_window = folded_model.config.video_window
        self.head = folded_model.netfclip
        self.steps = []
        for layer in folded_model.netcnnlip:
            if isinstance(layer, nn.BatchNorm3d):
                raise ValueError("the video stream still has batch norm; pass a model from inference_copy()")
            if isinstance(layer, nn.Conv3d):
                # (out, in, time, kh, kw) -> (out, in * time, kh, kw): channel c of frame t is input c * time + t
                weight = layer.weight.reshape(layer.weight.shape[0], -1, *layer.weight.shape[-2:]).contiguous(
                    memory_format=torch.channels_last)
                self.steps.append(("conv", weight, layer.bias, layer.stride[1:], layer.padding[1:]))
            elif isinstance(layer, nn.MaxPool3d):
                padding = layer.padding if isinstance(layer.padding, tuple) else (layer.padding,) * 3
                self.steps.append(("pool", layer.kernel_size[1:], layer.stride[1:], padding[1:]))

    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(1, channels, frames, H, W) -> (frames - video_window + 1, embedding_size)."""
        functional = torch.nn.functional
        channels, num_frames, height, width = pixel_values.shape[1:]
        windows = pixel_values[0].unfold(1, self.video_window, 1)  # (channels, windows, H, W, window)
        windows = windows.permute(1, 0, 4, 2, 3).reshape(  # (windows, channels * window, H, W), c-major
            num_frames - self.video_window + 1, channels * self.video_window, height, width)
        hidden_states = windows.contiguous(memory_format=torch.channels_last)
        for step in self.steps:
            if step[0] == "conv":
                _, weight, bias, stride, padding = step
                hidden_states = functional.relu_(functional.conv2d(hidden_states, weight, bias, stride, padding))
            else:
                _, kernel, stride, padding = step
                hidden_states = functional.max_pool2d(hidden_states, kernel, stride, padding)
        return self.head(hidden_states.flatten(1))  # (windows, channels) -> (windows, embedding_size)


class LSEScorer:
    """Scores lip sync of face clips with a `SyncNetLSEModel`.

    Args:
        model: a `SyncNetLSEModel` (its device is used).
        feature_extractor: its `SyncNetLSEFeatureExtractor` (defaults reproduce syncnet_python).
        vshift: offsets searched on each side (reference 15).
        batch_size: video windows per forward pass (memory: about 5 MB per window at 224 x 224).
        fold_batch_norm: score with an inference copy of the model made once, here
            (`talkface.models.optimization.inference_copy`: batch norm folded into the convolutions and linear
            layers, channels-last weights) and run its video stream as 2-D convolutions: the same numbers to
            float32 round-off, faster on CPU. The copy snapshots the weights; later changes to `model` are not
            seen (make a new scorer). False runs the model's own modules.
    """

    def __init__(self, model, feature_extractor=None, vshift: int = DEFAULT_VSHIFT, batch_size: int = 32,
                 fold_batch_norm: bool = True):
        from ..models.syncnet_lse import SyncNetLSEFeatureExtractor

        if vshift < 0:
            raise ValueError(f"vshift must be >= 0, got {vshift}")
        self.model = model.eval()
        config = model.config
        self.feature_extractor = feature_extractor or SyncNetLSEFeatureExtractor(
            audio_window=config.audio_window, video_window=config.video_window, image_size=config.image_size)
        self.vshift = vshift
        self.batch_size = batch_size
        self.fold_batch_norm = fold_batch_norm
        self._folded = None  # (inference copy of the model, its 2-D video stream), made once
        if fold_batch_norm:
            self._folded_streams()  # start-up work, not per-clip work

    def _folded_streams(self):
        if self._folded is None:
            from ..models.optimization import inference_copy

            folded_model = inference_copy(self.model)
            self._folded = (folded_model, _FoldedVideoStream(folded_model))
        return self._folded

    def with_options(self, vshift: int | None = None, batch_size: int | None = None) -> "LSEScorer":
        """This scorer with other settings, sharing its model and its inference copy (no new copy of the weights)."""
        import copy

        if vshift is not None and vshift < 0:
            raise ValueError(f"vshift must be >= 0, got {vshift}")
        scorer = copy.copy(self)
        scorer.vshift = self.vshift if vshift is None else vshift
        scorer.batch_size = self.batch_size if batch_size is None else batch_size
        return scorer

    @classmethod
    def from_pretrained(cls, path_or_id, device="cpu", **kwargs) -> "LSEScorer":
        """Load a converted SyncNet folder (`talkface convert syncnet-lse ...`) or a Hub id."""
        from ..models.syncnet_lse import SyncNetLSEFeatureExtractor, SyncNetLSEModel
        from ..utils.sources import resolve_source

        path_or_id = resolve_source(path_or_id, what="SyncNet LSE model", hint=SYNCNET_CONVERT_HINT).location
        try:
            model = SyncNetLSEModel.from_pretrained(path_or_id)
        except (OSError, ValueError) as err:
            from ..errors import ModelLoadError

            raise ModelLoadError(
                f"cannot load a SyncNet LSE model from {path_or_id} ({str(err).splitlines()[0][:200]}); "
                + SYNCNET_CONVERT_HINT
            ) from err
        try:
            extractor = SyncNetLSEFeatureExtractor.from_pretrained(path_or_id)
        except OSError:
            extractor = None
        return cls(model.to(device), extractor, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def embed(self, face_frames: np.ndarray, audio_int16: np.ndarray, channel_order: str = "rgb"
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-window (video, audio) embeddings, each (windows, dim), of a face clip (RGB unless `channel_order`
        says otherwise) and its int16 audio."""
        extractor = self.feature_extractor
        num_windows = extractor.num_windows(len(face_frames), len(audio_int16))
        if num_windows < 1:
            raise MediaError(
                f"clip too short for LSE: {len(face_frames)} frames and "
                f"{len(audio_int16) / extractor.sampling_rate:.2f}"
                f" s of audio give no 5-frame window (at least {extractor.video_window + 1} frames = "
                f"{(extractor.video_window + 1) / extractor.fps:.2f} s of both are needed)"
            )
        window = extractor.video_window
        mfcc = extractor.mfcc(audio_int16)
        audio_windows = extractor.audio_windows(mfcc, num_windows).to(self.device)
        if self.fold_batch_norm:
            model, video_stream = self._folded_streams()
        else:
            model = self.model
            video_stream = lambda pixels: model.get_video_embeddings(pixels)[0]  # noqa: E731
        audio_embeddings = torch.cat([
            model.get_audio_embeddings(audio_windows[i : i + 1024]) for i in range(0, num_windows, 1024)])
        video_embeddings = []
        for start in range(0, num_windows, self.batch_size):
            stop = min(start + self.batch_size, num_windows)
            # windows start..stop-1 read frames start..stop+window-2
            pixels = extractor.pixel_values(face_frames[start : stop + window - 1], channel_order=channel_order)
            video_embeddings.append(video_stream(pixels.to(self.device)))
        return torch.cat(video_embeddings).float().cpu(), audio_embeddings.float().cpu()

    def score_frames(self, face_frames: np.ndarray, audio: np.ndarray, sampling_rate: int = 16000,
                     channel_order: str = "rgb", start_frame: int = 0) -> SyncScore:
        """LSE of face frames (frames, H, W, 3) uint8 RGB at 25 fps and their audio (int16, or float in [-1, 1])."""
        if sampling_rate != self.feature_extractor.sampling_rate:
            raise MediaError(
                f"audio at {sampling_rate} Hz; SyncNet needs {self.feature_extractor.sampling_rate} Hz (read it with "
                f"talkface.media.read_audio(path, {self.feature_extractor.sampling_rate}))")
        video_embeddings, audio_embeddings = self.embed(face_frames, audio_to_int16_scale(audio), channel_order)
        return lse_from_embeddings(video_embeddings, audio_embeddings, self.vshift, start_frame)

    def score_video(self, video_path, audio_path=None, face_mode: str = "precropped",
                    tracking: TrackingOptions | None = None, face_backend=None, protocol: str = "default",
                    box=None) -> VideoSyncResult:
        """LSE of a video file with its own audio track (or `audio_path`); see `score_clip`.

        Frames are read on a 25 fps grid (the reference converts in-the-wild video to 25 fps too).
        `protocol="syncnet_python"` runs syncnet_python's whole procedure on the file instead
        (`talkface.metrics.syncnet_protocol`; face_mode and tracking do not apply): faces come from `box`
        (x1, y1, x2, y2) or from `face_backend`, which must then be an S3FD backend
        (`talkface.faces.S3FDFaceBackend`).
        """
        from .. import media

        if protocol == "syncnet_python":
            from .syncnet_protocol import SyncNetPythonOptions, SyncNetPythonProtocol

            return SyncNetPythonProtocol(self, face_backend, SyncNetPythonOptions(box=box)).score_video(
                video_path, audio_path=audio_path)
        if protocol != "default" or box is not None:
            raise TalkFaceUserError(f"protocol must be 'default' or 'syncnet_python' (box only with the latter), "
                                    f"got {protocol!r}")

        extractor = self.feature_extractor
        frames = media.read_frames(video_path, fps=extractor.fps)  # RGB (frames, H, W, 3)
        audio = media.read_audio(audio_path or video_path, sampling_rate=extractor.sampling_rate)
        return self.score_clip(frames, audio, face_mode=face_mode, tracking=tracking, face_backend=face_backend,
                               name=Path(video_path).name)

    def score_clip(self, frames_rgb, audio, face_mode: str = "precropped", tracking: TrackingOptions | None = None,
                   face_backend=None, name: str = "the video") -> VideoSyncResult:
        """LSE of RGB frames at 25 fps and their 16 kHz audio (int16, or float in [-1, 1]).

        In pre-cropped mode the whole frame is the face; in track mode each face track long enough is scored
        separately (`VideoSyncResult.tracks`) and the others are listed in `skipped_tracks`.
        """
        extractor = self.feature_extractor
        audio = audio_to_int16_scale(audio)
        if face_mode == "precropped":
            return VideoSyncResult(tracks=[self.score_frames(frames_rgb, audio, channel_order="rgb")])
        if face_mode != "track":
            raise TalkFaceUserError(f"unknown face mode {face_mode!r}; use 'precropped' or 'track'")
        tracking = tracking or TrackingOptions()
        tracks, skipped = find_face_tracks(frames_rgb, tracking, backend=face_backend)
        samples_per_frame = extractor.samples_per_video_frame
        scores = []
        for track in tracks:
            crops = crop_track(frames_rgb, track, tracking, size=extractor.image_size)
            # the reference cuts the audio to the track: [start / fps, (end + 1) / fps)
            first_sample = int(round(track.start * samples_per_frame))
            track_audio = audio[first_sample : int(round((track.end + 1) * samples_per_frame))]
            if extractor.num_windows(len(crops), len(track_audio)) < 1:
                skipped.append((track.start, track.end, "too little audio under the track for one window"))
                continue
            scores.append(self.score_frames(crops, track_audio, channel_order="rgb", start_frame=track.start))
        if not scores:
            reasons = "; ".join(f"frames {s}-{e}: {r}" for s, e, r in skipped) or "no face detected"
            raise NoFaceError(
                f"no face track to score in {name} ({reasons}); lower --min-track-frames / --min-face-size, or use "
                "--face-mode precropped for videos that are face crops"
            )
        return VideoSyncResult(tracks=scores, skipped_tracks=skipped)
