"""Shared helpers for the benchmarks: thread settings, interleaved timing, medians, the matmul peak, process CPU."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def configure_threads(threads: int) -> str:
    """Set torch's intra-op threads and return a line describing every thread setting in force."""
    torch.set_num_threads(threads)
    return (f"threads: torch.get_num_threads()={torch.get_num_threads()}, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, torch {torch.__version__}")


def sync(device: torch.device) -> None:
    """Wait for queued GPU work so a timer measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, repeats: int = 1) -> float:
    """Seconds per call of fn, averaged over `repeats` back-to-back calls."""
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeats


def interleaved(contenders: dict[str, Callable[[], object]], rounds: int, device: torch.device,
                repeats: int = 1, warmup: int = 1) -> dict[str, list[float]]:
    """Time each contender once per round, A B C A B C ..., after `warmup` warm-up calls each."""
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            times[name].append(time_call(fn, device, repeats))
    return times


def median(values: list[float]) -> float:
    """The median of a list of numbers."""
    return statistics.median(values)


def matmul_peak_flops(device: torch.device, dtype: torch.dtype = torch.float32, size: int = 2048,
                      rounds: int = 5) -> float:
    """Measured FLOP/s of a (size x size) @ (size x size) matmul: the machine's practical peak."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    seconds = [time_call(lambda: a @ b, device, repeats=3) for _ in range(rounds + 1)][1:]
    return 2 * size ** 3 / median(seconds)


def children(pid: int) -> list[int]:
    """A process's child processes."""
    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process, all its threads, and its live child processes."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(child) for child in children(pid))
