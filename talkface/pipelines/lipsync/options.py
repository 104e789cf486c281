"""`LipSyncOptions`: every per-call option of `LipSyncPipeline`, with its default and its validation, in one place.

The pipeline call, `LipSyncPipeline.check_inputs`, `talkface generate` and the web demo all take their defaults and
their checks from this dataclass; nothing else spells them out.

    options = LipSyncOptions(duration_policy="loop", pads=(0, 20, 0, 0))   # raises InvalidInputError when out of range
    options = options.replace(blend="hard")                                 # a validated copy
    pipeline(face="face.mp4", audio="speech.wav", out="out.mp4", options=options)
    pipeline(face="face.mp4", audio="speech.wav", out="out.mp4", duration_policy="loop")  # keyword overrides
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ...errors import InvalidInputError
from ...faces.backends import FACE_BACKENDS, FaceBackend
from ...faces.blending import BLEND_MODES
from ...faces.tracking import DEFAULT_PADS, validate_box, validate_pads

DURATION_POLICIES = ("pingpong", "loop", "cut")
#: LipSyncOptions.overlap: the stages in their own threads or not (execution.py says what auto means)
OVERLAP_MODES = ("auto", "on", "off")
#: faces per generator call when `batch_size` is None, by device type (anything else: `DEFAULT_BATCH_SIZE`)
DEVICE_BATCH_SIZES = {"cuda": 128}
DEFAULT_BATCH_SIZE = 16
#: the highest output frame rate accepted (players and encoders handle more, but no talking-face model was trained
#: anywhere near it; a larger value is a typo or a unit mix-up)
MAX_FPS = 240.0


@dataclass(frozen=True)
class LipSyncOptions:
    """How one lip-sync call runs. Every field is checked when the object is made (`InvalidInputError`).

    Attributes:
        fps: output frame rate, finite, in (0, `MAX_FPS`]; the face video is read on this grid. None: the
            generator's own rate (25 for every released model).
        batch_size: faces per generator call. None: 128 on a GPU, 16 on a CPU (`default_batch_size`).
        face_index: which face to follow when several are visible, by size (0 = largest).
        box: a forced (x1, y1, x2, y2) face box in pixels for every frame; no detection, no pads.
        pads: (top, bottom, left, right) pixels added around detected boxes (Wav2Lip's --pads); negative pads
            shrink the box. Pads that leave no face region are refused: against the frame by `check_frame_size`,
            against the first face found by the face tracker.
        duration_policy: what the video does when the audio outlasts it: "pingpong", "loop" or "cut".
        blend: paste-back mode, one of `talkface.faces.blending.BLEND_MODES` ("feather": shaped by the face's
            landmarks when the face backend gives them, else the box-shaped "box" mask).
        feather: width of the blend's soft edge, as a fraction of the face box, in (0, 0.5].
        detect_every: face detection stride in frames (1 = every frame); boxes are interpolated in between.
        align_roll: turn each crop upright by the head's roll (from the eye line of the landmarks) before the
            generator sees it, and turn the result back when pasting (tilted and sideways heads); needs landmarks.
        face_backend: face backend name ("mediapipe", "dlib", "face_alignment", "s3fd") or a `FaceBackend` instance.
        overlap: run decoding + face crops and paste-back + encoding in their own threads, overlapped with the
            generator: "on", "off" or "auto" (on for CUDA; on a CPU as measured, see execution.py). The output is
            the same bit for bit either way.
    """

    fps: float | None = None
    batch_size: int | None = None
    face_index: int = 0
    box: tuple[float, float, float, float] | None = None
    pads: tuple[int, int, int, int] = DEFAULT_PADS
    duration_policy: str = "pingpong"
    blend: str = "feather"
    feather: float = 0.15
    detect_every: int = 1
    align_roll: bool = True
    face_backend: str | FaceBackend = field(default="mediapipe", compare=False)
    overlap: str = "auto"

    def __post_init__(self):
        def fix(name, value):  # frozen dataclass: normalised values are written through object.__setattr__
            object.__setattr__(self, name, value)

        if self.fps is not None:
            fix("fps", _number("fps", self.fps))
            if not (math.isfinite(self.fps) and 0 < self.fps <= MAX_FPS):
                raise InvalidInputError(f"fps must be a number > 0 and <= {MAX_FPS:g}, got {self.fps:g} (--fps)")
        if self.batch_size is not None:
            fix("batch_size", _whole("batch size", self.batch_size))
            if self.batch_size < 1:
                raise InvalidInputError(f"batch size must be >= 1, got {self.batch_size}")
        fix("face_index", _whole("face index", self.face_index))
        if self.face_index < 0:
            raise InvalidInputError(f"face index must be >= 0, got {self.face_index}")
        try:
            fix("pads", validate_pads(self.pads))
            if self.box is not None:
                fix("box", tuple(float(v) for v in validate_box(self.box)))
        except (TypeError, ValueError) as err:
            raise InvalidInputError(str(err)) from err
        if self.duration_policy not in DURATION_POLICIES:
            raise InvalidInputError(f"duration_policy must be one of {', '.join(DURATION_POLICIES)}, "
                                    f"got {self.duration_policy!r}")
        if self.blend not in BLEND_MODES:
            raise InvalidInputError(f"blend must be one of {', '.join(BLEND_MODES)}, got {self.blend!r}")
        fix("feather", _number("feather", self.feather))
        if not 0 < self.feather <= 0.5:
            raise InvalidInputError(f"feather must be in (0, 0.5], got {self.feather:g}")
        fix("detect_every", _whole("detect_every", self.detect_every))
        if self.detect_every < 1:
            raise InvalidInputError(f"detect_every must be >= 1, got {self.detect_every}")
        if not isinstance(self.align_roll, bool):
            raise InvalidInputError(f"align_roll must be True or False, got {self.align_roll!r}")
        if not isinstance(self.face_backend, FaceBackend) and self.face_backend not in FACE_BACKENDS:
            raise InvalidInputError(f"face backend must be one of {', '.join(FACE_BACKENDS)} (or a FaceBackend), "
                                    f"got {self.face_backend!r}")
        if self.overlap not in OVERLAP_MODES:
            raise InvalidInputError(f"overlap must be one of {', '.join(OVERLAP_MODES)}, got {self.overlap!r}")

    def replace(self, **changes) -> "LipSyncOptions":
        """A validated copy with some fields changed; an unknown name raises TypeError listing the options."""
        unknown = sorted(set(changes) - set(option_names()))
        if unknown:
            raise TypeError(f"unknown lip-sync option(s) {', '.join(unknown)}; the options are: "
                            f"{', '.join(option_names())}")
        return dataclasses.replace(self, **changes) if changes else self

    def check_frame_size(self, width: int, height: int):
        """Raise `InvalidInputError` when the forced box reaches outside a width x height frame, or when the pads
        shrink any face box of such a frame to nothing (a box is never taller or wider than the frame)."""
        if not width or not height:
            return
        if self.box is not None:
            if self.box[2] > width or self.box[3] > height:
                raise InvalidInputError(f"box {[round(v, 2) for v in self.box]} reaches outside the {width}x{height} "
                                        "frame; give x1 y1 x2 y2 inside it")
            return  # a forced box gets no pads
        top, bottom, left, right = self.pads
        if -(top + bottom) >= height or -(left + right) >= width:
            raise InvalidInputError(f"--pads {' '.join(map(str, self.pads))} (top bottom left right) leave no face "
                                    f"region in a {width}x{height} frame; negative pads shrink the face box, so use "
                                    "smaller ones (the default is " + " ".join(map(str, DEFAULT_PADS)) + ")")


def option_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(LipSyncOptions))


def default_batch_size(device_type: str) -> int:
    """Faces per generator call when `LipSyncOptions.batch_size` is None."""
    return DEVICE_BATCH_SIZES.get(device_type, DEFAULT_BATCH_SIZE)


def _number(name, value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"{name} must be a number, got {value!r}") from err


def _whole(name, value) -> int:
    if isinstance(value, bool) or not float(_number(name, value)).is_integer():
        raise InvalidInputError(f"{name} must be a whole number, got {value!r}")
    return int(value)


__all__ = ["DURATION_POLICIES", "InvalidInputError", "MAX_FPS", "OVERLAP_MODES", "LipSyncOptions", "default_batch_size", "option_names"]
