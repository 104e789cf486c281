"""Shared fixtures: seeds and the RUN_SLOW gate. Helpers live in tests/utils/__init__.py (`from tests.utils import ...`)."""

import os

import numpy as np
import pytest
import torch


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
