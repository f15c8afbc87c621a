"""Request batching: sentences of concurrent requests searched together, batches cut by source tokens.

Each request becomes a job (its sentences and its decoding options). A batch starts when the jobs waiting
with the same options fill `max_batch_tokens` (padded source tokens times the rows searched per sentence,
the beam: rows x the longest row x beam, as inference.evaluation.translate cuts its batches) or `wait_ms`
after its first job arrived, whichever comes first. Up to `parallel` batches run at once (one per
worker), each in a thread, so the event loop keeps taking requests. A batch is the first sentence of the
job that has been in the fewest batches (the oldest among equals) and the waiting sentences closest to it
in length, so little of it is padding; a long request shares every batch after its first with the
requests that came after it. The queue holds at most `queue_size` jobs;
one more is refused (Overloaded: the server answers 503 with Retry-After). A job whose client went away
is cancelled: its sentences not yet in a batch are dropped, and the results of those already searched
are thrown away.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


class Overloaded(Exception):
    """The queue is full: the request is refused and may be retried after `retry_after` seconds."""

    def __init__(self, queued: int, retry_after: int) -> None:
        """The number of jobs waiting and the suggested wait."""
        super().__init__(f"the server is busy ({queued} requests queued); retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass(eq=False)
class Job:
    """One request's sentences, options and results; `future` resolves to the results in sentence order."""

    texts: list[str]
    tokens: list[int]  # source tokens of each text
    key: Hashable  # the decoding options, as a hashable value: only jobs with equal keys share a batch
    options: dict[str, Any]
    cost: int  # search rows per sentence (the beam size): a batch holds max_batch_tokens // cost padded tokens
    future: asyncio.Future
    results: list[Any] = field(default_factory=list)
    remaining: list[int] = field(default_factory=list)  # sentences not yet in a batch
    pending: int = 0  # sentences in batches that have not returned
    served: int = 0  # batches it has had sentences in: jobs served less often go first
    cancelled: bool = False

    def __post_init__(self) -> None:
        """One result slot per sentence; every sentence waits."""
        self.results = [None] * len(self.texts)
        self.remaining = list(range(len(self.texts)))


@dataclass
class Stats:
    """Counters for /info and the tests."""

    batches: int = 0
    sentences: int = 0
    dropped_jobs: int = 0
    refused_jobs: int = 0
    largest_batch: int = 0


