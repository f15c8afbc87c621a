"""Real corpora at scale (issue #30): prepare a token store, start training from it, memory while training, loader.

Pairs are the bundled KJV -> RV1909 verses repeated and numbered ("17 In the beginning ...") so no two are
equal; the language model's text is the bundled Shakespeare repeated with numbered lines. For each size:

- prepare: `aiayn prepare` (a subprocess): seconds, pairs/s, the store's size on disk, its peak RSS;
- train: `aiayn train --data STORE` (a subprocess, --steps STEPS): seconds from the process's start to its first
  step's log line, peak RSS (VmHWM) and the peak of RssAnon (private memory) and RssFile (the mapped store and
  libraries, shared and reclaimable) sampled every 0.1 s from /proc/PID/status, and training tokens/s;
- the loader alone (this process, one thread): batches/s and target tokens/s of TokenBatcher over the store;
- the tokenizer's own speed: tokenizers' encode_batch on 200,000 of the corpus's sentences with the store's
  tokenizer, all threads, and the ratio of prepare's sentences/s to it.

usage: python benchmarks/data_scale.py [--pairs 30000,1000000,10000000] [--text-mb 50,1000] [--steps 20]
                                       [--work /tmp/aiayn-data-scale] [--threads 1] [--tiled 10000000]

--tiled N also trains from a store of N pairs made by repeating the smallest prepared store's pairs: the training
side (start, memory, loader) at a size whose tokenizing takes longer than the run can give.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from aiayn.data.batching import Examples, TokenBatcher
from aiayn.data.corpus import BUNDLED_FILE
from aiayn.data.lm import bundled_shakespeare
from aiayn.data.store import Store, StoreWriter

PYTHON = sys.executable


def write_pairs(path: Path, n: int) -> None:
    """n numbered pairs from the bundled corpus (source<TAB>target), written in 64k-line blocks."""
    with gzip.open(BUNDLED_FILE, "rt", encoding="utf-8") as handle:
        verses = [line.rstrip("\n").split("\t")[1:] for line in handle]
    with path.open("w", encoding="utf-8") as out:
        for start in range(0, n, 65_536):
            out.write("".join(f"{i} {verses[i % len(verses)][0]}\t{i} {verses[i % len(verses)][1]}\n"
                              for i in range(start, min(n, start + 65_536))))


def write_text(path: Path, megabytes: int) -> None:
    """About `megabytes` MB of the bundled Shakespeare, repeated, every line numbered by its repetition."""
    lines = bundled_shakespeare().splitlines(keepends=True)
    target, written, rep = megabytes * 1_000_000, 0, 0
    with path.open("w", encoding="utf-8") as out:
        while written < target:
            block = "".join(f"{rep} {line}" if line.strip() else line for line in lines)
            out.write(block)
            written += len(block.encode("utf-8"))
            rep += 1


def run_measured(command: list[str], first_line: str | None = None, last_line: str | None = None) -> dict[str, float]:
    """Run command; seconds, seconds to the first stderr line containing first_line, peak VmHWM / RssAnon / RssFile
    (MB) sampled from /proc every 0.1 s, and RssAnon when last_line appears (the training steps done, before the
    final evaluation)."""
    started = time.perf_counter()
    log = Path(f"/tmp/data-scale-{os.getpid()}.log")
    with log.open("w") as err:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env={**os.environ,
                                                                                        "PYTHONUNBUFFERED": "1"})
        peak = {"VmHWM": 0.0, "RssAnon": 0.0, "RssFile": 0.0}
        first = None
        at_last = float("nan")
        while process.poll() is None:
            now = {}
            try:
                for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                    name, _, value = line.partition(":")
                    if name in peak:
                        now[name] = int(value.split()[0]) / 1024
                        peak[name] = max(peak[name], now[name])
            except OSError:
                pass
            written = log.read_text(errors="replace")
            if first is None and first_line and first_line in written:
                first = time.perf_counter() - started
            if at_last != at_last and last_line and last_line in written and "RssAnon" in now:
                at_last = now["RssAnon"]
            time.sleep(0.1)
    text = log.read_text(errors="replace")
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{text[-2000:]}")
    return {"seconds": time.perf_counter() - started, "first": first or float("nan"), "anon_trained": at_last, **peak,
            "log": text}  # type: ignore[dict-item]


def tile_store(source: Store, out: Path, n: int) -> Store:
    """A store of n training pairs made by repeating a prepared store's pairs (same lengths, tokenizer, dev and test):
    what training reads from a corpus of n pairs, without tokenizing n pairs first."""
    meta = {k: v for k, v in source.meta.items() if k not in ("format", "dtype", "files")}
    meta["counts"] = {**meta["counts"], "train": n}
    with StoreWriter(out, source.tokenizer().get_vocab_size()) as writer:
        for side in ("train.src", "train.tgt"):
            column = source.column(side)
            lengths = np.diff(column.offsets)
            done = 0
            while done < n:
                take = min(n - done, len(lengths))
                writer.append_flat(side, np.asarray(column.ids[:column.offsets[take]]), lengths[:take])
                done += take
        for side in ("dev.src", "dev.tgt"):
            column = source.column(side)
            writer.append_flat(side, np.asarray(column.ids), np.diff(column.offsets))
        for name in ("tokenizer.json", "dev.jsonl", "test.jsonl"):
            writer.write_text(name, (source.path / name).read_text(encoding="utf-8"))
        return writer.finish(meta)


def folder_mb(path: Path) -> float:
    """Size of a folder's files in MB."""
    return sum(p.stat().st_size for p in path.iterdir()) / 1e6


