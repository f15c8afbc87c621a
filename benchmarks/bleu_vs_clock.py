"""Test BLEU against minutes of training for finished translation runs, with eole's measured point, as one PNG.

Each run folder contributes its dev BLEU along the way (greedy, a dashed line) and every test BLEU it
recorded (beam search: markers joined by a solid line). eole 0.6.4 (pre-LN; the small preset, 4,096-token
batches, warmup 1,000, peak 1e-3; same machine, corpus and split) reached test BLEU 11.86 at step 1,000,
about 3.2 s per step: one point at 53 minutes.

    python benchmarks/bleu_vs_clock.py runs/default-10m:"default, 10 min" runs/default-30m:"default, 30 min" \\
        runs/paper-30m:"--recipe paper" --out docs/bleu-vs-clock.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from aiayn.training.run_folder import read_metrics  # noqa: E402

EOLE_POINT = (1000 * 3.2 / 60, 11.86)  # (minutes, test BLEU) at step 1,000


def series(run_dir: Path, key: str) -> list[tuple[float, float]]:
    """(minutes of training, value) of every record of run_dir that has `key`, in step order."""
    return [(r["train_s"] / 60, r[key]) for r in read_metrics(run_dir) if key in r and "train_s" in r]


def main() -> None:
    """Plot the runs named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR[:LABEL]", help="finished translation run folders")
    parser.add_argument("--out", default="bleu-vs-clock.png", help="the PNG to write")
    parser.add_argument("--no-eole", action="store_true", help="leave out eole's point")
    parser.add_argument("--title", default="English->Spanish, bundled Bible, test = John (2 CPU cores)")
    args = parser.parse_args()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for spec in args.runs:
        folder, _, label = spec.partition(":")
        run_dir = Path(folder)
        if not (run_dir / "metrics.jsonl").is_file():
            parser.error(f"{run_dir} has no metrics.jsonl: not a run folder")
        label = label or run_dir.name
        test = series(run_dir, "test_bleu")
        line = ax.plot(*zip(*test), marker="o", label=f"{label}: test BLEU (beam)")[0] if test else None
        dev = series(run_dir, "dev_bleu")
        if dev:
            ax.plot(*zip(*dev), linestyle="--", alpha=0.6, color=line.get_color() if line else None,
                    label=f"{label}: dev BLEU (greedy)")
        for minutes, bleu in test[-1:]:
            ax.annotate(f"{bleu:.1f}", (minutes, bleu), textcoords="offset points", xytext=(4, 4))
    if not args.no_eole:
        ax.plot(*EOLE_POINT, marker="*", markersize=12, linestyle="none", color="black", label="eole 0.6.4, step 1,000")
    ax.set_xlabel("minutes of training (evaluations not counted)")
    ax.set_ylabel("BLEU (sacreBLEU)")
    ax.set_title(args.title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
