"""Numeric precision of training: fp32, or bf16 autocast where the hardware multiplies bf16 fast.

The paper trained in fp32. bf16 autocast runs the matmuls in bfloat16 (8 exponent bits, like fp32, so no
loss scaling is needed) and keeps LayerNorm, softmax, the loss and the weights in fp32. It pays on GPUs
with bf16 support and on CPUs with AVX-512 BF16 or AMX; on AVX2-only CPUs bf16 matmuls are emulated and
far slower than fp32, so "auto" keeps fp32 there.
"""

from __future__ import annotations

import contextlib
from functools import lru_cache
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags this CPU advertises (Linux /proc/cpuinfo); empty if unknown."""
    try:
        return frozenset(Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").split())
    except OSError:
        return frozenset()


def cpu_has_fast_bf16() -> bool:
    """True if this CPU advertises AVX-512 BF16 or AMX-BF16 (Linux /proc/cpuinfo); False if unknown."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 matmuls beat fp32 on this device."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_fast_bf16()


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """torch.bfloat16 to autocast to, or None for plain fp32, for a precision name on a device."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32" or precision == "auto" and not bf16_is_fast(device):
        return None
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """torch.autocast to dtype on device, or a no-op context for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
