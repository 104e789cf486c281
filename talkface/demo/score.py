"""The Score tab, and the scores shown under a generated video: both run `talkface.evaluation`'s loop
(`evaluate_pairs`) with the demo's cached models, and turn its report into the page's tables.

`score` and `score_generated` are `TalkFaceDemo.score` / `TalkFaceDemo.score_generated`."""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import TalkFaceUserError
from ..evaluation.evaluate import EvaluationOptions, evaluate_pairs
from ..evaluation.pairing import FilePair
from ..evaluation.report import EvaluationReport, short_audio_warnings, write_report
from ..metrics import ALWAYS_AVAILABLE, AUDIO, GENERATED, REFERENCE, get_metric, missing_requirements
from .config import TINY_RANDOM_LABEL, ProgressCallback, no_progress
from .models import NEEDS_GROUND_TRUTH, DemoEvaluationContext
from .uploads import as_list, match_files, short, unique_stems

#: the scoring settings the page starts from: those of `talkface evaluate` / `talkface score`
SCORE_DEFAULTS = EvaluationOptions()


@dataclass
class ScoreResult:
    """What the Score tab shows."""

    headers: list[str]
    rows: list[list[str]]
    note: str
    plots: list[Path]
    downloads: list[Path]


def scoring_options(demo, **settings) -> EvaluationOptions:
    """`EvaluationOptions` of a scoring request: the demo's models, device and face backend, the defaults of
    `talkface evaluate` for everything else unless given."""
    config = demo.config
    return EvaluationOptions(syncnet=config.syncnet, avhubert=config.avhubert, s3fd=config.s3fd,
                             device=str(demo.device()), face_backend=config.face_backend, use_cache=False, **settings)


def requirement_words(metric, item: str) -> str:
    """What a metric lacks (`Metric.missing`), in the page's words."""
    if item == REFERENCE:
        return NEEDS_GROUND_TRUTH
    if item == metric.model_option:
        flag = "--" + item.replace("_", "-")
        env = f" or set {metric.model_env}" if metric.model_env else ""
        return f"needs a model that this demo was not started with (start it with {flag} MODEL{env})"
    return f"needs {item}"


def check_scorable(metrics, options: EvaluationOptions, inputs):
    """The demo's side of `talkface evaluate`'s rule: a request of which no metric can be computed (no model, no
    ground truth) fails with one line saying what each one lacks, instead of an empty table."""
    missing = missing_requirements(metrics, options, inputs)
    if metrics and len(missing) == len(metrics):
        raise TalkFaceUserError("nothing can be scored: " + "; ".join(
            f"{name.upper()} " + " and ".join(requirement_words(get_metric(name), item) for item in items)
            for name, items in missing.items()))


def run_scoring(demo, pairs, metrics, options: EvaluationOptions, progress: ProgressCallback) -> EvaluationReport:
    """The evaluation loop over `pairs` with the demo's process-wide model cache and a face backend of its own."""
    context = DemoEvaluationContext(options, demo.models)
    try:
        return evaluate_pairs(pairs, metrics, options, context=context, progress=progress)
    finally:
        context.close()


def result_metrics(demo) -> list[str]:
    """The Score tab's metrics that need nothing but a video and its sound: those shown for a generated video."""
    return [name for name in demo.config.score_metrics if get_metric(name).needs <= {GENERATED, AUDIO}]


def score_generated(demo, video: Path, progress: ProgressCallback = no_progress) -> tuple[list[list[str]], str]:
    """Scores of a generated video with its own sound track (LSE, AVS_u by default): rows and a note."""
    metrics = result_metrics(demo)
    if not metrics:
        return [], ""
    # a generated video shows a whole frame, not a face crop: LSE tracks the face
    options = scoring_options(demo, face_mode="track", plots=False)
    report = run_scoring(demo, [FilePair(stem=video.stem, generated=video)], metrics, options, progress)
    values = report.files[0]["values"]
    rows = [[name, format_value(values[name], name in metric.integer_fields), metric.field_help.get(name, "")]
            for metric in map(get_metric, metrics) for name in metric.fields if name in values]
    notes = [f"**{metric.upper()}** not computed: {reason}" for metric, reason in report.unavailable.items()]
    notes += [f"**{item['metric'].upper()}** not computed: {short(item['reason'], 300)}" for item in report.skipped]
    notes += [f"**Short audio**: {line}" for line in short_audio_warnings(report)]
    if rows and demo.config.tiny_random:
        notes.append(f"The scoring models have {TINY_RANDOM_LABEL}: these numbers mean nothing.")
    return rows, "\n\n".join(notes)


