"""Batches searched at once by forked worker processes, each on one intra-op thread (not in the paper).

A decoding step over a few dozen rows shares poorly between threads: each of its hundreds of small ops
wakes the other thread (docs/benchmarks.md). On a CPU with N cores, N processes that each search whole
batches on one thread use them better, as CTranslate2's inter_threads do. Workers are forked, so they start
with the parent's model in shared memory and nothing is copied or loaded again; the batches and search
options go out and the token ids come back through pipes. Linux (the "fork" start method) and the CPU only.

A WorkerPool keeps its processes for many calls (as a CTranslate2 Translator keeps its threads), so a
server or a loop of small calls pays for the forks once; translate(workers=N) makes one for its call.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from ..runtime.allocator import trim_heap

_MODEL: Any = None  # in a worker: the model it was forked with
_TRIM = False  # in a worker: give glibc's free heap back after each batch (WorkerPool's trim)


def workers_problem(workers: Any, device: torch.device, compiled: bool = False, cli: bool = False) -> str | None:
    """Why `workers` cannot be used here (one line naming the fix; flags spelled as on the command line with
    `cli`), or None where it can. `compiled` is unused: the compiled searches it refused went in #34 (kept so
    callers written before, e.g. serve's, still run)."""
    name, one = ("--workers", "--workers 1") if cli else ("workers", "workers=1 (--workers 1)")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        return f"{name} must be a positive integer, got {workers!r}"
    if workers == 1:
        return None
    if device.type != "cpu":
        return f"{name} > 1 runs processes sharing the CPU; the model is on {device.type}: use {one} there"
    if "fork" not in multiprocessing.get_all_start_methods():
        return f"{name} > 1 needs the 'fork' start method (Linux); use {one} on this system"
    return None


def _start(model: Any, trim: bool = False) -> None:
    """Worker set-up: keep the model, and one intra-op thread, so N workers use N cores without waking each
    other's threads."""
    global _MODEL, _TRIM
    _MODEL, _TRIM = model, trim
    torch.set_num_threads(1)


def _generate(item: tuple[int, Tensor, dict[str, Any]]) -> tuple[int, Any]:
    """In a worker: (index, model.generate(batch, **options))."""
    assert _MODEL is not None, "a worker forked without a model"
    index, batch, options = item
    found = _MODEL.generate(batch, **options)
    if _TRIM:
        del batch
        trim_heap()
    return index, found


class WorkerPool:
    """`workers` forked processes of one intra-op thread, each holding `model` as it was at the fork.

    pool.generate(batches, **options) runs model.generate(batch, **options) for every batch, the batches
    spread over the processes. The processes live until close() (or the end of a `with` block); weights
    changed in the parent after the fork are not seen by them: make a new pool.
    """

    def __init__(self, model: Any, workers: int, trim: bool = False) -> None:
        """Fork the processes now (checked first: a bad count, a model off the CPU or no fork is ValueError).

        trim: each process gives glibc's free heap back after every batch (runtime.allocator.trim_heap), so a
        long-lived pool that searches batches of every shape (aiayn serve) keeps its memory flat.
        """
        problem = workers_problem(workers, next(model.parameters()).device)
        if problem is not None:
            raise ValueError(problem)
        self.workers = workers
        context = multiprocessing.get_context("fork")
        # forked, so the model reaches the workers as shared memory, not pickled
        self._pool = context.Pool(workers, initializer=_start, initargs=(model, trim))

    def generate(self, batches: list[Tensor], **options: Any) -> Iterator[tuple[int, Any]]:
        """(index, model.generate(batches[index], **options)) for every batch, in the order they finish."""
        yield from self._pool.imap_unordered(_generate, [(i, batch, options) for i, batch in enumerate(batches)])

    def close(self) -> None:
        """Stop the processes (waiting for none of their work)."""
        self._pool.terminate()
        self._pool.join()

    def __enter__(self) -> "WorkerPool":
        """The pool itself."""
        return self

    def __exit__(self, *exc: object) -> None:
        """close()."""
        self.close()


def generate_batches(model: Any, batches: list[Tensor], workers: int | WorkerPool = 1,
                     **options: Any) -> Iterator[tuple[int, Any]]:
    """(index, model.generate(batch, **options)) for every batch: in this process (workers=1), in `workers`
    processes forked for this call, or in a WorkerPool's; in the order they finish."""
    if isinstance(workers, WorkerPool):
        yield from workers.generate(batches, **options)
    elif workers == 1 or len(batches) < 2:
        for index, batch in enumerate(batches):
            yield index, model.generate(batch, **options)
    else:
        with WorkerPool(model, min(workers, len(batches))) as pool:
            yield from pool.generate(batches, **options)
