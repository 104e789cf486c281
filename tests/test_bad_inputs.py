"""The bad-input corpus (issue 13): every command given bad or edge inputs fails cleanly and loses nothing.

HOW TO ADD A ROW. Append a `Case` to `CASES`:

    Case("generate: --out is the --face video",                 # id, unique
         generate("{face.mp4}"),                                # argv after `talkface` (a list of strings)
         code=2, message="same file")                           # exit code, a substring of the stderr line

* `{name}` in argv is the path of `name` in the case's own folder, a fresh copy of the corpus files made by
  `make_corpus` (face.mp4: 64x64 video, no sound; clip.mp4: the same with sound; speech.wav; photo.png; notes.txt;
  wav2lip/: a tiny generator folder; wav2lip.pth + wav2lip_config.json: its original-format checkpoint);
  `{tmp}` is that folder (`message` may use the same placeholders). The command runs with that folder as the current directory.
  `generate(out, **flags)`, `CONVERT`, `SCORE` build the common command lines (flags: face="{photo.png}", ...).
* `setup=callable(folder)` makes extra files for one case (a truncated file, a link, a read-only folder, ...).
  `patch=callable(monkeypatch, folder)` injects a fault in-process (e.g. a disk that fills up).
* `creates=("out.mp4",)`: for a row that must succeed (code 0), the files it must create; `replaces=("wav2lip",)`:
  paths (and everything under them) it may change or remove; `check=callable(folder)` runs extra assertions
  afterwards (file modes, contents); `umask=0o077`: the umask the row runs under (default 0o022).
* `call=callable(folder) -> (exit_code, stderr_text)`: instead of argv, for things that are not a command
  (the demo's handlers: map a `gr.Error`/`TalkFaceUserError` to code 2 and its message).

Every row is checked the same way: the exit code; for a failure, exactly one stderr line, without "Traceback",
containing `message`; no new file anywhere in the folder (no output, no `.partial`, no hidden temporary) except
`creates`; every file that was there before (the inputs and the user's other files) byte-identical. Signals
(SIGTERM / SIGHUP / SIGINT during a run) need a real process: see `test_signal_during_generate_leaves_nothing`.
Rows run in-process with tiny models and media, so the corpus takes well under a minute on two cores.
"""

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

from talkface.cli import main
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
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("bad_inputs_corpus"))


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


def _link(kind, target, name):
    def setup(folder):
        (os.link if kind == "hard" else os.symlink)(folder / target, folder / name)
    return setup


def _mkdir(*names):
    def setup(folder):
        for name in names:
            (folder / name).mkdir(parents=True)
    return setup


def _move(*pairs):
    """setup: move corpus files (source, destination, source, destination, ...), making folders as needed."""
    def setup(folder):
        for source, destination in zip(pairs[::2], pairs[1::2]):
            (folder / destination).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(folder / source, folder / destination)
    return setup


def _copy(source, destination):
    def setup(folder):
        (folder / destination).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / source, folder / destination)
    return setup


def _write(name, text):
    def setup(folder):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return setup


def _truncate(name, keep):
    """setup: cut a file to `keep` bytes (an int) or to that fraction of its size (a float)."""
    def setup(folder):
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])
    return setup


def _read_only_folder(name):
    def setup(folder):
        (folder / name).mkdir()
        (folder / name).chmod(0o555)
    return setup


def _disk_full_after(calls: int):
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


def _silent_clip(path, seconds=0.4):
    """A 64x64 clip whose sound track holds only digital silence."""
    from talkface import media

    with media.VideoWriter(path, fps=25, width=FACE_SIZE, height=FACE_SIZE,
                           audio=np.zeros(int(seconds * SAMPLING_RATE), np.float32)) as writer:
        for frame in tiny_frames(int(seconds * 25)):
            writer.write(frame)


