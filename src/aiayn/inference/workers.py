"""Batches searched at once by forked worker processes, each on one intra-op thread (not in the paper).

A decoding step over a few dozen rows shares poorly between threads: each of its hundreds of small ops
wakes the other thread (docs/benchmarks.md). On a CPU with N cores, N processes that each search whole
batches on one thread use them better, as CTranslate2's inter_threads do. Workers are forked, so they start
with the parent's model in shared memory and nothing is copied or loaded again; the batches go out and the
token ids come back through pipes. Linux (the "fork" start method) and the CPU only.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

Search = Callable[[Tensor], Any]
_SEARCH: Search | None = None  # set by the parent just before forking; the workers inherit it


def workers_problem(workers: Any, device: torch.device, compiled: bool, cli: bool = False) -> str | None:
    """Why `workers` cannot be used here (one line naming the fix; flags spelled as on the command line
    with `cli`), or None where it can."""
    name, one, compile_ = ("--workers", "--workers 1", "--compile") if cli else ("workers", "workers=1", "compile")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        return f"{name} must be a positive integer, got {workers!r}"
    if workers == 1:
        return None
    if device.type != "cpu":
        return f"{name} > 1 runs processes sharing the CPU; the model is on {device.type}: use {one} there"
    if "fork" not in multiprocessing.get_all_start_methods():
        return f"{name} > 1 needs the 'fork' start method (Linux); use {one} on this system"
    if compiled:
        return f"{name} > 1 with {compile_}: each worker would compile its own step; use one or the other"
    return None


def _one_thread() -> None:
    """Worker set-up: one intra-op thread, so N workers use N cores without waking each other's threads."""
    torch.set_num_threads(1)


def _search(item: tuple[int, Tensor]) -> tuple[int, Any]:
    """In a worker: (index, search(batch))."""
    assert _SEARCH is not None, "a worker forked without a search"
    index, batch = item
    return index, _SEARCH(batch)


def search_batches(search: Search, batches: list[Tensor], workers: int = 1) -> Iterator[tuple[int, Any]]:
    """(index, search(batch)) for every batch, in the order they finish; workers > 1 forks that many processes
    (check workers_problem first)."""
    if workers == 1 or len(batches) < 2:
        for index, batch in enumerate(batches):
            yield index, search(batch)
        return
    global _SEARCH
    _SEARCH = search
    try:
        context = multiprocessing.get_context("fork")
        with context.Pool(min(workers, len(batches)), initializer=_one_thread) as pool:
            yield from pool.imap_unordered(_search, list(enumerate(batches)))
    finally:
        _SEARCH = None
