"""A grid of training runs from one TOML file (e.g. the paper's Table 3): plan, run (resumably), summarise.

The file has a `[base]` table of `aiayn train` settings (the keys of a `--config` file), a top-level `seeds`
list, and one `[variants.NAME]` table per row: the settings it changes from the base, optionally its own
`seeds`, a `note` and a publication's figures for that row, `paper = { ppl = 5.29, bleu = 24.9 }`. Each
(variant, seed) is one `aiayn train --config FILE --out DIR/runs/NAME-seedS` run; the sweep writes results.csv,
results.md and results.png into DIR. Each row's change from the reference row (top-level `reference_variant`,
default "base") is set beside the publication's change, with a verdict: reproduced, not reproduced or within
noise.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from ..io.loading import load
from ..runtime.distributed import Dist
from .run_folder import read_metrics
from .translation import TrainConfig, TrainingError

RESULT_FILE = "sweep_result.json"  # written into a run folder when its run has finished
SWEEP_KEYS = ("seeds", "note", "paper")  # a variant's keys that are the sweep's, not `aiayn train`'s
PAPER_KEYS = ("ppl", "bleu")  # the figures a `paper` table may hold
NO_FIGURE = "—"  # a cell with nothing to show
OWN_KEYS = ("out", "seed", "threads", "resume")  # set by the sweep for every run
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=+-]*")


class SweepError(TrainingError):
    """A sweep file or folder that cannot be run as asked; the message names the entry and the fix."""


@dataclass
class Run:
    """One training run: a variant at one seed, its `aiayn train` settings and its folder."""

    variant: str
    seed: int
    settings: dict[str, Any]  # the --config file's keys (base + variant + seed)
    run_dir: Path
    config_file: Path
    log_file: Path

    @property
    def name(self) -> str:
        """NAME-seedS, the run folder's name."""
        return f"{self.variant}-seed{self.seed}"


@dataclass
class Variant:
    """A row of the table: the settings it changes from the base, a note, its seeds."""

    name: str
    changes: dict[str, Any]
    seeds: list[int]
    note: str = ""
    paper: dict[str, float] = field(default_factory=dict)  # a publication's dev figures: "ppl", "bleu"
    runs: list[Run] = field(default_factory=list)


@dataclass
class Plan:
    """Every run of a sweep, checked before the first starts."""

    source: Path
    out: Path
    base: dict[str, Any]
    variants: list[Variant]
    reference: str | None = None  # the variant every row's change is measured from

    @property
    def runs(self) -> list[Run]:
        """All runs, variant by variant, seed by seed."""
        return [run for variant in self.variants for run in variant.runs]


