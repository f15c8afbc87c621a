"""Checks of training settings that span a value's parsing or several settings; settings.py runs them.

They live apart from the trainer so that settings (and the CLI that reads them) need not import it.
"""

from __future__ import annotations

from typing import Any

from .budget import parse_duration

OFF = "none"  # the one spelling of "no time budget" (flag, TOML), as `--recipe none` is the one for no recipe


class TrainingError(ValueError):
    """A training run that cannot start or continue; the message names the cause and the fix."""


def parse_budget(value: Any) -> float | None:
    """A time_budget value in seconds, or None for "none" (no budget): the one place it is parsed.

    Durations are "10m", "90s", "1h30m" or a number of seconds (TOML: `time_budget = 600`); ValueError names
    the value and the spelling of "off" otherwise.
    """
    if value is None or isinstance(value, str) and value.strip().lower() == OFF:
        return None
    if isinstance(value, bool):
        raise ValueError(f"time budget {value!r} is not a duration: write e.g. 10m, 90s, 1h30m or 600, "
                         f"or {OFF} for no budget")
    try:
        return parse_duration(value)
    except ValueError as error:
        raise ValueError(f"{error} (or {OFF} for no budget)") from None


def check_length(steps: Any, time_budget: float | None) -> None:
    """A run needs a step count (>= 1), a time budget, or both; a bad value is a TrainingError naming it."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise TrainingError(f"steps must be a non-negative integer (0: as many as the time budget holds), got "
                            f"{steps!r}")
    if time_budget is None and steps == 0:
        raise TrainingError("steps is 0 and there is no time budget: give --steps N or --time-budget (e.g. 10m)")


def check_averaging(average_last: Any, average_every: Any, fsdp: bool) -> None:
    """average_last / average_every are non-negative integers, and averaging has no FSDP yet: TrainingError."""
    for name, value in (("average_last", average_last), ("average_every", average_every)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise TrainingError(f"{name} must be a non-negative integer (0: off / automatic), got {value!r}")
    if average_last and fsdp:
        raise TrainingError("average_last cannot yet average FSDP-sharded checkpoints at the end: train with "
                            "--no-fsdp, or average afterwards with `aiayn average RUN_DIR --last N`")
