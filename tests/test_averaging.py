"""Averaging the last checkpoints at the end of training (§6.1) equals `aiayn average` of the same checkpoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from aiayn.cli import main
from aiayn.training.lm import LMTrainConfig
from aiayn.training.trainer import TrainingError
from aiayn.training.translation import TrainConfig, Trainer, train
from tests.helpers_translation import write_corpus


def _cfg(tmp_path: Path, **changes) -> TrainConfig:
    corpus = tmp_path / "corpus.tsv"
    if not corpus.exists():
        write_corpus(corpus, n=300)
    values = {"out": str(tmp_path / "run"), "data": str(corpus), "preset": "tiny", "vocab_size": 60,
              "dev_size": 20, "test_size": 20, "batch_tokens": 300, "steps": 12, "time_budget": None,
              "warmup": 5, "peak_lr": 3e-3, "log_every": 1, "eval_every": 0, "save_every": 0,
              "final_test": False, "beam": 1, "seed": 3}
    return TrainConfig(**{**values, "time_budget": None, **changes})


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_the_end_averages_the_planned_checkpoints_as_aiayn_average_does(tmp_path: Path) -> None:
    result = train(_cfg(tmp_path, average_last=3, average_every=2, keep_last=1), log=lambda _: None)
    run = result.run_dir
    steps = sorted(int(p.name.removeprefix("step_")) for p in (run / "checkpoints").glob("step_*"))
    assert steps == [8, 10, 12]  # 2 apart before the last step; keep_last does not prune them
    main(["average", str(run), "--last", "3", "--out", str(tmp_path / "by-hand")])
    ours, theirs, last = _weights(run / "model"), _weights(tmp_path / "by-hand"), _weights(run / "checkpoints/step_12")
    assert ours.keys() == theirs.keys()
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], rtol=0, atol=0)
    moved = [name for name in ours if ours[name].is_floating_point() and not torch.equal(ours[name], last[name])]
    assert moved  # the average is not simply the last step's weights
    name = moved[0]  # by hand: the mean of the three checkpoints' tensors
    mean = sum(_weights(run / f"checkpoints/step_{s}")[name].double() for s in (8, 10, 12)) / 3
    torch.testing.assert_close(ours[name].double(), mean, rtol=0, atol=1e-6)


def test_checkpoints_saved_for_the_average_survive_pruning(tmp_path: Path) -> None:
    """--save-every 2 --keep-last 1 prunes the regular checkpoints, never those the end averages."""
    lines: list[str] = []
    result = train(_cfg(tmp_path, steps=30, average_last=3, average_every=10, save_every=2, keep_last=1),
                   log=lines.append)
    steps = sorted(int(p.name.removeprefix("step_")) for p in (result.run_dir / "checkpoints").glob("step_*"))
    assert steps == [10, 20, 30]
    assert any("model/: the average of 3 checkpoint(s), steps 10, 20, 30" in line for line in lines)


def test_a_checkpoint_saved_for_the_average_that_is_gone_is_an_error(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder the average needs, deleted during the run: one error naming it, not a quieter average."""
    import shutil

    from aiayn.training import trainer as base

    real_average = base.RankTrainer._average_into_model

    def delete_one_first(self) -> None:
        shutil.rmtree(self.run_dir / "checkpoints" / "step_8")
        real_average(self)

    monkeypatch.setattr(base.RankTrainer, "_average_into_model", delete_one_first)
    with pytest.raises(TrainingError, match="step_8 .* is gone"):
        train(_cfg(tmp_path, average_last=3, average_every=2, keep_last=1), log=lambda _: None)


def test_the_default_spacing_spreads_over_the_last_share_of_the_plan(tmp_path: Path) -> None:
    result = train(_cfg(tmp_path, steps=40, average_last=2, keep_last=1), log=lambda _: None)
    steps = sorted(int(p.name.removeprefix("step_")) for p in (result.run_dir / "checkpoints").glob("step_*"))
    assert steps == [39, 40]  # 5% of 40 steps over 2 checkpoints: one step apart


@pytest.mark.parametrize("values, named", [({"average_last": -1}, "average_last"),
                                           ({"average_every": 1.5}, "average_every"),
                                           ({"average_last": 5, "fsdp": True}, "--no-fsdp")])
def test_bad_averaging_settings_are_refused_naming_them(values: dict, named: str) -> None:
    for config in (TrainConfig, LMTrainConfig):
        with pytest.raises(TrainingError, match=named):
            config(**values)


def test_the_test_set_is_scored_on_the_weights_keep_best_leaves_in_model(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """When an earlier evaluation stays the best, the final test BLEU is that step's: the same as a run that
    stops there (inverse-sqrt: the rate does not depend on the planned length)."""
    real_bleu = Trainer.bleu

    def falling_dev_bleu(self, split: str, beam: int):  # dev BLEU falls after the first evaluation
        scores = real_bleu(self, split, beam)
        return dataclasses.replace(scores, bleu=100.0 - self.step) if split == "dev" else scores

    monkeypatch.setattr(Trainer, "bleu", falling_dev_bleu)
    common = {"schedule": "inverse-sqrt", "warmup": 5, "final_test": True, "eval_every": 4, "steps": 8}
    kept = train(_cfg(tmp_path, out=str(tmp_path / "kept"), **common), log=lambda _: None)
    stopped = train(_cfg(tmp_path, out=str(tmp_path / "stopped"), **{**common, "steps": 4}, keep_best="none"),
                    log=lambda _: None)
    assert kept.step == 8 and kept.test_step == 4 and stopped.test_step == 4
    assert kept.test_scores.bleu == stopped.test_scores.bleu and kept.test_scores.chrf == stopped.test_scores.chrf
    for name, tensor in _weights(tmp_path / "kept" / "model").items():
        torch.testing.assert_close(tensor, _weights(tmp_path / "stopped" / "model")[name], rtol=0, atol=0)
