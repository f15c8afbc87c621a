"""Load on `aiayn serve`: N concurrent clients on loopback, each sending John verses, against offline translation.

For each engine (aiayn, CTranslate2) the same verses (the bundled test set, John) are first translated offline
in this process, the way `aiayn translate --input` does (aiayn: inference.evaluation.translate with a
WorkerPool of --workers; CTranslate2: translate_batch by tokens on --workers inter_threads), then a server
(`aiayn serve` in a subprocess, the same engine, precision and workers) is loaded by N = 1, 8, 64 clients (N
aiohttp sessions of one connection each, in this process; `pip install -e '.[bench]'`): client i sends verses
i, i + N, ..., one per LibreTranslate POST /translate (beam 4, length penalty 0.6, §6.1). Prints per engine
and N: throughput (verses/s), its ratio to offline, latency p50/p95/p99 and p99/p50, errors, the mean batch
the server formed, and the CPU milliseconds per verse of the server's event loop (its main thread), of its
engine (its other threads and its worker processes) and of this load client, against the offline CPU per
verse. The client runs on the same cores as the server: its share is printed so that it can be told apart. The
issue's targets (#33): at 64 clients >= 80% of offline throughput, 0 errors, p99 <= 3 x p50; at 1 client p50
<= 50 ms (CTranslate2), <= 100 ms (aiayn int8).

The standard comparison (N = 1, 8, 64, both engines, int8, 2 workers of 1 thread; about 3 minutes with the
`make run` model on 2 cores), from the repository root:

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=src python benchmarks/serve_load.py --model runs/kjv-en-es/model \\
        --precision int8 --workers 2

--soak SECONDS keeps 64 clients sending verses for that long after the load runs and reports the resident
memory (VmRSS) of the server and of each worker process every minute, and from the end of a warm-up (a fifth
of the soak, at most a minute) to the end (the target: growth under 5% over 10 minutes):

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=src python benchmarks/serve_load.py --model runs/kjv-en-es/model \\
        --precision int8 --workers 2 --engines aiayn --clients 64 --soak 600
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

try:
    import aiohttp
except ImportError:
    raise SystemExit("benchmarks/serve_load.py needs aiohttp: pip install -e '.[bench]'") from None

from common import children, cpu_seconds  # benchmarks/common.py

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
            cache: Path) -> tuple[float, float]:
    """Wall and CPU seconds (this process and its workers) to translate the verses here, as `aiayn translate
    --input` does (beam 4, alpha 0.6)."""
    model, tok = load_with_tokenizer(folder)
    if engine == "aiayn":
        import torch

        torch.set_num_threads(threads)
        search = for_decoding(model, precision)
        pool = WorkerPool(search, workers) if workers > 1 else None
        try:
            translate(search, tok, verses[:50], workers=pool or 1)  # warm-up
            cpu, start = cpu_seconds(os.getpid()), time.perf_counter()
            translate(search, tok, verses, workers=pool or 1)
            return time.perf_counter() - start, cpu_seconds(os.getpid()) - cpu
        finally:
            if pool is not None:
                pool.close()
    import ctranslate2

    translator = ctranslate2.Translator(str(ensure_export(folder, cache)), device="cpu", inter_threads=workers,
                                        intra_threads=threads, compute_type=CT2_COMPUTE_TYPES[precision])
    rows = [[tok.id_to_token(i) for i in encode_source(tok, v)] for v in verses]
    options = dict(beam_size=4, length_penalty=0.6, max_batch_size=1000, batch_type="tokens", min_decoding_length=0)
    translator.translate_batch(rows[:50], **options)  # warm-up
    cpu, start = cpu_seconds(os.getpid()), time.perf_counter()
    translator.translate_batch(rows, **options)
    return time.perf_counter() - start, cpu_seconds(os.getpid()) - cpu


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
        if asyncio.run(_healthy(url)):
            return process, url
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the server did not start: {' '.join(command)}")
        time.sleep(0.3)


async def _healthy(url: str) -> bool:
    """Whether GET /health answers 200."""
    try:
        async with aiohttp.ClientSession() as session, session.get(url + "/health",
                                                                  timeout=aiohttp.ClientTimeout(total=1)) as reply:
            return reply.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def load(url: str, verses: list[str], clients: int, until: float | None = None,
               server: int | None = None) -> dict[str, Any]:
    """N clients, client i sending verses i, i + N, ... (or looping until `until`); latencies, errors, and the
    CPU seconds of this client, and of the server process (pid `server`) split into its event loop (the main
    thread) and the rest (the engine: its threads and worker processes), and the batches it formed."""
    latencies: list[float] = []
    errors = 0
    reasons: collections.Counter[str] = collections.Counter()
    # one connection per client, each its own session: the client takes as little of the cores it shares with
    # the server as it can (aiohttp: ~0.15 ms of CPU a request on loopback; httpx ~0.9, and a shared pool of N
    # connections in httpcore scans all N on every request)
    timeout = aiohttp.ClientTimeout(total=120)
    async with contextlib.AsyncExitStack() as stack:
        pool = [await stack.enter_async_context(aiohttp.ClientSession(
            url, connector=aiohttp.TCPConnector(limit=1), timeout=timeout)) for _ in range(clients)]

        async def one(i: int) -> None:
            nonlocal errors
            client, k = pool[i], i
            while True:
                if until is None and k >= len(verses) or until is not None and time.monotonic() > until:
                    return
                start = time.perf_counter()
                try:
                    async with client.post("/translate", json={"q": verses[k % len(verses)], "source": "en",
                                                               "target": "es"}) as reply:
                        text = await reply.text()
                    ok = reply.status == 200 and isinstance(json.loads(text).get("translatedText"), str)
                    reason = f"HTTP {reply.status}: {text[:200]}"
                except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                    ok, reason = False, f"{type(error).__name__}: {error}"
                latencies.append(time.perf_counter() - start)
                errors += not ok
                if not ok:
                    reasons[reason] += 1
                k += clients

        before = await _counters(pool[0], server)
        start, client_cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(i) for i in range(clients)))
        seconds, client_cpu = time.perf_counter() - start, time.process_time() - client_cpu
        after = await _counters(pool[0], server)
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(int(p / 100 * len(latencies)), len(latencies) - 1)] * 1000

    used = {k: after[k] - before[k] for k in after}
    return {"requests": len(latencies), "seconds": seconds, "throughput": len(latencies) / seconds,
            "p50": pct(50), "p95": pct(95), "p99": pct(99), "errors": errors, "reasons": dict(reasons),
            "client_cpu": client_cpu, "loop_cpu": used.get("loop", float("nan")),
            "engine_cpu": used.get("engine", float("nan")),
            "mean_batch": used["sentences"] / used["batches"] if used.get("batches") else float("nan")}


async def _counters(client: aiohttp.ClientSession, server: int | None) -> dict[str, float]:
    """The server's CPU seconds (event loop thread; everything else) and its batch counters, where known."""
    if server is None:
        return {}
    async with client.get("/info") as reply:
        batching = (await reply.json())["batching"]
    loop = thread_cpu_seconds(server, server)
    return {"loop": loop, "engine": cpu_seconds(server) - loop, "batches": batching["batches"],
            "sentences": batching["sentences"]}


