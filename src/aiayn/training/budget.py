"""A wall-clock budget for training: how many steps fit in it, re-planned as the measured speed changes.

The paper trains for a step count (100,000 base steps, §5.2); a user with ten minutes on a CPU has a time
instead. The plan starts as `max_steps`. During the first step, before it changes any weight, `estimate` plans
from that step's seconds so far, and again in each step until steps are measured; from then on `update`
re-plans from the measured rate to the step count that ends the run when the budget is spent (steps,
evaluations and checkpoints all count). A decaying learning-rate schedule (schedule.DecaySchedule) is told
each plan, so it warms up from step 1 and reaches its end with the budget.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
UNLIMITED = 10**12  # the step limit of a run that only a time budget ends (exact as a float64)


def parse_duration(text: str | float | int) -> float:
    """Seconds from "10m", "90s", "1h30m", "1.5h" or a bare number of seconds; ValueError naming the text."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        spec = str(text).strip().lower().replace(" ", "")
        parts = re.findall(r"(\d+(?:\.\d+)?)([hms]?)", spec)
        if not spec or "".join(number + unit for number, unit in parts) != spec or \
                (len(parts) > 1 and any(not unit for _, unit in parts)):  # "1h30": minutes or seconds?
            raise ValueError(f"time budget {text!r} is not a duration: write e.g. 10m, 90s, 1h30m or 600")
        seconds = sum(float(number) * _UNITS[unit or "s"] for number, unit in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"time budget {text!r} must be a positive duration")
    return seconds


def format_duration(seconds: float | None) -> str:
    """Seconds as parse_duration reads them back: 600 -> "10m", 5400 -> "1h30m", 15 -> "15s", None -> "none"."""
    if seconds is None:
        return "none"
    whole = round(seconds)
    if whole != seconds or whole < 60:
        return f"{seconds:g}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n)


@dataclass
class BudgetPlan:
    """The number of optimizer steps a run takes: at most `max_steps`, and with `budget_s` as many as fit.

    `update` is called after every step with the seconds spent so far (steps plus evaluations and
    checkpoints, which `spent` names as such); it re-plans from the mean of the last `window` steps
    (the first `skip` steps, which warm caches and allocators up, are not measured) and keeps room for the
    evaluations the rest of the run will make. `state()` / `from_state` carry the plan across a resume.
    """

    max_steps: int
    budget_s: float | None = None
    window: int = 50
    skip: int = 2
    planned: int = 0
    elapsed_s: float = 0.0
    eval_s: float = 0.0  # seconds the last evaluation took, for the room kept for the next ones
    recent: deque[float] = field(default_factory=deque)
    _between: float = 0.0  # seconds spent since the last step outside steps (evaluations, checkpoints)

    def __post_init__(self) -> None:
        """Start at max_steps: nothing is measured yet."""
        self.planned = self.planned or self.max_steps
        self.recent = deque(self.recent, maxlen=self.window)

    @property
    def seconds_per_step(self) -> float | None:
        """The measured seconds of one step (mean of the recent ones), or None before any is measured."""
        return sum(self.recent) / len(self.recent) if self.recent else None

    def spent(self, seconds: float, evaluation: bool = False) -> None:
        """Seconds spent between steps (an evaluation, a checkpoint): in the budget, not in the step rate."""
        self._between += seconds
        if evaluation:  # the next evaluations are expected to take as long
            self.eval_s = seconds

    def update(self, step: int, elapsed_s: float, every: int = 0) -> int:
        """After `step` steps and elapsed_s seconds of the budget in all: the (re-)planned number of steps.

        `every` is the evaluation interval in steps (0: none), to keep room for those still to come.
        """
        step_s = elapsed_s - self.elapsed_s - self._between  # this step's seconds, evaluations left out
        self.elapsed_s, self._between = elapsed_s, 0.0
        if step > self.skip:
            self.recent.append(step_s)
        return self.replan(step, every)

    def estimate(self, step: int, elapsed_s: float, step_s: float) -> int:
        """Before any step is measured: the steps that fit if each takes step_s seconds (a first plan, from the
        unmeasured first steps, so that a schedule that follows the plan warms up from step 1)."""
        if self.budget_s is None or self.recent or step_s <= 0:
            return self.planned
        left = self.budget_s - elapsed_s
        self.planned = max(step, min(self.max_steps, step + max(0, math.floor(left / step_s))))
        return self.planned

    def replan(self, step: int, every: int = 0) -> int:
        """The number of steps that fit the budget after `step` at the measured rate (max_steps without one)."""
        rate = self.seconds_per_step
        if self.budget_s is None or rate is None:
            self.planned = max(self.planned, step) if self.budget_s is not None else self.max_steps
            return self.planned
        left = self.budget_s - self.elapsed_s - self._between
        projected = step + max(0, math.floor(left / rate))
        if every and self.eval_s:  # evaluations due before the projected end share the remaining time
            evaluations = max(0, (projected - 1) // every - step // every)
            projected = step + max(0, math.floor((left - evaluations * self.eval_s) / rate))
        if every and step % every == 0 and left - self.eval_s < rate:
            projected = step  # the evaluation due now would spend the rest: the final one replaces it
        self.planned = max(step, min(self.max_steps, projected))
        return self.planned

    def done(self, step: int) -> bool:
        """True when the plan's last step has been taken (or the budget is spent)."""
        over = self.budget_s is not None and self.elapsed_s + self._between >= self.budget_s
        return step >= self.planned or over

    def summary(self, step: int, train_s: float) -> str:
        """One line on how the budget was spent."""
        if self.budget_s is None:
            return f"{step} steps in {train_s:.0f}s of training"
        other = self.elapsed_s - train_s
        ended = "the budget ended it" if step < self.max_steps else f"--steps {self.max_steps} ended it first"
        return (f"time budget {self.budget_s:.0f}s: {self.elapsed_s:.0f}s spent ({train_s:.0f}s in {step} steps, "
                f"{other:.0f}s evaluating and checkpointing); {ended}")

    def state(self) -> dict[str, Any]:
        """What a resumed run needs to continue the plan."""
        return {"planned": self.planned, "elapsed_s": self.elapsed_s + self._between, "eval_s": self.eval_s,
                "recent": list(self.recent)}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None, max_steps: int, budget_s: float | None) -> BudgetPlan:
        """The plan a checkpoint saved, under (possibly new) limits; a fresh plan if it saved none."""
        plan = cls(max_steps, budget_s)
        if state:  # the trainer re-plans from here with the step it resumes at (`replan`)
            plan.elapsed_s, plan.eval_s = state["elapsed_s"], state["eval_s"]
            plan.recent.extend(state["recent"])
        return plan
