"""Shared fixtures: an empty models dir, seeds, one mediapipe backend per module, and the RUN_SLOW gate. Helpers live
in tests/utils/__init__.py (`from tests.utils import ...`)."""

import os

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _empty_models_dir(tmp_path_factory, monkeypatch):
    """Registry names (`wav2lip-gan`) resolve in an empty models dir of the test's own, never in the user's cache,
    and nothing is downloaded unless a test sets it up (tests/hub/test_download.py)."""
    monkeypatch.setenv("TALKFACE_MODELS_DIR", str(tmp_path_factory.getbasetemp() / "no-models"))
    monkeypatch.delenv("TALKFACE_DOWNLOAD_MIRROR", raising=False)
    monkeypatch.delenv("TALKFACE_AUTO_DOWNLOAD", raising=False)


@pytest.fixture(scope="module")
def mediapipe_backend():
    """One mediapipe face backend per test module (skips where mediapipe is not installed)."""
    pytest.importorskip("mediapipe")
    from talkface.faces import get_face_backend

    backend = get_face_backend("mediapipe")
    yield backend
    backend.close()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    if os.environ.get("RUN_SLOW"):
        return
    skip_slow = pytest.mark.skip(reason="slow test; set RUN_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)
