"""A `talkface generate` run in a fresh process: under --no-progress its stderr holds no progress bar and none of
mediapipe's native log lines (issue 16, "quiet runs")."""

import os
import subprocess
import sys

import pytest

from talkface.utils.quiet import NATIVE_LOG_LINE
from tests.commands.test_cli_generate import inputs  # noqa: F401  (the fixture: a real clip, speech, a tiny model)
from tests.utils import REPO_ROOT


def generate(inputs, out, *flags, verbose=False):  # noqa: F811
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    env.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
    command = [sys.executable, "-m", "talkface", *(["-v"] if verbose else []), "generate", "--device", "cpu",
               "--face", str(inputs / "face.mp4"), "--audio", str(inputs / "speech.wav"), "--model",
               str(inputs / "tiny_wav2lip"), "--out", str(out), *flags]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stderr


def progress_bar_lines(stderr):
    return [part for part in stderr.replace("\r", "\n").splitlines() if "it/s]" in part or "%|" in part]


def native_lines(stderr):
    return [line for line in stderr.splitlines() if NATIVE_LOG_LINE.match(line)]


def test_no_progress_run_is_quiet(inputs, tmp_path):  # noqa: F811
    quiet = generate(inputs, tmp_path / "quiet.mp4", "--no-progress")
    assert not progress_bar_lines(quiet), quiet  # neither the lip-sync bar nor transformers' "Loading weights"
    assert "Loading weights" not in quiet
    assert not native_lines(quiet), quiet
    # the controls: without the flag the bars are there; with -v the native lines are there as DEBUG records
    # (the graphs did print them; they were caught at the descriptor)
    assert any("lip-sync" in line for line in progress_bar_lines(generate(inputs, tmp_path / "bars.mp4")))
    verbose = generate(inputs, tmp_path / "verbose.mp4", "--no-progress", verbose=True)
    assert "native: " in verbose and not native_lines(verbose)
