"""On-disk layout of a preprocessed training set (written by train/preprocess.py, read by `TalkFaceDataset`).

    <root>/
      manifest.jsonl            one line per source video, ok or failed (see `VideoRecord`)
      failures.jsonl            the failed ones again, with their error, for a quick look
      preprocess_config.json    the parameters the set was made with (face size, fps, backend, ...)
      videos/<video id>/        one folder per video; the id is the source path relative to the input root,
                                without extension (LRS2's "5535415699068794046/00001")
        faces.npy               (T, S, S, 3) uint8 RGB face crops, S >= 96 (or faces/000000.jpg ... with --storage jpg)
        mouth_affines.npy       (T, 2, 3) float32 maps from AV-HuBERT mouth-patch pixels to face-crop pixels
        landmarks.npy           (T, 68, 2) float32 landmarks in face-crop pixels
        boxes.npy               (T, 4) float32 crop boxes (x1, y1, x2, y2) in frame pixels
        audio.wav               16 kHz mono 16-bit PCM
        meta.json               written last: its presence marks the video as done (resumable preprocessing)
        error.json              instead of meta.json when the video failed

Frames are resampled to a constant `fps` (25 by default), so frame i is at i / fps seconds.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ...errors import TalkFaceUserError
from ...utils.io import write_text, write_with

MANIFEST_NAME = "manifest.jsonl"
FAILURES_NAME = "failures.jsonl"
CONFIG_NAME = "preprocess_config.json"
VIDEOS_DIR = "videos"
FACES_NPY = "faces.npy"
FACES_JPG_DIR = "faces"
AFFINES_NAME = "mouth_affines.npy"
LANDMARKS_NAME = "landmarks.npy"
BOXES_NAME = "boxes.npy"
AUDIO_NAME = "audio.wav"
META_NAME = "meta.json"
ERROR_NAME = "error.json"
STORAGE_FORMATS = ("npy", "jpg")


@dataclass
class VideoRecord:
    """One manifest line. status is "ok" or "failed"; failed records carry `error` and no frames."""

    id: str
    source: str
    status: str
    num_frames: int = 0
    fps: float = 25.0
    face_size: int = 0
    duration: float = 0.0
    storage: str = "npy"
    error: str | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "VideoRecord":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def video_folder(root, video_id: str) -> Path:
    return Path(root) / VIDEOS_DIR / video_id


def atomic_write_text(path, text: str):
    """Write a text file atomically (`talkface.utils.io`: temporary + rename, umask modes, removed on signals)."""
    write_text(path, text, make_parents=True)


def atomic_save_npy(path, array: np.ndarray):
    write_with(path, lambda tmp: np.save(tmp, array))


def write_manifest(root, records: list[VideoRecord]):
    """Write manifest.jsonl (all videos, sorted by id) and failures.jsonl (the failed ones)."""
    records = sorted(records, key=lambda r: r.id)
    atomic_write_text(Path(root) / MANIFEST_NAME, "".join(r.to_json() + "\n" for r in records))
    failed = [r for r in records if r.status != "ok"]
    atomic_write_text(Path(root) / FAILURES_NAME, "".join(r.to_json() + "\n" for r in failed))


def read_manifest(root) -> list[VideoRecord]:
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise TalkFaceUserError(f"no {MANIFEST_NAME} in {root}; preprocess the videos first: "
                                f"python train/preprocess.py --input-dir VIDEOS --output-dir {root}")
    records = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(VideoRecord.from_dict(json.loads(line)))
        except (ValueError, TypeError) as err:
            raise TalkFaceUserError(f"{path}:{line_number} is not a manifest record ({err}); re-run preprocessing "
                                    "to rebuild the manifest") from err
    return records


def save_faces(folder, faces: np.ndarray, storage: str = "npy"):
    """Store (T, S, S, 3) uint8 RGB crops as one .npy (fast, memory-mapped reads) or as JPEG files (compact)."""
    folder = Path(folder)
    if storage == "npy":
        atomic_save_npy(folder / FACES_NPY, np.ascontiguousarray(faces, dtype=np.uint8))
    elif storage == "jpg":
        import cv2

        jpg_dir = folder / FACES_JPG_DIR
        jpg_dir.mkdir(parents=True, exist_ok=True)
        for index, face in enumerate(faces):
            if not cv2.imwrite(str(jpg_dir / f"{index:06d}.jpg"), cv2.cvtColor(face, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, 95]):
                raise OSError(f"cannot write {jpg_dir / f'{index:06d}.jpg'}")
    else:
        raise ValueError(f"storage={storage!r} must be one of {STORAGE_FORMATS}")


class FaceFrames:
    """Random access to a video's face crops, whatever the storage; `faces[a:b]` -> (b - a, S, S, 3) uint8 RGB."""

    def __init__(self, folder, storage: str = "npy"):
        self.folder = Path(folder)
        self.storage = storage
        if storage == "npy":
            self._array = np.load(self.folder / FACES_NPY, mmap_mode="r")
            self._files = None
        elif storage == "jpg":
            self._array = None
            self._files = sorted((self.folder / FACES_JPG_DIR).glob("*.jpg"))
        else:
            raise ValueError(f"storage={storage!r} must be one of {STORAGE_FORMATS}")

    def __len__(self):
        return len(self._array) if self._array is not None else len(self._files)

    def __getitem__(self, index):
        if self._array is not None:
            return np.array(self._array[index])  # a copy: the memory map is read-only
        import cv2

        files = self._files[index] if isinstance(index, slice) else [self._files[index]]
        images = []
        for path in files:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise OSError(f"cannot read {path}; re-run preprocessing for this video")
            images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        stacked = np.stack(images)
        return stacked if isinstance(index, slice) else stacked[0]


def write_wav(path, waveform: np.ndarray, sampling_rate: int = 16000):
    """Mono float waveform in [-1, 1] -> 16-bit PCM wav, atomically."""
    from scipy.io import wavfile

    path = Path(path)
    samples = np.clip(np.round(np.asarray(waveform, dtype=np.float64) * 32767.0), -32768, 32767).astype(np.int16)
    write_with(path, lambda tmp: wavfile.write(tmp, sampling_rate, samples))


def read_wav(path) -> tuple[np.ndarray, int]:
    """16-bit PCM wav -> (float32 mono waveform in [-1, 1], sampling rate)."""
    from scipy.io import wavfile

    sampling_rate, samples = wavfile.read(path)
    if samples.ndim > 1:
        samples = samples.mean(axis=1)
    if samples.dtype == np.int16:
        samples = samples.astype(np.float32) / 32768.0
    return samples.astype(np.float32), int(sampling_rate)


__all__ = [
    "FaceFrames",
    "VideoRecord",
    "atomic_save_npy",
    "atomic_write_text",
    "read_manifest",
    "read_wav",
    "save_faces",
    "video_folder",
    "write_manifest",
    "write_wav",
]
