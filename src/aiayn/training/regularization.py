"""Dropout planned from the epochs a run will make: the default recipe's regularisation follows the corpus.

The paper's dropout 0.1 (§5.4) regularises 100,000 steps of WMT, one pass over a large corpus or a few. A run on a
CPU sees its corpus as often as its budget and the corpus's size allow: ten minutes are ~2.5 passes over the
bundled Bible but 15-43 over a 5,000-pair corpus, and what is right for one is wrong for the other (measured in
docs/results.md, "Dropout from the planned epochs"). So a translation run that names no --dropout plans it
from the epochs it will make: the step count it plans (--steps, or what the time budget holds at the measured
speed) over the optimizer steps one epoch of the training data fills.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# (fewer than this many planned epochs, dropout): the first row that holds applies (docs/results.md)
DROPOUT_BY_EPOCHS: tuple[tuple[float, float], ...] = ((5.0, 0.0), (14.0, 0.1), (math.inf, 0.3))


def planned_epochs(planned_steps: int, batches_per_step: int, batches_per_epoch: int) -> float:
    """Passes over the training data in `planned_steps` optimizer steps of `batches_per_step` batches each."""
    if batches_per_epoch < 1 or batches_per_step < 1:
        raise ValueError(f"an epoch of {batches_per_epoch} batches, {batches_per_step} per step: both must be >= 1")
    return planned_steps * batches_per_step / batches_per_epoch


def dropout_for(epochs: float) -> float:
    """The residual and embedding dropout (§5.4) for a run of this many planned epochs (DROPOUT_BY_EPOCHS)."""
    if not epochs >= 0:
        raise ValueError(f"planned epochs must be >= 0, got {epochs}")
    return next(dropout for below, dropout in DROPOUT_BY_EPOCHS if epochs < below)


@dataclass(frozen=True)
class DropoutPlan:
    """The dropout a run chose, and the planned epochs it chose it from."""

    epochs: float
    dropout: float

    @classmethod
    def of(cls, planned_steps: int, batches_per_step: int, batches_per_epoch: int) -> DropoutPlan:
        """The plan for a run of `planned_steps` steps over an epoch of `batches_per_epoch` batches."""
        epochs = planned_epochs(planned_steps, batches_per_step, batches_per_epoch)
        return cls(epochs, dropout_for(epochs))

    def describe(self) -> str:
        """E.g. "12.3 epochs planned: dropout 0.1 (no --dropout given; docs/results.md)"."""
        return f"{self.epochs:.1f} epochs planned: dropout {self.dropout:g} (no --dropout given; docs/results.md)"
