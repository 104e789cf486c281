"""`talkface score VIDEO [VIDEO ...] [--syncnet M] [--avhubert M] [--audio A] [--reference GT] [--metrics ...]`.

Lip-sync scores of single videos: LSE-D / LSE-C / AV offset with SyncNet and AVS_u / AVS_m / AVS_v with AV-HuBERT,
through the same metric classes, flags and defaults as `talkface evaluate` (so both give the same numbers for the
same file). Prints one row per video (and the mean) and optionally writes the scores and per-frame curves as JSON.
Inputs are checked before a model is loaded, so a wrong path fails at once with one line naming the fix.
"""

import logging
import math
import sys
from pathlib import Path

from ..errors import TalkFaceUserError
from ..metrics import ALWAYS_AVAILABLE, AUDIO, GENERATED, METRICS, REFERENCE, get_metric
from ..hub import registry
from ..utils.io import check_output, write_json
from ..utils.sources import model_display_name
from .scoring_flags import (
    add_avs_flags,
    add_face_backend_flag,
    add_lse_flags,
    add_model_flags,
    check_requirements,
    options_from_args,
)

logger = logging.getLogger(__name__)

#: metrics `score` offers: those that need nothing but a video and its sound (models: --syncnet, --avhubert)
SCORE_METRICS = [name for name, metric in METRICS.items()
                 if metric.model_option and metric.needs <= {GENERATED, AUDIO}]


def register(subparsers):
    parser = subparsers.add_parser(
        "score",
        help="lip-sync scores of videos (LSE with SyncNet, AVS with AV-HuBERT)",
        description="Lip-sync scores of talking-face videos: LSE-D / LSE-C / AV offset with SyncNet "
        "(docs/evaluation.md) and AVS_u / AVS_m / AVS_v with AV-HuBERT (docs/avs.md). AVS_u compares the video's "
        "lips with its audio; AVS_m and AVS_v compare it with a real reference video. Same flags and defaults as "
        "`talkface evaluate`.",
    )
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="videos to score")
    parser.add_argument("--audio", action="append", metavar="AUDIO",
                        help="driving speech (default: each video's own sound track); give it once for all videos "
                        "or once per video")
    parser.add_argument("--reference", action="append", metavar="GT",
                        help="real video for AVS_m / AVS_v; once for all videos or once per video")
    fields = [f for name in SCORE_METRICS for f in get_metric(name).fields]
    parser.add_argument("--metrics", default=None,
                        help=f"comma-separated metrics ({', '.join(SCORE_METRICS)}) or their fields "
                        f"({', '.join(fields)}); each one named must be computable with the flags given, else exit "
                        "2 naming the missing flag (default: every metric whose model is given; fields needing "
                        "--reference are skipped without it)")
    parser.add_argument("--output", metavar="FILE.json", help="also write the scores (and per-frame curves) as JSON")
    add_model_flags(parser.add_argument_group("models (folders or Hub ids; environment variables in parentheses)"),
                    SCORE_METRICS)
    add_lse_flags(parser)
    add_avs_flags(parser)
    add_face_backend_flag(parser.add_argument_group("faces"))
    parser.set_defaults(func=run)
    return parser


def resolve_metrics(value, options) -> tuple[list[str], list[str]]:
    """--metrics -> (metric names, fields to show), both in registry order. Without --metrics: every score metric
    whose model is given, or whose default model name is downloaded."""
    if value is None:
        names = [name for name in SCORE_METRICS if get_metric(name).given_model_source(options)
                 or (get_metric(name).default_model and registry.is_downloaded(get_metric(name).default_model))]
        if not names:
            raise TalkFaceUserError(
                "no model given or downloaded; run `talkface download syncnet-lse` for LSE and/or `talkface download "
                "avhubert-base --accept-license` for AVS (or pass --syncnet / --avhubert with a folder or Hub id)")
        return names, [f for name in names for f in get_metric(name).fields]
    tokens = [t.strip().lower() for t in value.split(",") if t.strip()]
    field_owner = {f: name for name in SCORE_METRICS for f in get_metric(name).fields}
    unknown = [t for t in tokens if t not in SCORE_METRICS and t not in field_owner]
    if unknown or not tokens:
        raise TalkFaceUserError(f"unknown metric {', '.join(map(repr, unknown)) or '(none)'}; choose from "
                                f"{', '.join(SCORE_METRICS)} or their fields {', '.join(field_owner)}")
    wanted = {f for t in tokens for f in (get_metric(t).fields if t in SCORE_METRICS else (t,))}
    names = [name for name in SCORE_METRICS if wanted & set(get_metric(name).fields)]
    return names, [f for name in names for f in get_metric(name).fields if f in wanted]


def _per_video(values, videos, flag):
    """One value per video from a flag given never, once (shared) or once per video."""
    if not values:
        return [None] * len(videos)
    if len(values) == 1:
        return values * len(videos)
    if len(values) != len(videos):
        raise TalkFaceUserError(f"{flag} was given {len(values)} times for {len(videos)} videos; give it once "
                                "(for all videos) or once per video")
    return values


