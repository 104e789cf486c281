"""`talkface evaluate`: score a folder of generated videos against references (see talkface/evaluation/).

    talkface evaluate --generated out/ --reference data/test/ --metrics lse,ssim,psnr,lmd --output report/ \\
        --syncnet models/syncnet-lse
    talkface evaluate ... --num-processes 4                   # 4 processes on this machine
    accelerate launch --multi_gpu --num_processes 8 -m talkface evaluate ... --device cuda   # 8 GPUs
"""

import sys

from ..metrics import (
    ALWAYS_AVAILABLE,
    DEFAULT_METRICS,
    METRICS,
    REFERENCE,
    TEXT,
    missing_requirements,
    parse_metric_names,
)
from .scoring_flags import (
    DEFAULTS,
    add_avs_flags,
    add_face_backend_flag,
    add_image_flags,
    add_lse_flags,
    add_model_flags,
    check_requirements,
    options_from_args,
)


def register(subparsers):
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a folder of generated videos against references",
        description="Pair generated and reference videos by file name and compute lip-sync and image metrics. "
        "Writes results.json, results.csv, report.md and plots/ into --output; per-file results are cached there, "
        "so running the same command again resumes.",
    )
    inputs = parser.add_argument_group("inputs")
    inputs.add_argument("--generated", required=True, metavar="DIR", help="folder of generated videos")
    inputs.add_argument("--reference", metavar="DIR", help="folder of ground-truth videos with the same file names")
    inputs.add_argument("--audio", metavar="DIR",
                        help="folder of driving audio with the same names (default: each generated video's sound)")
    inputs.add_argument("--text", metavar="DIR",
                        help="folder of transcripts NAME.txt for wer (default: beside the reference videos)")
    inputs.add_argument("--metrics", default=None,
                        help=f"comma-separated, from: {', '.join(METRICS)}; each one named must be computable with "
                        "the flags given (else exit 2 naming the missing flag) (default: those of "
                        f"{','.join(DEFAULT_METRICS)} that the flags given allow)")
    inputs.add_argument("--output", required=True, metavar="REPORT_DIR", help="folder for the report and the cache")

    models = parser.add_argument_group("models (folders or Hub ids; environment variables in parentheses)")
    add_model_flags(models, [name for name, metric in METRICS.items() if metric.model_option])
    add_lse_flags(parser)
    add_avs_flags(parser)
    add_image_flags(parser)
    add_face_backend_flag(parser.add_argument_group("faces"))

    run_group = parser.add_argument_group("run")
    run_group.add_argument("--no-cache", action="store_true", help="recompute everything and do not write the cache")
    run_group.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
    run_group.add_argument("--max-curve-plots", type=int, default=DEFAULTS.max_curve_plots,
                           help="at most this many per-file sync-curve plots (default: %(default)s)")
    run_group.add_argument("--quiet", action="store_true", help="no progress bar")
    run_group.add_argument("--num-processes", type=int, default=1, metavar="N",
                           help="score with N processes on this machine (the pairs are split between them; with "
                           "--device cuda each uses its own GPU); on several GPUs or machines use `accelerate launch "
                           "-m talkface evaluate ...` instead (default: %(default)s)")
    parser.set_defaults(func=run)
    return parser


def check_metrics(args, options) -> list[str]:
    """The metrics to run. Each one --metrics names must be computable with the flags given (exit 2 naming the
    missing flag otherwise); without --metrics, the defaults that cannot run are reported unavailable, and the run
    fails only when none of them can."""
    metrics = parse_metric_names(args.metrics or DEFAULT_METRICS)
    inputs = set(ALWAYS_AVAILABLE)
    if args.reference:
        inputs |= {REFERENCE, TEXT}  # transcripts are looked up beside the references
    if args.text:
        inputs.add(TEXT)
    if args.metrics is not None or len(missing_requirements(metrics, options, inputs)) == len(metrics):
        check_requirements(metrics, options, inputs, command="evaluate")
    return metrics


def run(args):
    from ..errors import TalkFaceUserError
    from ..evaluation.evaluate import evaluate, evaluation_inputs, pair_files, prepare_output
    from ..utils.distributed import is_main_process, launch_local, launched_processes, without_option

    if args.num_processes < 1:
        raise TalkFaceUserError(f"--num-processes must be at least 1, got {args.num_processes}")
    if args.num_processes > 1 and launched_processes() > 1:
        raise TalkFaceUserError("--num-processes starts processes itself; under accelerate launch or torchrun leave "
                                "it out (the launcher's --num_processes decides)")
    options = options_from_args(args)
    metrics = check_metrics(args, options)
    if args.num_processes > 1:
        # inputs are checked here, once, before the processes start (each would print the same error)
        pair_files(args.generated, args.reference, args.audio, args.text)
        prepare_output(args.output, options, evaluation_inputs(args.generated, args.reference, args.audio, args.text))
        argv = getattr(args, "argv", None) or sys.argv[1:]
        return launch_local(without_option(argv, "--num-processes"), args.num_processes)
    report = evaluate(args.generated, reference=args.reference, audio=args.audio, text=args.text,
                      metrics=metrics, output=args.output, options=options, progress=not args.quiet,
                      require_all=args.metrics is not None)
    if not is_main_process():  # one summary, from the process that wrote the report
        return 0
    for metric, reason in report.unavailable.items():
        print(f"{metric}: unavailable: {reason}")
    for name, entry in report.summary.items():
        print(f"{name}: {entry['value']:.4f} ({entry['files']} files)")
    if report.skipped:
        print(f"{len(report.skipped)} file/metric combinations skipped (listed in {args.output}/report.md)")
    from ..evaluation.report import short_audio_warnings

    for line in short_audio_warnings(report):  # audio much shorter than the video: one line each, on stderr
        print(f"talkface: warning: {line}", file=sys.stderr)
    print(f"wrote {args.output}/results.json, results.csv, report.md")
    return 0
