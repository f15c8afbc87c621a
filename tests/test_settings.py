"""Training settings are declared once (aiayn.training.settings): defaults < train.json < TOML < flags, every
ModelConfig option is a flag and a TOML key of every task, and a setting not for the task is refused."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aiayn.cli import build_parser, main, parse_args
from aiayn.cli.train import settings
from aiayn.model.config import ModelConfig
from aiayn.training.lm import LMTrainConfig
from aiayn.training.settings import MODEL_FIELDS_NOT_SET, SETTINGS, TASKS, TRAIN_FILE
from aiayn.training.translation import TrainConfig

# A value other than ModelConfig's default and the lm / small-preset defaults, valid in every task's model.
OTHER: dict[str, Any] = {"dropout": 0.25, "attention_dropout": 0.125, "d_model": 64, "n_heads": 2, "d_ff": 80,
                         "max_positions": 99, "layer_norm_eps": 1e-6, "type_vocab_size": 2, "position_offset": 2,
                         "encoder_layers": 2, "decoder_layers": 2, "n_layers": 2, "d_k": 16}


def _other(setting: Any) -> Any:
    """A valid value of a model setting that no task has by default."""
    if setting.kind is bool:
        return not {f.name: f.default for f in dataclasses.fields(ModelConfig)}[setting.model[0]]
    if setting.choices:
        return setting.choices[-1] if setting.choices[-1] not in ("pre", "learned") else setting.choices[0]
    return OTHER[setting.name]


def _model(task: str, cfg: Any) -> ModelConfig:
    """The ModelConfig a run of these settings trains (the tokenizer's vocabulary: 100)."""
    if task == "translate":
        return ModelConfig.preset(cfg.preset, **{**cfg.model_overrides(), "vocab_size": 100})
    return cfg.model_config(100)


def _flag(setting: Any, value: Any) -> list[str]:
    """The command-line words that set a setting to value."""
    if setting.kind is bool:
        return [setting.flag if value else "--no-" + setting.flag[2:]]
    return [setting.flag, str(value)]


def _run(argv: list[str]) -> tuple[str, Any]:
    """`aiayn train` argv's task and settings, as the command resolves them (nothing is read or trained)."""
    return settings(parse_args(["train", *argv]))


@pytest.mark.parametrize("task", TASKS)
def test_every_model_option_is_a_flag_and_a_toml_key_that_reaches_the_model(task: str, tmp_path: Path) -> None:
    model_settings = [s for s in SETTINGS if s.model and task in s.tasks]
    covered = {name for s in model_settings for name in s.model} | set(MODEL_FIELDS_NOT_SET)
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    assert fields - covered == set(), f"ModelConfig fields without a setting for --task {task}"
    for s in model_settings:
        value = _other(s)
        fields_set = [f for f in s.model if not (task == "lm" and f == "n_encoder_layers" or
                                                 task == "mlm" and f == "n_decoder_layers")]
        _, by_flag = _run(["--task", task, "--out", str(tmp_path / "run"), *_flag(s, value)])
        toml = tmp_path / f"{s.name}.toml"
        toml.write_text(f"{s.name} = {json.dumps(value)}\n", encoding="utf-8")
        _, by_toml = _run(["--task", task, "--out", str(tmp_path / "run"), "--config", str(toml)])
        for cfg in (by_flag, by_toml):
            model = _model(task, cfg)
            assert [getattr(model, f) for f in fields_set] == [value] * len(fields_set), (s.name, task)


def test_precedence_is_defaults_then_train_json_then_toml_then_flags(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / TRAIN_FILE).write_text(json.dumps({**TrainConfig(out=str(out)).to_dict(), "warmup": 11, "beam": 3,
                                              "seed": 5, "dropout": 0.2}), encoding="utf-8")
    toml = tmp_path / "run.toml"
    toml.write_text("beam = 2\nseed = 6\n", encoding="utf-8")
    task, cfg = _run(["--out", str(out), "--resume", "--config", str(toml), "--seed", "7"])
    assert task == "translate" and isinstance(cfg, TrainConfig)
    assert (cfg.vocab_size, cfg.warmup, cfg.dropout, cfg.beam, cfg.seed) == (8000, 11, 0.2, 2, 7)
    # without --resume the run's train.json is not read: the defaults, then the file, then the flags
    _, fresh = _run(["--out", str(out), "--config", str(toml), "--seed", "7"])
    assert (fresh.warmup, fresh.dropout, fresh.beam, fresh.seed) == (TrainConfig.warmup, None, 2, 7)  # dropout: planned


def test_a_language_model_resumes_its_own_task_and_settings(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    saved = LMTrainConfig(task="mlm", out=str(out), mask_prob=0.3, n_layers=3).to_dict()
    del saved["precision"]  # a run from before --precision trained in fp32
    (out / TRAIN_FILE).write_text(json.dumps(saved), encoding="utf-8")
    task, cfg = _run(["--out", str(out), "--resume", "--steps", "9"])
    assert (task, cfg.task, cfg.mask_prob, cfg.n_layers, cfg.steps, cfg.precision) == ("mlm", "mlm", 0.3, 3, 9,
                                                                                        "fp32")


def test_a_translation_run_from_before_the_schedule_setting_resumes_on_its_own_schedule(tmp_path: Path) -> None:
    """Runs written before `schedule`, `time_budget` and `keep_best` existed trained on the paper's inverse-sqrt
    schedule to their step count and kept the last step: they resume so, not on today's defaults."""
    out = tmp_path / "run"
    out.mkdir()
    saved = TrainConfig(out=str(out), steps=40, warmup=30, peak_lr=2e-3).to_dict()
    for key in ("schedule", "time_budget", "keep_best", "warmup_share", "min_lr"):
        del saved[key]
    (out / TRAIN_FILE).write_text(json.dumps(saved), encoding="utf-8")
    _, cfg = _run(["--out", str(out), "--resume"])
    assert (cfg.schedule, cfg.time_budget, cfg.keep_best, cfg.steps) == ("inverse-sqrt", None, "none", 40)
    lr = cfg.lr_schedule(256)
    assert lr(35) == pytest.approx(2e-3 * (30 / 35) ** 0.5)  # peak_lr at warmup, then step^-0.5 (§5.3)


def test_the_paper_recipe_lies_under_the_named_settings() -> None:
    _, cfg = _run(["--recipe", "paper", "--warmup", "10"])
    assert (cfg.warmup, cfg.batch_tokens, cfg.norm, cfg.dropout, cfg.time_budget) == (10, 25_000, "post", 0.1, None)


@pytest.mark.parametrize("argv, named", [
    (["--task", "lm", "--beam", "2"], "--beam does not apply to --task lm (only to --task translate)"),
    (["--task", "lm", "--length-penalty", "1.0", "--beam", "2"], "--beam, --length-penalty do not apply"),
    (["--mask-prob", "0.2"], "--mask-prob does not apply to --task translate (only to --task mlm)"),
    (["--task", "lm", "--mask-prob", "0.2"], "--mask-prob does not apply to --task lm"),
    (["--task", "mlm", "--encoder-layers", "2"], "--encoder-layers does not apply to --task mlm"),
])
def test_a_flag_not_for_the_task_is_one_line_naming_it_and_nothing_is_written(
        argv: list[str], named: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    assert main(["train", *argv, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0], err
    assert not out.exists()


def test_a_toml_key_unknown_or_not_for_the_task_is_one_line_naming_it(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    toml = tmp_path / "run.toml"
    out = tmp_path / "run"
    for text, task, named in (("stepz = 7\n", "translate", "unknown setting 'stepz' (did you mean 'steps'?)"),
                              ("beam = 2\n", "lm", "beam does not apply to --task lm"),
                              ('task = "lm"\ndropout = 2.0\n', None, "dropout must be a number in [0, 1), got 2.0")):
        toml.write_text(text, encoding="utf-8")
        assert main(["train", "--config", str(toml), "--out", str(out), *(["--task", task] if task else [])]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(toml) in err[0] and named in err[0], err
        assert not out.exists()


def test_a_bad_flag_value_is_one_line_naming_what_is_allowed(capsys: pytest.CaptureFixture) -> None:
    for argv, allowed in ((["--dropout", "2"], "must be a number in [0, 1), got 2.0"),
                          (["--precision", "fp16"], "must be one of ('auto', 'fp32', 'bf16'), got 'fp16'"),
                          (["--beam", "x"], "expected an integer >= 1, got 'x'")):
        with pytest.raises(SystemExit) as stop:
            parse_args(["train", *argv])
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith(f"aiayn train: error: argument {argv[0]}: ") and allowed in err, err


def test_help_says_what_every_flag_does_not_only_its_default() -> None:
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    train = commands.choices["train"]
    flags = [a for a in train._actions if a.option_strings and a.help != argparse.SUPPRESS]
    assert {s.flag for s in SETTINGS if s.name != "task"} <= {o for a in flags for o in a.option_strings}
    for action in flags:
        text = (action.help or "").strip()
        assert text and not text.lower().startswith(("default", "(default")), (action.option_strings, text)
        assert "None" not in text, (action.option_strings, text)


def test_the_config_classes_are_views_of_the_one_declaration() -> None:
    for cls, task in ((TrainConfig, "translate"), (LMTrainConfig, "lm")):
        names = [f.name for f in dataclasses.fields(cls)]
        assert names == [s.name for s in SETTINGS if s.tasks & cls.TASKS]
        assert all(getattr(cls(), s.name) == s.check(s.default_for(task)) for s in SETTINGS if s.tasks & cls.TASKS)
    assert TrainConfig().time_budget == 600.0  # the declared "10m", parsed once into seconds


@pytest.mark.skipif(sys.platform != "linux", reason="the allocator line is printed on Linux with glibc only")
def test_a_settings_error_is_the_only_line_the_command_prints(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    run = subprocess.run([sys.executable, "-m", "aiayn", "train", "--task", "lm", "--beam", "2", "--out",
                          str(tmp_path / "run")], env=env, capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == ["aiayn train: error: --beam does not apply to --task lm (only to "
                                               "--task translate); see `aiayn train --help`"]