def plan_sweep(path: str | Path, out: str | Path) -> Plan:
    """Read the sweep file and check every run's settings (keys, values, a buildable model): SweepError if not."""
    path, out = Path(path), Path(out)
    if not path.is_file():
        raise SweepError(f"sweep file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise SweepError(f"{path} is not valid TOML: {error}") from None
    unknown = sorted(set(data) - {"base", "seeds", "variants", "reference_variant"})
    if unknown:
        raise SweepError(f"{path}: unknown top-level key(s) {unknown}: a sweep file has `seeds`, "
                         f"`reference_variant`, [base] and [variants.NAME] tables")
    base = data.get("base", {})
    if not isinstance(base, dict):
        raise SweepError(f"{path}: `base` must be a table of `aiayn train` settings ([base])")
    seeds = _seeds(data.get("seeds", [1]), f"{path}: seeds")
    variants_data = data.get("variants")
    if not isinstance(variants_data, dict) or not variants_data:
        raise SweepError(f"{path} has no [variants.NAME] table: name at least one variant (an empty table, "
                         f"[variants.base], runs the base as it is)")
    for key in OWN_KEYS:
        if key in base:
            raise SweepError(f"{path}: [base] sets {key!r}, which the sweep sets for every run "
                             f"(seed: the `seeds` lists; threads: `aiayn sweep --threads`; out: --out)")
    if "paper" in base:
        raise SweepError(f"{path}: [base] sets 'paper', which is a row's: put the publication's base figures in "
                         f"[variants.base] as paper = {{ ppl = 4.92, bleu = 25.8 }}")
    variants = []
    for name, changes in variants_data.items():
        where = f"{path}: [variants.{name}]"
        if not isinstance(changes, dict):
            raise SweepError(f"{where} must be a table of settings")
        if not NAME.fullmatch(name):
            raise SweepError(f"{where}: a variant's name becomes a folder name: use letters, digits and _ . = + -")
        for key in OWN_KEYS:
            if key in changes:
                raise SweepError(f"{where} sets {key!r}, which the sweep sets for every run (seeds: `seeds = [..]`)")
        nested = [key for key, value in changes.items() if isinstance(value, dict) and key != "paper"]
        if nested:
            raise SweepError(f"{where} holds the table(s) {nested}: a dot in a table name nests tables; quote "
                             f"names with dots, as [variants.\"{name}.{nested[0]}\"]")
        variant = Variant(name, {k: v for k, v in changes.items() if k not in SWEEP_KEYS},
                          _seeds(changes.get("seeds", seeds), f"{where} seeds"), str(changes.get("note", "")),
                          _paper(changes.get("paper", {}), f"{where} paper"))
        for seed in variant.seeds:
            settings = {**base, **variant.changes, "seed": seed}
            try:
                TrainConfig.from_dict(settings, where)  # every key known, every value allowed, the model buildable
            except TrainingError as error:
                message = str(error)
                raise SweepError(message if message.startswith(where) else f"{where}: {message}") from None
            run_name = f"{name}-seed{seed}"
            variant.runs.append(Run(name, seed, settings, out / "runs" / run_name, out / "configs" / f"{run_name}.toml",
                                    out / "logs" / f"{run_name}.log"))
        variants.append(variant)
    names = [variant.name for variant in variants]
    reference = data.get("reference_variant", "base" if "base" in names else None)
    if reference is not None and reference not in names:
        raise SweepError(f"{path}: reference_variant = {reference!r} is not a variant: name one of {names}")
    return Plan(path, out, base, variants, reference)


def _seeds(value: Any, where: str) -> list[int]:
    """A non-empty list of distinct integers, or a SweepError naming `where`."""
    if not isinstance(value, list) or not value or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           for s in value) or len(set(value)) != len(value):
        raise SweepError(f"{where} must be a non-empty list of distinct integers, got {value!r}")
    return list(value)


def _paper(value: Any, where: str) -> dict[str, float]:
    """A table of a publication's figures (ppl, bleu: finite numbers), or a SweepError naming `where`."""
    fix = "write it as paper = { ppl = 5.29, bleu = 24.9 } (either key may be left out)"
    if not isinstance(value, dict):
        raise SweepError(f"{where} must be a table of the publication's dev figures: {fix}, got {value!r}")
    unknown = sorted(set(value) - set(PAPER_KEYS))
    if unknown:
        raise SweepError(f"{where} has unknown key(s) {unknown}: {fix}")
    for key, number in value.items():
        if not isinstance(number, (int, float)) or isinstance(number, bool) or not math.isfinite(number):
            raise SweepError(f"{where}: {key} must be a number, got {number!r}: {fix}")
    return {key: float(value[key]) for key in PAPER_KEYS if key in value}


def run_state(run: Run) -> str:
    """"done" (its final model and final evaluation are there), "resume" (checkpoints to continue) or "new"."""
    if (run.run_dir / RESULT_FILE).is_file():
        return "done"
    if _final_record(run.run_dir) is not None:
        return "done"
    if any((run.run_dir / "checkpoints").glob("step_*")):
        return "resume"
    return "new"


def _final_record(run_dir: Path) -> dict[str, Any] | None:
    """The evaluation of the final model: a dev record at the last logged step, once model/ is written."""
    if not (run_dir / "model" / "config.json").is_file() or not (run_dir / "metrics.jsonl").is_file():
        return None
    records = read_metrics(run_dir)
    last_step = max((r.get("step", 0) for r in records), default=0)
    finals = [r for r in records if "dev_ppl" in r and r.get("step") == last_step]
    return finals[-1] if finals else None