def _check_inputs(args):
    from ..media import check_file

    for path in [*args.videos, *(args.audio or []), *(args.reference or [])]:
        check_file(path)  # missing, or a folder: one line saying which
    if args.output:
        check_output(args.output, _inputs(args), flag="--output", example="scores.json")


def _inputs(args) -> dict:
    return {"VIDEO": args.videos, "--audio": args.audio or [], "--reference": args.reference or []}


def _format(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def format_table(videos, fields) -> str:
    """Aligned text table: one row per video (name, frames scored, values), a mean row when there are several."""
    rows = [[Path(v["video"]).name, str(v["num_frames"])] + [_format(v["scores"].get(f)) for f in fields]
            for v in videos]
    if len(videos) > 1:
        rows.append(["mean", str(sum(v["num_frames"] for v in videos))]
                    + [_format(mean_score(videos, f)) for f in fields])
    header = ["video", "frames"] + list(fields)
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in [header] + rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def mean_score(videos, field):
    values = [v["scores"][field] for v in videos if field in v["scores"]]
    return sum(values) / len(values) if values else None


def _video_entry(row, names, fields) -> dict:
    """One video of the JSON output (the shape `AVSResult.to_dict` had, for every metric)."""
    skipped = {}
    for name in names:
        for field, reason in (row["details"].get(name) or {}).get("skipped", {}).items():
            if field in fields:
                skipped[field] = reason
    all_fields = {f for name in names for f in get_metric(name).fields}
    curves = {curve: [None if c is None or math.isnan(c) else round(float(c), 6) for c in values]
              for curve, values in row["curves"].items() if curve in fields or curve not in all_fields}
    return {"video": row["generated"], "audio": row["audio"], "reference": row["reference"],
            "num_frames": max(row["num_frames"].values(), default=0),
            "scores": {f: row["values"][f] for f in fields if f in row["values"]}, "skipped": skipped,
            "audio_coverage": row.get("audio_coverage"),
            "curves": curves, "details": {name: row["details"].get(name) for name in names}}


def run(args):
    from ..evaluation.evaluate import EvaluationContext, evaluate_pairs
    from ..evaluation.pairing import FilePair
    from ..evaluation.report import short_audio_warnings

    options = options_from_args(args, use_cache=False, plots=False)
    names, fields = resolve_metrics(args.metrics, options)
    if args.metrics is not None:  # what was named must be computable: --metrics lse needs --syncnet, avs_m --reference
        named_fields = [t.strip().lower() for t in args.metrics.split(",") if t.strip().lower() in fields]
        inputs = ALWAYS_AVAILABLE | ({REFERENCE} if args.reference else set())
        check_requirements(names, options, inputs, fields=named_fields, command="score")
    _check_inputs(args)
    audios = _per_video(args.audio, args.videos, "--audio")
    references = _per_video(args.reference, args.videos, "--reference")
    pairs = [FilePair(stem=f"{index}_{Path(video).stem}", generated=Path(video),
                      reference=Path(reference) if reference else None, audio=Path(audio) if audio else None)
             for index, (video, audio, reference) in enumerate(zip(args.videos, audios, references))]

    context = EvaluationContext(options)
    try:
        report = evaluate_pairs(pairs, names, options, context=context, require_all=True)
    finally:
        context.close()
    for name, reason in report.unavailable.items():  # asked for (or its model given) but cannot run
        raise TalkFaceUserError(f"{name}: {reason}")
    for item in report.skipped:  # a video a metric could not score (no sound, no face, too short, unreadable)
        video = next(p.generated for p in pairs if p.stem == item["stem"])
        raise TalkFaceUserError(f"{item['metric']} of {video}: {item['reason']}")

    videos = [_video_entry(row, names, fields) for row in report.files]
    scored = [f for f in fields if any(f in v["scores"] for v in videos)]
    print(format_table(videos, scored or fields))
    for field, reason in {f: r for v in videos for f, r in v["skipped"].items()}.items():
        print(f"note: {field} skipped: {reason}")
    for line in short_audio_warnings(report):  # audio much shorter than the video: one line each, on stderr
        print(f"talkface: warning: {line}", file=sys.stderr)
    if args.output:
        models = {get_metric(name).model_option: get_metric(name).model_source(options) for name in names}
        data = {
            # "syncnet", "avhubert": the models' names (never a full local path)
            **{option: model_display_name(source) for option, source in models.items()},
            "output_layer": options.avs_layer,
            "landmark_stride": options.avs_landmark_stride,
            "face_backend": options.face_backend,
            "face_mode": options.face_mode,
            "metrics": list(fields),
            "mean": {f: report.summary[f]["value"] for f in scored if f in report.summary},
            "settings": report.settings,
            "videos": videos,
        }
        write_json(args.output, data, inputs=_inputs(args), flag="--output")
        print(f"wrote {args.output}")
    return 0
