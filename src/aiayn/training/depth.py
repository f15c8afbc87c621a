"""The model's depth planned from the time budget: a short run trains a shallow model further, a longer one a deeper.

At equal minutes a step of a shallower model is cheaper, so a short budget buys more from more steps than from
more layers; a longer budget has steps to spare and buys more from layers. Measured on the bundled Bible on a
2-core CPU (docs/results.md, "Depth from the budget"): 1+1 layers win at ten minutes, 2+2 at thirty. A
translation run that names no --preset takes the preset of its time budget; a run without one (--steps, or
`--time-budget none`) takes the ten-minute preset, since its length in minutes is not known before it starts.
"""

from __future__ import annotations

import math

# (budgets shorter than this many seconds, preset): the first row that holds applies (docs/results.md)
PRESET_BY_BUDGET: tuple[tuple[float, str], ...] = ((20 * 60, "shallow"), (math.inf, "medium"))
LAYERS = {"shallow": "1+1 layers", "medium": "2+2 layers", "small": "3+3 layers"}  # the log's words for a preset


def preset_for_budget(budget_s: float | None) -> str:
    """The preset of a run with this time budget in seconds (None: no budget, the shortest row's preset)."""
    if budget_s is None:
        return PRESET_BY_BUDGET[0][1]
    if not budget_s > 0:
        raise ValueError(f"a time budget must be > 0 seconds, got {budget_s}")
    return next(preset for below, preset in PRESET_BY_BUDGET if budget_s < below)


def describe(budget_s: float | None, preset: str) -> str:
    """E.g. "preset medium (2+2 layers) for a 30m budget (no --preset given; docs/results.md)"."""
    budget = "no time budget" if budget_s is None else f"a {_minutes(budget_s)} budget"
    return f"preset {preset} ({LAYERS.get(preset, preset)}) for {budget} (no --preset given; docs/results.md)"


def _minutes(seconds: float) -> str:
    """A budget as the flag writes it: 10m, 1h30m, 45s."""
    if seconds % 60:
        return f"{seconds:g}s"
    hours, minutes = divmod(int(seconds) // 60, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes or not hours else "")
