"""What the bad-input corpus is made of (tests/test_bad_inputs.py runs it): the corpus files, the `Case` row and
the helpers the case tables (tests/bad_inputs/cases_*.py) build their rows with."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.commands.test_cli_generate import write_wav

FACE_SIZE = 64
NUM_FRAMES = 10
SAMPLING_RATE = 16000
BOX = ["8", "8", "56", "56"]  # a forced face box: no face detector needed
# a progress bar's line (transformers' "Loading weights" bar ignores --no-progress until issue 16 is done); it is
# not a message, so it does not count against "exactly one line"
PROGRESS = re.compile(r"^[^|]*\d+%\|[^|]*\| *\d+/\d+ \[")


# ----------------------------------------------------------------------------------------------------------------
# The corpus files (made once, copied into each case's folder)
# ----------------------------------------------------------------------------------------------------------------


def tiny_frames(num_frames=NUM_FRAMES, size=FACE_SIZE):
    """A moving colour pattern: frames differ, so codecs and comparisons see real content."""
    y, x = np.mgrid[0:size, 0:size]
    return np.stack([np.stack([(x * 4 + t * 9) % 256, (y * 4) % 256, ((x + y) * 2 + t * 5) % 256], axis=-1)
                     for t in range(num_frames)]).astype(np.uint8)


def speech_like(seconds, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLING_RATE)) / SAMPLING_RATE
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))
            + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def make_corpus(folder: Path) -> Path:
    import cv2

    from talkface import media
    from talkface.models.wav2lip import Wav2LipModel
    from talkface.models.wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor
    from tests.models.test_convert_wav2lip import formula_for, released_layout
    from tests.models.test_modeling_wav2lip import tiny_config

    frames = tiny_frames()
    with media.VideoWriter(folder / "face.mp4", fps=25, width=FACE_SIZE, height=FACE_SIZE) as writer:
        for frame in frames:
            writer.write(frame)
    audio = speech_like(NUM_FRAMES / 25)
    with media.VideoWriter(folder / "clip.mp4", fps=25, width=FACE_SIZE, height=FACE_SIZE, audio=audio) as writer:
        for frame in frames:
            writer.write(frame)
    write_wav(folder / "speech.wav", audio)
    cv2.imwrite(str(folder / "photo.png"), frames[0][:, :, ::-1])
    (folder / "notes.txt").write_text("the user's own file, which no command may touch\n")

    torch.manual_seed(0)
    config = tiny_config()
    model = Wav2LipModel(config)
    model.save_pretrained(folder / "wav2lip")
    TalkingFaceAudioFeatureExtractor().save_pretrained(folder / "wav2lip")
    torch.save(released_layout(formula_for(model), module_prefix=False), folder / "wav2lip.pth")
    (folder / "wav2lip_config.json").write_text(config.to_json_string())

    from talkface.models.syncnet_lse import SyncNetLSEConfig, SyncNetLSEFeatureExtractor, SyncNetLSEModel

    torch.manual_seed(0)  # a tiny SyncNet LSE folder: score / evaluate / the demo's scorer run for real
    SyncNetLSEModel(SyncNetLSEConfig(audio_channels=[4, 4, 8, 8, 8, 8], video_channels=[4, 4, 8, 8, 8, 8],
                                     fc_hidden_size=8, embedding_size=6)).save_pretrained(folder / "syncnet")
    SyncNetLSEFeatureExtractor().save_pretrained(folder / "syncnet")
    return folder

# ----------------------------------------------------------------------------------------------------------------
# Rows
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    argv: list[str] = field(default_factory=list)
    code: int = 2
    message: str = ""
    setup: Callable[[Path], None] | None = None
    patch: Callable | None = None
    creates: tuple[str, ...] = ()
    replaces: tuple[str, ...] = ()
    check: Callable[[Path], None] | None = None
    call: Callable[[Path], tuple[int, str]] | None = None
    umask: int = 0o022
    lines: int | None = 1  # stderr lines of a failure (None: not counted, e.g. a --jobs run reporting its rows)
    stdout: str = ""  # a substring stdout must hold


def generate(out, **flags) -> list[str]:
    """`talkface generate` on the tiny corpus (forced box, CPU, fp32); flags: face="{photo.png}", fps="30", ...
    (a flag given None is left out)."""
    values = {"face": "{face.mp4}", "audio": "{speech.wav}", "model": "{wav2lip}", "box": BOX, "out": out, **flags}
    argv = ["generate", "--no-progress", "--device", "cpu", "--precision", "fp32"]
    for name, value in values.items():
        if value is not None:
            argv += [f"--{name.replace('_', '-')}", *(value if isinstance(value, (list, tuple)) else [value])]
    return argv


CONVERT = ["convert", "wav2lip", "--checkpoint", "{wav2lip.pth}", "--config", "{wav2lip_config.json}"]
SCORE = ["score", "{clip.mp4}", "--syncnet", "{wav2lip}"]  # output checks come before any model is loaded
LSE = ["--syncnet", "{syncnet}", "--metrics", "lse", "--device", "cpu"]  # a real (tiny) SyncNet


def run_python(code_text: str):
    """setup: run a few lines of Python in the case's folder (the current folder while the setup runs)."""
    def setup(folder):
        previous = os.getcwd()
        os.chdir(folder)
        try:
            exec(code_text, {"np": np, "torch": torch, "Path": Path, "folder": folder})
        finally:
            os.chdir(previous)
    return setup


