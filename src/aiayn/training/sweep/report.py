"""The sweep's report: each variant's mean and spread over its seeds, its change beside the paper's, as
results.csv, results.md and results.png (matplotlib's Figure API: no pyplot, no backend chosen)."""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from ...io.loading import load
from .plan import PAPER_KEYS, Plan, Run, SweepError, toml_value
from .run import RESULT_FILE, check_unchanged, final_record

NO_FIGURE = "—"  # a cell with nothing to show


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
    return final_record(run.run_dir)


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
    return " ".join(f"{k}={toml_value(v)}" for k, v in changes.items()) or "base"


def report(plan: Plan) -> list[Path]:
    """results.csv, .md and .png from the runs finished so far, running nothing; SweepError if none has finished."""
    check_unchanged(plan)
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
