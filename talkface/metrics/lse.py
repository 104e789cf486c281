"""The LSE metric (LSE-D, LSE-C and the AV offset) as `talkface evaluate` and the demo run it.

The SyncNet scoring itself (windows, distances, face tracks) lives in `talkface.metrics.sync`, and syncnet_python's
whole procedure (`lse_protocol="syncnet_python"`) in `talkface.metrics.syncnet_protocol`; this class says what
`evaluate()` needs to know: the model flag, the face modes, the settings that key the cache, the per-file result.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..hub import registry
from .base import AUDIO, GENERATED, Metric, register_metric

SYNCNET_HINT = (
    "run `talkface download syncnet-lse` (the default --syncnet), or convert syncnet_v2.model with `talkface "
    "convert syncnet-lse --checkpoint syncnet_v2.model --out DIR` and pass --syncnet DIR (or set TALKFACE_SYNCNET_LSE)"
)
S3FD_HINT = (
    "run `talkface download s3fd --accept-license` (the default --s3fd), or convert sfd_face.pth with `talkface "
    "convert s3fd --checkpoint sfd_face.pth --out DIR` and pass --s3fd DIR (or set TALKFACE_S3FD), or give the "
    "face with --box X1 Y1 X2 Y2"
)



@register_metric
class LSEMetric(Metric):
    """SyncNet lip-sync error of the generated video with its audio (Chung & Zisserman 2016; Wav2Lip's protocol).

    Options read: lse_protocol ("default", or "syncnet_python": the reference's procedure on the video file, with
    lse_box or the S3FD model of `s3fd`), face_mode ("precropped": the whole frame is the face; "track": detect,
    track and crop faces; default protocol), tracking (track mode), vshift, batch_size, face_backend (track
    mode), device.
    """

    name = "lse"
    fields = ("lse_d", "lse_c", "offset")
    needs = frozenset({GENERATED, AUDIO})
    aggregate = "mean"
    higher_is_better = {"lse_d": False, "lse_c": True, "offset": None}
    description = "SyncNet lip-sync error: distance (LSE-D, lower is better) and confidence (LSE-C, higher)"
    field_help = {
        "lse_d": "LSE-D: SyncNet distance, lower is better",
        "lse_c": "LSE-C: SyncNet confidence, higher is better",
        "offset": "AV offset in frames found by SyncNet (0 = in sync)",
    }
    integer_fields = frozenset({"offset"})
    curve_labels = {"lse_confidence": "LSE confidence (median - distance)"}
    model_option = "syncnet"
    model_env = "TALKFACE_SYNCNET_LSE"
    model_hint = SYNCNET_HINT
    default_model = registry.DEFAULT_SYNCNET

    def load_model(self, source, options):
        from .sync_scorer import LSEScorer

        if source is None:
            return super().load_model(source, options)
        return LSEScorer.from_pretrained(source, device=options.device)

    def bind_model(self, model, context):
        """A scorer with this run's vshift and batch size around the loaded SyncNet (no copy of the weights)."""
        options = context.options
        scorer = model.with_options(vshift=options.vshift, batch_size=options.batch_size)
        if options.lse_protocol != "syncnet_python":
            return scorer
        from . import syncnet_protocol_media
        from .syncnet_protocol import SyncNetPythonOptions, SyncNetPythonProtocol

        syncnet_protocol_media.check_encoders()  # the ffmpeg program and its encoders, before any file is scored
        backend = None if options.lse_box is not None else self.s3fd_backend(options)
        return SyncNetPythonProtocol(scorer, face_backend=backend,
                                     options=SyncNetPythonOptions(box=options.lse_box))

    def s3fd_backend(self, options):
        """The S3FD face backend of the syncnet_python protocol (loaded once per process and device)."""
        import os

        from ..errors import ModelLoadError
        from ..faces.backends import S3FDFaceBackend

        source = options.s3fd or os.environ.get("TALKFACE_S3FD") or registry.DEFAULT_S3FD
        if not source:
            raise ModelLoadError(f"--lse-protocol syncnet_python finds faces with S3FD and no S3FD model was given; "
                                 f"{S3FD_HINT}")
        key = (str(source), str(options.device))
        cache = self.__dict__.setdefault("_s3fd_backends", {})
        if key not in cache:
            from ..models.s3fd import S3FDDetector

            cache[key] = S3FDFaceBackend(detector=S3FDDetector.from_pretrained(source, device=options.device))
        return cache[key]

    def needs_face_backend(self, options) -> bool:
        return options.face_mode == "track" and options.lse_protocol != "syncnet_python"

    def settings(self, options) -> dict:
        if options.lse_protocol == "syncnet_python":
            from .syncnet_protocol import protocol_settings

            return {"lse_protocol": "syncnet_python", "vshift": options.vshift,
                    **protocol_settings(box=options.lse_box, s3fd=None if options.lse_box else options.s3fd)}
        settings = {"face_mode": options.face_mode, "vshift": options.vshift}
        if options.face_mode == "track":
            settings.update(dataclasses.asdict(options.tracking), face_backend=options.face_backend)
        return settings

    def compute(self, media, context) -> dict:
        """LSE-D / LSE-C / AV offset of the generated video with its audio (pre-cropped or tracked faces, or
        syncnet_python's procedure on the file)."""
        scorer = context.model(self)
        options = context.options
        if options.lse_protocol == "syncnet_python":
            result = scorer.score_video(media.pair.generated, audio_path=media.pair.audio)
            num_frames = result.num_frames
        else:
            backend = context.face_backend() if options.face_mode == "track" else None
            result = scorer.score_clip(media.generated_frames, media.audio, face_mode=options.face_mode,
                                       tracking=options.tracking, face_backend=backend,
                                       name=media.pair.generated.name)
            num_frames = len(media.generated_frames)
        longest = max(result.tracks, key=lambda t: t.num_windows)
        curve = np.full(num_frames, np.nan)
        for track in result.tracks:  # framewise confidence, placed at each window's first frame
            curve[track.start_frame : track.start_frame + track.num_windows] = track.framewise_confidence_smoothed
        return {
            "values": {"lse_d": result.lse_d, "lse_c": result.lse_c, "offset": result.offset},
            "num_frames": int(sum(t.num_windows for t in result.tracks)),
            "details": {"tracks": [t.to_dict(curves=False) for t in result.tracks],
                        "skipped_tracks": [list(t) for t in result.skipped_tracks],
                        "num_windows": longest.num_windows,
                        **({"protocol": "syncnet_python", "versions": result.versions}
                           if options.lse_protocol == "syncnet_python" else {})},
            "curves": {"lse_confidence": curve.tolist()},
        }
