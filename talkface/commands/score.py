"""`talkface score VIDEO [VIDEO ...] --avhubert M [--audio A] [--reference GT] [--metrics ...] [--output F.json]`.

Prints one row of AV-HuBERT lip-sync scores per video (and their mean) and optionally writes them as JSON.
Inputs are checked before the model is loaded, so a wrong path fails at once with one line naming the fix.
"""

import json
import logging
import math
import os
from pathlib import Path

from ..errors import MediaError, TalkFaceUserError

logger = logging.getLogger(__name__)


def register(subparsers):
    parser = subparsers.add_parser(
        "score",
        help="AV-HuBERT lip-sync scores (AVS_u / AVS_m / AVS_v) of videos",
        description="AV-HuBERT lip-sync scores of talking-face videos (see docs/avs.md). AVS_u compares the "
        "video's lips with its audio; AVS_m and AVS_v compare it with a real reference video.",
    )
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="videos to score")
    parser.add_argument("--avhubert", required=True, metavar="MODEL",
                        help="AV-HuBERT model folder (from `talkface convert avhubert`) or Hugging Face Hub id")
    parser.add_argument("--audio", action="append", metavar="AUDIO",
                        help="driving speech (default: each video's own sound track); give it once for all videos "
                        "or once per video")
    parser.add_argument("--reference", action="append", metavar="GT",
                        help="real video for AVS_m / AVS_v; once for all videos or once per video")
    parser.add_argument("--metrics", default="avs_u,avs_m,avs_v",
                        help="comma-separated subset of avs_u,avs_m,avs_v (default: all; those needing "
                        "--reference are skipped without it)")
    parser.add_argument("--output", metavar="FILE.json", help="also write the scores (and per-frame curves) as JSON")
    parser.add_argument("--layer", type=int, default=None,
                        help="encoder layer to compare (default: the last layer with its final LayerNorm)")
    parser.add_argument("--face-backend", choices=("mediapipe", "dlib", "face_alignment"), default="mediapipe",
                        help="face landmarks for the mouth crops (default mediapipe)")
    parser.add_argument("--landmark-stride", type=int, default=2,
                        help="find landmarks every N frames and interpolate between (default 2: about twice as fast "
                        "as 1, crops move by ~2 grey levels on average; 1 = every frame)")
    parser.add_argument("--device", default="cpu", help="torch device for AV-HuBERT (default cpu)")
    parser.set_defaults(func=run)
    return parser


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
    for path in [*args.videos, *(args.audio or []), *(args.reference or [])]:
        if not Path(path).is_file():
            raise MediaError(f"file not found: {path}; check the path")
    if args.landmark_stride < 1:
        raise TalkFaceUserError(f"--landmark-stride must be at least 1, got {args.landmark_stride}")
    if args.output:
        out_dir = Path(args.output).expanduser().resolve().parent
        if not out_dir.is_dir() or not os.access(out_dir, os.W_OK):
            raise TalkFaceUserError(f"cannot write {args.output}: {out_dir} is not a writable folder")


def _format(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def format_table(results, metrics) -> str:
    """Aligned text table: one row per video, a mean row when there are several."""
    names = [str(Path(r.video).name) if r.video else "?" for r in results]
    rows = [[name, str(r.num_frames)] + [_format(r.scores.get(m)) for m in metrics] for name, r in zip(names, results)]
    if len(results) > 1:
        means = [mean_score(results, m) for m in metrics]
        rows.append(["mean", str(sum(r.num_frames for r in results))] + [_format(v) for v in means])
    header = ["video", "frames"] + list(metrics)
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in [header] + rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def mean_score(results, metric):
    values = [r.scores[metric] for r in results if metric in r.scores]
    return sum(values) / len(values) if values else None


def write_json_atomic(path, data):
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def run(args):
    from ..metrics.avs import AVSScorer, resolve_metrics

    metrics = resolve_metrics(args.metrics)
    _check_inputs(args)
    audios = _per_video(args.audio, args.videos, "--audio")
    references = _per_video(args.reference, args.videos, "--reference")

    scorer = AVSScorer.from_pretrained(args.avhubert, device=args.device, face_backend=args.face_backend,
                                       output_layer=args.layer, landmark_stride=args.landmark_stride)
    results = []
    for video, audio, reference in zip(args.videos, audios, references):
        logger.debug("scoring %s", video)
        results.append(scorer.score(video, audio=audio, reference=reference, metrics=metrics))

    scored = [m for m in metrics if any(m in r.scores for r in results)]
    print(format_table(results, scored or metrics))
    skipped = {m: reason for r in results for m, reason in r.skipped.items()}
    for metric, reason in skipped.items():
        print(f"note: {metric} skipped: {reason}")
    if args.output:
        data = {
            "avhubert": str(args.avhubert),
            "output_layer": args.layer,
            "landmark_stride": args.landmark_stride,
            "face_backend": args.face_backend,
            "metrics": list(metrics),
            "mean": {m: mean_score(results, m) for m in scored},
            "videos": [r.to_dict(curves=True) for r in results],
        }
        write_json_atomic(args.output, data)
        print(f"wrote {args.output}")
    return 0
