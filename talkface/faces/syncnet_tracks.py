"""Scene cuts, face tracks and face crops exactly as syncnet_python's `run_pipeline.py` makes them.

These are the reference's rules, kept literally (the faster, more forgiving versions used by the default LSE track
mode live in `talkface.metrics.sync`):

* scenes: PySceneDetect 0.5.1's `ContentDetector` (threshold 30, min_scene_len 15) on the frames OpenCV decodes
  from the re-encoded video, subsampled by `compute_downscale_factor(width)` (every 2nd pixel from 400 px wide...);
* tracks (`track_shot`): greedy, frame by frame, a face joins the track when it overlaps the track's last face by
  IoU > 0.5 within `num_failed_det` (25) frames; a track needs **more than** `min_track` (100) detections and a mean
  box side over `min_face_size` (100 px); boxes are linearly interpolated between detections;
* crops (`crop_video`): half size s = max(w, h) / 2 and the centre, each median-filtered over 13 frames (zero
  padding at the ends: scipy's medfilt); the frame padded by int(s (1 + 2 cs)) with 110 grey and cut to rows
  [y - s, y + s (1 + 2 cs)), columns [x - s (1 + cs), x + s (1 + cs)) (cs = 0.4), resized to 224 x 224 (bilinear).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backends import box_iou

# PySceneDetect 0.5.1 `video_manager.DEFAULT_DOWNSCALE_FACTORS`: frame width -> subsampling step
_DOWNSCALE_FACTORS = ((3200, 12), (2100, 8), (1700, 6), (1200, 5), (900, 4), (600, 3), (400, 2))


def scene_downscale_factor(frame_width: int) -> int:
    """PySceneDetect 0.5.1's automatic downscale factor for a frame width (`set_downscale_factor()`)."""
    return next((factor for width, factor in _DOWNSCALE_FACTORS if frame_width >= width), 1)


class ContentSceneDetector:
    """PySceneDetect 0.5.1's `ContentDetector`, fed BGR frames in order with `push(frame)`.

    The content value of a frame is the mean over H, S and V of the mean absolute difference from the previous frame
    (OpenCV's 8-bit HSV); a cut is declared where it reaches `threshold`, the first cut anywhere and later ones at
    least `min_scene_len` frames after the previous cut. Frames are subsampled as the reference's VideoManager does.
    """

    def __init__(self, threshold: float = 30.0, min_scene_len: int = 15):
        self.threshold = threshold
        self.min_scene_len = min_scene_len
        self.cuts: list[int] = []
        self.num_frames = 0
        self._last_hsv = None
        self._factor = None

    def push(self, frame_bgr: np.ndarray):
        import cv2

        if self._factor is None:
            self._factor = scene_downscale_factor(frame_bgr.shape[1])
        if self._factor > 1:
            frame_bgr = frame_bgr[:: self._factor, :: self._factor, :]
        hsv = cv2.cvtColor(np.ascontiguousarray(frame_bgr), cv2.COLOR_BGR2HSV).astype(np.int32)
        index = self.num_frames
        if self._last_hsv is not None:
            pixels = hsv.shape[0] * hsv.shape[1]
            deltas = [np.sum(np.abs(hsv[..., c] - self._last_hsv[..., c])) / float(pixels) for c in range(3)]
            content = sum(deltas) / 3.0
            last_cut = self.cuts[-1] if self.cuts else None
            if content >= self.threshold and (last_cut is None or index - last_cut >= self.min_scene_len):
                self.cuts.append(index)
        self._last_hsv = hsv
        self.num_frames += 1

    def scenes(self) -> list[tuple[int, int]]:
        """[start, end) frame ranges: from frame 0 to the first cut, cut to cut, the last cut to the end."""
        bounds = [0, *self.cuts, self.num_frames]
        return list(zip(bounds[:-1], bounds[1:]))


@dataclass
class ReferenceTrack:
    """A syncnet_python face track: `frames` (consecutive frame indices) and one interpolated box per frame."""

    frames: np.ndarray  # (n,) int64
    boxes: np.ndarray  # (n, 4) float64 x1, y1, x2, y2

    @property
    def start(self) -> int:
        return int(self.frames[0])

    @property
    def end(self) -> int:
        return int(self.frames[-1])


