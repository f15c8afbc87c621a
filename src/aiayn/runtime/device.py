"""The device a command runs on: "auto" (CUDA when there is one, else the CPU), "cpu", "cuda", "cuda:1"."""

from __future__ import annotations

import torch


class DeviceError(ValueError):
    """A device that does not exist or is not available here; the message names the fix."""


def resolve_device(name: str) -> torch.device:
    """"auto" -> CUDA when available, else CPU; anything else as torch.device, checked to exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}: use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} asked for but CUDA is not available here; use --device cpu")
    return device
