"""Run `aiayn train` in a child process that SIGKILLs itself at one chosen point of one checkpoint write.

Usage: AIAYN_KILL_AT=STAGE:STEP python tests/helpers_faults.py train ARGS...   (same arguments as `aiayn`)

STAGE says where the write of checkpoints/step_STEP is cut short, as a power cut or `kill -9` would:
  weights  half of model.safetensors written (in the temporary folder)
  trainer  half of trainer.pt (optimizer state) written
  rename   the temporary folder complete, killed just before it is renamed to step_STEP
  prune    step_STEP in place, killed while deleting the oldest checkpoint beyond keep_last
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import torch

import aiayn.io.model_folder as saving
from aiayn.cli import main

STAGES = ("weights", "trainer", "rename", "prune")


def die() -> None:
    """SIGKILL this process: no handler, no cleanup, no flush."""
    os.kill(os.getpid(), signal.SIGKILL)


def cut_in_half_and_die(path: str | Path) -> None:
    """Keep the first half of a file just written, then die (a write interrupted half-way)."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])
    die()


def install(stage: str, step: int) -> None:
    """Patch the one function of the checkpoint write that STAGE names."""
    tmp_tag = f".step_{step}.tmp"
    if stage == "weights":
        real_save_file = saving.save_file

        def save_file(state: Any, filename: str, metadata: Any = None) -> None:
            real_save_file(state, filename, metadata=metadata)
            if tmp_tag in str(filename):
                cut_in_half_and_die(filename)

        saving.save_file = save_file
    elif stage == "trainer":
        real_torch_save = torch.save

        def torch_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
            real_torch_save(obj, f, *args, **kwargs)
            if tmp_tag in str(f):
                cut_in_half_and_die(f)

        torch.save = torch_save
    elif stage == "rename":
        real_replace = os.replace

        def replace(src: Any, dst: Any) -> None:
            if Path(dst).name == f"step_{step}" and Path(src).name == tmp_tag:
                die()
            real_replace(src, dst)

        os.replace = replace  # also the name checkpoints.py calls
    elif stage == "prune":
        real_rmtree = shutil.rmtree

        def rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
            folder = Path(path)
            if (folder.name.startswith(".step_") and folder.name.endswith(".old") and folder.is_dir()
                    and folder.name != f".step_{step}.old" and (folder.parent / f"step_{step}").is_dir()):
                (folder / saving.WEIGHTS_FILE).unlink()  # delete part of the old checkpoint, then die
                die()
            real_rmtree(path, *args, **kwargs)

        shutil.rmtree = rmtree
    else:
        raise SystemExit(f"unknown stage {stage!r}: one of {STAGES}")


if __name__ == "__main__":
    stage_name, at_step = os.environ["AIAYN_KILL_AT"].split(":")
    install(stage_name, int(at_step))
    sys.exit(main(sys.argv[1:]))
