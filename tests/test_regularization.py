"""The default recipe's dropout planned from the run's epochs, and keep-best with a dev-loss band (issue #31)."""

import json
import math
from pathlib import Path

import pytest

from aiayn.model.dropout import Dropout
from aiayn.training.best import BestKeeper
from aiayn.training.regularization import DROPOUT_BY_EPOCHS, DropoutPlan, dropout_for, planned_epochs
from aiayn.training.translation import TrainConfig, Trainer, train

from .helpers_translation import write_corpus


# ---------------------------------------------------------------- the rule, by hand
def test_planned_epochs_are_steps_times_batches_over_an_epochs_batches() -> None:
    assert planned_epochs(2400, 1, 949) == pytest.approx(2.5290, abs=1e-4)  # ten minutes of the Bible
    assert planned_epochs(2400, 1, 185) == pytest.approx(12.973, abs=1e-3)  # ten minutes of a 5k-pair corpus
    assert planned_epochs(100, 4, 50) == 8.0  # --accumulate 4 (or 4 ranks): four batches a step
    with pytest.raises(ValueError, match="must be >= 1"):
        planned_epochs(10, 1, 0)


@pytest.mark.parametrize(("epochs", "dropout"), [(0.0, 0.0), (2.53, 0.0), (4.9, 0.0), (5.0, 0.1), (12.3, 0.1),
                                                 (13.99, 0.1), (14.0, 0.3), (70.0, 0.3)])
def test_dropout_follows_the_planned_epochs(epochs: float, dropout: float) -> None:
    assert dropout_for(epochs) == dropout


def test_the_rule_covers_every_epoch_count_and_refuses_a_negative_one() -> None:
    assert DROPOUT_BY_EPOCHS[-1][0] == math.inf
    assert [d for _, d in DROPOUT_BY_EPOCHS] == sorted(d for _, d in DROPOUT_BY_EPOCHS)  # more epochs, more dropout
    with pytest.raises(ValueError, match="must be >= 0"):
        dropout_for(-1.0)


def test_the_plan_says_what_it_chose_and_why() -> None:
    plan = DropoutPlan.of(2400, 1, 195)
    assert plan.dropout == 0.1
    assert plan.describe().startswith("12.3 epochs planned: dropout 0.1")


# ---------------------------------------------------------------- keep-best with a tie band
BLEU = {"bleu": ("dev_bleu", True), "loss": ("dev_loss", False)}


def _records(*rows: tuple[int, float]) -> list[dict]:
    return [{"step": step, "dev_bleu": bleu, "dev_loss": 5.0} for step, bleu in rows]


def _kept(keeper: BestKeeper, records: list[dict]) -> list[bool]:
    return [keeper.update(record) for record in records]


def test_without_a_tie_only_a_higher_dev_bleu_is_kept() -> None:
    keeper = BestKeeper.for_run("bleu", BLEU, 0, tie=0.0)
    assert _kept(keeper, _records((100, 4.0), (200, 5.0), (300, 5.0), (400, 4.9))) == [True, True, False, False]
    assert (keeper.step, keeper.score, keeper.since) == (200, 5.0, 2)


def test_a_tie_keeps_the_latest_evaluation_within_it_of_the_best_so_far() -> None:
    keeper = BestKeeper.for_run("bleu", BLEU, 0, tie=0.5)
    # best so far: 4.0, 5.0, 5.0, 5.0, 6.0; kept when >= best - 0.5: 4.6 is, 4.4 is not; 5.6 after the 6.0 is
    records = _records((100, 4.0), (200, 5.0), (300, 4.6), (400, 4.4), (500, 6.0), (600, 5.6))
    assert _kept(keeper, records) == [True, True, True, False, True, True]
    assert (keeper.step, keeper.score, keeper.best_seen, keeper.since) == (600, 5.6, 6.0, 0)


def test_a_tie_does_not_drift_down_a_slow_decline() -> None:
    keeper = BestKeeper.for_run("bleu", BLEU, 0, tie=0.5)
    # each step 0.3 below the last: within 0.5 of the previous but not of the best (6.0) after two
    assert _kept(keeper, _records((100, 6.0), (200, 5.7), (300, 5.4), (400, 5.1))) == [True, True, False, False]
    assert keeper.step == 200


