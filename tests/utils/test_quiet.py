"""talkface.utils.quiet: native log lines captured at the file-descriptor level, library progress bars off."""

import logging
import os
import subprocess
import sys

from talkface.utils.quiet import (
    disable_library_progress_bars,
    native_logs_silenced,
    split_native_log_lines,
)
from tests.utils import REPO_ROOT

# lines as mediapipe 0.10 and TensorFlow Lite print them
ABSL_LINE = ("W0000 00:00:1796285510.442446   18041 inference_feedback_manager.cc:114] Feedback manager requires a "
             "model with a single signature inference. Disabling support for feedback tensors.")
NATIVE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    ABSL_LINE,
    "I0000 00:00:1796285510.610988   18058 gl_context.cc:357] GL version: 3.2",
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
]


def test_native_log_lines_are_told_from_other_output():
    other = ["error: something real went wrong", "Traceback (most recent call last):", "W0000 is not a log line"]
    native, rest = split_native_log_lines("\n".join(NATIVE + other) + "\n\n")
    assert native == NATIVE and rest == other


def test_silenced_block_keeps_native_lines_off_stderr_and_the_rest_on(capfd, caplog):
    with caplog.at_level(logging.DEBUG, logger="talkface.utils.quiet"):
        with native_logs_silenced():
            os.write(2, ("\n".join(NATIVE) + "\n").encode())  # the descriptor itself, as C++ code writes
            os.write(2, b"a real message\n")
        os.write(2, b"after the block\n")
    err = capfd.readouterr().err
    assert "a real message" in err and "after the block" in err
    assert not any(line in err for line in NATIVE)
    assert ABSL_LINE in caplog.text  # at DEBUG (talkface -v)
    # nested blocks and an exception inside one restore the descriptor
    try:
        with native_logs_silenced():
            with native_logs_silenced():
                raise RuntimeError("inside")
    except RuntimeError:
        pass
    os.write(2, b"restored\n")
    assert "restored" in capfd.readouterr().err


def test_library_progress_bars_off():
    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars
    from transformers.utils import logging as transformers_logging

    try:
        disable_library_progress_bars()
        assert not transformers_logging.is_progress_bar_enabled()
        assert are_progress_bars_disabled()
    finally:
        transformers_logging.enable_progress_bar()
        enable_progress_bars()
        os.environ.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)


def test_library_progress_bars_off_before_the_libraries_are_imported():
    """In a fresh process the call imports neither library (start-up, issue 14), and both start with their bars off."""
    code = ("import sys\n"
            "from talkface.utils.quiet import disable_library_progress_bars\n"
            "disable_library_progress_bars()\n"
            "assert 'transformers' not in sys.modules and 'huggingface_hub' not in sys.modules, 'imported'\n"
            "from huggingface_hub.utils import are_progress_bars_disabled\n"
            "from transformers.utils import logging\n"
            "assert are_progress_bars_disabled() and not logging.is_progress_bar_enabled(), 'bars on'\n")
    env = {key: value for key, value in os.environ.items() if key != "HF_HUB_DISABLE_PROGRESS_BARS"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
