"""The flags `talkface evaluate` and `talkface score` share, and the `EvaluationOptions` they make.

Every default comes from `EvaluationOptions()` / `TrackingOptions()` (the demo page takes its defaults from the same
objects), so the commands and the page cannot drift apart.
"""

from __future__ import annotations

import dataclasses

from ..errors import TalkFaceUserError
from ..evaluation.evaluate import EvaluationOptions
from ..metrics import AUDIO, REFERENCE, TEXT, get_metric, missing_requirements
from ..metrics.sync import TrackingOptions
from ..metrics.syncnet_protocol import LSE_PROTOCOLS
from .download import add_download_flag

DEFAULTS = EvaluationOptions()
TRACKING_DEFAULTS = TrackingOptions()


def add_model_flags(group, metric_names):
    """--<model option> for each of these metrics (e.g. --syncnet for lse), and --device."""
    for name in metric_names:
        metric = get_metric(name)
        flag = "--" + metric.model_option.replace("_", "-")
        default = f"; default: {metric.default_model}" if metric.default_model else ""
        group.add_argument(flag, dest=metric.model_option, metavar="MODEL",
                           help=f"model name, folder or Hub id for {metric.name} ({metric.model_env}{default}); "
                                f"{metric.description}")
    if "lse" in metric_names:
        group.add_argument("--s3fd", metavar="MODEL", default=DEFAULTS.s3fd,
                           help="S3FD face detector (name, folder or Hub id) for --lse-protocol syncnet_python "
                           "without --box (TALKFACE_S3FD; default: s3fd)")
    group.add_argument("--device", default=DEFAULTS.device, help="torch device: auto, cpu, cuda, cuda:N or mps "
                       "(default: %(default)s)")
    add_download_flag(group)


def add_lse_flags(parser):
    sync = parser.add_argument_group("lip sync (lse)")
    sync.add_argument("--lse-protocol", choices=LSE_PROTOCOLS, default=DEFAULTS.lse_protocol,
                      help="default: talkface's own decode and --face-mode (fast); syncnet_python: syncnet_python's "
                      "whole procedure on each video file (its re-encodes, S3FD, scene cuts, tracks, crops and JPEG "
                      "round trips), giving the LSE it prints (docs/evaluation.md; default: %(default)s)")
    sync.add_argument("--box", type=float, nargs=4, metavar=("X1", "Y1", "X2", "Y2"), default=DEFAULTS.lse_box,
                      help="with --lse-protocol syncnet_python: this face box (source pixels) on every frame instead "
                      "of S3FD")
    sync.add_argument("--face-mode", choices=("precropped", "track"), default=DEFAULTS.face_mode,
                      help="precropped: videos are face crops, resized to 224 (the LRS2 protocol); track: detect, "
                      "track and crop faces as syncnet_python does for in-the-wild video (default: %(default)s)")
    sync.add_argument("--min-track-frames", type=int, default=TRACKING_DEFAULTS.min_track_frames,
                      help="track mode: shortest face track scored, in frames at 25 fps (reference: 101; "
                      "default: %(default)s)")
    sync.add_argument("--min-face-size", type=float, default=TRACKING_DEFAULTS.min_face_size,
                      help="track mode: smallest mean face box side in pixels (reference: 100; default: %(default)s)")
    sync.add_argument("--detect-every", type=int, default=TRACKING_DEFAULTS.detect_every,
                      help="track mode: run the face detector on every n-th frame (default: %(default)s)")
    sync.add_argument("--vshift", type=int, default=DEFAULTS.vshift,
                      help="offsets searched on each side, in frames (default: %(default)s)")
    sync.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size,
                      help="SyncNet windows per forward pass (default: %(default)s)")


def add_avs_flags(parser):
    avs = parser.add_argument_group("audio-visual sync (avs)")
    avs.add_argument("--layer", type=int, default=DEFAULTS.avs_layer,
                     help="AV-HuBERT encoder layer to compare (default: the last layer with its final LayerNorm)")
    avs.add_argument("--landmark-stride", type=int, default=DEFAULTS.avs_landmark_stride,
                     help="find mouth landmarks every N frames and interpolate between (default %(default)s: about "
                     "twice as fast as 1, crops move by ~2 grey levels on average; 1 = every frame)")