def parse_box(text) -> tuple | None:
    """The page's face box field ("x1 y1 x2 y2", commas allowed; empty: none) -> 4 floats or None."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if not isinstance(text, str):
        return tuple(text)
    try:
        values = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        values = ()
    if len(values) != 4:
        raise TalkFaceUserError(f"face box {text!r}: write four numbers x1 y1 x2 y2 (pixels), or leave it empty")
    return values


def score(demo, videos, audios=None, references=None, face_mode: str = SCORE_DEFAULTS.face_mode,
          progress: ProgressCallback = no_progress, lse_protocol: str = SCORE_DEFAULTS.lse_protocol,
          box=None) -> ScoreResult:
    """Every available metric of each video, with per-frame sync curves and downloadable results.

    face_mode: LSE's face mode, "precropped" (the default of `talkface evaluate`) or "track".
    lse_protocol "syncnet_python" scores LSE with syncnet_python's whole procedure (faces from S3FD, or `box`:
    "x1 y1 x2 y2" in source pixels); face_mode then does not apply to LSE."""
    config = demo.config
    videos = as_list(videos)
    if not videos:
        raise TalkFaceUserError("no video given: upload one or more videos to score")
    if len(videos) > config.max_files:
        raise TalkFaceUserError(f"{len(videos)} videos given; this demo scores at most {config.max_files} at "
                                "once (use `talkface evaluate` for folders)")
    audios, references = as_list(audios), as_list(references)
    for video in videos:
        demo.check_video(video)
    for audio in audios:
        demo.check_audio(audio, role="audio")
    for reference in references:
        demo.check_video(reference, role="ground-truth video")
    stems = unique_stems(videos)
    audio_for = match_files(audios, videos, stems, "audio files")
    reference_for = match_files(references, videos, stems, "ground-truth videos")
    pairs = [FilePair(stem=stem, generated=Path(video), reference=reference_for[i], audio=audio_for[i])
             for i, (stem, video) in enumerate(zip(stems, videos))]
    box = parse_box(box)
    if box is not None and lse_protocol != "syncnet_python":
        raise TalkFaceUserError("a face box is used by the syncnet_python LSE protocol only; choose it, or leave the "
                                "box empty")
    options = scoring_options(demo, face_mode=face_mode, lse_protocol=lse_protocol, lse_box=box)
    check_scorable(config.score_metrics, options, ALWAYS_AVAILABLE | ({REFERENCE} if references else set()))
    demo.prune_outputs()
    report = run_scoring(demo, pairs, config.score_metrics, options, lambda f, d: progress(0.95 * f, d))
    runnable = [get_metric(m) for m in config.score_metrics if m not in report.unavailable]
    integer_fields = {name for metric in runnable for name in metric.integer_fields}
    field_help = {name: text for metric in runnable for name, text in metric.field_help.items()}
    # columns that no video has a value for (AVS_m / AVS_v without a ground truth) are left out, with the reason
    fields = [name for metric in runnable for name in metric.fields
              if any(name in row["values"] for row in report.files)]
    left_out = {}
    for row in report.files:
        for metric in runnable:
            for name, reason in (row["details"].get(metric.name) or {}).get("skipped", {}).items():
                if name not in fields:  # the metric's reason names a CLI flag; say it in the page's words
                    left_out.setdefault(name, NEEDS_GROUND_TRUTH if "reference" in reason else reason)

    skipped_by_stem = {}
    for item in report.skipped:
        skipped_by_stem.setdefault(item["stem"], []).append(f"{item['metric']}: {short(item['reason'], 300)}")
    headers = ["file", *fields, "notes"]
    rows = [[row["stem"], *(format_value(row["values"].get(name), name in integer_fields) for name in fields),
             "; ".join(skipped_by_stem.get(row["stem"], []))] for row in report.files]
    if len(rows) > 1:
        rows.append(["mean", *(format_value(report.summary.get(name, {}).get("value"), name in integer_fields)
                               for name in fields), ""])
    notes = [f"- **{metric.upper()}** not computed: {reason}" for metric, reason in report.unavailable.items()]
    notes += [f"- **{name}** not computed: {reason}" for name, reason in left_out.items()]
    notes += [f"- **Short audio**: {line}" for line in short_audio_warnings(report)]
    with_models = [metric.name.upper() for metric in runnable if metric.model_option]
    if config.tiny_random and with_models:
        notes.append(f"- {' and '.join(with_models)} come from models with {TINY_RANDOM_LABEL}: those numbers mean "
                     "nothing.")
    legend = ("**Columns**: " + "; ".join(field_help.get(name, name) for name in fields) + ".") if fields else ""

    progress(0.95, "writing plots")
    output = demo.new_output_dir()
    with tempfile.TemporaryDirectory(prefix="talkface-demo-") as work:
        written = write_report(report, work, options)
        downloads = []
        for key in ("csv", "json"):
            if key in written:
                downloads.append(Path(shutil.move(str(written[key]), output / Path(written[key]).name)))
        plots = []
        for key, path in written.items():
            if key.startswith("curve_"):
                plots.append(Path(shutil.move(str(path), output / f"sync_{Path(path).name}")))
    progress(1.0, "done")
    note = "\n\n".join(part for part in (legend, "\n".join(notes)) if part)
    return ScoreResult(headers=headers, rows=rows, note=note, plots=plots, downloads=downloads)


def format_value(value, integer: bool = False) -> str:
    """A value for the page's tables: 3 decimals, whole numbers for integer fields, "-" for none."""
    if value is None:
        return "-"
    if isinstance(value, (int, float)):
        if math.isnan(value):
            return "-"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if integer and float(value).is_integer():
            return f"{int(value):d}"
        return f"{value:.3f}"
    return str(value)
