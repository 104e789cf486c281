"""`talkface generate --face F --audio A [--model M] --out O`: lip-sync a face video or photo to speech.
`talkface generate --jobs jobs.csv [--model M]`: many of them, the model loaded once (commands/generate_jobs.py).

`--model` defaults to the registry name wav2lip-gan (`talkface download wav2lip-gan --accept-license` once).

Inputs are checked before the model is loaded, so a wrong path fails in a second with one line naming the fix.
"""

import logging

from ..errors import ModelLoadError, TalkFaceUserError
from ..faces.backends import FACE_BACKENDS
from ..faces.blending import BLEND_MODES
from ..hub.registry import DEFAULT_GENERATOR
from ..pipelines.lipsync.options import (DEFAULT_BATCH_SIZE, DEVICE_BATCH_SIZES, DURATION_POLICIES, OVERLAP_MODES,
                                         LipSyncOptions, option_names)
from ..pipelines.lipsync.precision import DEFAULT_PRECISION, PRECISIONS
from ..utils.devices import DEFAULT_DEVICE, DEVICE_CHOICES, resolve_device
from ..utils.sources import resolve_source
from .download import add_download_flag
from .generate_jobs import add_jobs_flags

logger = logging.getLogger(__name__)

DEFAULTS = LipSyncOptions()


def register(subparsers):
    parser = subparsers.add_parser(
        "generate",
        help="lip-sync a face video or photo to a speech recording",
        description="Lip-sync a face video or photo to a speech recording and write an H.264/AAC mp4.",
    )
    parser.add_argument("--face", help="face video (any format ffmpeg reads) or photo (png/jpg)")
    parser.add_argument("--audio", help="speech: any file with an audio stream (wav, mp3, a video...)")
    parser.add_argument("--model", default=DEFAULT_GENERATOR,
                        help="generator: a model name (default: %(default)s; `talkface download --list`), a folder "
                             "(from `talkface convert`) or a Hugging Face Hub id")
    parser.add_argument("--out", help="output .mp4 path")
    parser.add_argument("--fps", type=float, default=DEFAULTS.fps, help="output frame rate; the video is read on "
                        "this grid (default: the generator's own rate, 25 for the released models)")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="faces per generator call "
                        f"(default {DEVICE_BATCH_SIZES['cuda']} on GPU, {DEFAULT_BATCH_SIZE} on CPU)")
    parser.add_argument("--face-index", type=int, default=DEFAULTS.face_index,
                        help=f"which face to follow, by size (0 = largest; default {DEFAULTS.face_index})")
    parser.add_argument("--box", type=float, nargs=4, metavar=("X1", "Y1", "X2", "Y2"), default=DEFAULTS.box,
                        help="use this face box in every frame instead of detecting faces")
    parser.add_argument("--pads", type=int, nargs=4, metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"),
                        default=list(DEFAULTS.pads), help="pixels added around detected face boxes (default "
                        f"{' '.join(map(str, DEFAULTS.pads))}: include the chin)")
    parser.add_argument("--duration-policy", choices=DURATION_POLICIES, default=DEFAULTS.duration_policy,
                        help="when the audio outlasts the video: play it forward and backward (pingpong), restart "
                        f"it (loop), or stop at the video's end and cut the audio (cut); default "
                        f"{DEFAULTS.duration_policy}")
    parser.add_argument("--device", default=DEFAULT_DEVICE, metavar="DEVICE",
                        help=f"where the generator runs: {', '.join(DEVICE_CHOICES)} (auto: cuda, then mps, then cpu; "
                        f"default {DEFAULT_DEVICE})")
    parser.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION,
                        help="generator arithmetic: auto (fp16 on CUDA, bf16 on a CPU with AVX512_BF16/AMX, else "
                        "fp32), fp32 (exact), bf16, fp16 or int8 (CPU); reduced modes drift by about a grey level, "
                        f"see docs/generation.md (default {DEFAULT_PRECISION})")
    parser.add_argument("--blend", choices=BLEND_MODES, default=DEFAULTS.blend,
                        help="how the generated face is pasted back (feather: the lower face inside the jaw line, "
                        "feathered inwards, from the face landmarks, or the box mask where there are none; box: a "
                        "soft box-shaped mask; hard: Wav2Lip's square paste; poisson: gradient-domain cloning; none: "
                        f"nothing pasted); default {DEFAULTS.blend}")
    parser.add_argument("--feather", type=float, default=DEFAULTS.feather, help="width of the feathered edge as a "
                        f"fraction of the face box (default {DEFAULTS.feather:g})")
    parser.add_argument("--no-align-roll", dest="align_roll", action="store_false", default=DEFAULTS.align_roll,
                        help="do not turn face crops upright by the head's roll (eye line) before generating and "
                        "back when pasting (default: turned, so tilted and sideways heads get the mouth in place)")
    parser.add_argument("--face-backend", choices=tuple(FACE_BACKENDS), default=DEFAULTS.face_backend,
                        help=f"face detector + landmarks (default {DEFAULTS.face_backend}; mediapipe is bundled, "
                        "dlib and face_alignment are optional installs, s3fd gives boxes only and needs --s3fd)")
    parser.add_argument("--s3fd", metavar="MODEL", default=None,
                        help="S3FD model for --face-backend s3fd (Wav2Lip's and syncnet_python's detector): a name, a "
                        "folder (`talkface convert s3fd`) or a Hub id (default: $TALKFACE_S3FD, else the name s3fd)")
    parser.add_argument("--detect-every", type=int, default=DEFAULTS.detect_every,
                        help="run face detection every N frames and interpolate between (default "
                        f"{DEFAULTS.detect_every})")
    parser.add_argument("--overlap", choices=OVERLAP_MODES, default=DEFAULTS.overlap,
                        help="decode + crop faces and paste back + encode in their own threads while the generator "
                        "runs (the output is the same bit for bit): on, off, or auto (on with CUDA; on a CPU as "
                        f"measured, see docs/generation.md); default {DEFAULTS.overlap}")
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar (neither the "
                        "lip-sync bar nor transformers' and huggingface_hub's loading and download bars)")
    parser.add_argument("--enhance", choices=("none", "gfpgan"), default="none",
                        help="restore the generated faces with GFPGAN v1.4 (needs its weights, see --enhance-model)")
    parser.add_argument("--enhance-model", default=None,
                        help="GFPGAN weights: a folder made by `talkface convert gfpgan`, a Hub id, or GFPGANv1.4.pth "
                             "or the name gfpgan-v1.4 (default: $TALKFACE_GFPGAN, models/gfpgan-v1.4 when present, "
                             "else gfpgan-v1.4)")
    add_jobs_flags(parser)
    add_download_flag(parser)
    parser.set_defaults(func=run)
    return parser


