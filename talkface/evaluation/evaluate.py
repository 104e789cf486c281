"""Evaluate a folder of generated videos against references: the Python API behind `talkface evaluate`.

    from .evaluate import EvaluationOptions, evaluate
    report = evaluate("out/generated", reference="data/test", metrics="lse,ssim,psnr,lmd", output="reports/run1",
                      options=EvaluationOptions(syncnet="models/syncnet-lse"))
    report.summary["lse_c"]["value"]

Files are paired by name (stem): `generated/abc.mp4` with `reference/abc.*`, `audio/abc.*` and `text/abc.txt`
(transcripts for WER; by default looked up beside the reference). Every metric of `talkface.metrics.METRICS` runs
on every pair; per-file results are cached in REPORT_DIR/cache (keyed by the files' size and modification time,
the settings and the model), so an interrupted run resumes where it stopped. A metric whose model is missing is
reported as unavailable with the command that provides it, and the others still run. Unreadable or faceless files
are skipped for the metrics that cannot use them and listed in the report, never dropped silently.

Outputs in REPORT_DIR: results.json (everything), results.csv (one row per file), report.md (summary and
per-file tables), plots/ (per-metric distributions and per-frame sync curves, PNG).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib
import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import MissingDependencyError, ModelLoadError, TalkFaceUserError
from ..metrics import AUDIO, DEFAULT_METRICS, METRICS, REFERENCE, TEXT, parse_metric_names
from ..metrics.image_quality import DEFAULT_PSNR_CAP_DB
from ..metrics.sync import DEFAULT_VSHIFT, TrackingOptions

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv"}
AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus"}
TEXT_EXTENSIONS = {".txt"}
#: all metrics read video at this rate (SyncNet and AV-HuBERT were trained on 25 fps)
EVALUATION_FPS = 25.0
#: sample rate the audio is read at (SyncNet MFCCs, AV-HuBERT filterbanks)
EVALUATION_SAMPLING_RATE = 16000
#: bump when the format of cached results changes
_CACHE_VERSION = 1


# ----------------------------------------------------------------------------------------------------------------
# Options, pairs, report
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class EvaluationOptions:
    """Settings of an evaluation run (the flags of `talkface evaluate`).

    Models (a folder or Hub id; when None the metric's environment variable is read, see talkface.metrics):
        syncnet: SyncNet LSE folder (`talkface convert syncnet-lse`), for lse.
        avhubert: AV-HuBERT folder (`talkface convert avhubert`), for avs.
        lip_reader: fine-tuned AV-HuBERT lip-reading folder, for wer (defaults to `avhubert` when that is one).
        fid_inception: FID Inception folder (`talkface convert fid-inception`), for fid.
    LSE:
        face_mode: "precropped" (whole frame = face, the LRS2 protocol) or "track" (detect + track + crop).
        tracking: `TrackingOptions` of track mode (min track length, crop scale, ...).
        vshift: offsets searched on each side.
    Image metrics:
        image_region: "full" (whole frames) or "face" (the reference face box cropped from both frames and resized
            to 96 x 96, as TalkLip's visual_quality.py) for ssim and psnr.
        ssim_window: "gaussian" (sigma 1.5, the papers' setting) or "uniform" (scikit-image's default 7 x 7).
        psnr_cap_db: per-frame PSNR cap (identical frames give +inf otherwise); None for no cap.
        lmd_every: detect landmarks on every n-th frame for lmd.
        fid_every: use every n-th frame for fid.
    General:
        face_backend: talkface.faces backend for lmd, the face region and track mode.
        device: torch device for the models.
        batch_size: SyncNet video windows per forward pass.
        use_cache: read and write REPORT_DIR/cache.
        plots: write PNG plots (needs matplotlib).
        max_curve_plots: at most this many per-file sync-curve plots.
    """

    syncnet: str | None = None
    avhubert: str | None = None
    lip_reader: str | None = None
    fid_inception: str | None = None
    face_mode: str = "precropped"
    tracking: TrackingOptions = field(default_factory=TrackingOptions)
    vshift: int = DEFAULT_VSHIFT
    image_region: str = "full"
    ssim_window: str = "gaussian"
    psnr_cap_db: float | None = DEFAULT_PSNR_CAP_DB
    lmd_every: int = 1
    fid_every: int = 1
    face_backend: str = "mediapipe"
    device: str = "cpu"
    batch_size: int = 32
    use_cache: bool = True
    plots: bool = True
    max_curve_plots: int = 20

    def __post_init__(self):
        if self.face_mode not in ("precropped", "track"):
            raise TalkFaceUserError(f"face mode must be 'precropped' or 'track', got {self.face_mode!r}")
        if self.image_region not in ("full", "face"):
            raise TalkFaceUserError(f"image region must be 'full' or 'face', got {self.image_region!r}")
        if self.ssim_window not in ("gaussian", "uniform"):
            raise TalkFaceUserError(f"SSIM window must be 'gaussian' or 'uniform', got {self.ssim_window!r}")
        for name in ("lmd_every", "fid_every", "batch_size"):
            if getattr(self, name) < 1:
                raise TalkFaceUserError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")

    def model_source(self, spec) -> str | None:
        """The model folder / Hub id for a metric: its option, else its environment variable."""
        if spec.model_option is None:
            return None
        value = getattr(self, spec.model_option)
        if value is None and spec.model_option == "lip_reader":
            value = os.environ.get(spec.model_env) or self.avhubert
        return value or os.environ.get(spec.model_env) or None

    def settings_for(self, metric: str) -> dict:
        """The settings that change a metric's per-file result (part of its cache key)."""
        if metric == "lse":
            settings = {"face_mode": self.face_mode, "vshift": self.vshift}
            if self.face_mode == "track":
                settings.update(dataclasses.asdict(self.tracking), face_backend=self.face_backend)
            return settings
        if metric in ("ssim", "psnr"):
            settings = {"image_region": self.image_region}
            if self.image_region == "face":
                settings["face_backend"] = self.face_backend
            if metric == "ssim":
                settings["window"] = self.ssim_window
            else:
                settings["cap_db"] = self.psnr_cap_db
            return settings
        if metric == "lmd":
            return {"every": self.lmd_every, "face_backend": self.face_backend}
        if metric == "avs":
            return {"face_backend": self.face_backend}
        if metric == "fid":
            return {"every": self.fid_every}
        return {}


@dataclass
class FilePair:
    """The files of one evaluated item, found by stem."""

    stem: str
    generated: Path
    reference: Path | None = None
    audio: Path | None = None
    text: Path | None = None


@dataclass
class EvaluationReport:
    """What `evaluate` found.

    summary: field -> {"value", "files", "metric", "higher_is_better"} (data-set values).
    files: one dict per generated file: stem, paths, values (field -> value), details (metric -> extra data).
    skipped: {"stem", "metric", "reason"} for every metric that could not score a file.
    unavailable: metric -> why it did not run at all (with the fix).
    unpaired_references: reference files without a generated counterpart (not evaluated).
    output_dir: where the report was written (None when not written).
    """

    metrics: list[str]
    summary: dict
    files: list[dict]
    skipped: list[dict]
    unavailable: dict
    unpaired_references: list[str]
    settings: dict
    output_dir: Path | None = None

    def to_dict(self) -> dict:
        return {
            "metrics": self.metrics,
            "summary": self.summary,
            "files": self.files,
            "skipped": self.skipped,
            "unavailable": self.unavailable,
            "unpaired_references": self.unpaired_references,
            "settings": self.settings,
        }


def _index_folder(folder: Path, extensions: set[str], what: str) -> dict[str, Path]:
    files = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.suffix.lower() not in extensions:
            continue
        if path.stem in files:
            raise TalkFaceUserError(
                f"{what} folder {folder} has two files named {path.stem!r} ({files[path.stem].name}, {path.name}); "
                "files are paired by name, so keep one"
            )
        files[path.stem] = path
    return files


def _check_dir(path, flag: str) -> Path:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise TalkFaceUserError(f"{flag} folder {folder} does not exist; pass an existing folder")
    return folder


def pair_files(generated, reference=None, audio=None, text=None) -> tuple[list[FilePair], list[str]]:
    """Pair the generated videos with reference videos, audio and transcripts of the same stem.

    Returns the pairs (one per generated video, sorted by stem) and the reference files nobody pairs with.
    Raises `TalkFaceUserError` for missing folders, an empty generated folder, or (with `reference`) no file
    name in common.
    """
    generated_dir = _check_dir(generated, "--generated")
    generated_files = _index_folder(generated_dir, VIDEO_EXTENSIONS, "generated")
    if not generated_files:
        raise TalkFaceUserError(
            f"no videos in {generated_dir} (looked for {', '.join(sorted(VIDEO_EXTENSIONS))}); pass the folder of "
            "generated videos"
        )
    references = {}
    if reference is not None:
        references = _index_folder(_check_dir(reference, "--reference"), VIDEO_EXTENSIONS, "reference")
        if not set(references) & set(generated_files):
            raise TalkFaceUserError(
                f"no file name in {generated_dir} matches one in {reference}; files are paired by name (stem), e.g. "
                "generated/abc.mp4 with reference/abc.mp4"
            )
    audios = _index_folder(_check_dir(audio, "--audio"), AUDIO_EXTENSIONS | VIDEO_EXTENSIONS, "audio") if audio else {}
    if text is not None:
        texts = _index_folder(_check_dir(text, "--text"), TEXT_EXTENSIONS, "text")
    elif reference is not None:
        texts = _index_folder(Path(reference), TEXT_EXTENSIONS, "reference")
    else:
        texts = {}
    pairs = [FilePair(stem=stem, generated=path, reference=references.get(stem), audio=audios.get(stem),
                      text=texts.get(stem)) for stem, path in generated_files.items()]
    unpaired = sorted(str(path) for stem, path in references.items() if stem not in generated_files)
    return pairs, unpaired


# ----------------------------------------------------------------------------------------------------------------
# Per-pair media and shared resources
# ----------------------------------------------------------------------------------------------------------------


class PairMedia:
    """Decodes a pair's frames and audio once, on first use, for all metrics (a failure is kept and re-raised)."""

    def __init__(self, pair: FilePair, fps: float = EVALUATION_FPS, sampling_rate: int = EVALUATION_SAMPLING_RATE):
        self.pair = pair
        self.fps = fps
        self.sampling_rate = sampling_rate
        self._values = {}

    def _get(self, key, load):
        if key not in self._values:
            try:
                self._values[key] = (True, load())
            except TalkFaceUserError as err:
                self._values[key] = (False, err)
        ok, value = self._values[key]
        if not ok:
            raise value
        return value

    @property
    def generated_frames(self) -> np.ndarray:
        """RGB uint8 (frames, H, W, 3) at 25 fps."""
        from .. import media

        return self._get("generated", lambda: media.read_frames(self.pair.generated, fps=self.fps))

    @property
    def reference_frames(self) -> np.ndarray:
        from .. import media

        if self.pair.reference is None:
            raise TalkFaceUserError(f"no reference video named {self.pair.stem}.* in the --reference folder")
        return self._get("reference", lambda: media.read_frames(self.pair.reference, fps=self.fps))

    @property
    def audio_source(self) -> Path:
        """--audio file, else the generated video's own sound track."""
        return self.pair.audio or self.pair.generated

    @property
    def audio(self) -> np.ndarray:
        """float32 mono in [-1, 1] at 16 kHz."""
        from .. import media

        return self._get("audio", lambda: media.read_audio(self.audio_source, sampling_rate=self.sampling_rate))

    @property
    def transcript(self) -> str:
        if self.pair.text is None:
            raise TalkFaceUserError(
                f"no transcript {self.pair.stem}.txt (pass --text DIR or put it beside the reference)")
        from ..pipelines.lip_reading.pipeline import read_reference_text

        # LRS2/LRS3 transcripts hold "Text: ..." lines; a plain text file is used as it is
        return self._get("text", lambda: read_reference_text(str(self.pair.text)))

    def value(self, key, compute):
        """Memoise something derived from the media (e.g. the face-region crops that ssim and psnr share)."""
        return self._get(key, compute)


class EvaluationContext:
    """Models and face backend, loaded once per run on first use."""

    def __init__(self, options: EvaluationOptions, cache_dir: Path | None = None):
        self.options = options
        self.cache_dir = cache_dir
        self._models = {}
        self._backend = None
        self.fid_activations = {}  # stem -> (generated, reference) arrays when nothing is written to disk

    def model(self, metric: str):
        if metric not in self._models:
            self._models[metric] = _load_model(metric, self.options)
        return self._models[metric]

    def face_backend(self):
        if self._backend is None:
            from ..faces.backends import get_face_backend

            self._backend = get_face_backend(self.options.face_backend)
        return self._backend

    def close(self):
        if self._backend is not None:
            self._backend.close()
            self._backend = None


def _load_model(metric: str, options: EvaluationOptions):
    spec = METRICS[metric]
    source = options.model_source(spec)
    if metric == "fid":
        from ..metrics.fid import load_fid_model

        return load_fid_model(source, device=options.device)  # has its own default folder and error message
    if source is None:
        raise ModelLoadError(f"no model given for {metric}; {spec.model_hint}")
    if metric == "lse":
        from ..metrics.sync import LSEScorer

        return LSEScorer.from_pretrained(source, device=options.device, vshift=options.vshift,
                                         batch_size=options.batch_size)
    if metric == "avs":
        from ..metrics.avs import AVSScorer

        return AVSScorer.from_pretrained(source, device=options.device, face_backend=options.face_backend)
    if metric == "wer":
        return _load_lip_reader(source, options)
    raise ValueError(f"metric {metric} has no model")


def _model_fingerprint(source) -> dict | None:
    """Identifies a model folder's content for cache keys (its files' sizes and modification times)."""
    if source is None:
        return None
    folder = Path(str(source)).expanduser()
    if folder.is_dir():
        return {"path": str(folder.resolve()), "files": sorted(
            (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()
            if p.suffix in (".json", ".safetensors", ".bin"))}
    if folder.is_file():
        return {"path": str(folder.resolve()), "size": folder.stat().st_size, "mtime": folder.stat().st_mtime_ns}
    return {"id": str(source)}


# ----------------------------------------------------------------------------------------------------------------
# Metric adapters: one pair in, {"values": {field: value}, ...} out
# ----------------------------------------------------------------------------------------------------------------


def lse_for_pair(media: PairMedia, context: EvaluationContext) -> dict:
    """LSE-D / LSE-C / AV offset of the generated video with its audio (pre-cropped or tracked faces)."""
    scorer = context.model("lse")
    options = context.options
    backend = context.face_backend() if options.face_mode == "track" else None
    result = scorer.score_clip(media.generated_frames, media.audio, face_mode=options.face_mode,
                               tracking=options.tracking, face_backend=backend, name=media.pair.generated.name)
    longest = max(result.tracks, key=lambda t: t.num_windows)
    curve = np.full(len(media.generated_frames), np.nan)
    for track in result.tracks:  # framewise confidence, placed at each window's first frame
        curve[track.start_frame : track.start_frame + track.num_windows] = track.framewise_confidence_smoothed
    return {
        "values": {"lse_d": result.lse_d, "lse_c": result.lse_c, "offset": result.offset},
        "num_frames": int(sum(t.num_windows for t in result.tracks)),
        "details": {"tracks": [t.to_dict(curves=False) for t in result.tracks],
                    "skipped_tracks": [list(t) for t in result.skipped_tracks],
                    "num_windows": longest.num_windows},
        "curves": {"lse_confidence": curve.tolist()},
    }


def _image_pair(media: PairMedia, context: EvaluationContext) -> tuple[np.ndarray, np.ndarray, dict]:
    """Generated and reference frames made comparable: same count, same size, optionally the face region."""

    def compute():
        import cv2

        generated, reference = media.generated_frames, media.reference_frames
        count = min(len(generated), len(reference))
        notes = {}
        if len(generated) != len(reference):
            notes["frames_compared"] = f"{count} of {len(generated)} generated / {len(reference)} reference"
        generated, reference = generated[:count], reference[:count]
        if context.options.image_region == "face":
            from ..metrics.image_quality import crop_face_regions

            boxes = _reference_face_boxes(reference, context)
            scale = np.array([generated.shape[2] / reference.shape[2], generated.shape[1] / reference.shape[1]] * 2)
            return crop_face_regions(generated, boxes * scale), crop_face_regions(reference, boxes), notes
        if generated.shape[1:3] != reference.shape[1:3]:
            height, width = reference.shape[1:3]
            notes["resized"] = f"generated {generated.shape[2]}x{generated.shape[1]} resized to {width}x{height}"
            generated = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in generated])
        return generated, reference, notes

    return media.value("image_pair", compute)


def _reference_face_boxes(frames: np.ndarray, context: EvaluationContext) -> np.ndarray:
    """Largest face box per reference frame; frames without a face take the nearest detected box."""
    from ..errors import NoFaceError

    backend = context.face_backend()
    boxes = np.full((len(frames), 4), np.nan)
    for index, frame in enumerate(frames):
        faces = backend.detect(frame, landmarks=False)
        if faces:
            boxes[index] = faces[0].box
    found = np.flatnonzero(~np.isnan(boxes[:, 0]))
    if not len(found):
        raise NoFaceError("no face in the reference video; use --image-region full")
    for column in range(4):
        boxes[:, column] = np.interp(np.arange(len(frames)), found, boxes[found, column])
    return boxes


def ssim_for_pair(media: PairMedia, context: EvaluationContext) -> dict:
    from ..metrics.image_quality import ssim_per_frame

    generated, reference, notes = _image_pair(media, context)
    values = ssim_per_frame(generated, reference, window=context.options.ssim_window)
    return {"values": {"ssim": float(values.mean())}, "num_frames": len(values), "details": notes}


def psnr_for_pair(media: PairMedia, context: EvaluationContext) -> dict:
    from ..metrics.image_quality import psnr_per_frame

    generated, reference, notes = _image_pair(media, context)
    values = psnr_per_frame(generated, reference)
    cap = context.options.psnr_cap_db
    if cap is not None:
        values = np.minimum(values, cap)
    return {"values": {"psnr": float(values.mean())}, "num_frames": len(values),
            "details": {**notes, "identical_frames": int(np.isinf(psnr_per_frame(generated, reference)).sum())}}


def lmd_for_pair(media: PairMedia, context: EvaluationContext) -> dict:
    from ..metrics.lmd import lmd_between_videos

    result = lmd_between_videos(media.generated_frames, media.reference_frames, backend=context.face_backend(),
                                every=context.options.lmd_every)
    return {"values": {"lmd": result.lmd}, "num_frames": result.num_frames,
            "details": {"missing_frames": result.missing_frames}}


def avs_for_pair(media: PairMedia, context: EvaluationContext) -> dict:
    from ..metrics.avs import score_avs

    reference = media.reference_frames if media.pair.reference is not None else None
    # the scorer (model + face backend) is loaded once per run and passed in
    result = score_avs(media.generated_frames, audio=media.audio, reference=reference, model=context.model("avs"))
    return {"values": {k: float(v) for k, v in result.scores.items()}, "num_frames": int(result.num_frames),
            "details": {"skipped": dict(result.skipped)},
            "curves": {k: np.asarray(v, dtype=float).tolist() for k, v in result.curves.items()}}


def fid_for_pair(media: PairMedia, context: EvaluationContext) -> dict:
    """Pool3 activations of both videos, kept for the data-set FID (cached as .npz beside the JSON cache)."""
    model = context.model("fid")
    every = context.options.fid_every
    generated = _fid_activations(media.generated_frames[::every], model)
    reference = _fid_activations(media.reference_frames[::every], model)
    if context.cache_dir is not None:
        path = context.cache_dir / f"{_safe_name(media.pair.stem)}.fid.npz"
        _atomic_write_bytes(path, lambda f: np.savez(f, generated=generated, reference=reference))
        artifact = path.name
    else:
        context.fid_activations[media.pair.stem] = (generated, reference)
        artifact = None
    return {"values": {}, "num_frames": len(generated), "details": {"activations": artifact}}


def _fid_activations(frames: np.ndarray, model, batch_size: int = 50) -> np.ndarray:
    """(frames, 2048) float32 pool3 activations of RGB uint8 frames, with talkface.metrics.fid's input recipe."""
    import torch

    parameter = next(model.parameters())
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(frames), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(frames[start : start + batch_size])).permute(0, 3, 1, 2)
            pixel_values = batch.to(device=parameter.device, dtype=parameter.dtype) / 255.0  # (n, 3, H, W) in [0, 1]
            outputs.append(model(pixel_values, return_dict=True).pooled_features.float().cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 2048), np.float32)


