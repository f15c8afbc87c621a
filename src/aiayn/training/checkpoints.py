"""Checkpoints of a run: checkpoints/step_N/ = a loadable model folder + trainer state; keep the last M; averaging."""

from __future__ import annotations

import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from ..io.atomic import atomic_write
from ..io.model_folder import WEIGHTS_FILE, CheckpointError, read_config, read_weights, save_model

TRAINER_FILE = "trainer.pt"  # optimizer state, step, data position, RNG states (torch.save, weights_only)
STEP_DIR = re.compile(r"^step_(\d+)$")


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's checkpoint folders, oldest step first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def save_checkpoint(run_dir: str | Path, step: int, model: Any, tokenizer: Any, trainer_state: dict[str, Any],
                    keep_last: int = 5, keep_steps: frozenset[int] = frozenset()) -> Path:
    """Write checkpoints/step_N/ completely in a temporary folder, then rename it into place; prune old ones
    (all but the last keep_last, 0: none), never the steps in keep_steps (those the end averages)."""
    folder = Path(run_dir) / "checkpoints"
    final = folder / f"step_{step}"
    tmp = folder / f".step_{step}.tmp"
    for stale in [*folder.glob(".step_*.tmp"), *folder.glob(".step_*.old")]:  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    try:
        save_model(model, tmp, tokenizer)
        atomic_write(tmp / TRAINER_FILE, lambda path: torch.save(trainer_state, path))
    except BaseException:  # e.g. a full disk: drop the half-written folder, keep every older checkpoint
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replaced = folder / f".step_{step}.old"
    if final.exists():  # the same step saved again (a resumed run's last step): swap, then delete
        os.replace(final, replaced)
    os.replace(tmp, final)
    shutil.rmtree(replaced, ignore_errors=True)
    if keep_last > 0:
        for old in list_checkpoints(run_dir)[:-keep_last]:
            if int(old.name.removeprefix("step_")) in keep_steps:
                continue
            trash = old.with_name(f".{old.name}.old")  # renamed first, so a kill mid-delete leaves no half
            os.replace(old, trash)                     # step_N folder behind
            shutil.rmtree(trash, ignore_errors=True)
    return final


def load_trainer_state(checkpoint: Path) -> dict[str, Any]:
    """The trainer state of a checkpoint folder, with a clear error if missing or corrupt."""
    path = checkpoint / TRAINER_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {checkpoint} is a model folder but not a resumable checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only, never code
    except pickle.UnpicklingError as error:
        if "allowed global" in str(error) or "Unsupported global" in str(error):
            raise CheckpointError(f"{path} holds objects other than tensors and plain data (pickled code?); it "
                                  f"was not written by aiayn and is refused unread. Delete {checkpoint} to resume "
                                  f"from the previous checkpoint") from None
        raise CheckpointError(f"{path} is truncated or corrupt ({error}); delete {checkpoint} to resume from the "
                              f"previous checkpoint") from None
    except (RuntimeError, OSError, EOFError, ValueError) as error:  # truncated/corrupt
        raise CheckpointError(f"{path} is truncated or corrupt ({error}); delete {checkpoint} to resume from the "
                              f"previous checkpoint") from None


def average_checkpoints(folders: list[Path]) -> dict[str, torch.Tensor]:
    """The element-wise mean of the weights of several model folders of one architecture (§6.1)."""
    if not folders:
        raise CheckpointError("no checkpoints to average")
    configs = {read_config(folder)[1].to_json() for folder in folders}
    if len(configs) > 1:
        raise CheckpointError(f"cannot average {[str(f) for f in folders]}: their config.json files differ")
    total: dict[str, torch.Tensor] = {}
    for folder in folders:
        state = read_weights(folder / WEIGHTS_FILE)
        if total and set(state) != set(total):
            raise CheckpointError(f"{folder / WEIGHTS_FILE} holds different tensors from {folders[0]}")
        for name, tensor in state.items():
            if name in total:
                total[name] += tensor.double() if tensor.is_floating_point() else 0
            else:
                total[name] = tensor.double() if tensor.is_floating_point() else tensor.clone()
    first = read_weights(folders[0] / WEIGHTS_FILE)
    return {name: (t / len(folders)).to(first[name].dtype) if first[name].is_floating_point() else t
            for name, t in total.items()}
