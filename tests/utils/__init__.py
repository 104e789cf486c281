"""Test helpers: paths to ../shared (skipping when absent), the golden weight formula, small media writers."""

import json
import math
import os
import wave
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = Path(os.environ.get("TALKFACE_SHARED", REPO_ROOT.parent / "shared"))
DATA_DIR = SHARED_DIR / "data"
REFERENCE_DIR = SHARED_DIR / "reference"
GOLDEN_DIR = REFERENCE_DIR / "golden"
KEYS_DIR = REFERENCE_DIR / "keys"


def shared_file(*parts) -> Path:
    """Path of a file under ../shared, or skip the test when it is absent."""
    path = SHARED_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not available (../shared is absent)")
    return path


def write_wav(path, samples, sampling_rate: int = 16000, channels: int = 1):
    """Write 16-bit PCM WAV; samples: (n,) or (n, channels) floats in [-1, 1]. Returns path."""
    pcm = (np.clip(np.asarray(samples).reshape(len(samples), channels), -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(2)
        handle.setframerate(sampling_rate)
        handle.writeframes(pcm.tobytes())
    return path


def data_file(name: str) -> Path:
    return shared_file("data", name)


def golden_file(name: str) -> Path:
    return shared_file("reference", "golden", name)


def load_golden(name: str):
    return np.load(golden_file(name))


def formula_tensor(key: str, shape, dtype=torch.float32) -> torch.Tensor:
    """The weight formula of ../shared/reference/golden/README.md (one generator per key, seeded by crc32)."""
    shape = tuple(shape)
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    if len(shape) == 0:
        return torch.zeros((), dtype=dtype)
    if key.endswith("running_var"):
        return 1.0 + 0.1 * torch.rand(shape, generator=g)
    if len(shape) == 1 and key.endswith("weight"):
        return 1.0 + 0.1 * torch.randn(shape, generator=g)
    if len(shape) == 1:
        return 0.1 * torch.randn(shape, generator=g)
    return torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))


def formula_state_dict(keys_json_name: str) -> dict:
    """Original-format state dict rebuilt from a golden `*_keys.json` with the formula."""
    key_shapes = json.loads(golden_file(keys_json_name).read_text())
    return {
        k: formula_tensor(k, s, torch.int64 if k.endswith("num_batches_tracked") else torch.float32)
        for k, s in key_shapes
    }
