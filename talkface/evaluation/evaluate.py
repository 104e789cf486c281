"""Evaluate a folder of generated videos against references: the Python API behind `talkface evaluate`.

    from talkface.evaluation.evaluate import EvaluationOptions, evaluate
    report = evaluate("out/generated", reference="data/test", metrics="lse,ssim,psnr,lmd", output="reports/run1",
                      options=EvaluationOptions(syncnet="models/syncnet-lse"))
    report.summary["lse_c"]["value"]

Files are paired by name (stem): `generated/abc.mp4` with `reference/abc.*`, `audio/abc.*` and `text/abc.txt`
(transcripts for WER; by default looked up beside the reference), see `talkface.evaluation.pairing`. Every metric
asked for (a `talkface.metrics.Metric`) runs on every pair; per-file results are cached in REPORT_DIR/cache
(`talkface.evaluation.cache`), so an interrupted run resumes where it stopped. A metric whose model is missing is
reported as unavailable with the command that provides it, and the others still run. Unreadable or faceless files
are skipped for the metrics that cannot use them and listed in the report, never dropped silently.

Outputs in REPORT_DIR (`talkface.evaluation.report`, `.plots`): results.json (everything), results.csv (one row
per file), report.md (summary and per-file tables), plots/ (per-metric distributions and per-frame sync curves).

`evaluate_pairs` is the loop itself, for callers that pair files themselves and bring their own models (the demo):

    context = EvaluationContext(options, models={"lse": LSEScorer.from_pretrained("models/syncnet-lse")})
    report = evaluate_pairs([FilePair("clip", Path("clip.mp4"))], ["lse"], options, context=context,
                            progress=lambda fraction, text: print(f"{fraction:.0%} {text}"))

Under `accelerate launch` / `torchrun` (or `talkface evaluate --num-processes N`) `evaluate` splits the pairs
between the processes and the main process writes the merged report (`talkface.evaluation.distributed`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import MissingDependencyError, ModelLoadError, TalkFaceUserError
from ..metrics import AUDIO, DEFAULT_METRICS, REFERENCE, get_metric, parse_metric_names
from ..metrics.avs import DEFAULT_LANDMARK_STRIDE
from ..metrics.image_quality import DEFAULT_PSNR_CAP_DB
from ..metrics.sync import DEFAULT_VSHIFT, TrackingOptions
from ..metrics.syncnet_protocol import LSE_PROTOCOLS, validate_lse_box
from ..utils.devices import resolve_device
from ..utils.io import check_output, write_bytes
from ..utils.sources import model_display_name
from .cache import cache_key, cache_read, cache_write, safe_name
from .pairing import (  # noqa: F401  (re-exported: these names lived here first)
    AUDIO_EXTENSIONS,
    EVALUATION_FPS,
    EVALUATION_SAMPLING_RATE,
    TEXT_EXTENSIONS,
    VIDEO_EXTENSIONS,
    FilePair,
    PairMedia,
    pair_files,
)
from .plots import write_plots  # noqa: F401
from .report import EvaluationReport, render_markdown, write_report  # noqa: F401

logger = logging.getLogger(__name__)

#: progress callback: (fraction done in [0, 1], what is being done)
ProgressCallback = Callable[[float, str], None]


@dataclass
class EvaluationOptions:
    """Settings of an evaluation run (the flags of `talkface evaluate`; `talkface score` and the demo use the same
    defaults).

    Models (a folder or Hub id; when None the metric's environment variable is read, see talkface.metrics):
        syncnet: SyncNet LSE folder (`talkface convert syncnet-lse`), for lse.
        avhubert: AV-HuBERT folder (`talkface convert avhubert`), for avs.
        lip_reader: fine-tuned AV-HuBERT lip-reading folder, for wer (defaults to `avhubert` when that is one).
        fid_inception: FID Inception folder (`talkface convert fid-inception`), for fid.
    LSE:
        face_mode: "precropped" (whole frame = face, the LRS2 protocol) or "track" (detect + track + crop).
        tracking: `TrackingOptions` of track mode (min track length, crop scale, ...).
        vshift: offsets searched on each side.
        lse_protocol: "default" (talkface's decode, face modes above) or "syncnet_python" (syncnet_python's whole
            procedure on the video file, re-encodes included: `talkface.metrics.syncnet_protocol`; face_mode and
            tracking do not apply).
        lse_box: (x1, y1, x2, y2) face box in source pixels standing in for S3FD in the syncnet_python protocol.
        s3fd: S3FD folder (`talkface convert s3fd`) for the syncnet_python protocol without a box (TALKFACE_S3FD).
    AVS:
        avs_layer: AV-HuBERT encoder layer compared (None: the last layer with its final LayerNorm).
        avs_landmark_stride: mouth landmarks on every n-th frame, interpolated between.
    Image metrics:
        image_region: "full" (whole frames) or "face" (the reference face box cropped from both frames and resized
            to 96 x 96, as TalkLip's visual_quality.py) for ssim and psnr.
        ssim_window: "gaussian" (sigma 1.5, the papers' setting) or "uniform" (scikit-image's default 7 x 7).
        psnr_cap_db: per-frame PSNR cap (identical frames give +inf otherwise); None for no cap.
        lmd_every: detect landmarks on every n-th frame for lmd.
        fid_every: use every n-th frame for fid.
    General:
        face_backend: talkface.faces backend for lmd, avs, wer, the face region and track mode.
        device: torch device for the models (auto, cpu, cuda, cuda:N or mps; "auto" is resolved here).
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
    lse_protocol: str = "default"
    lse_box: tuple | None = None
    s3fd: str | None = None
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
    avs_layer: int | None = None
    avs_landmark_stride: int = DEFAULT_LANDMARK_STRIDE

    def __post_init__(self):
        self.device = str(resolve_device(self.device))  # "auto" -> the device it means here
        if self.face_mode not in ("precropped", "track"):
            raise TalkFaceUserError(f"face mode must be 'precropped' or 'track', got {self.face_mode!r}")
        if self.lse_protocol not in LSE_PROTOCOLS:
            raise TalkFaceUserError(f"LSE protocol must be one of {', '.join(LSE_PROTOCOLS)}, got {self.lse_protocol!r}")
        if self.lse_box is not None:
            if self.lse_protocol != "syncnet_python":
                raise TalkFaceUserError("--box gives the face of --lse-protocol syncnet_python; add that option (the "
                                        "default protocol finds faces with --face-mode)")
            self.lse_box = validate_lse_box(self.lse_box)
        if self.image_region not in ("full", "face"):
            raise TalkFaceUserError(f"image region must be 'full' or 'face', got {self.image_region!r}")
        if self.ssim_window not in ("gaussian", "uniform"):
            raise TalkFaceUserError(f"SSIM window must be 'gaussian' or 'uniform', got {self.ssim_window!r}")
        for name in ("lmd_every", "fid_every", "batch_size", "avs_landmark_stride"):
            if getattr(self, name) < 1:
                raise TalkFaceUserError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")


class EvaluationContext:
    """What the metrics share during a run: models (loaded once, on first use), the face backend, the cache folder
    and arrays kept for the data-set summaries.

    Args:
        options: the run's `EvaluationOptions`.
        cache_dir: REPORT_DIR/cache (None: nothing is read or written).
        models: metric name -> an already loaded model (what that metric's `load_model` returns), used instead of
            loading one.

    Subclasses change where models come from (`load_model`) and how a missing reference is worded
    (`missing_reference_reason`, `no_reference_reason`): the demo's context takes models from its process-wide
    cache and speaks of ground-truth videos.
    """

    #: why a metric that needs references is unavailable when no pair has one
    missing_reference_reason = "needs reference videos; pass --reference DIR"

    def __init__(self, options: EvaluationOptions, cache_dir: Path | None = None, models: dict | None = None):
        self.options = options
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._loaded = dict(models or {})
        self._bound = {}
        self._backend = None
        self._arrays = {}  # (metric, stem) -> arrays, when there is no cache folder to keep them in

    def no_reference_reason(self, stem: str) -> str:
        """Why a metric that needs a reference skips a file without one."""
        return f"no reference video named {stem}.*"

    def model(self, metric):
        """The metric's model for this run (`Metric.bind_model` of the loaded model), loaded on first use."""
        metric = get_metric(metric)
        if metric.name not in self._bound:
            if metric.name not in self._loaded:
                self._loaded[metric.name] = self.load_model(metric, metric.model_source(self.options))
            self._bound[metric.name] = metric.bind_model(self._loaded[metric.name], self)
        return self._bound[metric.name]

    def load_model(self, metric, source):
        """Load a metric's model (override to share models between runs)."""
        return metric.load_model(source, self.options)

    def face_backend(self):
        if self._backend is None:
            from ..faces.backends import get_face_backend

            self._backend = get_face_backend(self.options.face_backend)
        return self._backend

    def save_arrays(self, stem: str, metric_name: str, **arrays) -> str | None:
        """Keep arrays for `Metric.summarise`: as cache_dir/<stem>.<metric>.npz (returns the file name), or in
        memory without a cache (returns None)."""
        if self.cache_dir is None:
            self._arrays[(metric_name, stem)] = arrays
            return None
        path = self.cache_dir / f"{safe_name(stem)}.{metric_name}.npz"
        write_bytes(path, lambda f: np.savez(f, **arrays), make_parents=True)
        return path.name

    def load_arrays(self, stem: str, metric_name: str, artifact: str | None) -> dict | None:
        """The arrays `save_arrays` kept (None when there are none)."""
        if artifact and self.cache_dir is not None:
            with np.load(self.cache_dir / artifact) as data:
                return {name: data[name] for name in data.files}
        return self._arrays.get((metric_name, stem))

    def kept_arrays(self) -> dict:
        """The arrays `save_arrays` kept in memory ((metric, stem) -> arrays), to hand to another process."""
        return dict(self._arrays)

    def keep_arrays(self, arrays: dict):
        """Add arrays another process kept (`kept_arrays`)."""
        self._arrays.update(arrays)

    def close(self):
        if self._backend is not None:
            self._backend.close()
            self._backend = None


# ----------------------------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------------------------


def check_available(metrics, pairs, context: EvaluationContext) -> dict:
    """metric -> reason it cannot run at all (missing model, dependency, face backend or input folder)."""
    unavailable = {}
    has_reference = any(p.reference is not None for p in pairs)
    for name in metrics:
        metric = get_metric(name)
        if REFERENCE in metric.needs and not has_reference:
            unavailable[name] = context.missing_reference_reason
            continue
        try:
            if metric.needs_face_backend(context.options):
                context.face_backend()
            if metric.model_option is not None:
                context.model(metric)
        except (ModelLoadError, MissingDependencyError, ImportError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            if metric.model_hint and "talkface convert" not in reason and isinstance(err, ModelLoadError):
                reason = f"{reason}; {metric.model_hint}"
            unavailable[name] = reason
        except TalkFaceUserError as err:
            unavailable[name] = str(err)
    return unavailable


def run_metric(metric, media: PairMedia, context: EvaluationContext) -> dict:
    """Cached result of one metric on one pair: {"status": "ok", "result": {...}} or {"status": "skipped", ...}."""
    metric = get_metric(metric)
    pair = media.pair
    key = cache_key(metric, pair, context.options) if context.cache_dir is not None else None
    cached = cache_read(context.cache_dir, pair.stem, metric, key) if key else None
    if cached is not None:
        return cached
    if REFERENCE in metric.needs and pair.reference is None:
        entry = {"status": "skipped", "reason": context.no_reference_reason(pair.stem)}
    else:
        try:
            entry = {"status": "ok", "result": metric.compute(media, context)}
            if AUDIO in metric.needs:  # how much of the video the audio covers (short audio is warned about)
                entry["result"].setdefault("audio_coverage", media.audio_coverage)
        except TalkFaceUserError as err:  # unreadable file, no face, too short: reported, not fatal
            entry = {"status": "skipped", "reason": str(err)}
            logger.debug("%s: %s skipped: %s", pair.stem, metric.name, err)
    if key:
        cache_write(context.cache_dir, pair.stem, metric, key, entry)
    return entry


def score_pairs(pairs, runnable, context: EvaluationContext, progress: ProgressCallback | None = None) -> list[dict]:
    """Run each metric on each pair: one {metric: entry} per pair (entries as `run_metric` returns them)."""
    steps = max(1, len(pairs) * len(runnable))
    entries = []
    for index, pair in enumerate(pairs):
        media = PairMedia(pair)
        pair_entries = {}
        for offset, name in enumerate(runnable):
            if progress is not None:
                progress((index * len(runnable) + offset) / steps, f"{name.upper()} of {pair.stem}")
            pair_entries[name] = run_metric(name, media, context)
        entries.append(pair_entries)
    if progress is not None:
        progress(1.0, "scored")
    return entries


def assemble_report(metrics, pairs, entries, unavailable, context: EvaluationContext, unpaired_references=(),
                    settings=None) -> EvaluationReport:
    """The report from each pair's entries: one row per pair, the skipped list, the metrics' summaries."""
    runnable = [m for m in metrics if m not in unavailable]
    files, skipped = [], []
    results = {name: [] for name in runnable}  # metric -> per-file results (with their stem) for summarise
    for pair, pair_entries in zip(pairs, entries):
        row = {"stem": pair.stem, "generated": str(pair.generated),
               "reference": str(pair.reference) if pair.reference else None,
               "audio": str(pair.audio) if pair.audio else None, "values": {}, "details": {}, "curves": {},
               "num_frames": {}, "counts": {}, "audio_coverage": None}
        for name in runnable:
            entry = pair_entries[name]
            if entry["status"] == "skipped":
                skipped.append({"stem": pair.stem, "metric": name, "reason": entry["reason"]})
                continue
            result = entry["result"]
            row["values"].update(result.get("values", {}))
            if result.get("details"):
                row["details"][name] = result["details"]
            row["curves"].update(result.get("curves", {}))
            if "num_frames" in result:
                row["num_frames"][name] = result["num_frames"]
            if "counts" in result:
                row["counts"][name] = result["counts"]
            if result.get("audio_coverage") is not None:
                row["audio_coverage"] = min(row.get("audio_coverage") or 1.0, result["audio_coverage"])
            results[name].append({"stem": pair.stem, **result})
        files.append(row)
    summary = {}
    for name in runnable:
        summary.update(get_metric(name).summarise(results[name], context))
    if settings is None:
        settings = report_settings(context.options)
    return EvaluationReport(metrics=list(metrics), summary=summary, files=files, skipped=skipped,
                            unavailable=unavailable, unpaired_references=list(unpaired_references), settings=settings)


#: the EvaluationOptions fields that name a model
MODEL_SETTINGS = ("syncnet", "avhubert", "lip_reader", "fid_inception", "s3fd")


def report_settings(options: EvaluationOptions) -> dict:
    """The settings a report carries (results.json, score's JSON, the demo's downloads): every option, with the
    models named by registry name, Hub id or folder base name, never by their full local path."""
    settings = dataclasses.asdict(options)
    for name in MODEL_SETTINGS:
        settings[name] = model_display_name(settings[name])
    return settings


def raise_unavailable(unavailable: dict):
    """A one-line `TalkFaceUserError` for metrics that cannot run (`check_available`); nothing when there are none."""
    if unavailable:
        raise TalkFaceUserError("cannot compute what was asked: " + "; ".join(
            f"{name}: {reason}" for name, reason in unavailable.items()))


def evaluate_pairs(pairs, metrics=DEFAULT_METRICS, options: EvaluationOptions | None = None,
                   context: EvaluationContext | None = None, progress: ProgressCallback | None = None,
                   unpaired_references=(), require_all: bool = False) -> EvaluationReport:
    """Score already-paired files (`FilePair`s) and summarise them: the loop of `evaluate`, without pairing folders
    or writing files.

    Args:
        pairs: the `FilePair`s, in report order.
        metrics: metric names (or "lse,ssim").
        options: the settings (default: `context.options`, else `EvaluationOptions()`).
        context: an `EvaluationContext` with already loaded models, the cache folder, ...; the caller closes it.
            Without it a fresh one is made (and closed) for this call.
        progress: called as progress(fraction, description) before each metric of each pair.
        unpaired_references: listed in the report.
        require_all: raise `TalkFaceUserError` when a metric cannot run (missing model, dependency or input), before
            anything is scored, instead of reporting it unavailable.
    """
    names = parse_metric_names(metrics)
    own_context = context is None
    if own_context:
        context = EvaluationContext(options or EvaluationOptions())
    try:
        unavailable = check_available(names, pairs, context)
        if require_all:
            raise_unavailable(unavailable)
        for name, reason in unavailable.items():
            logger.debug("%s unavailable: %s", name, reason)
        runnable = [m for m in names if m not in unavailable]
        entries = score_pairs(pairs, runnable, context, progress)
        return assemble_report(names, pairs, entries, unavailable, context, unpaired_references)
    finally:
        if own_context:
            context.close()


class _FileProgressBar:
    """A tqdm bar over files, fed by the loop's progress callback."""

    def __init__(self, total: int, enabled: bool = True):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc="evaluate", unit="file", disable=not enabled)

    def __call__(self, fraction: float, description: str):
        done = int(fraction * self.bar.total + 1e-9)
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)

    def close(self):
        self.bar.close()


def evaluation_inputs(generated, reference=None, audio=None, text=None) -> dict:
    """The input folders of an evaluation by flag, for `prepare_output`."""
    named = {"--generated": generated, "--reference": reference, "--audio": audio, "--text": text}
    return {flag: value for flag, value in named.items() if value is not None}


def prepare_output(output, options: EvaluationOptions, inputs=None) -> tuple[Path | None, Path | None]:
    """(REPORT_DIR, REPORT_DIR/cache or None), created and checked. `inputs` ({flag: path}): the report folder may
    be none of them and may not contain one (the report's files would land among the inputs)."""
    if output is None:
        return None, None
    output_dir = Path(output).expanduser()
    if output_dir.exists() and not output_dir.is_dir():
        raise TalkFaceUserError(f"--output {output_dir} is a file; pass a folder for the report")
    if output_dir.exists():
        check_output(output_dir, inputs, flag="--output", folder=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    if not os.access(output_dir, os.W_OK):
        raise TalkFaceUserError(f"cannot write to {output_dir}; pass a writable --output folder")
    cache_dir = None
    if options.use_cache:
        cache_dir = output_dir / "cache"
        cache_dir.mkdir(exist_ok=True)
    return output_dir, cache_dir


def evaluate(generated, reference=None, audio=None, text=None, metrics=DEFAULT_METRICS, output=None,
             options: EvaluationOptions | None = None, progress: bool = True,
             require_all: bool = False) -> EvaluationReport:
    """Score every generated video (see the module docstring). Returns an `EvaluationReport`; with `output`, also
    writes results.json, results.csv, report.md and plots/ there and caches per-file results in output/cache.

    When several processes were launched (`accelerate launch`, `torchrun`, `talkface evaluate --num-processes`:
    WORLD_SIZE > 1), each scores its share of the pairs and the main process writes the merged report, the same as
    one process writes; every process returns it (see `talkface.evaluation.distributed`).

    require_all: a metric that cannot run raises `TalkFaceUserError` (before the output folder is made or
    anything is scored) instead of being reported unavailable."""
    from .distributed import distributed_evaluate, launched_processes

    options = options or EvaluationOptions()
    metrics = parse_metric_names(metrics)
    pairs, unpaired = pair_files(generated, reference, audio, text)
    if launched_processes() > 1:
        return distributed_evaluate(pairs, unpaired, metrics, output, options, progress, require_all=require_all)
    loaded, backend = {}, None
    if require_all:  # models are loaded (once) before REPORT_DIR exists: a failure leaves nothing behind
        probe = EvaluationContext(options)
        try:
            raise_unavailable(check_available(metrics, pairs, probe))
        except BaseException:
            probe.close()
            raise
        loaded, backend = probe._loaded, probe._backend
    output_dir, cache_dir = prepare_output(output, options, evaluation_inputs(generated, reference, audio, text))
    context = EvaluationContext(options, cache_dir, models=loaded)
    context._backend = backend
    bar = _FileProgressBar(len(pairs), enabled=progress)
    try:
        report = evaluate_pairs(pairs, metrics, options, context=context, progress=bar,
                                unpaired_references=unpaired)
    finally:
        bar.close()
        context.close()
    report.output_dir = output_dir
    if output_dir is not None:
        write_report(report, output_dir, options)
    return report
