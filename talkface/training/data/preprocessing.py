"""Turn talking-face videos into the training layout of `talkface.training.data.layout` (the work behind
train/preprocess.py).

Per video, in two streaming passes over the frames (so hour-long videos never sit in memory):

1. Every `detect_every`-th frame (and the last) goes through the face backend; the largest face gives a box and
   68 landmarks. Frames in between, and frames where the face was missed, are filled by linear interpolation
   between the nearest detections (copied at the ends). A video whose detection frames miss the face more than
   `max_missing_fraction` of the time fails ("no face" is a reason, never a silent drop).
2. Boxes get Wav2Lip's pads (10 px below the chin by default), are averaged over `smooth_window` frames, rounded
   the way `talkface.faces.crop_face` rounds them, and each frame's box is resized to `face_size` x `face_size`.

The mouth transforms AV-HuBERT's crop needs are computed on the frame landmarks (`mouth_transforms_from_landmarks`)
and re-expressed in face-crop pixels (`rebase_transforms_to_crop`), so the training loss can crop mouths from 96x96
faces, generated or real, with `crop_mouth_differentiable`. The audio track is stored as 16 kHz mono PCM.

Failures (unreadable file, no audio, no face, too short) write `error.json` in the video's folder and a "failed"
manifest record; they are reported, never dropped.
"""

import json
import logging
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ...errors import TalkFaceUserError
from .layout import (
    AFFINES_NAME,
    AUDIO_NAME,
    BOXES_NAME,
    CONFIG_NAME,
    ERROR_NAME,
    LANDMARKS_NAME,
    META_NAME,
    STORAGE_FORMATS,
    VideoRecord,
    atomic_save_npy,
    atomic_write_text,
    save_faces,
    video_folder,
    write_wav,
)

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".flv", ".mpg", ".mpeg", ".m4v")
SAMPLING_RATE = 16000


@dataclass
class PreprocessOptions:
    """Parameters of a preprocessing run (saved as preprocess_config.json beside the manifest).

    face_size: side of the stored face crops (>= 96; the dataset resizes to the model's img_size).
    fps: frame rate of the constant-rate grid frames are taken on.
    face_backend: `talkface.faces.get_face_backend` name.
    detect_every: run the detector on every n-th frame; the others are interpolated.
    detection_max_side: frames are shrunk so their longer side is at most this before detection.
    pads: (top, bottom, left, right) pixels added to detected boxes (Wav2Lip's default: 10 px below the chin).
    smooth_window: frames averaged per box.
    max_missing_fraction: the most detection frames that may lack a face before the video fails.
    min_frames: shorter videos fail (a training window needs k frames plus other frames for the reference).
    max_frames: only the first max_frames frames are used (None: all).
    storage: "npy" (one memory-mapped array per video) or "jpg" (one JPEG per frame, ~5x smaller).
    """

    face_size: int = 96
    fps: float = 25.0
    face_backend: str = "mediapipe"
    detect_every: int = 1
    detection_max_side: int | None = 640
    pads: tuple = (0, 10, 0, 0)
    smooth_window: int = 5
    max_missing_fraction: float = 0.2
    min_frames: int = 10
    max_frames: int | None = None
    storage: str = "npy"

    def validate(self):
        if self.face_size < 96:
            raise TalkFaceUserError(f"--face-size {self.face_size} is too small; the generator needs >= 96")
        if self.storage not in STORAGE_FORMATS:
            raise TalkFaceUserError(f"--storage {self.storage!r}: use one of {STORAGE_FORMATS}")
        if self.detect_every < 1 or self.smooth_window < 1 or self.min_frames < 1:
            raise TalkFaceUserError("--detect-every, --smooth-window and --min-frames must be >= 1")
        if not 0 <= self.max_missing_fraction <= 1:
            raise TalkFaceUserError(f"--max-missing-fraction {self.max_missing_fraction} must be in [0, 1]")
        if len(self.pads) != 4:
            raise TalkFaceUserError(f"--pads needs 4 numbers (top bottom left right), got {self.pads}")


