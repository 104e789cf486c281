"""Follow one face through a stream of frames and give each frame its smoothed, padded face (or None).

`FaceTracker.track(frames)` is a generator: it consumes frames lazily and yields `(frame, face)` in order with a
lag of a few frames (the detection stride plus half the smoothing window), so memory stays bounded whatever the
video length. `face` is a `FaceDetection`: the padded, smoothed box, and (with `landmarks=True`) the 68 landmarks
the detector fitted, smoothed and interpolated the same way, so later steps (paste-back, face enhancement) use
them instead of detecting again.

How a box is found for each frame:
1. Detection runs on "key" frames, every `detect_every` frames (and on the last frame). Frames are shrunk so their
   longer side is at most `detection_max_side` first; the boxes are scaled back.
2. The tracked face is the detection overlapping the previous tracked box most (IoU >= `min_iou`). With no
   previous box, or when no detection overlaps it (a cut, the face reappearing elsewhere), the tracker
   (re)acquires the `face_index`-th largest face (0 = largest). The first frame in which faces are found fixes
   whether `face_index` makes sense: fewer faces than that raise `InvalidInputError` with the count, at once.
3. Between two key frames that both hold the same face (IoU >= `interpolate_min_iou`), with no abrupt picture
   change in between (32x32 thumbnails of consecutive frames differ by less than `scene_change_threshold` grey
   levels), boxes (and landmarks) are interpolated linearly. Otherwise (face appears/disappears, a cut, a black
   or inserted frame, fast motion) every frame in between is detected too. Occlusions that change little of the picture (a hand
   over the mouth for a few frames) can be missed with `detect_every` > 1; use 1 for such videos.
4. Wav2Lip-style pads (top, bottom, left, right, in pixels) are added and the box clipped to the frame. Pads
   that leave no face region (negative pads larger than the face) raise `InvalidInputError` at the first face
   found, instead of pasting a sliver.
5. Boxes and landmarks are averaged over `smooth_window` frames centred on each frame (Wav2Lip averages a forward
   window of 5), within runs of frames that hold the face without a jump (IoU >= `min_iou`), so smoothing never
   blends across a cut or into a face-less frame. Landmarks are averaged over the frames of the window that have
   them (a detector can find a box but fail to fit landmarks); pads apply to the box only.

A forced `box` (x1, y1, x2, y2) skips all of this: every frame gets that box (no pads, as in Wav2Lip's --box) and
no landmarks. Frames without the face get None; `frames_without_face` counts them.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from ..errors import InvalidInputError
from .backends import FaceBackend, FaceDetection, box_iou, get_face_backend

logger = logging.getLogger(__name__)

DEFAULT_PADS = (0, 10, 0, 0)  # Wav2Lip's --pads default: 10 px below the chin


def _resize_for_detection(frame: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    height, width = frame.shape[:2]
    if not max_side or max(height, width) <= max_side:
        return frame, 1.0
    import cv2

    scale = max_side / max(height, width)
    small = cv2.resize(frame, (max(1, round(width * scale)), max(1, round(height * scale))),
                       interpolation=cv2.INTER_LINEAR)  # fast; detection needs no anti-aliasing
    return small, scale


def _thumbnail(frame: np.ndarray, side: int = 32) -> np.ndarray:
    """A tiny grey version of the frame (strided sampling, no filtering: it only has to show scene changes)."""
    height, width = frame.shape[:2]
    sampled = frame[:: max(1, height // side), :: max(1, width // side)]
    return sampled.mean(axis=2, dtype=np.float32)


def _has_jump(thumbnails: list[np.ndarray], threshold: float) -> bool:
    """True when two consecutive thumbnails differ by more than `threshold` grey levels on average."""
    return any(float(np.abs(b - a).mean()) > threshold for a, b in zip(thumbnails, thumbnails[1:]))


def validate_pads(pads) -> tuple[int, int, int, int]:
    pads = tuple(int(p) for p in pads)
    if len(pads) != 4:
        raise ValueError(f"pads must be 4 numbers (top, bottom, left, right), got {pads}")
    return pads


def validate_box(box) -> np.ndarray:
    box = np.asarray(box, dtype=np.float32).reshape(-1)
    if box.shape != (4,) or not (box[2] > box[0] and box[3] > box[1]) or (box < 0).any():
        raise ValueError(f"box must be x1 y1 x2 y2 with x2 > x1 >= 0 and y2 > y1 >= 0, got {box.tolist()}")
    return box


class FaceTracker:
    """Per-frame boxes of one tracked face. See the module docstring for the algorithm.

    Args:
        backend: a `FaceBackend` or backend name (default "mediapipe").
        face_index: which face to follow when several are visible, by size (0 = largest).
        box: forced (x1, y1, x2, y2) box for every frame; disables detection.
        pads: (top, bottom, left, right) pixels added around detected boxes.
        smooth_window: frames averaged per box (1 disables smoothing).
        detect_every: detection stride in frames (1 = every frame).
        detection_max_side: frames are shrunk to this longer side before detection (None = full size).
        landmarks: also fit the 68 landmarks on detected frames and hand them on (smoothed, interpolated).
        min_iou: overlap that counts as "the same face" from one detection to the next.
        interpolate_min_iou: overlap two key-frame boxes need for the frames between them to be interpolated.
        scene_change_threshold: mean grey-level change between consecutive frames (on 32x32 thumbnails) above
            which frames between two key frames are detected one by one instead of interpolated (cuts, black or
            inserted frames).
    """

    def __init__(self, backend: FaceBackend | str | None = "mediapipe", face_index: int = 0,
                 box: Sequence[float] | None = None, pads: Sequence[int] = DEFAULT_PADS, smooth_window: int = 5,
                 detect_every: int = 1, detection_max_side: int | None = 640, landmarks: bool = False,
                 min_iou: float = 0.3, interpolate_min_iou: float = 0.5, scene_change_threshold: float = 15.0):
        if face_index < 0:
            raise ValueError(f"face_index must be >= 0, got {face_index}")
        if smooth_window < 1 or detect_every < 1:
            raise ValueError(f"smooth_window and detect_every must be >= 1, got {smooth_window}, {detect_every}")
        self.forced_box = None if box is None else validate_box(box)
        self.backend = None
        if self.forced_box is None:
            if backend is None:
                raise ValueError("FaceTracker needs a face backend unless a forced box is given")
            self.backend = get_face_backend(backend) if isinstance(backend, str) else backend
        self.face_index = face_index
        self.pads = validate_pads(pads)
        self.smooth_window = smooth_window
        self.detect_every = detect_every
        self.detection_max_side = detection_max_side
        self.landmarks = bool(landmarks)
        self.min_iou = min_iou
        self.interpolate_min_iou = interpolate_min_iou
        self.scene_change_threshold = scene_change_threshold
        self.reset()

    def reset(self):
        """Forget the tracked face and the counters (call between videos)."""
        self.num_frames = 0
        self.frames_without_face = 0
        self.num_detections = 0
        self._last_box = None
        self._faces_seen = False  # whether any frame so far had a face (the face index is checked on the first)

    # -- detection + association --------------------------------------------------------------------------
    def detect_faces(self, frame: np.ndarray) -> list[FaceDetection]:
        """All faces in a frame (largest first), boxes and landmarks in full-frame pixels."""
        small, scale = _resize_for_detection(frame, self.detection_max_side)
        self.num_detections += 1
        # a boxes-only backend (s3fd) is not asked for landmarks; whoever needs them fits them (the GFPGAN enhancer)
        faces = self.backend.detect(small, landmarks=self.landmarks and self.backend.provides_landmarks)
        if scale == 1.0:
            return faces
        return [FaceDetection(box=face.box / scale, score=face.score,
                              landmarks=None if face.landmarks is None else face.landmarks / scale)
                for face in faces]

    def detect_boxes(self, frame: np.ndarray) -> list[np.ndarray]:
        """All face boxes in a frame (largest first), in full-frame pixels."""
        return [face.box for face in self.detect_faces(frame)]

    def _check_face_index(self, candidates: list[FaceDetection]):
        """On the first frame with faces: refuse a face index beyond them (the same faces follow in most videos,
        so finding out after the whole video would only waste the run)."""
        if self._faces_seen or not candidates:
            return
        self._faces_seen = True
        count = len(candidates)
        if self.face_index >= count:
            where = "the first frame" if self.num_detections == 1 else "the first frame where faces were found"
            raise InvalidInputError(
                f"--face-index {self.face_index} but only {count} face{'s were' if count != 1 else ' was'} found in "
                f"{where}; use 0..{count - 1} (0 = the largest)")

    def _associate(self, candidates: list[FaceDetection]) -> FaceDetection | None:
        self._check_face_index(candidates)
        face = None
        if candidates and self._last_box is not None:
            overlaps = [box_iou(c.box, self._last_box) for c in candidates]
            best = int(np.argmax(overlaps))
            if overlaps[best] >= self.min_iou:
                face = candidates[best]
        if face is None and self.face_index < len(candidates):
            face = candidates[self.face_index]  # (re)acquire by size
        if face is not None:
            self._last_box = face.box
        return face

    def _raw_faces(self, frames: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, FaceDetection | None]]:
        """(frame, raw face) in order: key frames detected, frames between interpolated or detected."""
        pending: list[np.ndarray] = []  # frames after the last key frame, waiting for the next one
        previous_key_face, previous_key_thumbnail = None, None

        def resolve(key_frame):
            nonlocal previous_key_face, previous_key_thumbnail
            key_candidates = self.detect_faces(key_frame)
            last_box_before_key = self._last_box
            key_face = self._associate(key_candidates)
            key_thumbnail = _thumbnail(key_frame)
            if pending:
                same_face = (previous_key_face is not None and key_face is not None
                             and box_iou(previous_key_face.box, key_face.box) >= self.interpolate_min_iou
                             and not _has_jump([previous_key_thumbnail, *map(_thumbnail, pending), key_thumbnail],
                                               self.scene_change_threshold))
                if same_face:
                    steps = len(pending) + 1
                    for step, frame in enumerate(pending, start=1):
                        yield frame, _interpolate(previous_key_face, key_face, step / steps)
                else:  # something changed in between: look at every frame, in order
                    self._last_box = last_box_before_key
                    for frame in pending:
                        yield frame, self._associate(self.detect_faces(frame))
                    key_face = self._associate(key_candidates)
                pending.clear()
            previous_key_face, previous_key_thumbnail = key_face, key_thumbnail
            yield key_frame, key_face

        for index, frame in enumerate(frames):
            if index % self.detect_every == 0:
                yield from resolve(frame)
            else:
                pending.append(frame)
        if pending:  # the last frame closes the final interval as a key frame
            yield from resolve(pending.pop())

    # -- padding + smoothing ------------------------------------------------------------------------------
    def _pad(self, box: np.ndarray, frame: np.ndarray) -> np.ndarray:
        """The padded box clipped to the frame; `InvalidInputError` when the pads leave less than 2 x 2 pixels."""
        top, bottom, left, right = self.pads
        height, width = frame.shape[:2]
        padded = np.array([max(0.0, box[0] - left), max(0.0, box[1] - top), min(float(width), box[2] + right),
                           min(float(height), box[3] + bottom)], dtype=np.float32)
        if padded[2] - padded[0] < 2 or padded[3] - padded[1] < 2:
            size = f"{box[2] - box[0]:.0f}x{box[3] - box[1]:.0f}"
            raise InvalidInputError(
                f"--pads {' '.join(map(str, self.pads))} (top bottom left right) leave no face region around the "
                f"{size} face found at ({box[0]:.0f}, {box[1]:.0f}); negative pads shrink the box, so use smaller "
                "ones (the default is " + " ".join(map(str, DEFAULT_PADS)) + ")")
        return padded

    def track(self, frames: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, FaceDetection | None]]:
        """Yield (frame, face) for every frame: a `FaceDetection` whose box is the float32 (4,) padded, smoothed
        x1, y1, x2, y2 and whose landmarks are the smoothed (68, 2) points (None without `landmarks=True`, with a
        forced box, or when none could be fitted); None when the frame has no face."""
        if self.forced_box is not None:
            for frame in frames:
                height, width = frame.shape[:2]
                box = self.forced_box.copy()
                box[[0, 2]] = np.clip(box[[0, 2]], 0, width)
                box[[1, 3]] = np.clip(box[[1, 3]], 0, height)
                self.num_frames += 1
                yield frame, FaceDetection(box=box, landmarks=None, score=1.0)
            return

        half = self.smooth_window // 2
        # (frame, padded raw face or None, run id); entries before `cursor` are left context
        buffer: deque = deque()
        cursor = 0
        run_id, previous = 0, None

        def emit(position: int):
            frame, face, run = buffer[position]
            self.num_frames += 1
            if face is None:
                self.frames_without_face += 1
                return frame, None
            lo, hi = max(0, position - half), min(len(buffer), position + half + 1)
            neighbours = [buffer[k][1] for k in range(lo, hi) if buffer[k][2] == run]
            points = [n.landmarks for n in neighbours if n.landmarks is not None]
            return frame, FaceDetection(box=np.mean([n.box for n in neighbours], axis=0).astype(np.float32),
                                        landmarks=np.mean(points, axis=0).astype(np.float32) if points else None,
                                        score=float(np.mean([n.score for n in neighbours])))

        for frame, raw in self._raw_faces(frames):
            face = None if raw is None else FaceDetection(box=self._pad(raw.box, frame), landmarks=raw.landmarks,
                                                          score=raw.score)
            if face is not None and (previous is None or box_iou(face.box, previous) < self.min_iou):
                run_id += 1  # a new run starts: nothing is averaged across this boundary
            previous = None if face is None else face.box
            buffer.append((frame, face, run_id if face is not None else None))
            while len(buffer) - 1 - cursor >= half:  # the next frame has its right-hand neighbours
                yield emit(cursor)
                cursor += 1
                while cursor > half:  # keep only `half` frames of left context
                    buffer.popleft()
                    cursor -= 1
        while cursor < len(buffer):  # the last frames: no more right-hand neighbours will come
            yield emit(cursor)
            cursor += 1


def _interpolate(start: FaceDetection, end: FaceDetection, weight: float) -> FaceDetection:
    """The face `weight` of the way from `start` to `end` (boxes, and landmarks when both have them)."""
    landmarks = None
    if start.landmarks is not None and end.landmarks is not None:
        landmarks = ((1 - weight) * start.landmarks + weight * end.landmarks).astype(np.float32)
    return FaceDetection(box=((1 - weight) * start.box + weight * end.box).astype(np.float32), landmarks=landmarks,
                         score=min(start.score, end.score))