async def soak(url: str, verses: list[str], pid: int, seconds: float) -> dict[str, Any]:
    """64 clients for `seconds`, printing the server's and each worker's VmRSS every minute (every sixth of a
    shorter soak)."""
    async def watch() -> None:
        while True:
            await asyncio.sleep(min(60.0, seconds / 6))
            parts = [f"{p}: {own_rss_mb(p):.0f}" for p in [pid, *children(pid)]]
            print(f"    RSS MiB (server, workers) {', '.join(parts)}; total {rss_mb(pid):.0f}", flush=True)

    watcher = asyncio.ensure_future(watch())
    try:
        return await load(url, verses, 64, until=time.monotonic() + seconds, server=pid)
    finally:
        watcher.cancel()


def own_rss_mb(pid: int) -> float:
    """One process's VmRSS in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb(pid: int) -> float:
    """Resident memory (VmRSS) in MiB of a process and its children (aiayn's forked workers)."""
    return own_rss_mb(pid) + sum(rss_mb(child) for child in children(pid))


def thread_cpu_seconds(pid: int, tid: int) -> float:
    """CPU seconds used so far by one thread of a process (the main thread: tid = pid)."""
    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    """Offline, then loaded, for each engine; one table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a translator's model folder (or run folder)")
    parser.add_argument("--engines", default="aiayn,ctranslate2", help="comma-separated (default aiayn,ctranslate2)")
    parser.add_argument("--precision", default="int8", help="both engines' precision (default int8)")
    parser.add_argument("--workers", type=int, default=2, help="aiayn worker processes / CTranslate2 inter_threads")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per worker (default 1)")
    parser.add_argument("--clients", default="1,8,64", help="the concurrent clients of each run (default 1,8,64)")
    parser.add_argument("--verses", type=int, default=0, help="John verses for N > 1 (default 0: all 879)")
    parser.add_argument("--single-verses", type=int, default=100, help="verses sent by the lone client (N = 1)")
    parser.add_argument("--max-batch-tokens", type=int, default=4000, help="the server's (default 4000)")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0, help="the server's (default 5)")
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
        seconds, cpu = offline(engine, folder, verses, args.precision, args.workers, args.threads, cache)
        base, base_cpu = len(verses) / seconds, 1000 * cpu / len(verses)
        print(f"{engine}: offline {len(verses)} verses in {seconds:.2f} s = {base:.1f} verses/s, CPU "
              f"{base_cpu:.1f} ms/verse", flush=True)
        process, url = start_server(engine, folder, args.precision, args.workers, args.threads, cache, args)
        try:
            asyncio.run(load(url, verses[:20], 4))  # warm-up
            for clients in map(int, args.clients.split(",")):
                sent = verses[:args.single_verses] if clients == 1 else verses
                result = asyncio.run(load(url, sent, clients, server=process.pid))
                rows.append((engine, clients, result, base, base_cpu))
                print(f"  {clients:>3} clients: {result['throughput']:.1f} verses/s ({result['throughput'] / base:.2f}"
                      f" x offline), p50 {result['p50']:.0f} ms, p95 {result['p95']:.0f} ms, p99 {result['p99']:.0f}"
                      f" ms, errors {result['errors']}/{result['requests']} {result['reasons'] or ''}; "
                      f"{_cpu(result)}", flush=True)
            if args.soak:
                warm = min(60.0, args.soak / 5)
                asyncio.run(load(url, verses, 64, until=time.monotonic() + warm))
                before = {p: own_rss_mb(p) for p in [process.pid, *children(process.pid)]}
                result = asyncio.run(soak(url, verses, process.pid, args.soak))
                after = {p: own_rss_mb(p) for p in [process.pid, *children(process.pid)]}
                each = ", ".join(f"{'server' if p == process.pid else 'worker'} {before.get(p, 0):.0f} -> "
                                 f"{after[p]:.0f}" for p in after)
                total_before, total_after = sum(before.values()), sum(after.values())
                print(f"  soak {args.soak:.0f} s, 64 clients: {result['requests']} requests, errors "
                      f"{result['errors']}; RSS {total_before:.0f} -> {total_after:.0f} MiB "
                      f"({100 * (total_after / total_before - 1):+.1f}%; {each})", flush=True)
        finally:
            process.terminate()
            process.wait(60)
    print("\n| engine | clients | verses/s | x offline | p50 ms | p95 ms | p99 ms | p99/p50 | errors | mean batch "
          "| CPU ms/verse: offline | served: loop + engine + client | offline / served CPU |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for engine, clients, r, base, base_cpu in rows:
        served = 1000 * (r["loop_cpu"] + r["engine_cpu"] + r["client_cpu"]) / r["requests"]
        print(f"| {engine} {args.precision} | {clients} | {r['throughput']:.1f} | {r['throughput'] / base:.2f} | "
              f"{r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} | {r['p99'] / r['p50']:.1f} | "
              f"{r['errors']}/{r['requests']} | {r['mean_batch']:.1f} | {base_cpu:.1f} | "
              f"{_per_verse(r, 'loop_cpu')} + {_per_verse(r, 'engine_cpu')} + {_per_verse(r, 'client_cpu')} "
              f"= {served:.1f} | {base_cpu / served:.2f} |")


def _per_verse(result: dict[str, Any], key: str) -> str:
    """CPU milliseconds per request of one part."""
    return f"{1000 * result[key] / result['requests']:.1f}"


def _cpu(result: dict[str, Any]) -> str:
    """The CPU line of one run: per verse, and as a share of the wall time (cores busy)."""
    wall = result["seconds"]
    return (f"CPU ms/verse: loop {_per_verse(result, 'loop_cpu')}, engine {_per_verse(result, 'engine_cpu')}, "
            f"client {_per_verse(result, 'client_cpu')} (cores busy: {result['loop_cpu'] / wall:.2f}, "
            f"{result['engine_cpu'] / wall:.2f}, {result['client_cpu'] / wall:.2f}); mean batch "
            f"{result['mean_batch']:.1f} verses")

if __name__ == "__main__":
    main()
