"""A run folder: config.json, tokenizer.json, train.json (settings), metrics.jsonl and curves.png."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from tokenizers import Tokenizer

from ..data.tokenizer import check_fits, load_tokenizer
from ..io.atomic import as_write_error, atomic_write, atomic_write_text
from ..io.model_folder import CONFIG_FILE, TOKENIZER_FILE, read_config, save_tokenizer
from ..model.config import ModelConfig

TRAIN_FILE = "train.json"
METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"


def metrics_writer(run_dir: Path) -> Callable[[dict[str, Any]], None]:
    """Append one JSON line per record to metrics.jsonl."""
    path = run_dir / METRICS_FILE

    def write(record: dict[str, Any]) -> None:
        try:
            with path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        except OSError as error:  # e.g. a full disk
            raise as_write_error(path, error) from None

    return write


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """All records of a run's metrics.jsonl."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line torn by a run killed mid-write; resume rewrites the file
            continue
    return [r for r in records if isinstance(r, dict)]


def truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop records after `step` (written after the checkpoint a resumed run starts from)."""
    kept = [r for r in read_metrics(run_dir) if r.get("step", 0) <= step]
    atomic_write_text(run_dir / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in kept))


TRANSLATION_LOSSES = (("loss", "train loss (smoothed)"), ("dev_loss", "dev loss (smoothed)"))
TRANSLATION_SCORES = (("dev_bleu", "dev BLEU"), ("test_bleu", "test BLEU"))


def plot_curves(run_dir: str | Path, losses: tuple[tuple[str, str], ...] = TRANSLATION_LOSSES,
                scores: tuple[tuple[str, str], ...] = TRANSLATION_SCORES, score_label: str = "BLEU") -> Path | None:
    """curves.png: training and dev loss against the step, dev and test BLEU (or other `scores`) against the
    minutes of training (atomic)."""
    records = read_metrics(run_dir)
    if not records:
        return None
    fig = Figure(figsize=(11, 4))  # no pyplot: no global figure list, no GUI backend
    ax_loss, ax_bleu = fig.subplots(1, 2)
    for key, label in losses:
        points = [(r["step"], r[key]) for r in records if key in r]
        if points:
            ax_loss.plot(*zip(*points), label=label, marker="." if key != "loss" or len(points) < 30 else None)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("cross entropy (nats/token)")
    ax_loss.legend()
    for key, label in scores:
        points = [(r["train_s"] / 60, r[key]) for r in records if key in r and "train_s" in r]
        if points:
            ax_bleu.plot(*zip(*points), label=label, marker="o")
    ax_bleu.set_xlabel("minutes of training (evaluations not counted)")
    ax_bleu.set_ylabel(score_label)
    if ax_bleu.lines:
        ax_bleu.legend()
    fig.tight_layout()
    path = Path(run_dir) / CURVES_FILE
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    return path


def read_run_tokenizer(run_dir: Path) -> tuple[Tokenizer, ModelConfig]:
    """A run folder's tokenizer and model settings, checked to fit each other."""
    tokenizer = load_tokenizer(run_dir / TOKENIZER_FILE)
    _, model_cfg = read_config(run_dir)
    check_fits(tokenizer, model_cfg, str(run_dir / TOKENIZER_FILE))
    return tokenizer, model_cfg


def write_run_config(run_dir: Path, model: Any) -> None:
    """RUN/config.json: the model's type and settings, which a resumed run builds its model from."""
    config = {"model_type": model.model_type, **model.cfg.to_dict()}
    atomic_write_text(run_dir / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True) + "\n")


def start_run_folder(run_dir: Path, model: Any, tokenizer: Any, settings: dict[str, Any],
                     fresh: bool) -> Callable[[dict[str, Any]], None]:
    """Rank 0: a fresh run's config.json, tokenizer.json and empty metrics (a resumed run keeps its own), the
    settings in train.json; returns the metrics.jsonl writer."""
    if fresh:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / METRICS_FILE).unlink(missing_ok=True)
        write_run_config(run_dir, model)
        save_tokenizer(tokenizer, run_dir / TOKENIZER_FILE)
    atomic_write_text(run_dir / TRAIN_FILE, json.dumps(settings, indent=2) + "\n")
    return metrics_writer(run_dir)


def drop_new_run_folder(run_dir: Path, fresh: bool) -> None:
    """Remove a run folder this run created (fresh) if it holds nothing but its prepared data store (data/), so
    that an unusable corpus leaves nothing behind."""
    if fresh and run_dir.is_dir() and all(p.name == "data" or p.name.startswith(".data.") for p in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)
