"""`talkface generate --face F --audio A --model M --out O`: lip-sync a face video or photo to speech.

Inputs are checked before the model is loaded, so a wrong path fails in a second with one line naming the fix.
"""

import logging
from pathlib import Path

from ..errors import ModelLoadError, TalkFaceUserError

logger = logging.getLogger(__name__)


def register(subparsers):
    parser = subparsers.add_parser(
        "generate",
        help="lip-sync a face video or photo to a speech recording",
        description="Lip-sync a face video or photo to a speech recording and write an H.264/AAC mp4.",
    )
    parser.add_argument("--face", required=True, help="face video (any format ffmpeg reads) or photo (png/jpg)")
    parser.add_argument("--audio", required=True, help="speech: any file with an audio stream (wav, mp3, a video...)")
    parser.add_argument("--model", required=True,
                        help="generator model folder (from `talkface convert`) or Hugging Face Hub id")
    parser.add_argument("--out", required=True, help="output .mp4 path")
    parser.add_argument("--fps", type=float, default=None, help="output frame rate; the video is read on this "
                        "grid (default 25)")
    parser.add_argument("--batch-size", type=int, default=None, help="faces per generator call "
                        "(default 128 on GPU, 16 on CPU)")
    parser.add_argument("--face-index", type=int, default=0, help="which face to follow, by size (0 = largest)")
    parser.add_argument("--box", type=float, nargs=4, metavar=("X1", "Y1", "X2", "Y2"), default=None,
                        help="use this face box in every frame instead of detecting faces")
    parser.add_argument("--pads", type=int, nargs=4, metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"), default=[0, 10, 0, 0],
                        help="pixels added around detected face boxes (default 0 10 0 0: include the chin)")
    parser.add_argument("--duration-policy", choices=("pingpong", "loop", "cut"), default="pingpong",
                        help="when the audio outlasts the video: play it forward and backward (pingpong, default), "
                        "restart it (loop), or stop at the video's end and cut the audio (cut)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                        help="where the generator runs (auto: cuda, then mps, then cpu); fp16 on cuda")
    parser.add_argument("--blend", choices=("feather", "hard", "poisson", "none"), default="feather",
                        help="how the generated face is pasted back (feather: soft mask over the lower face, "
                        "default; hard: Wav2Lip's square paste; poisson: gradient-domain cloning)")
    parser.add_argument("--feather", type=float, default=0.15,
                        help="width of the feathered edge as a fraction of the face box (default 0.15)")
    parser.add_argument("--face-backend", choices=("mediapipe", "dlib", "face_alignment"), default="mediapipe",
                        help="face detector + landmarks (default mediapipe, bundled; the others are optional)")
    parser.add_argument("--detect-every", type=int, default=1,
                        help="run face detection every N frames and interpolate between (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    parser.add_argument("--enhance", choices=("none", "gfpgan"), default="none",
                        help="restore the generated faces with GFPGAN v1.4 (needs its weights, see --enhance-model)")
    parser.add_argument("--enhance-model", default=None,
                        help="GFPGAN weights: a folder made by `talkface convert gfpgan`, a Hub id, or GFPGANv1.4.pth "
                             "(default: $TALKFACE_GFPGAN or models/gfpgan-v1.4)")
    parser.set_defaults(func=run)
    return parser


def _check_model_location(model: str):
    """Fail fast on a local-looking model path that does not exist (instead of asking the Hub about it)."""
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"--model {model} is a file; pass the model folder made by `talkface convert` "
                                 "(it holds config.json and model.safetensors)")
        return
    looks_local = (model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model
                   or (path.parent != Path(".") and path.parent.exists()))
    if looks_local:
        raise ModelLoadError(f"model folder {model} not found; check --model or create it with "
                             "`talkface convert wav2lip --checkpoint wav2lip_gan.pth --out " + model + "`")


def _check_device(device: str):
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise TalkFaceUserError("--device cuda was requested but no CUDA GPU is available; use --device cpu or auto")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise TalkFaceUserError("--device mps was requested but Apple MPS is not available; use --device cpu or auto")


def run(args) -> int:
    from ..pipelines.lipsync.pipeline import LipSyncPipeline, check_lipsync_inputs

    check_lipsync_inputs(args.face, args.audio, args.out, fps=args.fps, batch_size=args.batch_size,
                         face_index=args.face_index, box=args.box, pads=args.pads,
                         duration_policy=args.duration_policy, blend=args.blend, feather=args.feather)
    if args.detect_every < 1:
        raise TalkFaceUserError(f"--detect-every must be >= 1, got {args.detect_every}")
    _check_model_location(args.model)
    _check_device(args.device)
    pipeline = LipSyncPipeline.from_pretrained(args.model, device=args.device, face_backend=args.face_backend,
                                               detect_every=args.detect_every, enhance=args.enhance,
                                               enhance_model=args.enhance_model)
    result = pipeline(face=args.face, audio=args.audio, out=args.out, fps=args.fps, batch_size=args.batch_size,
                      face_index=args.face_index, box=args.box, pads=tuple(args.pads),
                      duration_policy=args.duration_policy, blend=args.blend, feather=args.feather,
                      progress=not args.no_progress)
    message = f"wrote {result.out_path} ({result.num_frames} frames at {result.fps:g} fps, {result.duration:.2f} s)"
    if result.frames_without_face:
        message += f"; {result.frames_without_face} frames without a detectable face were left unchanged"
    print(message)
    return 0