def _mode_is(name, file_mode, folder_mode=None):
    def check(folder):
        target = folder / name
        paths = [target, *target.rglob("*")] if target.is_dir() else [target]
        for path in paths:
            want = folder_mode if path.is_dir() else file_mode
            assert stat.S_IMODE(path.stat().st_mode) == want, f"{path}: {oct(path.stat().st_mode)} != {oct(want)}"
    return check


CASES = [
    # --- generate: the output is never an input, and nothing half-written stays ---------------------------------
    Case("generate: --out is the --face video", generate("{face.mp4}"), message="same file"),
    Case("generate: --out is a hard link to --face", generate("{linked.mp4}"),
         setup=_link("hard", "face.mp4", "linked.mp4"), message="same file"),
    Case("generate: --out is a symlink to --face", generate("{linked.mp4}"),
         setup=_link("sym", "face.mp4", "linked.mp4"), message="same file"),
    Case("generate: --out is the --audio file (a video with sound)", generate("{clip.mp4}", audio="{clip.mp4}"),
         message="same file"),
    Case("generate: --out is an existing folder", generate("{results}"), setup=_mkdir("results"),
         message="existing folder"),
    Case("generate: output folder does not exist", generate("{nowhere/out.mp4}"), message="does not exist"),
    Case("generate: output folder not writable", generate("{locked/out.mp4}"), setup=_read_only_folder("locked"),
         message="not writable"),
    Case("generate: disk full while encoding", generate("{out.mp4}"), patch=_disk_full_after(2),
         message="no space left"),
    Case("generate: non-ASCII paths work", generate("{résultat_口.mp4}", face="{vidéo_面.mp4}"),
         setup=lambda folder: shutil.copy(folder / "face.mp4", folder / "vidéo_面.mp4"), code=0,
         creates=("résultat_口.mp4",)),
    Case("generate: the output's mode follows the umask", generate("{out.mp4}"), code=0,
         creates=("out.mp4",), check=_mode_is("out.mp4", 0o666 & ~0o022)),
    Case("generate: works under umask 077 (a private output)", generate("{out.mp4}"), code=0, umask=0o077,
         creates=("out.mp4",), check=_mode_is("out.mp4", 0o600)),
    # --- convert --out / --overwrite ----------------------------------------------------------------------------
    Case("convert: --out . --overwrite (the folder holding the checkpoint)", [*CONVERT, "--out", ".", "--overwrite"],
         message="contains --checkpoint"),
    Case("convert: --out . --overwrite (the current folder, inputs elsewhere)",
         ["convert", "wav2lip", "--checkpoint", "{../elsewhere/wav2lip.pth}", "--config",
          "{../elsewhere/wav2lip_config.json}", "--out", ".", "--overwrite"],
         setup=_move("wav2lip.pth", "../elsewhere/wav2lip.pth", "wav2lip_config.json",
                     "../elsewhere/wav2lip_config.json"), message="the current folder"),
    Case("convert: --out MODELS --overwrite (the parent of the checkpoint and of other models)",
         [*CONVERT[:3], "{models/wav2lip.pth}", *CONVERT[4:], "--out", "{models}", "--overwrite"],
         setup=_move("wav2lip.pth", "models/wav2lip.pth", "wav2lip", "models/wav2lip"),
         message="contains --checkpoint"),
    Case("convert: --out MODELS --overwrite (a folder of models, not a model)",
         [*CONVERT, "--out", "{models}", "--overwrite"], setup=_move("wav2lip", "models/wav2lip"),
         message="holds no talkface model"),
    Case("convert: --out FOLDER --overwrite with an unknown model_type",
         [*CONVERT, "--out", "{other}", "--overwrite"],
         setup=_write("other/config.json", '{"model_type": "bert"}'), message="holds no talkface model"),
    Case("convert: --out ~ --overwrite (home, even with a model's config.json)",
         [*CONVERT, "--out", "~", "--overwrite"], setup=_write("home/config.json", '{"model_type": "wav2lip"}'),
         patch=lambda monkeypatch, folder: monkeypatch.setenv("HOME", str(folder / "home")),
         message="your home folder"),
    Case("convert: --out an existing model folder without --overwrite", [*CONVERT, "--out", "{wav2lip}"],
         message="--overwrite"),
    Case("convert: --out an existing file", [*CONVERT, "--out", "{notes.txt}"], message="existing file"),
    Case("convert: --out the checkpoint itself", [*CONVERT, "--out", "{wav2lip.pth}", "--overwrite"],
         message="same file"),
    Case("convert: --overwrite replaces a model folder", [*CONVERT, "--out", "{wav2lip}", "--overwrite"], code=0,
         replaces=("wav2lip",), check=_mode_is("wav2lip", 0o644, 0o755)),
    Case("convert: a new folder is readable per the umask (not 0700/0600)", [*CONVERT, "--out", "{new/model}"],
         code=0, umask=0o002, creates=("new",), check=_mode_is("new/model", 0o664, 0o775)),
    # --- damaged model folders ----------------------------------------------------------------------------------
    Case("generate: truncated model.safetensors", generate("{out.mp4}"),
         setup=_truncate("wav2lip/model.safetensors", 0.5), message="is damaged: model.safetensors is truncated"),
    Case("generate: model.safetensors cut inside its header", generate("{out.mp4}"),
         setup=_truncate("wav2lip/model.safetensors", 20), message="model.safetensors is truncated"),
    Case("generate: empty model.safetensors", generate("{out.mp4}"),
         setup=_truncate("wav2lip/model.safetensors", 0), message="convert the original checkpoint again"),
    Case("generate: corrupt config.json", generate("{out.mp4}"), setup=_truncate("wav2lip/config.json", 0.5),
         message="config.json is not valid JSON"),
    Case("generate: corrupt preprocessor_config.json", generate("{out.mp4}"),
         setup=_truncate("wav2lip/preprocessor_config.json", 0.5), message="preprocessor_config.json is not valid"),
    Case("score: truncated model folder", [*SCORE], setup=_truncate("wav2lip/model.safetensors", 0.9),
         message="the model folder"),
    # --- evaluate --output ---------------------------------------------------------------------------------------
    Case("evaluate: --output is the --generated folder",
         ["evaluate", "--generated", "{generated}", "--reference", "{generated}", "--metrics", "psnr", "--output",
          "{generated}"], setup=_copy("clip.mp4", "generated/clip.mp4"), message="is --generated"),
    Case("evaluate: --output is an existing file",
         ["evaluate", "--generated", "{generated}", "--reference", "{generated}", "--metrics", "psnr", "--output",
          "{notes.txt}"], setup=_copy("clip.mp4", "generated/clip.mp4"), message="is a file"),
    # --- score / lipread --output -------------------------------------------------------------------------------
    Case("score: --output is an existing folder", [*SCORE, "--output", "{results}"], setup=_mkdir("results"),
         message="existing folder"),
    Case("score: --output is the scored video", [*SCORE, "--output", "{clip.mp4}"], message="same file"),
    Case("score: --output folder not writable", [*SCORE, "--output", "{locked/scores.json}"],
         setup=_read_only_folder("locked"), message="not writable"),
    Case("lipread: --modality audio on a video without an audio stream", ["lipread", "{face.mp4}", "--modality",
                                                                         "audio"],
         message="face.mp4 has no audio stream, so --modality audio has nothing to hear; use --modality video"),
    Case("lipread: --modality audiovisual on a video whose sound is silence",
         ["lipread", "{hush.mp4}", "--modality", "audiovisual"], setup=lambda folder: _silent_clip(folder / "hush.mp4"),
         message="the sound track of {hush.mp4} is silent"),
    Case("lipread: --output is an existing folder",
         ["lipread", "{clip.mp4}", "--avhubert", "{wav2lip}", "--output", "{results}"],
         setup=_mkdir("results"), message="existing folder"),
]


