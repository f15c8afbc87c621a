"""The paper's learning-rate schedule (§5.3): lrate = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class InverseSqrtSchedule:
    """Linear warmup for `warmup` steps, then decay with the inverse square root of the step.

    `scale` multiplies the paper's formula (1.0 = the paper); steps count from 1.
    """

    d_model: int
    warmup: int = 4000  # §5.3
    scale: float = 1.0

    def __call__(self, step: int) -> float:
        """The learning rate of optimizer step `step` (1, 2, ...)."""
        step = max(step, 1)
        return self.scale * self.d_model ** -0.5 * min(step ** -0.5, step * self.warmup ** -1.5)

    @property
    def peak(self) -> float:
        """The highest learning rate, reached at step = warmup."""
        return self(self.warmup)

    @classmethod
    def with_peak(cls, d_model: int, warmup: int, peak_lr: float) -> InverseSqrtSchedule:
        """The schedule whose learning rate at step = warmup is peak_lr."""
        return cls(d_model, warmup, peak_lr / cls(d_model, warmup).peak)


@dataclass
class CosineSchedule:
    """Linear warmup to `peak` over `warmup` steps, then cosine decay to `min_lr` at step `total` (nanoGPT's).

    Not the paper's schedule (§5.3 is InverseSqrtSchedule): a named option for language-model runs that
    compare with nanoGPT. After `total` steps the rate stays at min_lr. Steps count from 1.
    """

    peak: float
    warmup: int
    total: int
    min_lr: float = 0.0

    def __call__(self, step: int) -> float:
        """The learning rate of optimizer step `step` (1, 2, ...)."""
        step = max(step, 1)
        if step <= self.warmup:
            return self.peak * step / self.warmup
        if step >= self.total:
            return self.min_lr
        progress = (step - self.warmup) / (self.total - self.warmup)  # 0 -> 1
        return self.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (self.peak - self.min_lr)
