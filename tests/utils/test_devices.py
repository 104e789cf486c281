"""The one device rule (talkface.utils.devices)."""

import pytest
import torch

from talkface.errors import TalkFaceUserError
from talkface.utils.devices import DEVICE_CHOICES, check_device, resolve_device


@pytest.mark.parametrize("spelling, expected", [
    (None, "auto"), ("auto", "auto"), (" CPU ", "cpu"), ("cuda", "cuda"), ("cuda:1", "cuda:1"), ("mps", "mps"),
    (torch.device("cpu"), "cpu"), (torch.device("cuda", 2), "cuda:2"),
])
def test_check_device_spellings(spelling, expected):
    assert check_device(spelling) == expected


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "cuda:-1", "tpu", "", "cpu:0", "auto "+"x"])
def test_unknown_devices_name_the_choices(bad):
    with pytest.raises(TalkFaceUserError) as info:
        check_device(bad)
    message = str(info.value)
    assert f"unknown device {bad!r}" in message and all(choice in message for choice in DEVICE_CHOICES)
    with pytest.raises(TalkFaceUserError):
        resolve_device(bad)


def test_auto_follows_what_the_machine_has(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") == resolve_device(None)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps") == resolve_device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(TalkFaceUserError, match="has 2 CUDA GPU.*cuda:0 to cuda:1"):
        resolve_device("cuda:2")


def test_devices_this_machine_lacks(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for device in ("cuda", "cuda:0"):
        with pytest.raises(TalkFaceUserError, match="no CUDA GPU is available; use cpu or auto"):
            resolve_device(device)
    with pytest.raises(TalkFaceUserError, match="MPS is not available"):
        resolve_device("mps")
    assert resolve_device("cpu") == torch.device("cpu")