# ----------------------------------------------------------------------------------------------------------------
# The harness
# ----------------------------------------------------------------------------------------------------------------


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


def run_case(case: Case, folder: Path, monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.chdir(folder)
    if case.patch is not None:
        case.patch(monkeypatch, folder)
    if case.call is not None:
        return case.call(folder)
    capsys.readouterr()
    code = main(expand(case.argv, folder))
    return code, capsys.readouterr().err


def assert_clean_failure(case: Case, code: int, stderr: str, before: dict, after: dict, folder: Path):
    assert code == case.code, f"exit code {code}, expected {case.code}; stderr:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    if case.code != 0:
        lines = [line for line in stderr.replace("\r", "\n").splitlines()
                 if line.strip() and not PROGRESS.search(line)]
        assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{stderr}"
        message = expand([case.message], folder)[0]  # {name} in a message: that file's path
        assert message.lower() in lines[0].lower(), f"{message!r} not in {lines[0]!r}"
    def allowed(key, names):
        return any(key == name or key.startswith(name.rstrip("/") + "/") for name in names)

    new = sorted(k for k in set(after) - set(before) if not allowed(k, case.creates + case.replaces))
    assert not new, f"files left behind: {new}"
    missing = sorted(k for k in set(before) - set(after) if not allowed(k, case.replaces))
    assert not missing, f"files removed: {missing}"
    changed = sorted(k for k in before if k in after and before[k] != after[k] and not allowed(k, case.replaces))
    assert not changed, f"files changed: {changed}"
    for name in case.creates:
        assert name in after, f"{name} was not created"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case, corpus, tmp_path, monkeypatch, capsys):
    if os.geteuid() == 0 and case.setup is not None and "not writable" in case.message:
        pytest.skip("root writes into read-only folders")
    folder = tmp_path / "case"
    shutil.copytree(corpus, folder)
    if case.setup is not None:
        case.setup(folder)
    old_umask = os.umask(case.umask)
    try:
        before = snapshot(folder)
        code, stderr = run_case(case, folder, monkeypatch, capsys)
        after = snapshot(folder)
    finally:
        os.umask(old_umask)
        for path in folder.rglob("*"):  # let pytest delete read-only folders
            if path.is_dir() and not path.is_symlink() and not path.stat().st_mode & stat.S_IWUSR:
                path.chmod(0o755)
    assert_clean_failure(case, code, stderr, before, after, folder)
    if case.check is not None:
        case.check(folder)


