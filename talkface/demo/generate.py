"""The Generate tab: lip-sync an uploaded face video (or photo) to a speech recording, then score the result.

`generate` is `TalkFaceDemo.generate` (defined here so that the page's generation options live in one file)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelLoadError, NoFaceError, TalkFaceUserError
from ..pipelines.lipsync.options import LipSyncOptions
from .config import ProgressCallback, no_progress
from .uploads import display_name, safe_stem

#: the generation options' defaults: the page's controls start from these (the CLI's defaults, one place)
DEFAULTS = LipSyncOptions()
#: end-to-end Wav2Lip frames per second measured on an idle 2-core CPU (docs/generation.md, "Streaming and speed")
CPU_FRAMES_PER_SECOND_2_CORES = 12


@dataclass
class GenerateResult:
    """What the Generate tab shows."""

    video: Path
    message: str
    score_rows: list[list[str]]  # [metric, value, meaning]
    score_note: str


def generate(demo, face_video=None, face_photo=None, audio=None, generator: str | None = None,
             face_index: int = DEFAULTS.face_index, pads=DEFAULTS.pads,
             duration_policy: str = DEFAULTS.duration_policy,
             blend: str = DEFAULTS.blend, feather: float = DEFAULTS.feather, enhance: bool = False,
             score: bool = True, progress: ProgressCallback = no_progress, face=None,
             align_roll: bool = DEFAULTS.align_roll) -> GenerateResult:
    """Lip-sync the face (a video or photo: `face`, or `face_video` / `face_photo`) to the audio (a recording or a
    video's sound track); score the result when scorers are configured.

    `demo` is the `TalkFaceDemo` (this is its `generate` method). `progress(fraction, text)` hears how far it is,
    with the frames done, the time elapsed and an estimate of the time left."""
    face = face or face_video or face_photo
    if not face:
        raise TalkFaceUserError("no face given: upload a face video (or, in the 'Face photo' tab, a photo)")
    if not audio:
        raise TalkFaceUserError("no audio given: upload a speech recording or record one with the microphone")
    demo.check_face(face)
    demo.check_audio(audio)
    generator = generator or next(iter(demo.config.generators), "")
    try:
        face_index = int(face_index)
        pads = tuple(int(p) for p in pads)
    except (TypeError, ValueError) as err:
        raise TalkFaceUserError(f"face index and padding must be whole numbers ({err})") from err
    if enhance and demo.enhancer_missing:
        raise ModelLoadError(f"face enhancement needs GFPGAN, which is {demo.enhancer_missing}")

    demo.prune_outputs()
    progress(0.0, f"loading {generator}")
    pipeline = demo.pipeline(generator, enhance=enhance)
    name = f"talkface_{safe_stem(face)}_{safe_stem(audio)}.mp4"
    with tempfile.TemporaryDirectory(prefix="talkface-demo-") as work:
        work_out = Path(work) / name
        share = 0.85 if score else 1.0
        eta = Eta()

        def report(done, total):
            progress(share * done / max(total, 1), f"lip-sync: frame {done} of {total} ({eta.describe(done, total)})")

        try:
            result = pipeline(face=face, audio=audio, out=work_out, face_index=face_index, pads=pads,
                              duration_policy=duration_policy, blend=blend, feather=feather,
                              align_roll=bool(align_roll), progress=report)
        except NoFaceError as err:
            raise NoFaceError(
                f"no face found in {display_name(face)} (face index {face_index}); upload a video or photo in "
                "which the face is clearly visible (front view, not too small), or lower the face index") from err
        finally:
            _close_backend(pipeline)
        out = demo.new_output_dir() / name
        shutil.move(str(work_out), out)
    seconds = eta.elapsed()
    message = (f"{result.num_frames} frames at {result.fps:g} fps ({result.duration:.2f} s) with "
               f"{generator}, made in {format_seconds(seconds)} on {demo.device().type} "
               f"({result.num_frames / max(seconds, 1e-6):.1f} frames/s)")
    if result.frames_without_face:
        message += f"; {result.frames_without_face} frames without a detectable face were left unchanged"
    rows, note = [], ""
    if score:
        def report_scoring(fraction, text):  # "LSE of <long file name>" -> "scoring the result: LSE"
            progress(share + (1 - share) * fraction,
                     f"scoring the result: {text.split(' of ')[0]}" if " of " in text else text)

        rows, note = demo.score_generated(out, report_scoring)
    progress(1.0, "done")
    return GenerateResult(video=out, message=message, score_rows=rows, score_note=note)


class Eta:
    """Time elapsed since it was made, and the time left estimated from the work done so far."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self.start = clock()

    def elapsed(self) -> float:
        return self._clock() - self.start

    def remaining(self, done: float, total: float) -> float | None:
        """Seconds left at the pace so far (None before any work is done)."""
        if done <= 0 or total <= 0:
            return None
        return self.elapsed() * max(total - done, 0) / done

    def describe(self, done: float, total: float) -> str:
        """"12 s elapsed, about 40 s left"."""
        text = f"{format_seconds(self.elapsed())} elapsed"
        left = self.remaining(done, total)
        if left is not None and done < total:
            text += f", about {format_seconds(left)} left"
        return text


def format_seconds(seconds: float) -> str:
    """"0.4 s", "12 s", "2 min 05 s", "1 h 02 min"."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def speed_note(device, cpu_count: int | None = None) -> str:
    """What a run costs on `device` (a torch device) and, on a CPU, how to use a GPU; for the page."""
    if device.type == "cuda":
        import torch

        return (f"Runs on the GPU ({torch.cuda.get_device_name(device)}): generation is many times faster than "
                "real time; most of a short run is face detection and video encoding.")
    if device.type == "mps":
        return "Runs on the Apple GPU (mps)."
    cores = cpu_count or os.cpu_count() or 1
    return (f"Runs on the CPU ({cores} cores). On an idle 2-core CPU, Wav2Lip makes about "
            f"{CPU_FRAMES_PER_SECOND_2_CORES} frames a second end to end: 10 s of 25 fps video (250 frames) take "
            "about 20-25 s, and scoring the result about as long again; more cores are faster. With an NVIDIA GPU, "
            "install a CUDA build of torch into the same environment (README, section GPU) and restart the demo: "
            "it uses the GPU on its own (--device auto).")


def _close_backend(pipeline):
    backend = getattr(pipeline, "face_backend", None)
    if backend is not None and not isinstance(backend, str):
        backend.close()