def wav(name, waveform):
    def setup(folder):
        write_wav(folder / name, waveform)
    return setup


def video(name, width=FACE_SIZE, height=FACE_SIZE, num_frames=NUM_FRAMES, audio=None):
    """setup: a video of the moving pattern at any size (cropped or tiled), with `audio` (a waveform) or none."""
    def setup(folder):
        from talkface import media

        pattern = tiny_frames(num_frames, size=max(width, height))
        with media.VideoWriter(folder / name, fps=25, width=width, height=height, audio=audio) as writer:
            for frame in pattern:
                writer.write(np.ascontiguousarray(frame[:height, :width]))
    return setup


def gif(name):
    def setup(folder):
        import av

        container = av.open(str(folder / name), "w", format="gif")
        stream = container.add_stream("gif", rate=25)
        stream.width = stream.height = FACE_SIZE
        stream.pix_fmt = "rgb8"
        for frame in tiny_frames():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
        container.close()
    return setup


def photo_with_face(name):
    """setup: a real face photo from ../shared (the row is skipped without it)."""
    def setup(folder):
        from tests.utils import data_file

        shutil.copy(data_file("photo01_sadtalker_people_0.png"), folder / name)
    return setup


def requires_module(name):
    """setup: skip the row when an optional dependency is missing."""
    def setup(folder):
        pytest.importorskip(name)
    return setup


def steps(*setups):
    def setup(folder):
        for one in setups:
            one(folder)
    return setup


def malicious_pickle(name, creates="pwned.txt"):
    """setup: a checkpoint whose unpickling would create `creates` (a __reduce__ payload calling open(..., "w"));
    loading it must refuse, so the file never appears (the harness sees any new file)."""
    def setup(folder):
        import pickle

        target = str(folder / creates)

        class Payload:
            def __reduce__(self):
                return (open, (target, "w"))

        with open(folder / name, "wb") as handle:
            pickle.dump({"state_dict": Payload()}, handle, protocol=2)
    return setup


def syncnet_checkpoint(name):
    """setup: an original-format syncnet_python checkpoint (SyncNet weights, the wrong kind for a generator)."""
    def setup(folder):
        from tests.hub.test_download import tiny_syncnet_checkpoint_bytes

        tiny_syncnet_checkpoint_bytes(folder / name)
    return setup


def jobs_file(text, name="jobs.csv"):
    return written(name, text)


def results_row_says(name, text):
    """check: the --jobs results CSV records `text` for its row."""
    def check(folder):
        assert text in (folder / name).read_text(), (folder / name).read_text()
    return check


def demo_call(action, **config):
    """call: run one of the demo page's handlers (talkface.demo.page.PageActions) in the case's folder.
    `action(actions, folder)` returns None for success or the page's status text; a `gr.Error` (the /generate and
    /score endpoints) or an error status line becomes exit code 2 with its message."""
    def call(folder):
        gr = pytest.importorskip("gradio")
        from talkface.demo import DemoConfig, TalkFaceDemo
        from talkface.demo.page import PREFIXES, PageActions

        settings = {"generators": {"tiny": str(folder / "wav2lip")}, "syncnet": str(folder / "syncnet"),
                    "device": "cpu", "score_metrics": ("lse",), "cache_dir": folder.parent / "demo-cache", **config}
        actions = PageActions(TalkFaceDemo(DemoConfig(**settings)))
        try:
            status = action(actions, folder)
        except gr.Error as err:
            return 2, f"{err.message}\n"
        if status and status.startswith(PREFIXES["error"]):
            return 2, status[len(PREFIXES["error"]):] + "\n"
        return 0, ""
    return call