class VideoRejected(Exception):
    """A video that cannot be used, with the reason that goes into the manifest."""


def find_videos(input_dir, file_list=None) -> list[tuple[str, Path]]:
    """(video id, path) of every video under `input_dir`, sorted; ids are relative paths without extension.

    `file_list`: a text file of ids (LRS2's train.txt: "5535415699068794046/00001", optionally followed by more
    columns) or relative paths; only those are taken (a listed id without a file is an error).
    """
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise TalkFaceUserError(f"input directory not found: {input_dir}; pass the root of your video tree")
    if file_list is not None:
        videos = []
        for line in Path(file_list).read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            entry = line.split()[0]
            candidates = [input_dir / entry] if Path(entry).suffix.lower() in VIDEO_EXTENSIONS else [
                input_dir / f"{entry}{ext}" for ext in VIDEO_EXTENSIONS]
            path = next((c for c in candidates if c.is_file()), None)
            if path is None:
                raise TalkFaceUserError(f"{file_list} lists {entry!r} but no such video is under {input_dir}; "
                                        "fix the list or the input directory")
            videos.append((str(Path(entry).with_suffix("")) if path.suffix else entry, path))
        return sorted(videos)
    videos = [(str(p.relative_to(input_dir).with_suffix("")), p) for p in input_dir.rglob("*")
              if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS]
    if not videos:
        raise TalkFaceUserError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) under {input_dir}")
    return sorted(videos)


