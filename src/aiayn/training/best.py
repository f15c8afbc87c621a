"""The best evaluation's model in best/ (and at the end in model/), and early stopping after `patience` evaluations
without a better score; the same for every task (each names its metrics in RankTrainer.best_metrics).

Not in the paper, which averages the last checkpoints instead (§6.1: `aiayn average`).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_write_text
from ..io.model_folder import save_model

BEST_DIR = "best"
BEST_FILE = "best.json"  # in best/: the step, the metric and its score
NONE = "none"


@dataclass
class BestKeeper:
    """The best score so far of one metric of the evaluation records, and the evaluations since it."""

    choice: str  # the keep_best setting: "bleu", "loss" or "none"
    key: str | None  # the record's field, e.g. "dev_bleu"; None: nothing is kept
    higher_is_better: bool = True
    patience: int = 0  # stop after this many evaluations without a better score; 0: never
    score: float | None = None
    step: int | None = None
    since: int = 0  # evaluations since the kept one
    evaluated: int | None = None  # the step of the last evaluation counted
    # a later evaluation within `tie` of the best score so far replaces the kept one: it has trained longer, and
    # a difference that small is noise (dev BLEU of a few hundred sentences); 0: only a better score
    tie: float = 0.0
    best_seen: float | None = None  # the best score so far (the kept one's, when tie is 0)

    @classmethod
    def for_run(cls, choice: str, metrics: dict[str, tuple[str, bool]], patience: int,
                tie: float = 0.0) -> BestKeeper:
        """The keeper of a run's keep_best choice among the task's `metrics` (choice -> (field, higher is better)),
        with a tie band of `tie` in the metric's units."""
        if choice == NONE:
            return cls(choice, None, patience=patience)
        key, higher = metrics[choice]
        return cls(choice, key, higher, patience, tie=tie)

    def update(self, record: dict[str, Any]) -> bool:
        """Count an evaluation record; True if it is kept: a score better than the best so far, or within the tie
        band of it (a record without the metric is not counted)."""
        if self.key is None or self.key not in record:
            return False
        value = float(record[self.key])
        self.evaluated = int(record["step"])
        sign = 1.0 if self.higher_is_better else -1.0
        best = self.best_seen if self.best_seen is not None else self.score  # a state from before best_seen
        margin = None if best is None else sign * (value - best)  # > 0: better than the best so far
        if margin is None or margin > 0:
            self.best_seen = value
        kept = margin is None or margin > 0 or (self.tie > 0 and margin >= -self.tie)
        if kept:
            self.score, self.step, self.since = value, int(record["step"]), 0
        else:
            self.since += 1
        return kept

    @property
    def out_of_patience(self) -> bool:
        """True once `patience` evaluations in a row brought no better score."""
        return self.key is not None and self.patience > 0 and self.since >= self.patience

    def describe(self) -> str:
        """E.g. "dev_bleu 12.34 at step 500"."""
        return f"{self.key} {self.score:.4g} at step {self.step}" if self.step is not None else "no evaluation yet"

    def state(self) -> dict[str, Any]:
        """What a checkpoint (and best/best.json) keeps, so a resumed run continues the comparison and the
        patience count."""
        return {"key": self.key, "score": self.score, "step": self.step, "since": self.since,
                "evaluated": self.evaluated, "best_seen": self.best_seen}

    def load(self, state: dict[str, Any] | None) -> None:
        """Continue from a checkpoint's state (ignored if it kept another metric, or none)."""
        if state and state.get("key") == self.key:
            self.score, self.step, self.since = state["score"], state["step"], state["since"]
            self.evaluated = state.get("evaluated")
            self.best_seen = state.get("best_seen", self.score)

    def resume(self, checkpoint: dict[str, Any] | None, run_dir: Path, step: int) -> None:
        """Continue from a checkpoint's state, or from best/best.json where that is newer: a run's last checkpoint
        is written before its final evaluation, whose result only best/ records. A best.json from beyond `step`
        (a resume from an older checkpoint) is not used."""
        self.load(checkpoint)
        saved = read_best(run_dir)
        if not saved or saved.get("metric") != self.key or saved.get("step") is None or saved["step"] > step:
            return
        evaluated = saved.get("evaluated", saved["step"])  # a best.json from before `evaluated` was written
        if evaluated > step or self.evaluated is not None and evaluated < self.evaluated:
            return
        since = saved.get("since", 0 if saved["step"] != self.step else self.since)
        self.score, self.step, self.since, self.evaluated = saved["score"], saved["step"], since, evaluated
        self.best_seen = saved.get("best_seen", self.score)


def read_best(run_dir: Path) -> dict[str, Any] | None:
    """run_dir/best/best.json ({step, metric, score, since, evaluated}), or None if there is none (or unreadable)."""
    try:
        saved = json.loads((run_dir / BEST_DIR / BEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) else None


def _best_json(keeper: BestKeeper) -> str:
    """best.json's text: the best step, its metric and score, and the evaluations counted since."""
    return json.dumps({"step": keeper.step, "metric": keeper.key, "score": keeper.score, "since": keeper.since,
                       "evaluated": keeper.evaluated, "best_seen": keeper.best_seen}) + "\n"


def note_evaluation(run_dir: Path, keeper: BestKeeper) -> None:
    """After an evaluation that was not better: best.json counts it (best/'s model stays), so a resume continues
    from what best/ holds."""
    if (run_dir / BEST_DIR).is_dir():
        atomic_write_text(run_dir / BEST_DIR / BEST_FILE, _best_json(keeper))


def save_best(run_dir: Path, model: Any, tokenizer: Any, keeper: BestKeeper) -> Path:
    """run_dir/best/: the model at keeper.step and best.json, written whole in a temporary folder and swapped in."""
    final, tmp, old = run_dir / BEST_DIR, run_dir / f".{BEST_DIR}.tmp", run_dir / f".{BEST_DIR}.old"
    for stale in (tmp, old):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    try:
        save_model(model, tmp, tokenizer)
        atomic_write_text(tmp / BEST_FILE, _best_json(keeper))
    except BaseException:  # e.g. a full disk: the previous best/ stays
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap(tmp, final, old)
    return final


def install_best(run_dir: Path, model_dir: Path) -> None:
    """Replace model_dir by a copy of run_dir/best/ (its model files; best.json stays in best/), swapped in whole."""
    source = run_dir / BEST_DIR
    tmp, old = model_dir.with_name(f".{model_dir.name}.tmp"), model_dir.with_name(f".{model_dir.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, ignore=shutil.ignore_patterns(BEST_FILE))
    _swap(tmp, model_dir, old)


def _swap(tmp: Path, final: Path, old: Path) -> None:
    """Put folder tmp in final's place: the old one renamed aside first, then deleted (no half folder on a kill)."""
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
