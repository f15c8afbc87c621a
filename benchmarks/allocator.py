"""glibc malloc settings and the CPU training step: page faults, seconds and resident memory per step.

Malloc settings are process-wide, so each setting is a fresh process (this script, run once per setting
and alternated by the caller: A B A B ...). It times the aiayn contender of benchmarks/train.py (same
model, batch and step) and prints one JSON line: per-step seconds, minor page faults, user/system CPU
seconds and VmRSS, then VmHWM.

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647 python benchmarks/allocator.py --preset paper-base
    python benchmarks/allocator.py --preset paper-base --tune-allocator   # aiayn.runtime's mallopt call
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

sys.path.insert(0, __file__.rsplit("/", 1)[0])


def status_kb(key: str) -> int:
    """A /proc/self/status field in kB (VmRSS, VmHWM)."""
    with open("/proc/self/status") as handle:
        return int(next(line for line in handle if line.startswith(key + ":")).split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small", choices=("small", "paper-base"))
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tune-allocator", action="store_true",
                        help="call aiayn.runtime.allocator.tune_cpu_allocator()")
    parser.add_argument("--label", default="", help="a name for this setting in the output")
    args = parser.parse_args()
    loadavg = open("/proc/loadavg").read().split()[0]
    tuned = None
    if args.tune_allocator:
        from aiayn.runtime.allocator import tune_cpu_allocator

        tuned = tune_cpu_allocator()
    import torch
    import train
    from common import configure_threads

    threads = configure_threads(args.threads)
    cfg = train.config_for(args.preset)
    shape = train.PRESETS[args.preset]
    batch = train.make_batch(cfg.vocab_size, shape["batch"], shape["src_len"], shape["tgt_len"])
    step = train.contender_step("aiayn", cfg, batch, torch.device("cpu"))
    for _ in range(args.warmup):
        step()
    rows = []
    for _ in range(args.steps):
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        step()
        seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
        rows.append(dict(s=round(seconds, 4), faults=after.ru_minflt - before.ru_minflt,
                         user=round(after.ru_utime - before.ru_utime, 3),
                         sys=round(after.ru_stime - before.ru_stime, 3), rss_mb=status_kb("VmRSS") // 1024))
    malloc_env = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    print(json.dumps(dict(label=args.label, preset=args.preset, loadavg_start=loadavg, threads=threads,
                          malloc_env=malloc_env, tuned=tuned, steps=rows, hwm_mb=status_kb("VmHWM") // 1024)))


if __name__ == "__main__":
    main()
