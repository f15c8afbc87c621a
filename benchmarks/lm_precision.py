"""Step time of the language-model trainer in bf16 autocast against fp32, side by side in one process.

Two LMTrainers of one config (--precision bf16 and fp32) train in alternating blocks of steps (ABBA order,
after a warm-up block each), so load that changes during the run falls on both. glibc malloc is tuned first,
as `aiayn train` does (aiayn.runtime). The numbers in benchmarks/results/lm-shakespeare-cpu.txt:

    OMP_WAIT_POLICY=PASSIVE python benchmarks/lm_precision.py configs/lm-shakespeare-char.toml --rounds 6 --block 100
    OMP_WAIT_POLICY=PASSIVE python benchmarks/lm_precision.py configs/mlm-shakespeare.toml --rounds 6 --block 40
    OMP_WAIT_POLICY=PASSIVE python benchmarks/lm_precision.py configs/lm-shakespeare-char.toml --rounds 4 --block 6 \
        --set n_layers=6 n_heads=6 d_model=384 d_ff=1536 context=256     # nanoGPT's GPU shakespeare_char size
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from aiayn.runtime.allocator import tune_cpu_allocator
from aiayn.training.lm import LMTrainConfig, LMTrainer

PRECISIONS = ("bf16", "fp32")


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """NAME=VALUE pairs as config settings (integers where they parse as one)."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        name, value = pair.split("=", 1)
        settings[name] = int(value) if value.lstrip("-").isdigit() else value
    return settings


def make_trainers(config: str, settings: dict[str, Any], folder: Path) -> dict[str, LMTrainer]:
    """One trainer per precision, of the config file with `settings` on top, in run folders under `folder`."""
    values = {**LMTrainConfig.read_toml(config), **settings, "steps": 1_000_000}
    return {p: LMTrainer(LMTrainConfig.from_dict({**values, "precision": p, "out": str(folder / p)}),
                         log=lambda message: None) for p in PRECISIONS}


def steps_time(trainer: LMTrainer, steps: int) -> float:
    """Seconds per step over `steps` optimizer steps (each loss read back, as the training loop does on a CPU)."""
    started = time.perf_counter()
    for _ in range(steps):
        trainer.train_step().value()
    return (time.perf_counter() - started) / steps


def main() -> None:
    """Time the two precisions in alternating blocks and print the medians and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="an LM or MLM config file (TOML)")
    parser.add_argument("--rounds", type=int, default=6, help="timed blocks per precision")
    parser.add_argument("--block", type=int, default=50, help="steps per block")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="settings over the config's")
    args = parser.parse_args()
    print(f"allocator: {tune_cpu_allocator() or 'not glibc, nothing tuned'}")
    settings = parse_settings(args.set)
    with tempfile.TemporaryDirectory() as folder:
        trainers = make_trainers(args.config, settings, Path(folder))
        print(f"{args.config} {settings}: torch threads {torch.get_num_threads()}; {args.rounds} rounds x "
              f"{args.block} steps per precision, after {args.block} warm-up steps each")
        for trainer in trainers.values():
            steps_time(trainer, args.block)
        times: dict[str, list[float]] = {p: [] for p in PRECISIONS}
        for round_ in range(args.rounds):  # ABBA: bf16 first in even rounds, fp32 first in odd ones
            for p in PRECISIONS if round_ % 2 == 0 else PRECISIONS[::-1]:
                times[p].append(steps_time(trainers[p], args.block))
    for p, seconds in times.items():
        print(f"{p}: median {statistics.median(seconds) * 1e3:.2f} ms/step (min {min(seconds) * 1e3:.2f}, max "
              f"{max(seconds) * 1e3:.2f}); blocks {[round(s * 1e3, 2) for s in seconds]}")
    print(f"fp32 / bf16 step time (medians): {statistics.median(times['fp32']) / statistics.median(times['bf16']):.3f}")


if __name__ == "__main__":
    main()
