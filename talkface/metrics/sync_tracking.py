"""Face tracks for LSE on in-the-wild video (`face_mode="track"`, after syncnet_python's run_pipeline).

Scene cuts, detection on downscaled frames every few frames, greedy tracking by box overlap, and the reference's
smoothed square crops; the settings and how they differ from the reference are in `TrackingOptions`. The
reference's rules kept literally (for `--lse-protocol syncnet_python`) are `talkface.faces.syncnet_tracks`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..faces.backends import box_iou as _box_iou


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
