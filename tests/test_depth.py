"""The default model's depth planned from the time budget (issue #31): the rule by hand, and in a run."""

import json
import math
from pathlib import Path

import pytest

from aiayn.training.depth import PRESET_BY_BUDGET, describe, preset_for_budget
from aiayn.training.translation import TrainConfig, Trainer

from .helpers_translation import write_corpus


# ---------------------------------------------------------------- the rule, by hand
@pytest.mark.parametrize(("budget_s", "preset"), [(None, "shallow"), (60.0, "shallow"), (600.0, "shallow"),
                                                  (1199.0, "shallow"), (1200.0, "medium"), (1800.0, "medium"),
                                                  (36000.0, "medium")])
def test_the_preset_follows_the_budget(budget_s: float | None, preset: str) -> None:
    assert preset_for_budget(budget_s) == preset


def test_the_rule_covers_every_budget_and_refuses_a_non_positive_one() -> None:
    assert PRESET_BY_BUDGET[-1][0] == math.inf
    with pytest.raises(ValueError, match="must be > 0"):
        preset_for_budget(0.0)


def test_the_plan_says_what_it_chose_and_why() -> None:
    assert describe(1800.0, "medium") == ("preset medium (2+2 layers) for a 30m budget (no --preset given; "
                                          "docs/results.md)")
    assert describe(5400.0, "small").startswith("preset small (3+3 layers) for a 1h30m budget")
    assert describe(None, "shallow").startswith("preset shallow (1+1 layers) for no time budget")


def test_the_config_plans_the_preset_only_when_none_is_named() -> None:
    assert (TrainConfig().preset, TrainConfig().planned_preset) == ("shallow", True)  # the ten-minute default
    assert TrainConfig(time_budget="30m").preset == "medium"
    assert TrainConfig(steps=5000, time_budget=None).preset == "shallow"
    named = TrainConfig(time_budget="30m", preset="shallow")
    assert (named.preset, named.planned_preset) == ("shallow", False)  # a named --preset wins
    assert TrainConfig(time_budget="30m", init_from="some/model").preset is None  # that model's shape wins


# ---------------------------------------------------------------- in a run
def _cfg(tmp_path: Path, **changes) -> TrainConfig:
    corpus = tmp_path / "corpus.tsv"
    write_corpus(corpus, n=200)
    values = {"out": str(tmp_path / "run"), "data": str(corpus), "vocab_size": 60, "dev_size": 20, "test_size": 20,
              "batch_tokens": 300, "warmup": 5, "peak_lr": 3e-3, "log_every": 100, "eval_every": 0, "save_every": 0,
              "final_test": False, "beam": 1, "dropout": 0.0}
    return TrainConfig(**{**values, **changes})


def test_a_thirty_minute_run_builds_the_deeper_model_says_so_and_records_it(tmp_path: Path) -> None:
    lines: list[str] = []
    trainer = Trainer(_cfg(tmp_path, time_budget="30m"), log=lines.append)
    assert (trainer.model.cfg.n_encoder_layers, trainer.model.cfg.n_decoder_layers) == (2, 2)
    trainer._announce()
    assert "preset medium (2+2 layers) for a 30m budget (no --preset given; docs/results.md)" in lines
    # train.json holds the preset chosen, so a resume (whatever its budget) rebuilds the same model
    assert json.loads((tmp_path / "run" / "train.json").read_text())["preset"] == "medium"


def test_a_named_preset_is_built_as_named_and_nothing_is_planned(tmp_path: Path) -> None:
    lines: list[str] = []
    trainer = Trainer(_cfg(tmp_path, time_budget="30m", preset="shallow"), log=lines.append)
    assert (trainer.model.cfg.n_encoder_layers, trainer.model.cfg.n_decoder_layers) == (1, 1)
    trainer._announce()
    assert not [line for line in lines if "no --preset given" in line]