def add_image_flags(parser):
    image = parser.add_argument_group("image metrics (ssim, psnr, lmd, fid)")
    image.add_argument("--image-region", choices=("full", "face"), default=DEFAULTS.image_region,
                       help="ssim/psnr on whole frames, or on the reference face box resized to 96x96 as TalkLip "
                       "(default: %(default)s)")
    image.add_argument("--ssim-window", choices=("gaussian", "uniform"), default=DEFAULTS.ssim_window,
                       help="gaussian: sigma 1.5, the papers' setting; uniform: scikit-image's 7x7 default")
    image.add_argument("--psnr-cap", type=float, default=DEFAULTS.psnr_cap_db,
                       help="cap on per-frame PSNR in dB, identical frames give this; 0 for no cap "
                       "(default: %(default)s)")
    image.add_argument("--lmd-every", type=int, default=DEFAULTS.lmd_every,
                       help="lmd: landmarks on every n-th frame (default: %(default)s)")
    image.add_argument("--fid-every", type=int, default=DEFAULTS.fid_every,
                       help="fid: use every n-th frame (default: %(default)s)")


def add_face_backend_flag(group):
    group.add_argument("--face-backend", default=DEFAULTS.face_backend,
                       help="face backend for mouth crops, landmarks, the face region and track mode "
                       "(default: %(default)s)")


#: how the commands ask for each input a metric may need (`Metric.needs`)
INPUT_FLAGS = {REFERENCE: "--reference", AUDIO: "--audio", TEXT: "--text (or transcripts NAME.txt beside --reference)"}


def requirement_flag(metric, item: str) -> str:
    """The flag that provides `item` (an input or the metric's model option) of `metric`."""
    if item in INPUT_FLAGS:
        return INPUT_FLAGS[item]
    flag = "--" + item.replace("_", "-") + " MODEL"
    return f"{flag} (or {metric.model_env})" if metric.model_env else flag


def check_requirements(metric_names, options, inputs, fields=None, command: str = "talkface"):
    """Raise a one-line `TalkFaceUserError` naming the missing flag(s) when a metric asked for cannot be computed
    at all with these flags (`talkface.metrics.missing_requirements`): `--metrics lse` without --syncnet,
    `--metrics ssim` without --reference, ... `inputs`: what the run's files include."""
    missing = missing_requirements(metric_names, options, inputs, fields)
    if not missing:
        return
    parts = []
    for name, items in missing.items():
        metric = get_metric(name)
        asked = [f for f in fields or () if f in metric.fields] or [name]
        for item in items:
            # an input only some fields need (avs_m and avs_v: the reference) is named for those fields
            whole = item == metric.model_option or item in metric.needs
            who = asked if whole else [f for f in asked if item in metric.field_needs.get(f, ())]
            part = f"{'/'.join(who)} needs {requirement_flag(metric, item)}"
            if item == metric.model_option and metric.model_hint:
                part += f" ({metric.model_hint})"
            if parts and parts[-1].split(" needs ")[0] == part.split(" needs ")[0]:
                parts[-1] = parts[-1] + " and " + part.split(" needs ", 1)[1]
            else:
                parts.append(part)
    raise TalkFaceUserError(f"{command} cannot compute what was asked: {'; '.join(parts)}")


#: EvaluationOptions field -> how a parsed flag becomes its value (flags a command lacks keep the default)
_CONVERSIONS = {
    "psnr_cap_db": ("psnr_cap", lambda value: value or None),  # 0 turns the cap off
    "use_cache": ("no_cache", lambda value: not value),
    "plots": ("no_plots", lambda value: not value),
    "avs_layer": ("layer", None),
    "avs_landmark_stride": ("landmark_stride", None),
    "lse_box": ("box", lambda value: tuple(value) if value else None),
}


def options_from_args(args, **overrides) -> EvaluationOptions:
    """`EvaluationOptions` from the parsed flags of `evaluate` or `score` (a missing flag keeps its default)."""
    values = {}
    for option in dataclasses.fields(EvaluationOptions):
        if option.name == "tracking":
            continue
        flag, convert = _CONVERSIONS.get(option.name, (option.name, None))
        if hasattr(args, flag):
            value = getattr(args, flag)
            values[option.name] = convert(value) if convert else value
    try:
        tracking = {name: getattr(args, name) for name in ("min_track_frames", "min_face_size", "detect_every")
                    if hasattr(args, name)}
        values["tracking"] = TrackingOptions(**tracking, face_backend=values.get("face_backend",
                                                                                 DEFAULTS.face_backend))
    except ValueError as err:
        raise TalkFaceUserError(f"{err}; fix the track-mode option") from err
    values.update(overrides)
    return EvaluationOptions(**values)
