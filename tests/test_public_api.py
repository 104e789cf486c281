"""The lazily exported public API resolves, and `import talkface` stays light."""

import subprocess
import sys

import talkface


def test_every_public_name_resolves():
    for name in talkface.__all__:
        assert getattr(talkface, name) is not None, name


def test_import_is_light():
    code = ("import sys, talkface; heavy = [m for m in ('torch', 'transformers', 'gradio', 'accelerate', 'mediapipe')"
            " if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_cli_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "talkface", "--help"], capture_output=True, text=True).stdout
    for command in ("generate", "score", "lipread", "evaluate", "convert", "detect", "download"):
        assert command in out