def wer_for_pair(media: PairMedia, context: EvaluationContext) -> dict:
    """Word errors of the lip reader's transcript of the generated video against the reference transcript."""
    from ..metrics import wer as wer_module

    reference_text = media.transcript  # first: a missing transcript skips the file before the costly decoding
    lip_reader = context.model("wer")
    hypothesis = lip_reader(media.generated_frames)
    reader = getattr(lip_reader, "reader", None)
    if reader is not None:  # lower-case and round-trip through the tokenizer, as the AV-HuBERT reference scores
        reference_text = reader.normalize_reference(reference_text)
    counts = wer_module.word_error_counts(reference_text, hypothesis)
    errors, words = int(counts["errors"]), int(counts["words"])
    return {"values": {"wer": errors / words if words else float("nan")}, "counts": {"errors": errors, "words": words},
            "details": {"hypothesis": hypothesis}}


def _load_lip_reader(source, options: EvaluationOptions):
    """A callable frames -> transcript, from talkface.metrics.wer."""
    from ..metrics import wer as wer_module

    return wer_module.load_lip_reader(source, device=options.device, face_backend=options.face_backend)


# ----------------------------------------------------------------------------------------------------------------
# Cache
# ----------------------------------------------------------------------------------------------------------------


def _safe_name(stem: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)


