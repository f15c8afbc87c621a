"""Load on `aiayn serve`: N concurrent clients on loopback, each sending John verses, against offline translation.

For each engine (aiayn, CTranslate2) the same verses (the bundled test set, John) are first translated
offline in this process, the way `aiayn translate --input` does (aiayn: inference.evaluation.translate with
a WorkerPool of --workers; CTranslate2: translate_batch by tokens on --workers inter_threads), then a server
(`aiayn serve` in a subprocess, the same engine, precision and workers) is loaded by N = 1, 8, 64 clients
(an httpx.AsyncClient bounded to N connections): client i sends verses i, i + N, ..., one per LibreTranslate
POST /translate (beam 4, length penalty 0.6, §6.1). Prints per engine and N: throughput (verses/s), its
ratio to offline, latency p50/p95/p99 and p99/p50, errors. The issue's targets (#33): at 64 clients >= 80%
of offline throughput, 0 errors, p99 <= 3 x p50; at 1 client p50 <= 50 ms (CTranslate2), <= 100 ms (aiayn int8).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/serve_load.py --model runs/kjv-en-es/model --precision int8 \\
        --workers 2

--soak SECONDS keeps 64 clients sending verses for that long after the load runs and reports the server's
resident memory (VmRSS, with its worker processes) after a warm-up minute and at the end (the target:
growth under 5% over 10 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from aiayn.data.corpus import BUNDLED, load_corpus
from aiayn.data.tokenizer import encode_source
from aiayn.inference.evaluation import translate
from aiayn.inference.quantize import for_decoding
from aiayn.inference.workers import WorkerPool
from aiayn.io.loading import load_with_tokenizer
from aiayn.serving.engines import CT2_COMPUTE_TYPES, ensure_export

SRC = str(Path(__file__).resolve().parents[1] / "src")


def john_verses(limit: int | None) -> list[str]:
    """The source side of the bundled test set (John), in order."""
    verses = [source for source, _ in load_corpus(BUNDLED).test]
    return verses[:limit] if limit else verses


def offline(engine: str, folder: Path, verses: list[str], precision: str, workers: int, threads: int,
            cache: Path) -> float:
    """Seconds to translate the verses in this process, as `aiayn translate --input` does (beam 4, alpha 0.6)."""
    model, tok = load_with_tokenizer(folder)
    if engine == "aiayn":
        import torch

        torch.set_num_threads(threads)
        search = for_decoding(model, precision)
        pool = WorkerPool(search, workers) if workers > 1 else None
        try:
            translate(search, tok, verses[:50], workers=pool or 1)  # warm-up
            start = time.perf_counter()
            translate(search, tok, verses, workers=pool or 1)
            return time.perf_counter() - start
        finally:
            if pool is not None:
                pool.close()
    import ctranslate2

    translator = ctranslate2.Translator(str(ensure_export(folder, cache)), device="cpu", inter_threads=workers,
                                        intra_threads=threads, compute_type=CT2_COMPUTE_TYPES[precision])
    rows = [[tok.id_to_token(i) for i in encode_source(tok, v)] for v in verses]
    options = dict(beam_size=4, length_penalty=0.6, max_batch_size=1000, batch_type="tokens", min_decoding_length=0)
    translator.translate_batch(rows[:50], **options)  # warm-up
    start = time.perf_counter()
    translator.translate_batch(rows, **options)
    return time.perf_counter() - start


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(engine: str, folder: Path, precision: str, workers: int, threads: int, cache: Path,
                 args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    """`aiayn serve` in a subprocess; returns it and its URL once /health answers."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "AIAYN_CACHE": str(cache)}
    command = [sys.executable, "-m", "aiayn", "serve", str(folder), "--engine", engine, "--precision", precision,
               "--workers", str(workers), "--threads", str(threads), "--port", str(port), "--log-level", "warning",
               "--max-batch-tokens", str(args.max_batch_tokens), "--batch-wait-ms", str(args.batch_wait_ms),
               "--queue-size", "1024"]
    process = subprocess.Popen(command, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the server did not start: {' '.join(command)}")
        time.sleep(0.3)


async def load(url: str, verses: list[str], clients: int, until: float | None = None) -> dict[str, Any]:
    """N clients, client i sending verses i, i + N, ... (or looping until `until`); latencies and errors."""
    latencies: list[float] = []
    errors = 0
    reasons: collections.Counter[str] = collections.Counter()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        async def one(i: int) -> None:
            nonlocal errors
            k = i
            while True:
                if until is None and k >= len(verses) or until is not None and time.monotonic() > until:
                    return
                start = time.perf_counter()
                try:
                    reply = await client.post("/translate", json={"q": verses[k % len(verses)], "source": "en",
                                                                  "target": "es"})
                    ok = reply.status_code == 200 and isinstance(reply.json().get("translatedText"), str)
                    reason = f"HTTP {reply.status_code}: {reply.text[:200]}"
                except httpx.HTTPError as error:
                    ok, reason = False, f"{type(error).__name__}: {error}"
                latencies.append(time.perf_counter() - start)
                errors += not ok
                if not ok:
                    reasons[reason] += 1
                k += clients

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(clients)))
        seconds = time.perf_counter() - start
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(int(p / 100 * len(latencies)), len(latencies) - 1)] * 1000

    return {"requests": len(latencies), "seconds": seconds, "throughput": len(latencies) / seconds,
            "p50": pct(50), "p95": pct(95), "p99": pct(99), "errors": errors, "reasons": dict(reasons)}