def write_toml(settings: dict[str, Any], path: Path) -> None:
    """Top-level keys of strings, numbers, booleans and lists of them, as a TOML file."""
    lines = [f"{key} = {_toml_value(value)}" for key, value in settings.items() if value is not None]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)


def _toml_value(value: Any) -> str:
    """One TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return toml_string(str(value))


def toml_string(text: str) -> str:
    """A TOML basic string of any text, as UTF-8 (JSON's \\ud83d-style surrogate escapes are invalid TOML): quotes,
    backslashes and control characters escaped, every other character as itself."""
    escaped = "".join("\\" + char if char in '"\\' else f"\\u{ord(char):04X}" if ord(char) < 0x20 or ord(char) == 0x7F
                      else char for char in text)
    return f'"{escaped}"'


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
    _check_unchanged(plan)
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
        record = _final_record(run.run_dir)
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


def _check_unchanged(plan: Plan) -> None:
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


@dataclass
class Row:
    """One variant's results over its finished seeds, and its change from the reference row beside the paper's."""

    variant: str
    note: str
    changes: str
    seeds: int
    steps: int
    params: int
    dev_ppl_mean: float
    dev_ppl_std: float
    dev_bleu_mean: float
    dev_bleu_std: float
    dev_ppl_delta: float | None = None  # our mean minus the reference row's
    ppl_noise: float | None = None  # 2 x the standard error of that difference (None: one seed on both rows)
    paper_ppl_delta: float | None = None  # the publication's figure minus its reference row's
    ppl_verdict: str = NO_FIGURE
    dev_bleu_delta: float | None = None
    bleu_noise: float | None = None
    paper_bleu_delta: float | None = None
    bleu_verdict: str = NO_FIGURE


VERDICT_RULE = ("noise = 2 × the standard error of the difference of the two means, sqrt(s_v²/n_v + s_r²/n_r) "
                "(a one-seed row borrows the other row's spread; \"one seed\" when both rows have one seed); "
                "|Δ ours| ≤ noise is \"within noise\", otherwise \"reproduced\" when Δ ours has the sign of "
                "the paper's Δ and \"not reproduced\" when it has the other sign or the paper's Δ is 0; "
                f"\"{NO_FIGURE}\" where the paper has no figure")


def summarise(plan: Plan) -> list[Row]:
    """One row per variant with any finished run: mean and sample standard deviation over its seeds, compared."""
    rows = []
    for variant in plan.variants:
        finished = [(run, record) for run in variant.runs if (record := _result(run)) is not None]
        if not finished:
            continue
        records = [record for _, record in finished]
        params = load(finished[0][0].run_dir / "model").num_parameters()
        ppl = [r["dev_ppl"] for r in records]
        bleu = [r.get("dev_bleu", math.nan) for r in records]
        rows.append(Row(variant.name, variant.note, describe(variant.changes), len(records),
                        max(r["step"] for r in records), params, statistics.fmean(ppl), _spread(ppl),
                        statistics.fmean(bleu), _spread(bleu)))
    _compare(plan, rows)
    return rows


def _result(run: Run) -> dict[str, Any] | None:
    """A finished run's final evaluation: its RESULT_FILE, or its final record if the sweep stopped first."""
    path = run.run_dir / RESULT_FILE
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    return _final_record(run.run_dir)


def _spread(values: list[float]) -> float:
    """Sample standard deviation (0 for one value)."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _compare(plan: Plan, rows: list[Row]) -> None:
    """Fill each row's change from the reference row, the paper's change and the verdict on its direction."""
    reference = next((r for r in rows if r.variant == plan.reference), None)
    if reference is None:
        return
    papers = {variant.name: variant.paper for variant in plan.variants}
    for row in rows:
        if row is reference:
            row.ppl_verdict = row.bleu_verdict = "reference"
            continue
        for metric in PAPER_KEYS:
            mean, std = getattr(row, f"dev_{metric}_mean"), getattr(row, f"dev_{metric}_std")
            ref_mean, ref_std = getattr(reference, f"dev_{metric}_mean"), getattr(reference, f"dev_{metric}_std")
            ours = mean - ref_mean if math.isfinite(mean) and math.isfinite(ref_mean) else None
            band = noise(std, row.seeds, ref_std, reference.seeds) if ours is not None else None
            paper_row, paper_ref = papers[row.variant], papers[reference.variant]
            # rounded so that equal published figures give exactly 0
            paper = (round(paper_row[metric] - paper_ref[metric], 9) if metric in paper_row and metric in paper_ref
                     else None)
            setattr(row, f"dev_{metric}_delta", ours)
            setattr(row, f"{metric}_noise", band)
            setattr(row, f"paper_{metric}_delta", paper)
            setattr(row, f"{metric}_verdict", verdict(ours, band, paper))


def noise(std: float, n: int, ref_std: float, ref_n: int) -> float | None:
    """2 x the standard error of a difference of means; a one-seed side borrows the other's spread (None: both one)."""
    if n < 2 and ref_n < 2:
        return None
    std = std if n > 1 else ref_std
    ref_std = ref_std if ref_n > 1 else std
    return 2 * math.sqrt(std**2 / n + ref_std**2 / ref_n)


def verdict(ours: float | None, band: float | None, paper: float | None) -> str:
    """Whether our change has the paper's direction (VERDICT_RULE), "one seed" without a noise band, else NO_FIGURE."""
    if paper is None or ours is None:
        return NO_FIGURE
    if band is None:
        return "one seed"
    if abs(ours) <= band:
        return "within noise"
    if paper == 0:
        return "not reproduced"
    return "reproduced" if (ours > 0) == (paper > 0) else "not reproduced"


def describe(changes: dict[str, Any]) -> str:
    """The settings a variant changes, as `key=value` pairs ("base" for none)."""
    return " ".join(f"{k}={_toml_value(v)}" for k, v in changes.items()) or "base"


def report(plan: Plan) -> list[Path]:
    """results.csv, .md and .png from the runs finished so far, running nothing; SweepError if none has finished."""
    _check_unchanged(plan)
    rows = summarise(plan)
    if not rows:
        raise SweepError(f"no run in {plan.out / 'runs'} has finished yet: nothing to report (`aiayn sweep` without "
                         f"--report runs them)")
    return write_results(plan, rows)


def write_results(plan: Plan, rows: list[Row]) -> list[Path]:
    """results.csv, results.md and results.png in plan.out; returns their paths."""
    plan.out.mkdir(parents=True, exist_ok=True)
    names = list(Row.__dataclass_fields__)
    csv_path = plan.out / "results.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for row in rows:
            writer.writerow([_cell(getattr(row, n)) for n in names])
    md_path = plan.out / "results.md"
    md_path.write_text("\n".join(_markdown(plan, rows)) + "\n", encoding="utf-8")
    png_path = plan.out / "results.png"
    _plot(rows, png_path)
    return [csv_path, md_path, png_path]


def _markdown(plan: Plan, rows: list[Row]) -> list[str]:
    """The lines of results.md: the table, and with a reference row, the changes and verdicts and their rule."""
    finished = sum(1 for run in plan.runs if _result(run) is not None)
    lines = [f"Sweep {plan.source.name}: dev perplexity per target token and dev BLEU, mean ± sample standard "
             f"deviation over seeds ({finished} of {len(plan.runs)} runs finished).", ""]
    compared = plan.reference is not None
    head = ["variant", "changes", "seeds", "steps", "params (M)", "dev PPL"]
    head += ["Δ PPL (± noise)", "paper Δ PPL", "PPL verdict"] if compared else []
    head += ["dev BLEU"]
    head += ["Δ BLEU (± noise)", "paper Δ BLEU", "BLEU verdict"] if compared else []
    head += ["note"]
    lines += ["| " + " | ".join(head) + " |",
              "|" + "|".join("---" if name in ("variant", "changes", "note") or "verdict" in name else "---:"
                             for name in head) + "|"]
    for r in rows:
        cells = [r.variant, r.changes, str(r.seeds), str(r.steps), f"{r.params / 1e6:.2f}",
                 f"{r.dev_ppl_mean:.2f} ± {r.dev_ppl_std:.2f}"]
        cells += _delta_cells(r.dev_ppl_delta, r.ppl_noise, r.paper_ppl_delta, r.ppl_verdict) if compared else []
        cells += [f"{r.dev_bleu_mean:.2f} ± {r.dev_bleu_std:.2f}"]
        cells += _delta_cells(r.dev_bleu_delta, r.bleu_noise, r.paper_bleu_delta, r.bleu_verdict) if compared else []
        cells += [r.note]
        lines.append("| " + " | ".join(cells) + " |")
    if compared:
        lines += ["", f"Δ: a row's mean minus the reference row's ({plan.reference}), ours and the paper's (the "
                  f"sweep file's `paper` figures); verdict on the direction: {VERDICT_RULE}."]
        if not any(r.variant == plan.reference for r in rows):
            lines += ["", f"The reference row {plan.reference} has no finished run yet: no Δ."]
    return lines


def _delta_cells(ours: float | None, band: float | None, paper: float | None, verdict_: str) -> list[str]:
    """Δ ours (± noise), the paper's Δ and the verdict, as table cells."""
    mine = NO_FIGURE if ours is None else f"{ours:+.2f}" + ("" if band is None else f" (± {band:.2f})")
    theirs = NO_FIGURE if paper is None else ("0" if paper == 0 else f"{paper:+.2f}")
    return [mine, theirs, verdict_]


def _cell(value: Any) -> Any:
    """A CSV cell: floats rounded to 4 decimals, nothing for no value."""
    if value is None:
        return ""
    return round(value, 4) if isinstance(value, float) else value


def _plot(rows: list[Row], path: Path) -> None:
    """Dev perplexity and dev BLEU per variant (± one standard deviation); below, each row's change and the paper's."""
    names = [r.variant for r in rows]
    compared = any(r.dev_ppl_delta is not None or r.dev_bleu_delta is not None for r in rows)
    fig = Figure(figsize=(max(6.0, 0.5 * len(rows) + 3), 8 if compared else 4), layout="constrained")
    axes = fig.subplots(2 if compared else 1, 2, squeeze=False)  # no pyplot: no backend, no global figure list
    for ax, metric, label in ((axes[0][0], "ppl", "dev perplexity (per target token)"),
                              (axes[0][1], "bleu", "dev BLEU")):
        ax.bar(names, [getattr(r, f"dev_{metric}_mean") for r in rows],
               yerr=[getattr(r, f"dev_{metric}_std") for r in rows], capsize=3,
               color="tab:blue" if metric == "ppl" else "tab:green")
        ax.set_ylabel(label)
        ax.tick_params(axis="x", labelrotation=60)
    if compared:
        places = list(range(len(rows)))  # positions, not names: matplotlib cannot place an all-NaN series by name
        for ax, metric, label in ((axes[1][0], "ppl", "Δ dev perplexity from the reference"),
                                  (axes[1][1], "bleu", "Δ dev BLEU from the reference")):
            ours = [0.0 if r.ppl_verdict == "reference" else _or_nan(getattr(r, f"dev_{metric}_delta")) for r in rows]
            band = [getattr(r, f"{metric}_noise") or 0.0 for r in rows]
            ax.bar(places, ours, yerr=band, capsize=3, color="tab:blue" if metric == "ppl" else "tab:green",
                   label="ours (± noise)")
            paper = [_or_nan(getattr(r, f"paper_{metric}_delta")) for r in rows]
            if not all(math.isnan(p) for p in paper):
                ax.scatter(places, paper, color="black", marker="D", zorder=3, label="paper")
            ax.axhline(0.0, color="grey", linewidth=0.8)
            ax.set_xticks(places, names, rotation=60)
            ax.set_ylabel(label)
            ax.legend(fontsize="small")
    fig.savefig(path, dpi=100)  # Figure.savefig renders with Agg for a .png, whatever pyplot's backend is


def _or_nan(value: float | None) -> float:
    """NaN for no value (matplotlib leaves it out)."""
    return math.nan if value is None else value
