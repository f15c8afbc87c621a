"""Thread settings under contention: a small-preset training step with 2 threads (OMP_WAIT_POLICY ACTIVE or
PASSIVE) or 1 thread, with and without a busy process holding one core.

OpenMP threads that spin-wait (ACTIVE) lose badly when another process holds a core: the spinning thread
and the busy process fight over it. Each setting runs in a fresh process (the policy is read when OpenMP
starts); settings are interleaved round by round; medians of seconds per step are printed.

    python benchmarks/contention.py --rounds 3 --steps 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

SETTINGS = {"2 threads, ACTIVE": (2, "ACTIVE"), "2 threads, PASSIVE": (2, "PASSIVE"), "1 thread": (1, "PASSIVE")}

CHILD = """
import sys, time, torch
sys.path.insert(0, {bench!r})
import train as t
torch.set_num_threads({threads})
cfg = t.config_for("small"); s = t.PRESETS["small"]
step = t.step_fn(t.build("aiayn", cfg), t.make_batch(cfg.vocab_size, s["batch"], s["src_len"], s["tgt_len"]),
                 torch.device("cpu"))
step()
times = []
for _ in range({steps}):
    start = time.perf_counter(); step(); times.append(time.perf_counter() - start)
print(sorted(times)[len(times) // 2])
"""


def run_setting(threads: int, policy: str, steps: int) -> float:
    """Median seconds per step of a fresh process with these thread settings."""
    env = {**os.environ, "OMP_WAIT_POLICY": policy, "OMP_NUM_THREADS": str(threads)}
    code = CHILD.format(bench=os.path.dirname(os.path.abspath(__file__)), threads=threads, steps=steps)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Print seconds per step for each setting, with and without a busy core."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    print(f"cpus={os.cpu_count()}, load average {os.getloadavg()[0]:.1f} at start; each setting in its own process")
    for busy in (False, True):
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            times: dict[str, list[float]] = {name: [] for name in SETTINGS}
            for _ in range(args.rounds):
                for name, (threads, policy) in SETTINGS.items():
                    times[name].append(run_setting(threads, policy, args.steps))
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
        label = "one core held by a busy process" if busy else "no extra load"
        for name, values in times.items():
            print(f"{label:32} {name:20} {statistics.median(values):6.2f} s/step  rounds: "
                  + " ".join(f"{v:.2f}" for v in values))


if __name__ == "__main__":
    main()
