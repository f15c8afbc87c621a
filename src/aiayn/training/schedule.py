"""Learning-rate schedules: the paper's (§5.3) and the decays that end at a planned last step.

The paper's: lrate = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5), which never reaches zero. The decays
(linear and cosine) warm up the same way and then fall to `min_lr` at step `total`; a time-budgeted run
(training/budget.py) moves `total` as it learns how many steps its budget holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("inverse-sqrt", "linear", "cosine")  # inverse-sqrt is the paper's (§5.3)


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
class DecaySchedule:
    """Linear warmup to `peak` over `warmup` steps, then a decay to `min_lr` at step `total`.

    Not the paper's schedule (§5.3 is InverseSqrtSchedule): a named option for runs whose length is known in
    advance (a step count or a time budget), where ending at a low rate anneals the weights. `shape` is
    "linear" or "cosine" (nanoGPT's). After `total` steps the rate stays at min_lr. Steps count from 1.
    """

    peak: float
    warmup: int
    total: int
    min_lr: float = 0.0
    shape: str = "cosine"
    warmup_share: float = 0.0  # > 0: the warmup is this share of `total`, and follows it when re-planned

    def __post_init__(self) -> None:
        """Refuse an unknown shape; a warmup_share sets the warmup from total."""
        if self.shape not in ("linear", "cosine"):
            raise ValueError(f"decay shape must be linear or cosine, got {self.shape!r}")
        self.end_at(self.total)

    def end_at(self, total: int) -> None:
        """Decay to min_lr at step `total` (a time budget's plan moves it); a warmup_share follows it."""
        self.total = total
        if self.warmup_share > 0 and total > 0:
            self.warmup = max(1, round(self.warmup_share * total))

    def __call__(self, step: int) -> float:
        """The learning rate of optimizer step `step` (1, 2, ...)."""
        if self.total < 1:  # a time budget's run plans it before its first update (RankTrainer._set_lr)
            raise ValueError("the decay's last step is not planned yet: call end_at(total) first")
        step = max(step, 1)
        if step <= self.warmup:
            return self.peak * step / self.warmup
        if step >= self.total:
            return self.min_lr
        progress = (step - self.warmup) / (self.total - self.warmup)  # 0 -> 1
        remaining = 1.0 - progress if self.shape == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr + remaining * (self.peak - self.min_lr)


def make_schedule(kind: str, d_model: int, warmup: int | None, total: int, peak_lr: float, lr_scale: float = 1.0,
                  min_lr: float = 0.0, warmup_share: float = 0.0) -> InverseSqrtSchedule | DecaySchedule:
    """The schedule `kind` names; inverse-sqrt peaks at peak_lr (or, with peak_lr 0, is the paper's x lr_scale).
    A decay with warmup None warms up over warmup_share of the planned steps."""
    if kind not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {kind!r}")
    if warmup is None:
        if kind == "inverse-sqrt" or not 0 < warmup_share < 1 or peak_lr <= 0:
            raise ValueError("a warmup as a share of the planned steps needs a linear or cosine decay, a share in "
                             "(0, 1) and peak_lr > 0")
        return DecaySchedule(peak_lr, 1, total, min_lr, kind, warmup_share)
    if kind == "inverse-sqrt":
        if peak_lr > 0:
            return InverseSqrtSchedule.with_peak(d_model, warmup, peak_lr)
        return InverseSqrtSchedule(d_model, warmup, lr_scale)
    peak = peak_lr if peak_lr > 0 else InverseSqrtSchedule(d_model, warmup, lr_scale).peak
    return DecaySchedule(peak, warmup, total, min_lr, kind)
