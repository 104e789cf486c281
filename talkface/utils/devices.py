"""Which torch device to run on: the ONE rule of every command, pipeline and the demo.

A device is spelled ``auto`` (a CUDA GPU if there is one, else Apple's MPS if available, else the CPU), ``cpu``,
``cuda`` (the current GPU), ``cuda:N`` or ``mps``. `check_device` validates the spelling only (no torch import);
`resolve_device` also checks that the device exists here and returns a `torch.device`. Both raise
`TalkFaceUserError` naming the valid choices, so a command prints one line and exits with code 2.
"""

from __future__ import annotations

import re

from ..errors import TalkFaceUserError

#: how a device may be written (`cuda:N` stands for cuda:0, cuda:1, ...)
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DEFAULT_DEVICE = "auto"
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device(device=DEFAULT_DEVICE) -> str:
    """The device's canonical spelling ("auto" for None); an unknown one raises `TalkFaceUserError`."""
    if device is None:
        return DEFAULT_DEVICE
    text = str(device).strip().lower()  # a torch.device prints as "cuda:0", "cpu", ...
    if not _DEVICE.match(text):
        raise TalkFaceUserError(f"unknown device {str(device)!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    return text


def _mps_available(torch) -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def resolve_device(device=DEFAULT_DEVICE):
    """The `torch.device` for `device` ("auto": cuda, then mps, then cpu).

    A device that this machine does not have (cuda without a GPU, cuda:N past the last GPU, mps off macOS) raises
    `TalkFaceUserError` saying what to pass instead.
    """
    import torch

    text = check_device(device)
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available(torch) else torch.device("cpu")
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TalkFaceUserError(f"device {text} was requested but no CUDA GPU is available; use cpu or auto "
                                    "(--device cpu)")
        count = torch.cuda.device_count()
        if ":" in text and int(text.split(":")[1]) >= count:
            raise TalkFaceUserError(f"device {text} was requested but this machine has {count} CUDA GPU(s); use "
                                    f"cuda:0 to cuda:{count - 1}, cuda or auto")
    if text == "mps" and not _mps_available(torch):
        raise TalkFaceUserError("device mps was requested but Apple MPS is not available; use cpu or auto "
                                "(--device cpu)")
    return torch.device(text)


__all__ = ["DEFAULT_DEVICE", "DEVICE_CHOICES", "check_device", "resolve_device"]
