"""The Generate tab: lip-sync an uploaded face video (or photo) to a speech recording, then score the result.

`generate` is `TalkFaceDemo.generate` (defined here so that the page's generation options live in one file)."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelLoadError, NoFaceError, TalkFaceUserError
from .config import ProgressCallback, no_progress
from .uploads import display_name, safe_stem


@dataclass
class GenerateResult:
    """What the Generate tab shows."""

    video: Path
    message: str
    score_rows: list[list[str]]  # [metric, value, meaning]
    score_note: str


def generate(demo, face_video=None, face_photo=None, audio=None, generator: str | None = None,
             face_index: int = 0, pads=(0, 10, 0, 0), duration_policy: str = "pingpong",
             blend: str = "feather", feather: float = 0.15, enhance: bool = False,
             score: bool = True, progress: ProgressCallback = no_progress) -> GenerateResult:
    """Lip-sync the face video (or photo) to the audio; score the result when scorers are configured.

    `demo` is the `TalkFaceDemo` (this is its `generate` method)."""
    face = face_video or face_photo
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

        def report(done, total):
            progress(share * done / max(total, 1), f"lip-sync: frame {done} of {total}")

        try:
            result = pipeline(face=face, audio=audio, out=work_out, face_index=face_index, pads=pads,
                              duration_policy=duration_policy, blend=blend, feather=feather, progress=report)
        except NoFaceError as err:
            raise NoFaceError(
                f"no face found in {display_name(face)} (face index {face_index}); upload a video or photo in "
                "which the face is clearly visible (front view, not too small), or lower the face index") from err
        finally:
            _close_backend(pipeline)
        out = demo.new_output_dir() / name
        shutil.move(str(work_out), out)
    message = (f"{result.num_frames} frames at {result.fps:g} fps ({result.duration:.2f} s) with "
               f"{generator}")
    if result.frames_without_face:
        message += f"; {result.frames_without_face} frames without a detectable face were left unchanged"
    rows, note = [], ""
    if score:
        rows, note = demo.score_generated(out, lambda f, d: progress(share + (1 - share) * f, d))
    progress(1.0, "done")
    return GenerateResult(video=out, message=message, score_rows=rows, score_note=note)



def _close_backend(pipeline):
    backend = getattr(pipeline, "face_backend", None)
    if backend is not None and not isinstance(backend, str):
        backend.close()
