"""The demo's models: a process-wide lazy cache, what the Models tab shows, and the evaluation context through
which scoring takes its models from that cache."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelLoadError, TalkFaceUserError
from ..evaluation.evaluate import EvaluationContext
from ..hub import registry
from ..utils.sources import resolve_source

logger = logging.getLogger(__name__)

#: why a metric needing a ground truth is not computed, in the page's words
NEEDS_GROUND_TRUTH = "needs a ground-truth video (upload one under 'Ground-truth video')"


@dataclass(frozen=True)
class ModelStatus:
    """One model role as the page shows it."""

    role: str
    name: str
    source: str | None
    missing: str | None  # None when configured (it may still fail to load; that is reported when used)


def missing_reason(source: str | None, hint: str) -> str | None:
    """Why a model cannot be used, judged without loading it (None: looks usable)."""
    if not source:
        return f"not configured; {hint}"
    if registry.is_name(source) and not registry.is_downloaded(source) and not Path(source).exists():
        # a registry name: downloaded by the Models tab, usable at once (judged here without downloading it)
        return (f"not downloaded yet: download {source} on the Models tab (or run "
                f"`{registry.download_command(source)}`)")
    try:
        resolved = resolve_source(source)
    except TalkFaceUserError:  # a local-looking path that is not there (not looked up on the Hub)
        return f"no converted model at {source}; {hint}"
    if resolved.is_local and not (resolved.path / "config.json").is_file():
        return f"no converted model at {source}; {hint}"
    return None


class LazyModelCache:
    """Loads each model on first use, once per process, and keeps it; safe to use from several threads.

    A failed load is not kept: the next request tries again (the user may have converted the model meanwhile).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._values: dict = {}
        self.load_counts: Counter = Counter()

    def get(self, key: str, load: Callable):
        with self._lock:
            if key in self._values:
                return self._values[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # one load per key; other keys load in parallel
            with self._lock:
                if key in self._values:
                    return self._values[key]
            logger.info("loading %s", key)
            value = load()
            with self._lock:
                self._values[key] = value
                self.load_counts[key] += 1
            return value



class DemoEvaluationContext(EvaluationContext):
    """The evaluation context of one scoring request: models come from the demo's process-wide `LazyModelCache`
    (loaded once, kept), the face backend is this request's own, and a missing reference is a ground-truth video
    the user can upload."""

    missing_reference_reason = NEEDS_GROUND_TRUTH

    def __init__(self, options, models: LazyModelCache):
        super().__init__(options)
        self.models = models

    def no_reference_reason(self, stem: str) -> str:
        return "no ground-truth video"

    def load_model(self, metric, source):
        missing = missing_reason(source, metric.model_hint)
        if missing:  # judged without loading: a folder that is not there is not looked up on the Hub
            raise ModelLoadError(f"its model is {missing}")
        return self.models.get(f"{metric.model_option}:{source}",
                               lambda: EvaluationContext.load_model(self, metric, source))