def track_shot(scene_faces: list[list[dict]], num_failed_det: int = 25, min_track: int = 100,
               min_face_size: float = 100.0, iou_threshold: float = 0.5
               ) -> tuple[list[ReferenceTrack], list[tuple[int, int, str]]]:
    """The reference's `track_shot` over one scene.

    scene_faces: one list per frame of the scene, of {"frame": index, "bbox": [x1, y1, x2, y2]} dicts, in the
    detector's order; faces are removed from these lists as tracks take them (as in the reference).
    Returns the kept tracks and (first frame, last frame, reason) of the dropped ones.

    The loop is the reference's, including its quirks: faces are removed from a frame's list while it is being
    iterated (so the face after a taken one is skipped in that pass), a track may take two faces of one frame, and
    after a gap of more than `num_failed_det` frames the rest of the scene is skipped for this track.
    """
    tracks, dropped = [], []
    while True:
        track = []
        for frame_faces in scene_faces:
            # `for face in frame_faces` while removing from it, spelled out: the list iterator's position keeps
            # counting, so the face after a removed one is not looked at in this pass
            position = 0
            while position < len(frame_faces):
                face = frame_faces[position]
                position += 1
                if not track:
                    track.append(face)
                    frame_faces.remove(face)
                elif face["frame"] - track[-1]["frame"] <= num_failed_det:
                    if box_iou(face["bbox"], track[-1]["bbox"]) > iou_threshold:
                        track.append(face)
                        frame_faces.remove(face)
                else:
                    break
        if not track:
            break
        first, last = track[0]["frame"], track[-1]["frame"]
        if len(track) <= min_track:
            dropped.append((int(first), int(last), f"track of {len(track)} detections; syncnet_python needs more "
                                                   f"than min_track={min_track}"))
            continue
        frame_numbers = np.array([f["frame"] for f in track])
        boxes = np.array([np.asarray(f["bbox"], dtype=np.float64) for f in track])
        frames = np.arange(frame_numbers[0], frame_numbers[-1] + 1)
        interpolated = np.stack([_interp1d(frame_numbers, boxes[:, k], frames) for k in range(4)], axis=1)
        size = max(np.mean(interpolated[:, 2] - interpolated[:, 0]), np.mean(interpolated[:, 3] - interpolated[:, 1]))
        if size > min_face_size:
            tracks.append(ReferenceTrack(frames=frames, boxes=interpolated))
        else:
            dropped.append((int(first), int(last), f"mean face size {size:.0f} px; syncnet_python needs more than "
                                                   f"min_face_size={min_face_size:g}"))
    return tracks, dropped


def _interp1d(x: np.ndarray, y: np.ndarray, at: np.ndarray) -> np.ndarray:
    """scipy.interpolate.interp1d(x, y)(at), linear (x increasing; repeated x keeps scipy's choice)."""
    from scipy.interpolate import interp1d

    return interp1d(x, y)(at)


@dataclass
class CropTrajectory:
    """crop_video's smoothed centre (x, y) and half size s per track frame (its `proc_track`)."""

    x: np.ndarray
    y: np.ndarray
    s: np.ndarray


def crop_trajectory(boxes: np.ndarray, kernel_size: int = 13) -> CropTrajectory:
    """The reference's `dets` after `signal.medfilt(..., kernel_size=13)` for the boxes of a track."""
    from scipy.signal import medfilt

    boxes = np.asarray(boxes, dtype=np.float64)
    half = np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
    return CropTrajectory(x=medfilt(centre_x, kernel_size=kernel_size), y=medfilt(centre_y, kernel_size=kernel_size),
                          s=medfilt(half, kernel_size=kernel_size))


def crop_window(x: float, y: float, s: float, crop_scale: float = 0.4) -> tuple[int, tuple[int, int, int, int]]:
    """Pad width `bsi` and the slice (y0, y1, x0, x1) crop_video takes from the padded frame."""
    pad = int(s * (1 + 2 * crop_scale))
    my, mx = y + pad, x + pad
    return pad, (int(my - s), int(my + s * (1 + 2 * crop_scale)), int(mx - s * (1 + crop_scale)),
                 int(mx + s * (1 + crop_scale)))


def crop_face(frame_bgr: np.ndarray, x: float, y: float, s: float, crop_scale: float = 0.4, size: int = 224,
              pad_value: int = 110) -> np.ndarray:
    """crop_video's crop of one frame: pad with `pad_value`, slice, `cv2.resize` to size x size (bilinear)."""
    import cv2

    pad, (y0, y1, x0, x1) = crop_window(x, y, s, crop_scale)
    height, width = frame_bgr.shape[:2]
    # slicing [y0:y1, x0:x1] of the padded frame, without padding the whole frame (numpy clips the slice)
    padded_h, padded_w = height + 2 * pad, width + 2 * pad
    y0, y1 = _clip_slice(y0, y1, padded_h)
    x0, x1 = _clip_slice(x0, x1, padded_w)
    window = np.full((y1 - y0, x1 - x0, frame_bgr.shape[2]), pad_value, dtype=frame_bgr.dtype)
    src_y0, src_y1 = max(y0 - pad, 0), min(y1 - pad, height)
    src_x0, src_x1 = max(x0 - pad, 0), min(x1 - pad, width)
    if src_y1 > src_y0 and src_x1 > src_x0:
        window[src_y0 + pad - y0 : src_y1 + pad - y0, src_x0 + pad - x0 : src_x1 + pad - x0] = (
            frame_bgr[src_y0:src_y1, src_x0:src_x1])
    return cv2.resize(window, (size, size))


def _clip_slice(start: int, stop: int, length: int) -> tuple[int, int]:
    """What Python slicing [start:stop] of a sequence of `length` selects, as (start, stop) with start <= stop."""
    start, stop, _ = slice(start, stop).indices(length)
    return start, max(start, stop)
