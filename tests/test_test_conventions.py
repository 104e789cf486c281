"""Conventions of the test suite itself."""

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_no_importorskip_on_talkface_modules():
    """A broken talkface import must fail the suite, not skip tests; importorskip is for optional third-party
    dependencies only (mediapipe, gradio, scikit-image, ...)."""
    pattern = re.compile(r"importorskip\(\s*[\"'](talkface|tests)\b")
    offenders = [f"{path.relative_to(TESTS)}:{number}"
                 for path in sorted(TESTS.rglob("*.py"))
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if pattern.search(line) and path != Path(__file__).resolve()]
    assert not offenders, f"import talkface modules directly instead of importorskip: {', '.join(offenders)}"