def loader_speed(store: Store, batch_tokens: int, seconds: float = 5.0) -> tuple[float, float]:
    """(batches/s, target tokens/s) of TokenBatcher + collate over the store's training pairs, this thread alone."""
    examples = Examples(store.column("train.src"), store.column("train.tgt"))
    batcher = TokenBatcher(examples, batch_tokens, seed=1)
    epoch = batcher.epoch(0)
    done = tokens = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        batch = batcher.batch(epoch[done % len(epoch)])
        tokens += batch.n_tokens
        done += 1
    elapsed = time.perf_counter() - started
    return done / elapsed, tokens / elapsed


def tokenizer_speed(store: Store, corpus: Path, n: int = 200_000) -> float:
    """Sentences/s of tokenizers' encode_batch (all threads) on the corpus's first n / 2 pairs."""
    with corpus.open(encoding="utf-8") as handle:
        sentences = [part for _, line in zip(range(n // 2), handle) for part in line.rstrip("\n").split("\t")]
    tok = store.tokenizer()
    tok.encode_batch(sentences[:1000], add_special_tokens=False)
    started = time.perf_counter()
    tok.encode_batch(sentences, add_special_tokens=False)
    return len(sentences) / (time.perf_counter() - started)


def train_command(store: Path, out: Path, steps: int, threads: int, task: str) -> list[str]:
    """aiayn train from a prepared store, evaluation only at the end (skipped where possible)."""
    common = ["--data", str(store), "--out", str(out), "--steps", str(steps), "--threads", str(threads),
              "--log-every", "1", "--eval-every", "0", "--save-every", "0", "--keep-best", "none"]
    if task == "translate":
        return [PYTHON, "-m", "aiayn", "train", *common, "--no-final-test"]
    return [PYTHON, "-m", "aiayn", "train", "--task", "lm", *common, "--eval-windows", "50"]


def tokens_per_s(run: Path, key: str) -> float:
    """The last logged training tokens/s."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return float([r[key] for r in records if key in r][-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", default="30000,1000000,10000000")
    parser.add_argument("--text-mb", default="50,1000")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", default="/tmp/aiayn-data-scale")
    parser.add_argument("--keep", action="store_true", help="keep the generated corpora and stores")
    parser.add_argument("--tiled", type=int, default=0, help="also train from a store of this many pairs tiled from "
                                                             "the smallest --pairs store (the training side alone)")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores, shared with other jobs; training --threads {args.threads}, "
          f"{args.steps} steps, default model (preset shallow); prepare uses every core")
    started = time.perf_counter()
    subprocess.run([PYTHON, "-c", "import aiayn.cli; aiayn.cli.commands()"], check=True)  # as `aiayn` does
    print(f"importing aiayn.cli (torch and the rest) alone takes {time.perf_counter() - started:.1f}s of each "
          f"time to the first step")
    print(f"{'corpus':>14} {'prepare s':>9} {'pairs/s':>9} {'x encode':>8} {'store MB':>8} {'prep RSS':>8} "
          f"{'1st step s':>10} {'peak RSS':>8} {'RssAnon':>8} {'Anon@end':>8} {'RssFile':>8} {'tok/s':>7} "
          f"{'loader b/s':>10} {'loader tok/s':>12}")
    for n in [int(x) for x in args.pairs.split(",") if x]:
        corpus, store, run = work / f"pairs-{n}.tsv", work / f"store-{n}", work / f"run-{n}"
        if not corpus.exists():
            write_pairs(corpus, n)
        shutil.rmtree(store, ignore_errors=True)
        shutil.rmtree(run, ignore_errors=True)
        prep = run_measured([PYTHON, "-m", "aiayn", "prepare", "--data", str(corpus), "--out", str(store)])
        opened = Store(store)
        pairs_s = opened.meta["counts"]["train"] / prep["seconds"]
        encode_s = tokenizer_speed(opened, corpus)
        ratio = encode_s / (2 * pairs_s)  # sentences/s: the tokenizer alone over prepare's
        trained = run_measured(train_command(store, run, args.steps, args.threads, "translate"), "step 1/",
                               f"step {args.steps}/")
        b_s, t_s = loader_speed(opened, 1024)
        print(f"{n:>8,} pairs {prep['seconds']:>9.1f} {pairs_s:>9,.0f} {ratio:>7.2f}x {folder_mb(store):>8.0f} "
              f"{prep['VmHWM']:>8.0f} {trained['first']:>10.1f} {trained['VmHWM']:>8.0f} {trained['RssAnon']:>8.0f} "
              f"{trained['anon_trained']:>8.0f} {trained['RssFile']:>8.0f} "
              f"{tokens_per_s(run, 'tgt_tok_per_s'):>7,.0f} {b_s:>10,.0f} {t_s:>12,.0f}",
              flush=True)
        bpe = re.search(r"joint BPE: .* in ([0-9.]+)s", prep["log"])  # type: ignore[call-overload]
        bpe_s = float(bpe.group(1)) if bpe else 0.0
        without_bpe = encode_s / (2 * opened.meta["counts"]["train"] / (prep["seconds"] - bpe_s))
        print(f"{'':>14} tokenizers encode_batch alone: {encode_s:,.0f} sentences/s; prepare without its BPE "
              f"learning ({bpe_s:.1f}s): {without_bpe:.2f}x the tokenizer's time", flush=True)
        if not args.keep:
            shutil.rmtree(run, ignore_errors=True)
            shutil.rmtree(store, ignore_errors=True)
            corpus.unlink()
    if args.tiled:
        # the training side at a size whose tokenizing takes longer than this machine can give: a store tiled from
        # the smallest prepared one (set --keep-smallest) to args.tiled pairs
        small = min(int(x) for x in args.pairs.split(",") if x)
        base, store, run = work / f"store-{small}", work / f"store-tiled-{args.tiled}", work / "run-tiled"
        if not base.exists():
            corpus = work / f"pairs-{small}.tsv"
            write_pairs(corpus, small)
            subprocess.run([PYTHON, "-m", "aiayn", "prepare", "--data", str(corpus), "--out", str(base)], check=True,
                           capture_output=True)
        shutil.rmtree(store, ignore_errors=True)
        shutil.rmtree(run, ignore_errors=True)
        clock = time.perf_counter()
        tiled = tile_store(Store(base), store, args.tiled)
        made = time.perf_counter() - clock
        trained = run_measured(train_command(store, run, args.steps, args.threads, "translate"), "step 1/",
                               f"step {args.steps}/")
        b_s, t_s = loader_speed(tiled, 1024)
        print(f"{args.tiled:>8,} tiled {'(' + format(made, '.0f') + 's)':>9} {'':>9} {'':>8} {folder_mb(store):>8.0f} "
              f"{'':>8} {trained['first']:>10.1f} {trained['VmHWM']:>8.0f} {trained['RssAnon']:>8.0f} "
              f"{trained['anon_trained']:>8.0f} {trained['RssFile']:>8.0f} "
              f"{tokens_per_s(run, 'tgt_tok_per_s'):>7,.0f} {b_s:>10,.0f} {t_s:>12,.0f}", flush=True)
        if not args.keep:
            shutil.rmtree(run, ignore_errors=True)
            shutil.rmtree(store, ignore_errors=True)
    for mb in [int(x) for x in args.text_mb.split(",") if x]:
        text, store, run = work / f"text-{mb}mb.txt", work / f"text-store-{mb}", work / f"text-run-{mb}"
        if not text.exists():
            write_text(text, mb)
        shutil.rmtree(store, ignore_errors=True)
        shutil.rmtree(run, ignore_errors=True)
        prep = run_measured([PYTHON, "-m", "aiayn", "prepare", "--task", "lm", "--tokenizer", "bpe", "--data",
                             str(text), "--out", str(store)])
        opened = Store(store)
        trained = run_measured(train_command(store, run, args.steps, args.threads, "lm"), "step 1/",
                               f"step {args.steps}/")
        mb_s = text.stat().st_size / 1e6 / prep["seconds"]
        print(f"{mb:>6} MB text {prep['seconds']:>9.1f} {mb_s:>7.1f}MB/s {'':>8} {folder_mb(store):>8.0f} "
              f"{prep['VmHWM']:>8.0f} {trained['first']:>10.1f} {trained['VmHWM']:>8.0f} {trained['RssAnon']:>8.0f} "
              f"{trained['anon_trained']:>8.0f} {trained['RssFile']:>8.0f} {tokens_per_s(run, 'tok_per_s'):>7,.0f}",
              flush=True)
        if not args.keep:
            shutil.rmtree(run, ignore_errors=True)
            shutil.rmtree(store, ignore_errors=True)
            text.unlink()


if __name__ == "__main__":
    main()
