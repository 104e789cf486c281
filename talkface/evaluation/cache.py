"""The per-file result cache of an evaluation run: REPORT_DIR/cache/<stem>.<metric>.json.

An entry is {"key", "status": "ok", "result": {...}} or {"key", "status": "skipped", "reason"}. The key is a
hash of the metric's name, the input files' paths, sizes and modification times (those the metric uses), the
metric's settings and the model folder's files, so a changed input, setting or model is recomputed and everything
else is reused: a rerun (or a killed run started again) resumes where it stopped. Arrays a result relies on (FID
activations) are kept beside it as <stem>.<metric>.npz.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..hub import registry
from ..metrics.base import AUDIO, REFERENCE, TEXT
from ..utils.io import write_text

#: bump when the format of cached results changes
CACHE_VERSION = 1


def safe_name(stem: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)


def file_fingerprint(path: Path | None):
    if path is None:
        return None
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def model_fingerprint(source) -> dict | None:
    """Identifies a model folder's content for cache keys (its files' sizes and modification times)."""
    if source is None:
        return None
    folder = Path(str(source)).expanduser()
    if not folder.exists() and registry.is_name(str(source)):  # a registry name: its folder in the models dir
        folder = registry.model_folder(str(source))
    if folder.is_dir():
        return {"path": str(folder.resolve()), "files": sorted(
            (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()
            if p.suffix in (".json", ".safetensors", ".bin"))}
    if folder.is_file():
        return {"path": str(folder.resolve()), "size": folder.stat().st_size, "mtime": folder.stat().st_mtime_ns}
    return {"id": str(source)}


def cache_key(metric, pair, options) -> str:
    """The key of one metric's result on one pair under these options."""
    inputs = {"generated": file_fingerprint(pair.generated)}
    used = metric.inputs
    if REFERENCE in used:
        inputs["reference"] = file_fingerprint(pair.reference)
    if AUDIO in used:
        inputs["audio"] = file_fingerprint(pair.audio)
    if TEXT in used:
        inputs["text"] = file_fingerprint(pair.text)
    payload = {"version": CACHE_VERSION, "metric": metric.name, "inputs": inputs, "settings": metric.settings(options),
               "model": model_fingerprint(metric.model_source(options)) if metric.model_option else None}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def entry_path(cache_dir: Path, stem: str, metric_name: str) -> Path:
    return Path(cache_dir) / f"{safe_name(stem)}.{metric_name}.json"


def cache_read(cache_dir: Path | None, stem: str, metric, key: str) -> dict | None:
    """The cached entry, or None when there is none, it is unreadable, its key differs or a file it relies on is
    gone."""
    if cache_dir is None:
        return None
    try:
        entry = json.loads(entry_path(cache_dir, stem, metric.name).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("key") != key:
        return None
    if any(not (Path(cache_dir) / name).is_file() for name in metric.artifacts(entry.get("result") or {})):
        return None
    return entry


def cache_write(cache_dir: Path | None, stem: str, metric, key: str, entry: dict):
    if cache_dir is None:
        return
    text = json.dumps({"key": key, **entry}, default=json_default)
    write_text(entry_path(cache_dir, stem, metric.name), text, make_parents=True)


def json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")
