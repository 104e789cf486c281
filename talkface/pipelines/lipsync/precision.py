"""Numeric precision of the generator: `--precision auto|fp32|bf16|fp16|int8`.

* fp32: the exact path. The network is optimised at load time (BatchNorms folded into the convolutions,
  channels-last weights; `talkface.models.optimization`), which changes outputs only by float rounding.
* bf16: the optimised network with bfloat16 weights and activations. Fast on CPUs with native bf16 arithmetic
  (AVX512_BF16 or AMX) and on GPUs; about one grey level of drift on the generated faces (docs/generation.md).
* fp16: half precision, the usual choice on CUDA GPUs; on a CPU without fp16 arithmetic it is slow.
* int8: post-training static quantization of the generator's convolutions (PyTorch's x86 backend), calibrated on
  the first batch of real face crops of each call; CPU only. See `quantize_generator`.
* auto: fp16 on CUDA, bf16 on a CPU that has AVX512_BF16 or AMX (read from the CPU's flags, not guessed), fp32
  otherwise (including Apple MPS).

The mode a run used is logged, printed by `talkface generate` and written into the output's metadata.
Metrics (LSE, AVS) always run in fp32 so their numbers do not move.
"""

from __future__ import annotations

import functools
import logging
import platform
from pathlib import Path

from .options import InvalidInputError

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
DEFAULT_PRECISION = "auto"
#: CPU feature flags (as Linux's /proc/cpuinfo spells them) that give native bf16 arithmetic
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags: /proc/cpuinfo on Linux, the sysctl feature list on macOS; empty when unknown."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags") and ":" in line:
                return frozenset(line.split(":", 1)[1].split())
    if platform.system() == "Darwin":
        import subprocess

        try:
            output = subprocess.run(["sysctl", "-n", "machdep.cpu.leaf7_features", "machdep.cpu.features"],
                                    capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            return frozenset()
        return frozenset(flag.lower().replace(".", "_") for flag in output.split())
    return frozenset()


def native_bf16_flags(flags: frozenset[str] | None = None) -> list[str]:
    """The bf16 flags this CPU has (empty: no native bf16)."""
    flags = cpu_flags() if flags is None else flags
    return [flag for flag in BF16_CPU_FLAGS if flag in flags]


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise InvalidInputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def resolve_precision(precision: str, device_type: str, flags: frozenset[str] | None = None) -> tuple[str, str]:
    """(the precision to run, why): `auto` decided by the device and the CPU flags; others checked and kept."""
    check_precision(precision)
    if precision == "int8" and device_type != "cpu":
        raise InvalidInputError(f"precision int8 runs on the CPU only (device {device_type}); use fp16 on a GPU or "
                                "--device cpu")
    if precision != "auto":
        return precision, "requested"
    if device_type == "cuda":
        return "fp16", "auto: CUDA GPU"
    if device_type == "cpu":
        found = native_bf16_flags(flags)
        if found:
            return "bf16", f"auto: this CPU has {', '.join(flag.upper() for flag in found)}"
        return "fp32", "auto: this CPU has no native bf16 (AVX512_BF16 / AMX)"
    return "fp32", f"auto: {device_type}"


__all__ = ["BF16_CPU_FLAGS", "DEFAULT_PRECISION", "PRECISIONS", "check_precision", "cpu_flags", "native_bf16_flags",
           "resolve_precision"]