async def soak(url: str, verses: list[str], pid: int, seconds: float) -> dict[str, Any]:
    """64 clients for `seconds`, printing the server's and each worker's VmRSS every minute."""
    async def watch() -> None:
        while True:
            await asyncio.sleep(60)
            parts = [f"{p}: {own_rss_mb(p):.0f}" for p in [pid, *children(pid)]]
            print(f"    RSS MiB (server, workers) {', '.join(parts)}; total {rss_mb(pid):.0f}", flush=True)

    watcher = asyncio.ensure_future(watch())
    try:
        return await load(url, verses, 64, until=time.monotonic() + seconds)
    finally:
        watcher.cancel()


def own_rss_mb(pid: int) -> float:
    """One process's VmRSS in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children(pid: int) -> list[int]:
    """A process's child processes."""
    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]


def rss_mb(pid: int) -> float:
    """Resident memory (VmRSS) in MiB of a process and its children (aiayn's forked workers)."""
    return own_rss_mb(pid) + sum(rss_mb(child) for child in children(pid))


def main() -> None:
    """Offline, then loaded, for each engine; one table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a translator's model folder (or run folder)")
    parser.add_argument("--engines", default="aiayn,ctranslate2")
    parser.add_argument("--precision", default="int8", help="both engines' precision (default int8)")
    parser.add_argument("--workers", type=int, default=2, help="aiayn worker processes / CTranslate2 inter_threads")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per worker (default 1)")
    parser.add_argument("--clients", default="1,8,64")
    parser.add_argument("--verses", type=int, default=0, help="John verses for N > 1 (default 0: all 879)")
    parser.add_argument("--single-verses", type=int, default=100, help="verses sent by the lone client (N = 1)")
    parser.add_argument("--max-batch-tokens", type=int, default=4000)
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--soak", type=float, default=0, help="seconds of a 64-client soak after the runs (0: none)")
    args = parser.parse_args()
    folder = Path(args.model)
    if not (folder / "model.safetensors").is_file() and (folder / "model" / "model.safetensors").is_file():
        folder = folder / "model"
    verses = john_verses(args.verses or None)
    cache = Path(tempfile.mkdtemp(prefix="serve-load-cache-"))
    print(f"model {folder}; {len(verses)} John verses; precision {args.precision}; {args.workers} workers x "
          f"{args.threads} thread; batch {args.max_batch_tokens} tokens or {args.batch_wait_ms:g} ms; "
          f"{os.cpu_count()} CPUs", flush=True)
    rows = []
    for engine in args.engines.split(","):
        seconds = offline(engine, folder, verses, args.precision, args.workers, args.threads, cache)
        base = len(verses) / seconds
        print(f"{engine}: offline {len(verses)} verses in {seconds:.2f} s = {base:.1f} verses/s", flush=True)
        process, url = start_server(engine, folder, args.precision, args.workers, args.threads, cache, args)
        try:
            asyncio.run(load(url, verses[:20], 4))  # warm-up
            for clients in map(int, args.clients.split(",")):
                sent = verses[:args.single_verses] if clients == 1 else verses
                result = asyncio.run(load(url, sent, clients))
                rows.append((engine, clients, result, base))
                print(f"  {clients:>3} clients: {result['throughput']:.1f} verses/s ({result['throughput'] / base:.2f}"
                      f" x offline), p50 {result['p50']:.0f} ms, p95 {result['p95']:.0f} ms, p99 {result['p99']:.0f}"
                      f" ms, errors {result['errors']}/{result['requests']} {result['reasons'] or ''}", flush=True)
            if args.soak:
                warm = min(60.0, args.soak / 5)
                asyncio.run(load(url, verses, 64, until=time.monotonic() + warm))
                before = rss_mb(process.pid)
                result = asyncio.run(soak(url, verses, process.pid, args.soak))
                after = rss_mb(process.pid)
                print(f"  soak {args.soak:.0f} s, 64 clients: {result['requests']} requests, errors "
                      f"{result['errors']}; RSS {before:.0f} -> {after:.0f} MiB ({100 * (after / before - 1):+.1f}%)",
                      flush=True)
        finally:
            process.terminate()
            process.wait(60)
    print("\n| engine | clients | verses/s | x offline | p50 ms | p95 ms | p99 ms | p99/p50 | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for engine, clients, r, base in rows:
        print(f"| {engine} {args.precision} | {clients} | {r['throughput']:.1f} | {r['throughput'] / base:.2f} | "
              f"{r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} | {r['p99'] / r['p50']:.1f} | "
              f"{r['errors']}/{r['requests']} |")


if __name__ == "__main__":
    main()