def _check_model_location(model: str):
    """Fail fast on a local-looking model path that does not exist (instead of asking the Hub about it)."""
    source = resolve_source(model, what="model folder", hint="check --model or create it with `talkface convert "
                            f"wav2lip --checkpoint wav2lip_gan.pth --out {model}`")
    if source.is_file:
        raise ModelLoadError(f"--model {model} is a file; pass the model folder made by `talkface convert` "
                             "(it holds config.json and model.safetensors)")


def options_from_args(args) -> LipSyncOptions:
    """The `LipSyncOptions` of the parsed flags (each flag is named like its option); raises InvalidInputError."""
    values = {name: getattr(args, name) for name in option_names()}
    values["pads"] = tuple(values["pads"])
    values["box"] = None if values["box"] is None else tuple(values["box"])
    return LipSyncOptions(**values)


def load_s3fd_backend(model, device: str = "cpu"):
    """The S3FD face backend with its network from `model` (a folder or Hub id; None: $TALKFACE_S3FD)."""
    from ..faces.backends import S3FDFaceBackend
    from ..models.s3fd import S3FDDetector

    device = resolve_device(device)
    # S3FD runs on a CUDA GPU or on the CPU (not on MPS)
    return S3FDFaceBackend(detector=S3FDDetector.from_pretrained(model, device=device if device.type == "cuda"
                                                                 else "cpu"))


def _check_single_run_flags(args):
    missing = [flag for flag in ("--face", "--audio", "--out") if not getattr(args, flag[2:])]
    if missing:
        raise TalkFaceUserError(f"the following arguments are required: {', '.join(missing)} (or --jobs JOBS_CSV "
                                "for many generations)")
    batch_only = [flag for flag, used in (("--results", args.results), ("--overwrite", args.overwrite),
                                          ("--num-processes", args.num_processes != 1),
                                          ("--batch-files", args.batch_files != "auto")) if used]
    if batch_only:
        raise TalkFaceUserError(f"{', '.join(batch_only)} only work with --jobs; a single run always writes --out")


def run(args) -> int:
    from ..pipelines.lipsync.pipeline import LipSyncPipeline, check_lipsync_inputs

    if args.jobs:
        from .generate_jobs import run_jobs

        return run_jobs(args)
    _check_single_run_flags(args)
    options = options_from_args(args)
    if args.no_progress:
        from ..utils.quiet import disable_library_progress_bars

        disable_library_progress_bars()  # transformers' "Loading weights" bar, huggingface_hub's downloads
    check_lipsync_inputs(args.face, args.audio, args.out, options)
    _check_model_location(args.model)
    args.device = resolve_device(args.device)
    if options.face_backend == "s3fd" and options.box is None:
        options = options.replace(face_backend=load_s3fd_backend(args.s3fd, args.device))
    pipeline = LipSyncPipeline.from_pretrained(args.model, device=args.device, precision=args.precision,
                                               options=options, enhance=args.enhance, enhance_model=args.enhance_model)
    print(f"generator precision: {pipeline.precision} ({pipeline.precision_reason})")
    result = pipeline(face=args.face, audio=args.audio, out=args.out, progress=not args.no_progress)
    message = (f"wrote {result.out_path} ({result.num_frames} frames at {result.fps:g} fps, {result.duration:.2f} s, "
               f"precision {result.precision})")
    if result.frames_without_face:
        message += f"; {result.frames_without_face} frames without a detectable face were left unchanged"
    print(message)
    return 0