def _file_fingerprint(path: Path | None):
    if path is None:
        return None
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def _cache_key(metric: str, pair: FilePair, options: EvaluationOptions) -> str:
    spec = METRICS[metric]
    inputs = {"generated": _file_fingerprint(pair.generated)}
    if REFERENCE in spec.needs or metric == "avs":  # AVS_m / AVS_v use the reference when there is one
        inputs["reference"] = _file_fingerprint(pair.reference)
    if AUDIO in spec.needs:
        inputs["audio"] = _file_fingerprint(pair.audio)
    if TEXT in spec.needs:
        inputs["text"] = _file_fingerprint(pair.text)
    payload = {"version": _CACHE_VERSION, "metric": metric, "inputs": inputs, "settings": options.settings_for(metric),
               "model": _model_fingerprint(options.model_source(spec)) if spec.model_option else None}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _cache_read(cache_dir: Path | None, stem: str, metric: str, key: str):
    if cache_dir is None:
        return None
    path = cache_dir / f"{_safe_name(stem)}.{metric}.json"
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if entry.get("key") != key:
        return None
    if metric == "fid" and entry["result"].get("details", {}).get("activations"):
        if not (cache_dir / entry["result"]["details"]["activations"]).is_file():
            return None
    return entry


def _cache_write(cache_dir: Path | None, stem: str, metric: str, key: str, entry: dict):
    if cache_dir is None:
        return
    path = cache_dir / f"{_safe_name(stem)}.{metric}.json"
    text = json.dumps({"key": key, **entry}, default=_json_default)
    _atomic_write_bytes(path, lambda f: f.write(text.encode("utf-8")))


