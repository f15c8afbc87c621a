"""TensorBoard event files (`--tensorboard`) holding the same numbers as metrics.jsonl; needs the `tensorboard`
package (the optional extra `aiayn[tensorboard]`)."""

from __future__ import annotations

import importlib.util
import numbers
from pathlib import Path
from typing import Any

BOARD_DIR = "tensorboard"  # in the run folder


def check_available() -> None:
    """Raise ImportError naming the fix when the tensorboard package is missing."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ImportError("--tensorboard needs the tensorboard package: pip install 'aiayn[tensorboard]' "
                          "(or pip install tensorboard), or train without --tensorboard")


class Board:
    """Every numeric field of a metrics.jsonl record as a scalar at its step, in run_dir/tensorboard/."""

    def __init__(self, run_dir: Path, first_step: int) -> None:
        """Open the event writer; events of a resumed run's earlier files from first_step on are dropped."""
        from torch.utils.tensorboard import SummaryWriter  # optional dependency

        self.writer = SummaryWriter(str(run_dir / BOARD_DIR), purge_step=first_step if first_step > 1 else None)

    def add(self, record: dict[str, Any]) -> None:
        """The record's numbers (not its step, not strings such as BLEU signatures) under their metrics.jsonl names."""
        step = int(record["step"])
        for key, value in record.items():
            if key != "step" and isinstance(value, numbers.Real) and not isinstance(value, bool):
                self.writer.add_scalar(key, float(value), step)

    def close(self) -> None:
        """Write everything out."""
        self.writer.close()