def no_progress(*args, **kwargs):
    pass


def demo_generate(face, speech, **options):
    """demo_call action: the /generate endpoint with the page's defaults."""
    def action(actions, folder):
        from talkface.demo.generate import DEFAULTS

        values = {"generator": "tiny", "face_index": DEFAULTS.face_index, "pads": DEFAULTS.pads,
                  "duration_policy": DEFAULTS.duration_policy, "blend": DEFAULTS.blend, "feather": DEFAULTS.feather,
                  "enhance": False, **options}
        actions.generate_api(face and str(folder / face), speech and str(folder / speech), None, values["generator"],
                             values["face_index"], *values["pads"], values["duration_policy"], values["blend"],
                             values["feather"], values["enhance"], progress=no_progress)
    return action


def demo_score(videos, audios=(), references=(), check=None):
    """demo_call action: the /score endpoint; `check(note)` looks at the note of a successful run."""
    def action(actions, folder):
        _, note, _, _ = actions.score_api([str(folder / v) for v in videos], [str(folder / a) for a in audios],
                                          [str(folder / r) for r in references], "precropped", progress=no_progress)
        if check is not None:
            check(note)
    return action


def demo_upload(face):
    """demo_call action: the face upload's handler (what the page says under the upload)."""
    def action(actions, folder):
        return actions.face_changed(str(folder / face))[2]
    return action


def linked(kind, target, name):
    def setup(folder):
        (os.link if kind == "hard" else os.symlink)(folder / target, folder / name)
    return setup


def folders(*names):
    def setup(folder):
        for name in names:
            (folder / name).mkdir(parents=True)
    return setup


def moved(*pairs):
    """setup: move corpus files (source, destination, source, destination, ...), making folders as needed."""
    def setup(folder):
        for source, destination in zip(pairs[::2], pairs[1::2]):
            (folder / destination).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(folder / source, folder / destination)
    return setup


def copied(source, destination):
    def setup(folder):
        (folder / destination).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / source, folder / destination)
    return setup


def written(name, text):
    def setup(folder):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return setup


def truncated(name, keep):
    """setup: cut a file to `keep` bytes (an int) or to that fraction of its size (a float)."""
    def setup(folder):
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])
    return setup


def read_only_folder(name):
    def setup(folder):
        (folder / name).mkdir()
        (folder / name).chmod(0o555)
    return setup


def disk_full_after(calls: int):
    """Writes fail with ENOSPC: video frames after the first `calls`, and every file written through
    talkface.utils.io's `open` (JSON, reports)."""
    def patch(monkeypatch, folder):
        from talkface import media
        from talkface.utils import io as safe_io

        real_write, count = media.VideoWriter.write, [0]

        def write(self, frame):
            count[0] += 1
            if count[0] > calls:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(self, frame)

        monkeypatch.setattr(media.VideoWriter, "write", write)

        class FullFile:
            def __init__(self, path, mode="r", *args, **kwargs):
                self._file = open(path, mode, *args, **kwargs)

            def write(self, data):
                raise OSError(errno.ENOSPC, "No space left on device")

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self._file.close()

        monkeypatch.setattr(safe_io, "open", FullFile, raising=False)
    return patch


def silent_clip(path, seconds=0.4):
    """A 64x64 clip whose sound track holds only digital silence."""
    from talkface import media

    with media.VideoWriter(path, fps=25, width=FACE_SIZE, height=FACE_SIZE,
                           audio=np.zeros(int(seconds * SAMPLING_RATE), np.float32)) as writer:
        for frame in tiny_frames(int(seconds * 25)):
            writer.write(frame)


def mode_is(name, file_mode, folder_mode=None):
    def check(folder):
        target = folder / name
        paths = [target, *target.rglob("*")] if target.is_dir() else [target]
        for path in paths:
            want = folder_mode if path.is_dir() else file_mode
            assert stat.S_IMODE(path.stat().st_mode) == want, f"{path}: {oct(path.stat().st_mode)} != {oct(want)}"
    return check




def snapshot(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file (links by their target text), folders as "dir"."""
    result = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            result[key] = "link:" + os.readlink(path)
        elif path.is_dir():
            result[key] = "dir"
        else:
            result[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return result


def expand(argv, folder: Path) -> list[str]:
    return [re.sub(r"\{([^{}]+)\}", lambda m: str(folder if m[1] == "tmp" else folder / m[1]), a) for a in argv]