def _atomic_write_bytes(path: Path, write):
    """Write through a temporary file in the same folder, renamed at the end (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as f:
            write(f)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


# ----------------------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------------------


def _check_available(metrics, pairs, options: EvaluationOptions, context: EvaluationContext) -> dict:
    """metric -> reason it cannot run at all (missing model, dependency or input folder)."""
    unavailable = {}
    has_reference = any(p.reference is not None for p in pairs)
    for metric in metrics:
        spec = METRICS[metric]
        if REFERENCE in spec.needs and not has_reference:
            unavailable[metric] = "needs reference videos; pass --reference DIR"
            continue
        needs_backend = metric == "lmd" or (metric in ("ssim", "psnr") and options.image_region == "face") or (
            metric == "lse" and options.face_mode == "track")
        try:
            if needs_backend:
                context.face_backend()
            if spec.model_option is not None:
                context.model(metric)
        except (ModelLoadError, MissingDependencyError, ImportError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            if spec.model_hint and "talkface convert" not in reason and isinstance(err, ModelLoadError):
                reason = f"{reason}; {spec.model_hint}"
            unavailable[metric] = reason
        except TalkFaceUserError as err:
            unavailable[metric] = str(err)
    return unavailable


def evaluate(generated, reference=None, audio=None, text=None, metrics=DEFAULT_METRICS, output=None,
             options: EvaluationOptions | None = None, progress: bool = True) -> EvaluationReport:
    """Score every generated video (see the module docstring). Returns an `EvaluationReport`; with `output`, also
    writes results.json, results.csv, report.md and plots/ there and caches per-file results in output/cache."""
    from tqdm.auto import tqdm

    options = options or EvaluationOptions()
    metrics = parse_metric_names(metrics)
    pairs, unpaired = pair_files(generated, reference, audio, text)
    output_dir = Path(output).expanduser() if output is not None else None
    cache_dir = None
    if output_dir is not None:
        if output_dir.exists() and not output_dir.is_dir():
            raise TalkFaceUserError(f"--output {output_dir} is a file; pass a folder for the report")
        output_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(output_dir, os.W_OK):
            raise TalkFaceUserError(f"cannot write to {output_dir}; pass a writable --output folder")
        if options.use_cache:
            cache_dir = output_dir / "cache"
            cache_dir.mkdir(exist_ok=True)
    context = EvaluationContext(options, cache_dir)
    try:
        unavailable = _check_available(metrics, pairs, options, context)
        for metric, reason in unavailable.items():
            logger.debug("%s unavailable: %s", metric, reason)
        runnable = [m for m in metrics if m not in unavailable]
        files, skipped = [], []
        for pair in tqdm(pairs, desc="evaluate", unit="file", disable=not progress):
            media = PairMedia(pair)
            row = {"stem": pair.stem, "generated": str(pair.generated),
                   "reference": str(pair.reference) if pair.reference else None,
                   "audio": str(pair.audio) if pair.audio else None, "values": {}, "details": {}, "curves": {},
                   "num_frames": {}, "counts": {}}
            for metric in runnable:
                entry = _run_metric(metric, media, context)
                if entry["status"] == "skipped":
                    skipped.append({"stem": pair.stem, "metric": metric, "reason": entry["reason"]})
                    continue
                result = entry["result"]
                row["values"].update(result.get("values", {}))
                if result.get("details"):
                    row["details"][metric] = result["details"]
                row["curves"].update(result.get("curves", {}))
                if "num_frames" in result:
                    row["num_frames"][metric] = result["num_frames"]
                if "counts" in result:
                    row["counts"][metric] = result["counts"]
            files.append(row)
        summary = _summarise(runnable, files, context)
        settings = {k: v for k, v in dataclasses.asdict(options).items()}
        report = EvaluationReport(metrics=metrics, summary=summary, files=files, skipped=skipped,
                                  unavailable=unavailable, unpaired_references=unpaired, settings=settings,
                                  output_dir=output_dir)
    finally:
        context.close()
    if output_dir is not None:
        write_report(report, output_dir, options)
    return report


def _run_metric(metric: str, media: PairMedia, context: EvaluationContext) -> dict:
    """Cached result of one metric on one pair: {"status": "ok", "result": {...}} or {"status": "skipped", ...}."""
    spec = METRICS[metric]
    pair = media.pair
    key = _cache_key(metric, pair, context.options) if context.cache_dir is not None else None
    cached = _cache_read(context.cache_dir, pair.stem, metric, key) if key else None
    if cached is not None:
        return cached
    if REFERENCE in spec.needs and pair.reference is None:
        entry = {"status": "skipped", "reason": f"no reference video named {pair.stem}.*"}
    else:
        module_name, function_name = spec.compute.split(":")
        function = getattr(importlib.import_module(module_name), function_name)
        try:
            entry = {"status": "ok", "result": function(media, context)}
        except TalkFaceUserError as err:  # unreadable file, no face, too short: reported, not fatal
            entry = {"status": "skipped", "reason": str(err)}
            logger.debug("%s: %s skipped: %s", pair.stem, metric, err)
    if key:
        _cache_write(context.cache_dir, pair.stem, metric, key, entry)
    return entry


def _summarise(metrics, files, context: EvaluationContext) -> dict:
    summary = {}
    for metric in metrics:
        spec = METRICS[metric]
        if spec.aggregate == "dataset":
            if metric == "fid":
                value, count = _dataset_fid(files, context)
                if value is not None:
                    summary["fid"] = {"value": value, "files": count, "metric": metric,
                                      "higher_is_better": spec.higher_is_better.get("fid")}
            continue
        for field_name in spec.fields:
            rows = [f for f in files if field_name in f["values"] and _finite(f["values"][field_name])]
            if not rows:
                continue
            values = np.array([f["values"][field_name] for f in rows], dtype=float)
            if spec.aggregate == "frame_mean":
                weights = np.array([f["num_frames"].get(metric, 1) for f in rows], dtype=float)
                value = float(np.sum(values * weights) / np.sum(weights))
            elif spec.aggregate == "corpus":
                errors = sum(f["counts"][metric]["errors"] for f in rows)
                words = sum(f["counts"][metric]["words"] for f in rows)
                value = errors / words if words else float("nan")
            else:
                value = float(np.mean(values))
            summary[field_name] = {"value": value, "files": len(rows), "metric": metric,
                                   "higher_is_better": spec.higher_is_better.get(field_name)}
    return summary


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not math.isnan(value)


def _dataset_fid(files, context: EvaluationContext):
    """FID of all generated frames against all reference frames, from the per-file activations."""
    from ..metrics.fid import frechet_distance

    sums = {}
    count = 0
    for row in files:
        details = row["details"].get("fid")
        if details is None:
            continue
        if details.get("activations") and context.cache_dir is not None:
            with np.load(context.cache_dir / details["activations"]) as data:
                parts = (data["generated"], data["reference"])
        elif row["stem"] in context.fid_activations:
            parts = context.fid_activations[row["stem"]]
        else:
            continue
        count += 1
        for name, activations in zip(("generated", "reference"), parts):
            activations = activations.astype(np.float64)
            total, outer, n = sums.get(name, (0.0, 0.0, 0))
            sums[name] = (total + activations.sum(0), outer + activations.T @ activations, n + len(activations))
    if count == 0:
        return None, 0
    stats = []
    for name in ("generated", "reference"):
        total, outer, n = sums[name]
        if n < 2:
            return None, count
        mu = total / n
        sigma = (outer - n * np.outer(mu, mu)) / (n - 1)  # unbiased, as numpy.cov / pytorch-fid
        stats.append((mu, sigma))
    return float(frechet_distance(stats[0][0], stats[0][1], stats[1][0], stats[1][1])), count


# ----------------------------------------------------------------------------------------------------------------
# Writing the report
# ----------------------------------------------------------------------------------------------------------------


def _format(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if math.isnan(value):
            return "nan"
        return f"{value:.4f}" if abs(value) >= 0.01 or value == 0 else f"{value:.4g}"
    return str(value)


def _sanitise(value):
    """JSON without NaN/Infinity tokens: non-finite floats become the strings "nan" / "inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return _format(value)
    if isinstance(value, dict):
        return {k: _sanitise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_sanitise(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray, Path)):
        return _sanitise(_json_default(value))
    return value


