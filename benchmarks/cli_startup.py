"""Start-up time of the `aiayn` command, one tree against another: before (the re-executing command line, whose
`import aiayn` imported torch) and after (a lazy `import aiayn`; the command sets OMP_WAIT_POLICY in-process).

Each command is a fresh process, OMP_WAIT_POLICY unset (as a user's shell has it), both trees alternated in every
round; medians of wall seconds, after one untimed warm-up of each (the page cache):

    python benchmarks/cli_startup.py --before /work/main/src --rounds 5

`aiayn --help` exits while parsing (the old command re-executed only after it); `aiayn translate MISSING x` is the
smallest command that gets past parsing (a user error, exit 1) and so shows the re-execution's cost.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).with_name("aiayn")  # the console script pip wrote (aiayn.cli:main)
COMMANDS = {
    "aiayn --help": ([str(SCRIPT), "--help"], 0),
    "aiayn translate MISSING x": ([str(SCRIPT), "translate", "/nonexistent/model", "x"], 1),
    'python -c "import aiayn.cli"': ([sys.executable, "-c", "import aiayn.cli"], 0),
}


def seconds(command: list[str], code: int, src: str) -> float:
    """Wall seconds of one run of `command` with `src` first on the path; checks its exit code."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = src
    started = time.perf_counter()
    run = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - started
    if run.returncode != code:
        sys.exit(f"cli_startup: {' '.join(command)} (PYTHONPATH={src}) exited {run.returncode}: {run.stderr[-300:]}")
    return elapsed


def main() -> None:
    """Print the median start-up seconds of each command under both trees, and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the src/ folder of the tree to compare against")
    parser.add_argument("--after", default=str(ROOT / "src"), help="the src/ folder measured (default: this tree's)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not SCRIPT.is_file():
        sys.exit(f"cli_startup: no `aiayn` script beside {sys.executable}: install the package (pip install -e .)")
    trees = {"before": args.before, "after": args.after}
    print(f"machine: {os.cpu_count()} cores, shared with other jobs (load average {os.getloadavg()[0]:.2f} at start)"
          f"; OMP_WAIT_POLICY unset, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
          f"before = {args.before}, after = {args.after}; {args.rounds} rounds, alternated, medians")
    times: dict[tuple[str, str], list[float]] = {(c, t): [] for c in COMMANDS for t in trees}
    for command, code in COMMANDS.values():
        for src in trees.values():
            seconds(command, code, src)  # warm-up
    for round_ in range(args.rounds):
        for name, (command, code) in COMMANDS.items():
            order = list(trees.items()) if round_ % 2 == 0 else list(trees.items())[::-1]
            for tree, src in order:
                times[name, tree].append(seconds(command, code, src))
    width = max(map(len, COMMANDS))
    print(f"{'command':<{width}} {'before s':>9} {'after s':>9} {'after/before':>12}  rounds (before | after)")
    for name in COMMANDS:
        before, after = (statistics.median(times[name, t]) for t in trees)
        rounds = " ".join(f"{s:.2f}" for s in times[name, "before"]) + " | " + \
            " ".join(f"{s:.2f}" for s in times[name, "after"])
        print(f"{name:<{width}} {before:>9.2f} {after:>9.2f} {after / before:>11.2f}x  {rounds}")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
