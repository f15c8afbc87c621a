"""Running a plan: each run not yet done (resuming interrupted ones) as `aiayn train` in a child process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ...runtime.distributed import Dist
from ..run_folder import read_metrics
from .plan import Plan, Run, SweepError, write_toml

RESULT_FILE = "sweep_result.json"  # written into a run folder when its run has finished


def run_state(run: Run) -> str:
    """"done" (its final model and final evaluation are there), "resume" (checkpoints to continue) or "new"."""
    if (run.run_dir / RESULT_FILE).is_file():
        return "done"
    if final_record(run.run_dir) is not None:
        return "done"
    if any((run.run_dir / "checkpoints").glob("step_*")):
        return "resume"
    return "new"


def final_record(run_dir: Path) -> dict[str, Any] | None:
    """The evaluation of the final model: a dev record at the last logged step, once model/ is written."""
    if not (run_dir / "model" / "config.json").is_file() or not (run_dir / "metrics.jsonl").is_file():
        return None
    records = read_metrics(run_dir)
    last_step = max((r.get("step", 0) for r in records), default=0)
    finals = [r for r in records if "dev_ppl" in r and r.get("step") == last_step]
    return finals[-1] if finals else None




Launcher = Callable[[Run, list[str], int], int]  # (run, `aiayn train` arguments, threads) -> exit status


def subprocess_launcher(run: Run, argv: list[str], threads: int) -> int:
    """`python -m aiayn train ARGV` in a child process with `threads` threads, its output into run.log_file."""
    run.log_file.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with open(run.log_file, "a", encoding="utf-8") as log:
        return subprocess.run([sys.executable, "-m", "aiayn", "train", *argv], stdout=log, stderr=subprocess.STDOUT,
                              env=env, check=False).returncode


def execute(plan: Plan, workers: int = 1, threads: int = 0, launch: Launcher = subprocess_launcher,
            log: Callable[[str], None] = print, dist: Dist | None = None) -> None:
    """Run every run not yet done (resuming interrupted ones), `workers` at a time, threads split between them.

    With `dist` (under torchrun) every rank trains each run, but only rank 0 touches the sweep's files: it
    prepares the run folders before a barrier, and checks and records each finished run.
    """
    threads = max(1, (threads or os.cpu_count() or 1) // workers)
    dist = dist or Dist()
    check_unchanged(plan)
    if dist.is_main:
        for run in plan.runs:
            state = run_state(run)
            if state == "new" and run.run_dir.exists():  # stopped before its first checkpoint
                shutil.rmtree(run.run_dir)
            if state != "done":
                write_toml(run.settings, run.config_file)
    dist.barrier()
    todo = []
    for run in plan.runs:
        state = run_state(run)
        if state == "done":
            log(f"{run.name}: done, kept")
        else:
            todo.append((run, state))

    failed: list[str] = []  # after a failure no further run starts (those running finish)
    launched: list[str] = []

    def one(item: tuple[Run, str]) -> None:
        run, state = item
        if failed:
            return
        launched.append(run.name)
        try:
            train_one(run, state)
        except BaseException:
            failed.append(run.name)
            raise

    def train_one(run: Run, state: str) -> None:
        argv = ["--config", str(run.config_file), "--out", str(run.run_dir), "--threads", str(threads)]
        argv += ["--resume"] if state == "resume" else []
        log(f"{run.name}: {'resuming' if state == 'resume' else 'starting'} (log: {run.log_file})")
        started = time.perf_counter()
        status = launch(run, argv, threads)
        if status != 0:
            raise SweepError(f"run {run.name} failed (exit {status}): see {run.log_file}; fix it and run the "
                             f"same `aiayn sweep` again (finished runs are kept)")
        if not dist.is_main:  # rank 0 writes the final model and evaluation; the next run's start waits for it
            return
        record = final_record(run.run_dir)
        if record is None:
            raise SweepError(f"run {run.name} ended without a final model and evaluation: see {run.log_file}")
        (run.run_dir / RESULT_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")
        log(f"{run.name}: done in {time.perf_counter() - started:.0f}s, dev ppl {record['dev_ppl']:.2f}, "
            f"dev BLEU {record.get('dev_bleu', float('nan')):.2f}")

    if workers == 1:
        for item in todo:
            one(item)
        return
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(one, item) for item in todo]
    errors = [error for future in futures if (error := future.exception()) is not None]
    if not errors:
        return
    if not isinstance(errors[0], SweepError):
        raise errors[0]
    left = [run.name for run, _ in todo if run.name not in launched]
    others = [name for name in failed if f"run {name} " not in str(errors[0])]
    raise SweepError(f"{errors[0]}" + (f"; {', '.join(others)} failed too (see their logs)" if others else "") +
                     (f"; not started after the failure: {', '.join(left)}" if left else ""))


def check_unchanged(plan: Plan) -> None:
    """Refuse to continue runs whose settings file differs from the plan (the sweep file was edited)."""
    for run in plan.runs:
        if run.config_file.is_file() and run.run_dir.exists():
            try:
                old = tomllib.loads(run.config_file.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
                if run_state(run) == "new":  # nothing trained from it: written again below
                    continue
                raise SweepError(f"{run.config_file} is not valid TOML ({error}): delete {run.run_dir} to rerun "
                                 f"{run.name}") from None
            new = {k: v for k, v in run.settings.items() if v is not None}
            if old != new:
                changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                raise SweepError(f"run {run.name} in {plan.out} was started with other settings ({', '.join(changed)} "
                                 f"differ): use a new --out, or delete {run.run_dir} to rerun it")