def write_report(report: EvaluationReport, output_dir, options: EvaluationOptions | None = None) -> dict:
    """Write results.json, results.csv, report.md and plots/ into `output_dir`; returns name -> path."""
    output_dir = Path(output_dir)
    options = options or EvaluationOptions()
    written = {}
    text = json.dumps(_sanitise(report.to_dict()), indent=2)
    _atomic_write_bytes(output_dir / "results.json", lambda f: f.write(text.encode("utf-8")))
    written["json"] = output_dir / "results.json"

    fields = [f for m in report.metrics for f in METRICS[m].fields if m not in report.unavailable]
    skipped_by_stem = {}
    for item in report.skipped:
        skipped_by_stem.setdefault(item["stem"], []).append(f"{item['metric']}: {item['reason']}")

    def write_csv(f):
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["stem", *fields, "generated", "reference", "audio", "skipped"])
        for row in report.files:
            skipped_here = " | ".join(skipped_by_stem.get(row["stem"], []))
            writer.writerow([row["stem"], *(_format(row["values"].get(k)) for k in fields), row["generated"],
                             row["reference"] or "", row["audio"] or "", skipped_here])
        f.write(buffer.getvalue().encode("utf-8"))

    _atomic_write_bytes(output_dir / "results.csv", write_csv)
    written["csv"] = output_dir / "results.csv"

    markdown = render_markdown(report)
    _atomic_write_bytes(output_dir / "report.md", lambda f: f.write(markdown.encode("utf-8")))
    written["markdown"] = output_dir / "report.md"

    if options.plots:
        try:
            written.update(write_plots(report, output_dir / "plots", max_curve_plots=options.max_curve_plots))
        except MissingDependencyError as err:
            logger.warning("plots skipped: %s", err)
    return written


