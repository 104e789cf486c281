"""Start-up stays light (issue 14): importing talkface, the CLI module and `--help` pull in no heavy dependency.

Each check runs in a fresh interpreter (this test process has long imported torch and the rest) and reads the
child's `sys.modules` after the step, so a module imported at any depth, lazily or not, is seen.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.utils import REPO_ROOT

#: modules that cost seconds to import (or are optional) and that no start-up step below may need
HEAVY = ("torch", "transformers", "mediapipe", "gradio", "matplotlib", "accelerate", "cv2")

# A step is Python run in the child; `python -m talkface ARGS` is run through runpy exactly as `-m` runs it.
_RUN_MAIN = ("import contextlib, io, runpy\n"
             "sys.argv = ['talkface', *{args!r}]\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    try:\n"
             "        runpy.run_module('talkface', run_name='__main__', alter_sys=True)\n"
             "    except SystemExit as exit:\n"
             "        assert exit.code in (0, None), exit.code\n")


def heavy_modules_after(step: str) -> list[str]:
    """The HEAVY modules a fresh interpreter holds after running `step` (Python source)."""
    code = f"import json, sys\n{step}\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, env=env,
                               timeout=120)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("step", [
    "import talkface",
    "import talkface.cli",
    "import talkface.errors, talkface.hub.registry",
    _RUN_MAIN.format(args=["--help"]),
    _RUN_MAIN.format(args=["generate", "--help"]),
    _RUN_MAIN.format(args=["lipread", "--help"]),
    _RUN_MAIN.format(args=["detect", "--help"]),
    _RUN_MAIN.format(args=["download", "--help"]),
], ids=["import talkface", "import talkface.cli", "errors+registry", "--help", "generate --help", "lipread --help",
        "detect --help", "download --help"])
def test_start_up_imports_nothing_heavy(step):
    assert heavy_modules_after(step) == []


def test_the_probe_sees_heavy_imports():
    """The check above can fail: loading the pipeline module does import torch (and cv2), and the probe says so."""
    found = heavy_modules_after("import talkface.pipelines.lipsync.pipeline")
    assert "torch" in found and "cv2" in found


def test_help_runs_as_a_command():
    """`python -m talkface --help` and `generate --help` themselves (not through runpy) exit 0 with their usage."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    for args, expected in ((["--help"], "generate"), (["generate", "--help"], "--precision")):
        completed = subprocess.run([sys.executable, "-m", "talkface", *args], capture_output=True, text=True,
                                   cwd=REPO_ROOT, env=env, timeout=120)
        assert completed.returncode == 0, completed.stderr
        assert expected in completed.stdout
