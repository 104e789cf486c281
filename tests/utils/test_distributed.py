"""A copy started by a launcher leaves through os._exit once its command has returned (utils/distributed.py:
exit_launched_copy), so the interpreter's teardown, where a finished gloo copy sometimes aborted (SIGABRT after
"terminate called without an active exception"), never runs; a plain run exits as before."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# `python -m talkface` with no command (prints its help, returns 2), with an atexit handler that shows whether the
# interpreter's teardown ran
RUN_MAIN = ("import atexit, runpy, sys; atexit.register(lambda: print('TEARDOWN RAN', flush=True)); "
            "sys.argv = ['talkface']; runpy.run_module('talkface', run_name='__main__')")


def _run(world_size):
    env = {key: value for key, value in os.environ.items() if key not in ("WORLD_SIZE", "RANK")}
    if world_size is not None:
        env.update(WORLD_SIZE=str(world_size), RANK="1")
    return subprocess.run([sys.executable, "-c", RUN_MAIN], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=120)


@pytest.mark.parametrize("world_size", [None, 1])
def test_a_plain_run_exits_through_the_interpreter(world_size):
    completed = _run(world_size)
    assert completed.returncode == 2
    assert "usage: talkface" in completed.stdout and "TEARDOWN RAN" in completed.stdout


def test_a_launched_copy_skips_the_teardown_and_keeps_its_exit_code_and_output():
    completed = _run(2)
    assert completed.returncode == 2
    assert "usage: talkface" in completed.stdout  # buffered output flushed before os._exit
    assert "TEARDOWN RAN" not in completed.stdout


def test_exit_launched_copy_flushes_and_exits_with_the_code():
    code = ("import sys; from talkface.utils.distributed import exit_launched_copy; "
            "sys.stdout.write('no newline, still buffered'); exit_launched_copy(7)")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert completed.returncode == 7 and completed.stdout == "no newline, still buffered"