def render_markdown(report: EvaluationReport) -> str:
    fields = [f for m in report.metrics for f in METRICS[m].fields if m not in report.unavailable]
    arrows = {True: " ↑", False: " ↓", None: ""}
    lines = ["# talkface evaluation", ""]
    lines += ["## Summary", "", "| metric | value | files |", "|---|---|---|"]
    for name, entry in report.summary.items():
        lines.append(f"| {name}{arrows[entry['higher_is_better']]} | {_format(entry['value'])} | {entry['files']} |")
    if not report.summary:
        lines.append("| (no metric produced a value) | | |")
    lines += ["", f"{len(report.files)} generated files; ↑ higher is better, ↓ lower is better. "
              "LSE, AVS: mean over files; SSIM, PSNR, LMD: mean over all frames; WER: corpus level; FID: all frames.",
              ""]
    if report.unavailable:
        lines += ["## Unavailable metrics", ""]
        lines += [f"- **{metric}**: {reason}" for metric, reason in report.unavailable.items()]
        lines.append("")
    lines += ["## Per file", "", "| file | " + " | ".join(fields) + " |", "|---" * (len(fields) + 1) + "|"]
    for row in report.files:
        lines.append(f"| {row['stem']} | " + " | ".join(_format(row["values"].get(k)) for k in fields) + " |")
    lines.append("")
    if report.skipped:
        grouped = {}  # (stem, reason) -> metrics, so an unreadable file is one line
        for item in report.skipped:
            grouped.setdefault((item["stem"], item["reason"]), []).append(item["metric"])
        lines += ["## Skipped", "", "| file | metrics | reason |", "|---|---|---|"]
        lines += [f"| {stem} | {', '.join(names)} | {reason.replace('|', '/')} |"
                  for (stem, reason), names in grouped.items()]
        lines.append("")
    if report.unpaired_references:
        lines += ["## Reference files without a generated video (not evaluated)", ""]
        lines += [f"- {path}" for path in report.unpaired_references]
        lines.append("")
    return "\n".join(lines)