class Batcher:
    """Queue requests and search their sentences in token-bounded batches (see the module docstring).

    run(texts, options) searches one batch (in a worker thread) and returns one result per text;
    count(text) is a text's source tokens.
    """

    def __init__(self, run: Callable[[list[str], dict[str, Any]], list[Any]], count: Callable[[str], int],
                 max_batch_tokens: int = 4000, wait_ms: float = 5.0, queue_size: int = 256, parallel: int = 1,
                 retry_after: int = 1) -> None:
        """Settings as the module docstring describes them; nothing starts until start()."""
        if max_batch_tokens < 1 or wait_ms < 0 or queue_size < 1 or parallel < 1:
            raise ValueError("max_batch_tokens, queue_size and parallel must be >= 1 and wait_ms >= 0")
        self.run, self.count = run, count
        self.max_batch_tokens, self.wait = max_batch_tokens, wait_ms / 1000
        self.queue_size, self.parallel, self.retry_after = queue_size, parallel, retry_after
        self.stats = Stats()
        self._queue: collections.deque[Job] = collections.deque()
        self._arrived: dict[int, float] = {}  # id(job) -> when it joined the queue
        self._wake: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._running: set[asyncio.Task] = set()

    # -- lifecycle (in the server's event loop) ---------------------------------------------------------
    def start(self) -> None:
        """Start the loop that forms batches (call inside the running event loop)."""
        self._wake, self._slots = asyncio.Event(), asyncio.Semaphore(self.parallel)
        self._executor = ThreadPoolExecutor(self.parallel, thread_name_prefix="aiayn-batch")
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Finish the batches running, then stop (jobs still queued are cancelled)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        for job in self._queue:
            if not job.future.done():
                job.future.set_exception(Overloaded(0, self.retry_after))
        self._queue.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    # -- requests --------------------------------------------------------------------------------------
    async def submit(self, texts: list[str], options: dict[str, Any], key: Hashable | None = None,
                     cost: int = 1) -> list[Any]:
        """The results of texts under options, once searched; Overloaded when the queue is full.

        Cancelling the awaiting task (a client that went away) cancels the job.
        """
        job = self.enqueue(texts, options, key, cost)
        try:
            return await asyncio.shield(job.future)
        except asyncio.CancelledError:
            self.cancel(job)
            raise

    def enqueue(self, texts: list[str], options: dict[str, Any], key: Hashable | None = None,
                cost: int = 1) -> Job:
        """Queue a job and return it (its future holds the results); Overloaded when the queue is full."""
        assert self._wake is not None, "Batcher.start() first"
        if len(self._queue) >= self.queue_size:
            self.stats.refused_jobs += 1
            raise Overloaded(len(self._queue), self.retry_after)
        key = key if key is not None else tuple(sorted((k, repr(v)) for k, v in options.items()))
        key = (key, cost)
        future = asyncio.get_running_loop().create_future()
        job = Job(list(texts), [max(self.count(t), 1) for t in texts], key, options, max(cost, 1), future)
        if not texts:
            future.set_result([])
            return job
        self._queue.append(job)
        self._arrived[id(job)] = time.monotonic()
        self._wake.set()
        return job

    def cancel(self, job: Job) -> None:
        """Drop a job: its queued sentences are not searched and its future is cancelled."""
        if job.cancelled:
            return
        job.cancelled = True
        self.stats.dropped_jobs += 1
        if job in self._queue:
            self._queue.remove(job)
            self._arrived.pop(id(job), None)
        if not job.future.done():
            job.future.cancel()
        assert self._wake is not None
        self._wake.set()

    @property
    def queued(self) -> int:
        """Jobs waiting for (part of) a batch."""
        return len(self._queue)

    # -- forming batches -------------------------------------------------------------------------------
    async def _loop(self) -> None:
        """Wait for jobs; cut a batch when it is full or its first job has waited wait_ms; run it."""
        assert self._wake is not None and self._slots is not None
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            head = self._queue[0]
            deadline = self._arrived[id(head)] + self.wait
            while not self._full(head.key) and time.monotonic() < deadline and self._queue and \
                    self._queue[0] is head:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), max(deadline - time.monotonic(), 0))
                except TimeoutError:
                    break
            if not self._queue:
                continue
            await self._slots.acquire()  # a worker is free: cut the batch now, with what has arrived
            batch = self._cut()
            if not batch:
                self._slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self._search(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _full(self, key: Hashable) -> bool:
        """Whether the queued sentences with this key fill a batch."""
        rows, longest = 0, 0
        for job in self._queue:
            if job.key != key:
                continue
            for i in job.remaining:
                rows, longest = rows + 1, max(longest, job.tokens[i])
                if rows * longest * job.cost >= self.max_batch_tokens:
                    return True
        return False

    def _cut(self) -> list[tuple[Job, int]]:
        """Take (job, sentence index) pairs for one batch, up to the budget: the first sentence of the job that
        has been in the fewest batches (the oldest among equals), and the waiting sentences closest to it in
        length (as translate() sorts by length, so little of a batch is padding).

        The first job is always served, so every job is within a few batches of its turn, and a long
        request, once in a batch, goes behind the requests that have not been in one; a job left with
        sentences goes to the back of the queue.
        """
        if not self._queue:  # the jobs waiting were cancelled while a worker was busy
            return []
        order = sorted(self._queue, key=lambda job: job.served)  # stable: arrival order among equals
        first = order[0]
        budget = max(self.max_batch_tokens // first.cost, 1)
        rank = {id(job): r for r, job in enumerate(order)}
        waiting = sorted(((job.tokens[i], rank[id(job)], i, job) for job in order if job.key == first.key
                          for i in job.remaining), key=lambda item: item[:3])  # by length, then age
        anchor = next(n for n, item in enumerate(waiting) if item[3] is first and item[2] == first.remaining[0])
        lo, hi = anchor, anchor + 1  # the window waiting[lo:hi], widest row waiting[hi - 1]
        while True:
            fits_below = lo > 0 and (hi - lo + 1) * waiting[hi - 1][0] <= budget
            fits_above = hi < len(waiting) and (hi - lo + 1) * waiting[hi][0] <= budget
            if not (fits_below or fits_above):
                break
            length = waiting[anchor][0]
            below = length - waiting[lo - 1][0] if fits_below else None
            above = waiting[hi][0] - length if fits_above else None
            if above is None or below is not None and (below, waiting[lo - 1][1]) <= (above, waiting[hi][1]):
                lo -= 1
            else:
                hi += 1
        taken = sorted(((job, i) for _, _, i, job in waiting[lo:hi]), key=lambda pair: (rank[id(pair[0])], pair[1]))
        touched: dict[int, Job] = {}
        for job, i in taken:
            job.remaining.remove(i)
            job.pending += 1
            touched[id(job)] = job
        for job in touched.values():
            job.served += 1
            self._queue.remove(job)
            if job.remaining:  # to the back: the requests behind it go first next time
                self._queue.append(job)
                self._arrived[id(job)] = time.monotonic()
            else:
                self._arrived.pop(id(job), None)
        return taken

    async def _search(self, batch: list[tuple[Job, int]]) -> None:
        """Search one batch in a worker thread and hand each job its results."""
        assert self._slots is not None
        try:
            live = [(job, i) for job, i in batch if not job.cancelled]
            if not live:
                return
            texts = [job.texts[i] for job, i in live]
            loop = asyncio.get_running_loop()
            try:
                results = await loop.run_in_executor(self._executor, self.run, texts, live[0][0].options)
            except Exception as error:  # the search failed: every job in it fails with the same error
                for job, _ in live:
                    if not job.future.done():
                        job.future.set_exception(error)
                return
            self.stats.batches += 1
            self.stats.sentences += len(texts)
            self.stats.largest_batch = max(self.stats.largest_batch, len(texts))
            for (job, i), result in zip(live, results):
                job.results[i] = result
                job.pending -= 1
                if job.pending == 0 and not job.remaining and not job.future.done():
                    job.future.set_result(job.results)
        finally:
            self._slots.release()
