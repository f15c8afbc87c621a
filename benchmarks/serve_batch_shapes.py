"""What a served batch costs aiayn's engine against offline's: the same verses, the same worker pool, other batches.

Offline translation (`aiayn translate --input`, inference.evaluation.translate) sorts the sentences by length
and cuts batches of about --batch-tokens padded tokens, so a batch's sentences end at about the same step.
Under load, `aiayn serve` searches what its clients have waiting: about 20 sentences of mixed lengths (the
load of benchmarks/serve_load.py at 64 clients). This searches all 879 John verses (beam 4, alpha 0.6, §6.1)
through one WorkerPool of --workers processes four ways: offline's batches; shuffled batches of 20 verses;
shuffled batches of 33 (offline's mean); batches of 20 that are the shorter or the longer half of 40 shuffled
verses (a batcher that chooses 20 of 40 waiting by length), two batches at a time as the server's two slots
do. It prints the CPU milliseconds per verse of this process and its workers, alternating the four for
--rounds rounds:

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=src python benchmarks/serve_batch_shapes.py --model runs/kjv-en-es/model
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from common import cpu_seconds  # benchmarks/common.py: the same /proc accounting as serve_load.py

from aiayn.data.corpus import BUNDLED, load_corpus
from aiayn.inference.evaluation import translate
from aiayn.inference.quantize import for_decoding
from aiayn.inference.workers import WorkerPool
from aiayn.io.loading import load_with_tokenizer


def main() -> None:
    """Alternate the four batchings; print CPU ms per verse and wall seconds of each."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a translator's model folder")
    parser.add_argument("--precision", default="int8", help="aiayn's decoding precision (default int8)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of one thread (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the four (default 3)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, tok = load_with_tokenizer(Path(args.model))
    search = for_decoding(model, args.precision)
    verses = [source for source, _ in load_corpus(BUNDLED).test]
    pool = WorkerPool(search, args.workers, trim=True)  # as `aiayn serve` makes it
    shuffle = random.Random(0)

    def shuffled(size: int, window: int = 0) -> None:
        order = verses[:]
        shuffle.shuffle(order)
        if window:  # each `window` shuffled verses sorted by length, then cut: a batcher choosing from that many
            order = [v for i in range(0, len(order), window) for v in sorted(order[i:i + window], key=len)]
        batches = [order[i:i + size] for i in range(0, len(order), size)]
        with ThreadPoolExecutor(args.workers) as slots:  # as the batcher's slots: a batch per worker at once
            list(slots.map(lambda batch: translate(search, tok, batch, batch_tokens=10**9, workers=pool), batches))

    ways: list[tuple[str, Callable[[], object]]] = [
        ("offline: length-sorted batches of <= 4000 tokens", lambda: translate(search, tok, verses, workers=pool)),
        ("served-like: 20 shuffled verses a batch", lambda: shuffled(20)),
        ("33 shuffled verses a batch", lambda: shuffled(33)),
        ("20 a batch, the shortest or longest half of 40 shuffled", lambda: shuffled(20, 40))]
    try:
        translate(search, tok, verses[:50], workers=pool)  # warm-up
        print(f"{len(verses)} John verses; {args.precision}; {args.workers} workers x 1 thread; {os.cpu_count()} CPUs")
        for round_ in range(args.rounds):
            for name, run in ways:
                cpu, start = cpu_seconds(os.getpid()), time.perf_counter()
                run()
                used = cpu_seconds(os.getpid()) - cpu
                print(f"round {round_ + 1} {name}: {1000 * used / len(verses):.1f} ms CPU/verse, "
                      f"{time.perf_counter() - start:.1f} s", flush=True)
    finally:
        pool.close()


if __name__ == "__main__":
    main()
