"""Quiet runs: native libraries' log lines kept off the terminal, and library progress bars turned off.

* `native_logs_silenced()`: a context manager that points the process's stderr file descriptor (fd 2) at a
  temporary file while native code runs, for the calls that print log lines from C++ (mediapipe's graphs print
  absl/glog lines such as `W0000 00:00:... inference_feedback_manager.cc:114] ...` and TensorFlow Lite's
  `INFO: Created TensorFlow Lite XNNPACK delegate for CPU.` when a graph is created and on its first run; no
  environment variable reaches them). Afterwards the captured lines that look like such log lines go to Python
  logging at DEBUG (`talkface -v` shows them); anything else (a real error message) is written back to stderr, so
  nothing else is lost. Python's own `sys.stderr` is flushed before and after. Use it around graph creation and
  first runs only: while it is active, every thread's stderr goes to the file.
* `disable_library_progress_bars()`: turns off the progress bars of transformers (e.g. "Loading weights") and
  huggingface_hub (downloads); `talkface generate --no-progress` calls it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading

logger = logging.getLogger(__name__)

#: native log lines: absl/glog ("W0000 00:00:1796285510.442446   18041 file.cc:114] ..."), absl's notice about
#: InitializeLog, and TensorFlow Lite's "INFO: ..." lines
NATIVE_LOG_LINE = re.compile(r"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^\]]+\] |"
                             r"WARNING: All log messages before absl::InitializeLog\(\) is called|"
                             r"INFO: Created TensorFlow Lite|INFO: Initialized TensorFlow Lite)")

_LOCK = threading.RLock()  # one redirect at a time (fd 2 is shared by the whole process)


def split_native_log_lines(text: str) -> tuple[list[str], list[str]]:
    """(native log lines, other lines) of captured stderr text."""
    native, other = [], []
    for line in text.splitlines():
        if line.strip():
            (native if NATIVE_LOG_LINE.match(line) else other).append(line)
    return native, other


@contextlib.contextmanager
def native_logs_silenced():
    """Capture fd 2 during the block; hand native log lines to logging (DEBUG) and write the rest back."""
    with _LOCK:
        try:
            saved = os.dup(2)
        except OSError:  # no stderr descriptor at all
            yield
            return
        with tempfile.TemporaryFile(mode="w+b") as capture:
            _flush()
            os.dup2(capture.fileno(), 2)
            try:
                yield
            finally:
                _flush()
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                text = capture.read().decode("utf-8", "replace")
        native, other = split_native_log_lines(text)
        for line in native:
            logger.debug("native: %s", line)
        if other:
            try:
                os.write(2, ("\n".join(other) + "\n").encode())
            except OSError:
                pass


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass


def disable_library_progress_bars():
    """Turn off transformers' and huggingface_hub's progress bars (for this process).

    Neither library is imported for it (that would cost the generation path seconds, issue 14): both read the
    environment variable set here when they are imported later (transformers asks huggingface_hub); one already
    imported is told directly.
    """
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read by huggingface_hub (and so transformers) on import
    hub_utils = sys.modules.get("huggingface_hub.utils")
    if hub_utils is not None:
        hub_utils.disable_progress_bars()
    transformers_logging = sys.modules.get("transformers.utils.logging")
    if transformers_logging is not None:
        transformers_logging.disable_progress_bar()


__all__ = ["NATIVE_LOG_LINE", "disable_library_progress_bars", "native_logs_silenced", "split_native_log_lines"]
