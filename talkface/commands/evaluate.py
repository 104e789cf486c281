"""`talkface evaluate`: score a folder of generated videos against references (see talkface/evaluation/).

    talkface evaluate --generated out/ --reference data/test/ --metrics lse,ssim,psnr,lmd --output report/ \\
        --syncnet models/syncnet-lse
    talkface evaluate ... --num-processes 4                   # 4 processes on this machine
    accelerate launch --multi_gpu --num_processes 8 -m talkface evaluate ... --device cuda   # 8 GPUs
"""

import sys

from ..metrics import DEFAULT_METRICS, METRICS, parse_metric_names
from ..metrics.image_quality import DEFAULT_PSNR_CAP_DB
from ..metrics.sync import DEFAULT_VSHIFT, TrackingOptions


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
    inputs.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                        help=f"comma-separated, from: {', '.join(METRICS)} (default: %(default)s)")
    inputs.add_argument("--output", required=True, metavar="REPORT_DIR", help="folder for the report and the cache")

    models = parser.add_argument_group("models (folders or Hub ids; environment variables in parentheses)")
    models.add_argument("--syncnet", metavar="DIR", help="SyncNet LSE model for lse (TALKFACE_SYNCNET_LSE)")
    models.add_argument("--avhubert", metavar="DIR", help="AV-HuBERT model for avs (TALKFACE_AVHUBERT)")
    models.add_argument("--lip-reader", metavar="DIR",
                        help="AV-HuBERT lip-reading model for wer (TALKFACE_LIP_READER; default --avhubert)")
    models.add_argument("--fid-inception", metavar="DIR", help="FID Inception model for fid (TALKFACE_FID_MODEL)")
    models.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")

    sync = parser.add_argument_group("lip sync (lse)")
    sync.add_argument("--face-mode", choices=("precropped", "track"), default="precropped",
                      help="precropped: videos are face crops, resized to 224 (the LRS2 protocol); track: detect, "
                      "track and crop faces as syncnet_python does for in-the-wild video (default: %(default)s)")
    defaults = TrackingOptions()
    sync.add_argument("--min-track-frames", type=int, default=defaults.min_track_frames,
                      help="track mode: shortest face track scored, in frames at 25 fps (reference: 101; "
                      "default: %(default)s)")
    sync.add_argument("--min-face-size", type=float, default=defaults.min_face_size,
                      help="track mode: smallest mean face box side in pixels (reference: 100; default: %(default)s)")
    sync.add_argument("--detect-every", type=int, default=defaults.detect_every,
                      help="track mode: run the face detector on every n-th frame (default: %(default)s)")
    sync.add_argument("--vshift", type=int, default=DEFAULT_VSHIFT,
                      help="offsets searched on each side, in frames (default: %(default)s)")
    sync.add_argument("--batch-size", type=int, default=32,
                      help="SyncNet windows per forward pass (default: %(default)s)")

    image = parser.add_argument_group("image metrics (ssim, psnr, lmd, fid)")
    image.add_argument("--image-region", choices=("full", "face"), default="full",
                       help="ssim/psnr on whole frames, or on the reference face box resized to 96x96 as TalkLip "
                       "(default: %(default)s)")
    image.add_argument("--ssim-window", choices=("gaussian", "uniform"), default="gaussian",
                       help="gaussian: sigma 1.5, the papers' setting; uniform: scikit-image's 7x7 default")
    image.add_argument("--psnr-cap", type=float, default=DEFAULT_PSNR_CAP_DB,
                       help="cap on per-frame PSNR in dB, identical frames give this; 0 for no cap "
                       "(default: %(default)s)")
    image.add_argument("--lmd-every", type=int, default=1, help="lmd: landmarks on every n-th frame (default: 1)")
    image.add_argument("--fid-every", type=int, default=1, help="fid: use every n-th frame (default: 1)")
    image.add_argument("--face-backend", default="mediapipe",
                       help="face backend for lmd, the face region and track mode (default: %(default)s)")

    run_group = parser.add_argument_group("run")
    run_group.add_argument("--no-cache", action="store_true", help="recompute everything and do not write the cache")
    run_group.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
    run_group.add_argument("--max-curve-plots", type=int, default=20,
                           help="at most this many per-file sync-curve plots (default: %(default)s)")
    run_group.add_argument("--quiet", action="store_true", help="no progress bar")
    run_group.add_argument("--num-processes", type=int, default=1, metavar="N",
                           help="score with N processes on this machine (the pairs are split between them; with "
                           "--device cuda each uses its own GPU); on several GPUs or machines use `accelerate launch "
                           "-m talkface evaluate ...` instead (default: %(default)s)")
    parser.set_defaults(func=run)
    return parser


def _without_option(argv, flag: str) -> list[str]:
    """argv without `flag VALUE` / `flag=VALUE` (or an abbreviation argparse accepted)."""
    result, skip = [], False
    for token in argv:
        if skip:
            skip = False
            continue
        name = token.split("=", 1)[0]
        if name.startswith("--") and len(name) > 2 and flag.startswith(name):
            skip = "=" not in token
            continue
        result.append(token)
    return result


def run(args):
    from ..errors import TalkFaceUserError
    from ..evaluation.distributed import is_main_process, launch_local, launched_processes
    from ..evaluation.evaluate import EvaluationOptions, evaluate, pair_files, prepare_output

    if args.num_processes < 1:
        raise TalkFaceUserError(f"--num-processes must be at least 1, got {args.num_processes}")
    if args.num_processes > 1 and launched_processes() > 1:
        raise TalkFaceUserError("--num-processes starts processes itself; under accelerate launch or torchrun leave "
                                "it out (the launcher's --num_processes decides)")
    try:
        tracking = TrackingOptions(min_track_frames=args.min_track_frames, min_face_size=args.min_face_size,
                                   detect_every=args.detect_every, face_backend=args.face_backend)
    except ValueError as err:
        raise TalkFaceUserError(f"{err}; fix the track-mode option") from err
    options = EvaluationOptions(
        syncnet=args.syncnet, avhubert=args.avhubert, lip_reader=args.lip_reader, fid_inception=args.fid_inception,
        face_mode=args.face_mode, tracking=tracking, vshift=args.vshift, image_region=args.image_region,
        ssim_window=args.ssim_window, psnr_cap_db=args.psnr_cap or None, lmd_every=args.lmd_every,
        fid_every=args.fid_every, face_backend=args.face_backend, device=args.device, batch_size=args.batch_size,
        use_cache=not args.no_cache, plots=not args.no_plots, max_curve_plots=args.max_curve_plots,
    )
    if args.num_processes > 1:
        # inputs are checked here, once, before the processes start (each would print the same error)
        parse_metric_names(args.metrics)
        pair_files(args.generated, args.reference, args.audio, args.text)
        prepare_output(args.output, options)
        argv = getattr(args, "argv", None) or sys.argv[1:]
        return launch_local(_without_option(argv, "--num-processes"), args.num_processes)
    report = evaluate(args.generated, reference=args.reference, audio=args.audio, text=args.text,
                      metrics=args.metrics, output=args.output, options=options, progress=not args.quiet)
    if not is_main_process():  # one summary, from the process that wrote the report
        return 0
    for metric, reason in report.unavailable.items():
        print(f"{metric}: unavailable: {reason}")
    for name, entry in report.summary.items():
        print(f"{name}: {entry['value']:.4f} ({entry['files']} files)")
    if report.skipped:
        print(f"{len(report.skipped)} file/metric combinations skipped (listed in {args.output}/report.md)")
    print(f"wrote {args.output}/results.json, results.csv, report.md")
    return 0
