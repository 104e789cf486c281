"""The report of an evaluation run: `EvaluationReport` and its files results.json, results.csv and report.md
(plots/ come from `talkface.evaluation.plots`)."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MissingDependencyError
from ..metrics import get_metric
from ..utils.io import write_bytes
from .cache import json_default

logger = logging.getLogger(__name__)


#: a scored file whose audio covers less than this fraction of its video's duration gets a warning (the audio
#: metrics pad it with silence, so their scores describe the padding more than the lips): `short_audio_warnings`
SHORT_AUDIO_COVERAGE = 0.9


@dataclass
class EvaluationReport:
    """What `evaluate` found.

    summary: field -> {"value", "files", "metric", "higher_is_better"} (data-set values).
    files: one dict per generated file: stem, paths, values (field -> value), details (metric -> extra data),
        audio_coverage (the fraction of the video its audio covers, for metrics that use the audio; else None).
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

    @property
    def fields(self) -> list[str]:
        """The report's columns: the fields of every metric that ran, in the order of `metrics`."""
        return [f for m in self.metrics if m not in self.unavailable for f in get_metric(m).fields]

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


def short_audio_warnings(report: EvaluationReport) -> list[str]:
    """One line per file whose audio covers less than SHORT_AUDIO_COVERAGE of its video (the CLI prints them on
    stderr, report.md and the demo show them)."""
    lines = []
    for row in report.files:
        coverage = row.get("audio_coverage")
        if coverage is None or coverage >= SHORT_AUDIO_COVERAGE:
            continue
        source = f"the audio {Path(row['audio']).name}" if row.get("audio") else "its own sound track"
        lines.append(f"{Path(row['generated']).name}: {source} covers only {coverage:.0%} of the video "
                     f"(audio_coverage {coverage:.2f}, warned below {SHORT_AUDIO_COVERAGE:.0%}); the lip-sync scores "
                     "past its end compare the lips with silence: score it with its whole driving speech")
    return lines


def format_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if math.isnan(value):
            return "nan"
        return f"{value:.4f}" if abs(value) >= 0.01 or value == 0 else f"{value:.4g}"
    return str(value)


def sanitise(value):
    """JSON without NaN/Infinity tokens: non-finite floats become the strings "nan" / "inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return format_value(value)
    if isinstance(value, dict):
        return {k: sanitise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [sanitise(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray, Path)):
        return sanitise(json_default(value))
    return value


def write_report(report: EvaluationReport, output_dir, options=None) -> dict:
    """Write results.json, results.csv, report.md and plots/ into `output_dir`; returns name -> path.

    `options` (an `EvaluationOptions`) gives `plots` and `max_curve_plots` (default: plots on, 20 curves)."""
    output_dir = Path(output_dir)
    written = {}
    text = json.dumps(sanitise(report.to_dict()), indent=2)
    write_bytes(output_dir / "results.json", lambda f: f.write(text.encode("utf-8")), make_parents=True)
    written["json"] = output_dir / "results.json"

    fields = report.fields
    skipped_by_stem = {}
    for item in report.skipped:
        skipped_by_stem.setdefault(item["stem"], []).append(f"{item['metric']}: {item['reason']}")

    def write_csv(f):
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["stem", *fields, "generated", "reference", "audio", "skipped"])
        for row in report.files:
            skipped_here = " | ".join(skipped_by_stem.get(row["stem"], []))
            writer.writerow([row["stem"], *(format_value(row["values"].get(k)) for k in fields), row["generated"],
                             row["reference"] or "", row["audio"] or "", skipped_here])
        f.write(buffer.getvalue().encode("utf-8"))

    write_bytes(output_dir / "results.csv", write_csv, make_parents=True)
    written["csv"] = output_dir / "results.csv"

    markdown = render_markdown(report)
    write_bytes(output_dir / "report.md", lambda f: f.write(markdown.encode("utf-8")), make_parents=True)
    written["markdown"] = output_dir / "report.md"

    if getattr(options, "plots", True):
        from .plots import write_plots

        try:
            written.update(write_plots(report, output_dir / "plots",
                                       max_curve_plots=getattr(options, "max_curve_plots", 20)))
        except MissingDependencyError as err:
            logger.warning("plots skipped: %s", err)
    return written


def render_markdown(report: EvaluationReport) -> str:
    fields = report.fields
    arrows = {True: " ↑", False: " ↓", None: ""}
    lines = ["# talkface evaluation", ""]
    lines += ["## Summary", "", "| metric | value | files |", "|---|---|---|"]
    for name, entry in report.summary.items():
        arrow = arrows[entry["higher_is_better"]]
        lines.append(f"| {name}{arrow} | {format_value(entry['value'])} | {entry['files']} |")
    if not report.summary:
        lines.append("| (no metric produced a value) | | |")
    lines += ["", f"{len(report.files)} generated files; ↑ higher is better, ↓ lower is better. "
              "LSE, AVS: mean over files; SSIM, PSNR, LMD: mean over all frames; WER: corpus level; FID: all frames.",
              ""]
    warnings = short_audio_warnings(report)
    if warnings:
        lines += ["## Short audio", ""] + [f"- {line}" for line in warnings] + [""]
    if report.unavailable:
        lines += ["## Unavailable metrics", ""]
        lines += [f"- **{metric}**: {reason}" for metric, reason in report.unavailable.items()]
        lines.append("")
    lines += ["## Per file", "", "| file | " + " | ".join(fields) + " |", "|---" * (len(fields) + 1) + "|"]
    for row in report.files:
        lines.append(f"| {row['stem']} | " + " | ".join(format_value(row["values"].get(k)) for k in fields) + " |")
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