def test_case_ids_are_unique():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), [i for i in ids if ids.count(i) > 1]


# ----------------------------------------------------------------------------------------------------------------
# Signals: a real `python -m talkface generate` process, stopped once its temporary output exists
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_signal_during_generate_leaves_nothing(signame, corpus, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    signum = getattr(signal, signame)
    folder = tmp_path / "case"
    shutil.copytree(corpus, folder)
    write_wav(folder / "long.wav", speech_like(120.0))  # 3000 frames: far longer than the test waits
    before = snapshot(folder)
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    argv = expand(generate("{out.mp4}", audio="{long.wav}", duration_policy="loop"), folder)
    process = subprocess.Popen([sys.executable, "-m", "talkface", *argv], cwd=folder, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not list(folder.glob(".out.partial-*")):
            assert process.poll() is None, f"ended before writing: {process.communicate()}"
            assert time.monotonic() < deadline, "no temporary output appeared"
            time.sleep(0.02)
        time.sleep(0.3)  # well inside the frame loop
        assert process.poll() is None, "finished before the signal; make the input longer"
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = stderr.decode(errors="replace")
    assert process.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr, stderr
    # the run's own progress notes come first (it was working); the stop itself is one final line
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip() and not PROGRESS.search(line)]
    assert [line for line in lines if line.startswith("talkface:")] == lines[-1:], stderr
    assert ("interrupted" if signum == signal.SIGINT else f"stopped by {signame}") in lines[-1]
    after = snapshot(folder)
    assert after == before, f"left behind: {sorted(set(after) - set(before))}"