def test_the_tie_survives_a_resume_through_the_checkpoint_state() -> None:
    keeper = BestKeeper.for_run("bleu", BLEU, 0, tie=0.5)
    _kept(keeper, _records((100, 6.0), (200, 5.6)))
    resumed = BestKeeper.for_run("bleu", BLEU, 0, tie=0.5)
    resumed.load(keeper.state())
    assert (resumed.step, resumed.score, resumed.best_seen) == (200, 5.6, 6.0)
    assert _kept(resumed, _records((300, 5.4))) == [False]  # 0.6 below the restored best 6.0


def test_a_run_keeps_best_with_the_bleu_tie_setting_and_a_loss_keeper_has_none(tmp_path: Path) -> None:
    assert TrainConfig().bleu_tie == 0.5
    assert Trainer(_cfg(tmp_path, "bleu", keep_best="bleu")).best.tie == 0.5
    assert Trainer(_cfg(tmp_path, "loss", keep_best="loss")).best.tie == 0.0


# ---------------------------------------------------------------- in a run
def _cfg(tmp_path: Path, out: str, **changes) -> TrainConfig:
    corpus = tmp_path / "corpus.tsv"
    if not corpus.exists():
        write_corpus(corpus, n=300)
    values = {"out": str(tmp_path / out), "data": str(corpus), "preset": "tiny", "vocab_size": 60,
              "dev_size": 20, "test_size": 20, "batch_tokens": 300, "steps": 40, "warmup": 5, "peak_lr": 3e-3,
              "log_every": 100, "eval_every": 0, "save_every": 0, "final_test": False, "beam": 1, "seed": 3,
              "time_budget": None}
    return TrainConfig(**{**values, **changes})


def _dropouts(trainer_or_model) -> set[float]:
    return {m.p for m in trainer_or_model.modules() if isinstance(m, Dropout)}


def test_a_run_without_dropout_plans_it_from_its_epochs_and_records_it(tmp_path: Path) -> None:
    lines: list[str] = []
    trainer = Trainer(_cfg(tmp_path, "planned", steps=80), log=lines.append)
    per_epoch = len(trainer.batcher.epoch(0))
    expected = dropout_for(80 / per_epoch)
    assert expected > 0.0, per_epoch  # 80 steps are several epochs of this corpus: the test sees a change
    assert _dropouts(trainer.model) == {0.0}  # until the plan
    result = trainer.run()
    assert _dropouts(trainer.model) == {expected}
    planned = [line for line in lines if "epochs planned" in line]
    assert planned == [f"step 1: {80 / per_epoch:.1f} epochs planned: dropout {expected:g} "
                       f"(no --dropout given; docs/results.md)"]
    for config in (result.run_dir / "config.json", result.run_dir / "model" / "config.json"):
        assert json.loads(config.read_text())["dropout"] == expected


def test_a_named_dropout_wins_over_the_plan(tmp_path: Path) -> None:
    lines: list[str] = []
    trainer = Trainer(_cfg(tmp_path, "named", dropout=0.2), log=lines.append)
    trainer.run()
    assert _dropouts(trainer.model) == {0.2}
    assert not [line for line in lines if "epochs planned" in line]


def test_a_resumed_run_keeps_its_planned_dropout(tmp_path: Path) -> None:
    train(_cfg(tmp_path, "run", steps=80, save_every=40), log=lambda _: None)
    lines: list[str] = []
    trainer = Trainer(_cfg(tmp_path, "run", steps=120, save_every=40), resume=True, log=lines.append)
    planned = trainer.dropout_plan
    assert planned is not None and planned.dropout > 0.0 and _dropouts(trainer.model) == {planned.dropout}
    trainer.run()
    assert not [line for line in lines if "epochs planned" in line]  # planned once, in the first run


def test_a_budgeted_run_plans_its_dropout_once_its_steps_are_timed(tmp_path: Path) -> None:
    lines: list[str] = []
    # a budget long enough for 13 steps on a loaded machine; 30 steps end the run first
    trainer = Trainer(_cfg(tmp_path, "budget", steps=30, time_budget=120.0), log=lines.append)
    trainer.run()
    planned = [line for line in lines if "epochs planned" in line]
    assert len(planned) == 1 and planned[0].startswith("step 13: "), planned  # 10 timed steps (3-12; 1-2 warm up)
    assert _dropouts(trainer.model) == {trainer.dropout_plan.dropout}
    assert trainer.dropout_plan.dropout == dropout_for(trainer.dropout_plan.epochs)