def _interpolate_rows(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Fill rows where `present` is False by linear interpolation along axis 0 (edges copy the nearest row)."""
    index = np.arange(len(values))
    known = np.flatnonzero(present)
    flat = values.reshape(len(values), -1)
    filled = np.stack([np.interp(index, known, flat[known, column]) for column in range(flat.shape[1])], axis=1)
    return filled.reshape(values.shape)


def _smooth_boxes(boxes: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over `window` frames (shorter at the ends)."""
    if window <= 1:
        return boxes
    half = window // 2
    cumulative = np.concatenate([np.zeros((1, 4)), np.cumsum(boxes, axis=0)])
    index = np.arange(len(boxes))
    lo, hi = np.maximum(0, index - half), np.minimum(len(boxes), index + half + 1)
    return (cumulative[hi] - cumulative[lo]) / (hi - lo)[:, None]


def _text_beside(path: Path) -> str | None:
    """The transcript of LRS2/LRS3-style datasets (a .txt beside the video, first line "Text:  WORDS")."""
    text_file = path.with_suffix(".txt")
    if not text_file.is_file():
        return None
    first = text_file.read_text(encoding="utf-8", errors="replace").splitlines()[:1]
    if not first:
        return None
    line = first[0]
    return line.split(":", 1)[1].strip() if line.lower().startswith("text:") else line.strip()


_BACKENDS = {}


def _backend(name):
    # one backend per worker process, built on first use (mediapipe graphs are expensive to create)
    if name not in _BACKENDS:
        from ...faces import get_face_backend

        _BACKENDS[name] = get_face_backend(name)
    return _BACKENDS[name]


def detect_track(video_path, options: PreprocessOptions):
    """Pass 1: (boxes (T, 4) float64 in frame pixels, landmarks (T, 68, 2) float64, frame shape, missing fraction)."""
    import cv2

    from ...media import iter_frames

    backend = _backend(options.face_backend)
    boxes, landmarks, present, detected_frames = [], [], [], 0
    frame_shape = None
    last_index = -1
    pending = None  # the last frame, when it was not a detection frame
    for index, frame in enumerate(iter_frames(video_path, fps=options.fps)):
        if options.max_frames is not None and index >= options.max_frames:
            break
        frame_shape = frame.shape
        last_index = index
        boxes.append(np.zeros(4))
        landmarks.append(np.zeros((68, 2)))
        present.append(False)
        if index % options.detect_every:
            pending = frame
            continue
        pending = None
        detected_frames += 1
        _detect_into(backend, frame, index, options, boxes, landmarks, present, cv2)
    if last_index < 0:
        raise VideoRejected("no video frames")
    if pending is not None:  # always detect on the last frame, so the tail is interpolated, not extrapolated
        detected_frames += 1
        _detect_into(backend, pending, last_index, options, boxes, landmarks, present, cv2)
    present = np.asarray(present)
    missing = 1.0 - present.sum() / max(detected_frames, 1)
    if not present.any():
        raise VideoRejected("no face found in any frame")
    if missing > options.max_missing_fraction:
        raise VideoRejected(f"no face in {missing:.0%} of the detection frames (limit "
                            f"{options.max_missing_fraction:.0%}; raise --max-missing-fraction to keep such videos)")
    boxes = _interpolate_rows(np.asarray(boxes), present)
    landmarks = _interpolate_rows(np.asarray(landmarks), present)
    return boxes, landmarks, frame_shape, float(missing)


def _detect_into(backend, frame, index, options, boxes, landmarks, present, cv2):
    scale = 1.0
    if options.detection_max_side and max(frame.shape[:2]) > options.detection_max_side:
        scale = max(frame.shape[:2]) / options.detection_max_side
        frame = cv2.resize(frame, (round(frame.shape[1] / scale), round(frame.shape[0] / scale)),
                           interpolation=cv2.INTER_AREA)
    detections = [d for d in backend.detect(frame, landmarks=True) if d.landmarks is not None]
    if not detections:
        return
    face = detections[0]  # largest first
    boxes[index] = np.asarray(face.box, dtype=np.float64) * scale
    landmarks[index] = (np.asarray(face.landmarks, dtype=np.float64) + 0.5) * scale - 0.5  # cv2.resize centres
    present[index] = True


def crop_boxes(boxes: np.ndarray, frame_shape, options: PreprocessOptions) -> np.ndarray:
    """Padded, smoothed, integer (T, 4) crop boxes, rounded exactly as `talkface.faces.crop_face` rounds them."""
    from ...faces import integer_box

    top, bottom, left, right = options.pads
    height, width = frame_shape[:2]
    padded = np.stack([np.maximum(0, boxes[:, 0] - left), np.maximum(0, boxes[:, 1] - top),
                       np.minimum(width, boxes[:, 2] + right), np.minimum(height, boxes[:, 3] + bottom)], axis=1)
    smoothed = _smooth_boxes(padded, options.smooth_window)
    return np.asarray([integer_box(box, frame_shape) for box in smoothed], dtype=np.float64)


def frame_to_crop_points(points: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """(T, N, 2) frame pixels -> crop pixels of a `size` x `size` resize of each box (cv2.resize centres)."""
    scale = size / (boxes[:, 2:] - boxes[:, :2])  # (T, 2) x and y scales
    return (points - boxes[:, None, :2] + 0.5) * scale[:, None, :] - 0.5


def preprocess_video(video_id: str, video_path, output_dir, options: PreprocessOptions) -> VideoRecord:
    """Preprocess one video into `output_dir/videos/<video_id>/`; returns its manifest record (ok or failed).

    Problems with the video become a failed record with the reason (and error.json); a bug raises.
    """
    from ...errors import MediaError
    from ...faces import crop_face
    from ...faces.mouth_roi import mouth_transforms_from_landmarks, rebase_transforms_to_crop
    from ...media import iter_frames, read_audio

    folder = video_folder(output_dir, video_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ERROR_NAME).unlink(missing_ok=True)
    started = time.perf_counter()
    record = VideoRecord(id=video_id, source=str(video_path), status="failed", fps=options.fps,
                         face_size=options.face_size, storage=options.storage)
    try:
        waveform = read_audio(video_path, SAMPLING_RATE)
        boxes, landmarks, frame_shape, missing = detect_track(video_path, options)
        num_frames = len(boxes)
        if options.max_frames is not None:  # keep the audio of the frames that are kept
            waveform = waveform[: int(round(num_frames / options.fps * SAMPLING_RATE))]
        if num_frames < options.min_frames:
            raise VideoRejected(f"only {num_frames} frames, fewer than --min-frames {options.min_frames}")
        crop = crop_boxes(boxes, frame_shape, options)
        faces = np.empty((num_frames, options.face_size, options.face_size, 3), dtype=np.uint8)
        for index, frame in enumerate(iter_frames(video_path, fps=options.fps)):
            if index >= num_frames:
                break
            faces[index] = crop_face(frame, crop[index], options.face_size)
        affines = rebase_transforms_to_crop(mouth_transforms_from_landmarks(landmarks), crop,
                                            (options.face_size, options.face_size)).astype(np.float32)
        crop_landmarks = frame_to_crop_points(landmarks, crop, options.face_size).astype(np.float32)
    except VideoRejected as err:
        record.error = str(err)
    except MediaError as err:
        record.error = f"unreadable: {err}"
    if record.error is not None:
        atomic_write_text(folder / ERROR_NAME, json.dumps(asdict(record), indent=1))
        (folder / META_NAME).unlink(missing_ok=True)
        return record

    save_faces(folder, faces, options.storage)
    atomic_save_npy(folder / AFFINES_NAME, affines)
    atomic_save_npy(folder / LANDMARKS_NAME, crop_landmarks)
    atomic_save_npy(folder / BOXES_NAME, crop.astype(np.float32))
    write_wav(folder / AUDIO_NAME, waveform, SAMPLING_RATE)
    record.status = "ok"
    record.num_frames = num_frames
    record.duration = len(waveform) / SAMPLING_RATE
    record.extra = {"missing_face_fraction": round(missing, 4), "frame_size": list(frame_shape[:2]),
                    "seconds": round(time.perf_counter() - started, 2)}
    text = _text_beside(Path(video_path))
    if text is not None:
        record.extra["text"] = text
    atomic_write_text(folder / META_NAME, json.dumps(asdict(record), indent=1))  # last: marks the video done
    return record


def preprocess_task(task) -> VideoRecord:
    """Worker entry point: (video_id, path, output_dir, options) -> record; unexpected errors become failed records
    with the traceback's last line, so one bad file never stops a long run (the summary reports them all)."""
    video_id, video_path, output_dir, options = task
    try:
        return preprocess_video(video_id, video_path, output_dir, options)
    except Exception as err:  # noqa: BLE001 - reported in the manifest, see docstring
        logger.error("unexpected error on %s:\n%s", video_path, traceback.format_exc())
        record = VideoRecord(id=video_id, source=str(video_path), status="failed", fps=options.fps,
                             face_size=options.face_size, storage=options.storage,
                             error=f"internal error: {type(err).__name__}: {err}")
        folder = video_folder(output_dir, video_id)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / ERROR_NAME, json.dumps(asdict(record), indent=1))
        return record


def existing_record(output_dir, video_id: str, retry_failed: bool) -> VideoRecord | None:
    """The record of a video done by an earlier run (None when it must be (re)processed)."""
    folder = video_folder(output_dir, video_id)
    for name, allowed in ((META_NAME, True), (ERROR_NAME, not retry_failed)):
        path = folder / name
        if allowed and path.is_file():
            try:
                return VideoRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
            except (ValueError, TypeError):
                return None  # damaged marker: redo the video
    return None


def save_options(output_dir, options: PreprocessOptions):
    atomic_write_text(Path(output_dir) / CONFIG_NAME, json.dumps(asdict(options), indent=1))


__all__ = [
    "VIDEO_EXTENSIONS",
    "PreprocessOptions",
    "existing_record",
    "find_videos",
    "preprocess_task",
    "preprocess_video",
    "save_options",
]
