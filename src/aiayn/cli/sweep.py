"""`aiayn sweep`: a grid of `aiayn train` runs from one TOML file (e.g. the paper's Table 3), with a results table."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..runtime import distributed
from ..runtime.device import resolve_device
from ..training.sweep import Run, describe, execute, plan_sweep, report, subprocess_launcher, summarise, write_results
from . import train
from .common import UserError, int_at_least, user_errors

EXAMPLE_FILE = """\
seeds = [1, 2]                 # each variant runs once per seed (a variant may name its own `seeds`)

[base]                         # `aiayn train` settings: the keys of a --config file (the flags' names with _)
preset = "small"
steps = 600
time_budget = "none"           # no wall-clock limit: every run takes its steps

[variants.base]                # the row the others are compared with (or name one: reference_variant = "NAME")
seeds = [1, 2, 3]
paper = { ppl = 4.92, bleu = 25.8 }   # a publication's dev figures for this row (optional; either key)

[variants.heads-1]
n_heads = 1
note = "Table 3 (A)"
paper = { ppl = 5.29, bleu = 24.9 }   # results.md sets our change from base beside the paper's, with a verdict
"""


def run(args: argparse.Namespace) -> None:
    """Run every (variant, seed) of a sweep file as an `aiayn train` run, then write results.csv, .md and .png.

    Every run is checked before the first starts. Finished runs are kept; interrupted ones continue from their
    last checkpoint (`aiayn train --resume`): run the same command again after a stop. Under torchrun the runs
    go one after another, each data-parallel over the ranks, trained in this process. --report writes the
    results from the runs finished so far and runs nothing (safe beside a sweep that is running).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and args.workers > 1:
        raise UserError("under torchrun every run is data-parallel over the ranks: drop --workers")
    try:
        plan = plan_sweep(args.config, args.out)
        if args.dry_run:
            for variant in plan.variants:
                print(f"{variant.name}: {describe(variant.changes)}; seeds {variant.seeds}")
            print(f"{len(plan.runs)} runs into {args.out}")
            return
        if args.report:
            paths = report(plan)
        else:
            with distributed.held_group():  # under torchrun the runs share one process group
                dist = distributed.init(resolve_device(str(plan.runs[0].settings.get("device") or "auto")))
                execute(plan, args.workers, args.threads, _in_process if world > 1 else subprocess_launcher,
                        log=_log, dist=dist)
            if os.environ.get("RANK", "0") != "0":
                return
            paths = write_results(plan, summarise(plan))
    except user_errors() as error:
        raise UserError(str(error)) from None
    print((args.out / "results.md").read_text(encoding="utf-8"), end="")
    print("wrote " + ", ".join(str(p) for p in paths))


def _log(line: str) -> None:
    """A progress line (rank 0 under torchrun)."""
    if os.environ.get("RANK", "0") == "0":
        print(f"aiayn sweep: {line}", flush=True)


def _in_process(_run: Run, argv: list[str], threads: int) -> int:
    """`aiayn train ARGV` in this process (under torchrun each rank trains its part); 0 when done."""
    parser = argparse.ArgumentParser(prog="aiayn")
    train.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", *argv])
    args.owns_process = False
    try:
        args.run(args)
    except UserError as error:
        print(f"aiayn train: error: {error}", flush=True)
        return 1
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    """`aiayn sweep CONFIG.toml --out DIR [--workers N] [--threads N]`."""
    parser = commands.add_parser(
        "sweep", help="a grid of training runs from a TOML file (e.g. the paper's Table 3), with a results table",
        description=run.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  aiayn sweep configs/table3.toml --out runs/table3\n"
               "  aiayn sweep configs/table3.toml --out runs/table3 --workers 2   # two runs at once\n"
               "  aiayn sweep configs/table3.toml --out runs/table3 --dry-run     # list the runs only\n"
               "  aiayn sweep configs/table3.toml --out runs/table3 --report      # results so far; runs nothing\n"
               "  torchrun --nproc_per_node 4 -m aiayn sweep configs/table3.toml --out runs/table3\n\n"
               "a sweep file:\n" + EXAMPLE_FILE + "\nDIR gets runs/NAME-seedS/ (run folders), configs/ (each run's "
               "--config file), logs/, and results.csv, results.md, results.png (one row per variant: mean and "
               "sample standard deviation over seeds of dev perplexity per target token and dev BLEU, parameters, "
               "steps; with a reference row, each row's change from it beside the `paper` figures' change, and "
               "whether the direction is reproduced, not reproduced or within noise).")
    parser.add_argument("config", type=Path, metavar="CONFIG.toml", help="the sweep file")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder of the runs and results")
    parser.add_argument("--workers", type=int_at_least(1), default=1,
                        help="runs at once, each a child process with its share of the threads (default 1)")
    parser.add_argument("--threads", type=int_at_least(0), default=0,
                        help="threads in all, split evenly between the workers (default 0: every core)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="check the file and list the runs; train nothing")
    mode.add_argument("--report", action="store_true",
                      help="write results.csv, .md and .png from the runs finished so far; train nothing")
    parser.set_defaults(run=run)