def write_plots(report: EvaluationReport, plots_dir, max_curve_plots: int = 20) -> dict:
    """Histograms of each metric over files and per-frame sync curves (LSE confidence, AVS_u) as PNG."""
    from ..utils.imports import require

    matplotlib = require("matplotlib", "evaluation plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    fields = [f for m in report.metrics for f in METRICS[m].fields if m not in report.unavailable]
    for field_name in fields:
        values = [row["values"][field_name] for row in report.files
                  if field_name in row["values"] and _finite(row["values"][field_name])
                  and math.isfinite(row["values"][field_name])]
        if not values:
            continue
        figure, axis = plt.subplots(figsize=(5, 3.2))
        axis.hist(values, bins=min(30, max(5, len(values))), color="#4477aa")
        axis.set_xlabel(field_name)
        axis.set_ylabel("files")
        summary = report.summary.get(field_name)
        if summary is not None and math.isfinite(summary["value"]):
            axis.axvline(summary["value"], color="#cc3311", linestyle="--", label=f"data set {summary['value']:.3f}")
            axis.legend(fontsize=8)
        axis.set_title(f"{field_name} over {len(values)} files")
        figure.tight_layout()
        path = plots_dir / f"distribution_{field_name}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written[f"plot_{field_name}"] = path

    curve_rows = [row for row in report.files if row["curves"]][:max_curve_plots]
    labels = {"lse_confidence": "LSE confidence (median - distance)", "avs_u": "AVS_u cosine",
              "avs_m": "AVS_m cosine", "avs_v": "AVS_v cosine"}
    for row in curve_rows:
        names = list(row["curves"])
        figure, axes = plt.subplots(len(names), 1, figsize=(7, 2.2 * len(names)), sharex=True, squeeze=False)
        for axis, name in zip(axes[:, 0], names):
            curve = np.asarray(row["curves"][name], dtype=float)  # NaN where nothing was scored (gaps are drawn)
            axis.plot(np.arange(len(curve)) / EVALUATION_FPS, curve, linewidth=1)
            axis.set_ylabel(labels.get(name, name), fontsize=8)
            axis.grid(alpha=0.3)
        axes[-1, 0].set_xlabel("time (s)")
        axes[0, 0].set_title(f"{row['stem']}: per-frame sync")
        figure.tight_layout()
        path = plots_dir / "sync_curves" / f"{_safe_name(row['stem'])}.png"
        path.parent.mkdir(exist_ok=True)
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written[f"curve_{row['stem']}"] = path
    return written
