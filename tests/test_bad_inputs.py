"""The bad-input corpus (issue 13): every command given bad or edge inputs fails cleanly and loses nothing.

The rows live in case tables by command, tests/bad_inputs/cases_{generate,models,scoring,other,demo}.py, and
are built with the helpers of tests/bad_inputs/common.py; this file is the harness that runs them.

HOW TO ADD A ROW. Append a `Case` to the `CASES` of the command's table:

    Case("generate: --out is the --face video",                 # id, unique
         generate("{face.mp4}"),                                # argv after `talkface` (a list of strings)
         code=2, message="same file")                           # exit code, a substring of the stderr line

* `{name}` in argv is the path of `name` in the case's own folder, a fresh copy of the corpus files made by
  `make_corpus` (face.mp4: 64x64 video, no sound; clip.mp4: the same with sound; speech.wav; photo.png; notes.txt;
  wav2lip/: a tiny generator folder; wav2lip.pth + wav2lip_config.json: its original-format checkpoint;
  syncnet/: a tiny SyncNet LSE folder);
  `{tmp}` is that folder (`message` may use the same placeholders). The command runs with that folder as the current directory.
  `generate(out, **flags)`, `CONVERT`, `SCORE`, `LSE` build the common command lines (flags: face="{photo.png}",
  ...).
* `setup=callable(folder)` makes extra files for one case (a truncated file, a link, a read-only folder, ...).
  `patch=callable(monkeypatch, folder)` injects a fault in-process (e.g. a disk that fills up).
* `creates=("out.mp4",)`: for a row that must succeed (code 0), the files it must create; `replaces=("wav2lip",)`:
  paths (and everything under them) it may change or remove; `check=callable(folder)` runs extra assertions
  afterwards (file modes, contents); `umask=0o077`: the umask the row runs under (default 0o022);
  `lines=None` for a failure that reports more than one line (a --jobs run: one per failed row), `stdout=` a
  substring stdout must hold.
* `call=callable(folder) -> (exit_code, stderr_text)`: instead of argv, for things that are not a command
  (the demo's handlers: `demo_call(demo_generate(...))` maps a `gr.Error` or an error status line to code 2 and
  its message).

Every row is checked the same way: the exit code; for a failure, exactly one stderr line, without "Traceback",
containing `message`; no new file anywhere in the folder (no output, no `.partial`, no hidden temporary) except
`creates`; every file that was there before (the inputs and the user's other files) byte-identical. Signals
(SIGTERM / SIGHUP / SIGINT during a run) need a real process: see `test_signal_during_generate_leaves_nothing`.
Rows run in-process with tiny models and media, so the corpus takes a minute or two on two cores.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from talkface.cli import main
from tests.bad_inputs import cases_demo, cases_generate, cases_models, cases_other, cases_scoring
from tests.bad_inputs.common import PROGRESS, Case, expand, generate, make_corpus, snapshot, speech_like
from tests.commands.test_cli_generate import write_wav

CASES = [*cases_generate.CASES, *cases_models.CASES, *cases_scoring.CASES, *cases_other.CASES, *cases_demo.CASES]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("bad_inputs_corpus"))


# ----------------------------------------------------------------------------------------------------------------
# The harness
# ----------------------------------------------------------------------------------------------------------------


def run_case(case: Case, folder: Path, monkeypatch, capsys) -> tuple[int, str, str]:
    """(exit code, stderr, stdout) of the row's command (or its `call`)."""
    monkeypatch.chdir(folder)
    if case.patch is not None:
        case.patch(monkeypatch, folder)
    if case.call is not None:
        return (*case.call(folder), "")
    capsys.readouterr()
    try:
        code = main(expand(case.argv, folder))
    except SystemExit as stop:  # argparse's own errors (an unknown choice) exit from inside the parser
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.err, captured.out


def assert_clean_failure(case: Case, code: int, stderr: str, before: dict, after: dict, folder: Path,
                         stdout: str = ""):
    assert code == case.code, f"exit code {code}, expected {case.code}; stderr:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    message = expand([case.message], folder)[0]  # {name} in a message: that file's path
    if case.code != 0 and case.lines is not None:
        lines = [line for line in stderr.replace("\r", "\n").splitlines()
                 if line.strip() and not PROGRESS.search(line)]
        assert len(lines) == case.lines, f"expected {case.lines} stderr line(s), got {len(lines)}:\n{stderr}"
        assert message.lower() in lines[0].lower(), f"{message!r} not in {lines[0]!r}"
    elif message:
        assert message.lower() in stderr.lower(), f"{message!r} not in {stderr!r}"
    if case.stdout:
        assert expand([case.stdout], folder)[0] in stdout, f"{case.stdout!r} not in {stdout!r}"
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
        code, stderr, stdout = run_case(case, folder, monkeypatch, capsys)
        after = snapshot(folder)
    finally:
        os.umask(old_umask)
        for path in folder.rglob("*"):  # let pytest delete read-only folders
            if path.is_dir() and not path.is_symlink() and not path.stat().st_mode & stat.S_IWUSR:
                path.chmod(0o755)
    assert_clean_failure(case, code, stderr, before, after, folder, stdout)
    if case.check is not None:
        case.check(folder)


def test_case_ids_are_unique():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), [i for i in ids if ids.count(i) > 1]


def test_the_corpus_covers_every_command_and_the_demo():
    """Issue 13: at least 60 rows, across every command and the demo's handlers."""
    commands = {case.argv[0] if case.argv else "demo" for case in CASES}
    assert {"generate", "score", "evaluate", "lipread", "convert", "detect", "download", "demo"} <= commands
    assert len(CASES) >= 60, len(CASES)


# ----------------------------------------------------------------------------------------------------------------
# Signals: a real `python -m talkface generate` process, stopped once its temporary output exists
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("signame, overlap", [("SIGTERM", "auto"), ("SIGHUP", "auto"), ("SIGINT", "auto"),
                                              ("SIGTERM", "on"), ("SIGINT", "on")])
def test_signal_during_generate_leaves_nothing(signame, overlap, corpus, tmp_path):
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
    # overlap on: decoding and encoding run in their own threads (the signal reaches the main thread)
    argv = expand(generate("{out.mp4}", audio="{long.wav}", duration_policy="loop", overlap=overlap), folder)
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
