"""Decoding options are declared once (inference/options.py): flags, library keywords, training's BLEU, serve."""

from __future__ import annotations

import argparse
import warnings

import pytest
import torch

import aiayn
from aiayn.cli import build_parser, parse_args
from aiayn.inference import decoding, options
from aiayn.inference.options import OPTIONS
from aiayn.training.settings import BY_NAME, RECIPES


def _subparser(command: str) -> argparse.ArgumentParser:
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices[command]


def test_the_paper_defaults_are_declared_once():
    assert OPTIONS["beam_size"].default == 4 and OPTIONS["length_penalty"].default == 0.6  # §6.1
    assert OPTIONS["max_new_tokens"].default is None and "+ 50" in OPTIONS["max_new_tokens"].none  # §6.1
    assert BY_NAME["beam"].default == 4 and BY_NAME["length_penalty"].default == 0.6
    assert RECIPES["paper"]["beam"] == 4 and RECIPES["paper"]["length_penalty"] == 0.6


@pytest.mark.parametrize("command", ["translate", "evaluate", "generate"])
def test_every_command_has_a_flag_for_each_of_its_options_with_the_declared_default(command):
    parser = _subparser(command)
    by_flag = {flag: action for action in parser._actions for flag in action.option_strings}
    for option in options.for_command(command):
        action = by_flag[option.cli_flag]
        assert action.dest == option.name
        assert action.default == (False if option.kind is bool else option.default_for(command)), option.name
    args = parse_args([command, "M"])
    assert options.from_args(args, command) == options.keywords({}, command)


def test_flags_mean_the_library_keywords():
    assert options.from_args(parse_args(["translate", "M"]), "translate") == {"beam_size": 4, "length_penalty": 0.6}
    assert options.from_args(parse_args(["translate", "M", "--greedy", "--top-k", "5"]), "translate") == \
        {"beam_size": 1, "length_penalty": 0.6}  # sampling flags without --sample mean nothing
    assert options.from_args(parse_args(["evaluate", "M", "--sample", "--top-p", "0.9", "--seed", "3",
                                         "--workers", "2"]), "evaluate") == \
        {"beam_size": 4, "length_penalty": 0.6, "do_sample": True, "temperature": 1.0, "top_p": 0.9, "seed": 3,
         "workers": 2}
    lm = {"beam_size": 1, "length_penalty": 0.6, "max_new_tokens": 500}
    assert options.from_args(parse_args(["generate", "M", "--top-k", "7"]), "generate") == \
        {**lm, "do_sample": True, "temperature": 1.0, "top_k": 7}
    assert options.from_args(parse_args(["generate", "M", "--greedy"]), "generate") == lm
    assert options.from_args(parse_args(["generate", "M", "--beam", "3", "--top-k", "7"]), "generate") == \
        {**lm, "beam_size": 3}  # beam search: no sampling


def test_the_library_takes_the_declared_keywords():
    assert decoding.SEQ2SEQ_OPTIONS == options.names("seq2seq")
    assert {"beam_size", "length_penalty", "precision", "do_sample"} <= decoding.SEQ2SEQ_OPTIONS
    assert "n_best" not in decoding.LM_OPTIONS and "mask" in decoding.LM_OPTIONS
    model = aiayn.Transformer(aiayn.ModelConfig.preset("tiny", vocab_size=20, dropout=0.0)).eval()
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['beam'\]"):
        model.generate(torch.tensor([[4, 5]]), beam=2)


def test_precision_has_one_name_and_dtype_is_its_deprecated_alias():
    model = aiayn.Transformer(aiayn.ModelConfig.preset("tiny", vocab_size=20, dropout=0.0)).eval()
    src = torch.tensor([[4, 5, 6]])
    expected = model.generate(src, beam_size=1, precision="bf16", max_new_tokens=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert model.generate(src, beam_size=1, dtype="bf16", max_new_tokens=5) == expected
    assert any(issubclass(w.category, DeprecationWarning) and "use precision=" in str(w.message) for w in caught)
    with pytest.raises(TypeError, match="dtype= and precision="):
        model.generate(src, dtype="bf16", precision="bf16")


def test_a_server_builds_its_request_checks_from_the_same_table():
    offered = {o.name for o in options.for_command("serve")}
    assert {"beam_size", "length_penalty", "precision", "do_sample", "top_p"} <= offered
    checked = options.validate({"beam_size": 2, "top_p": 0.5}, "serve")
    assert checked["beam_size"] == 2 and checked["length_penalty"] == 0.6 and checked["precision"] == "fp32"
    assert options.keywords(checked, "serve") == {"beam_size": 2, "length_penalty": 0.6}
    for bad, message in (({"beam_size": 0}, "beam_size must be an integer >= 1, got 0"),
                         ({"length_penalty": "x"}, "length_penalty must be a number >= 0"),
                         ({"top_p": 1.5}, r"top_p must be a number in \(0, 1\] or none, got 1.5"),
                         ({"precision": "fp16"}, "precision must be one of"),
                         ({"beam": 2}, r"unknown option\(s\) \['beam'\]")):
        with pytest.raises(ValueError, match=message):
            options.validate(bad, "serve")


def test_removed_speed_paths_are_one_clear_error(capsys):
    """compile= and draft= (and #32 item 10's draft with int8) went: the keyword and the flag say so and why."""
    model = aiayn.Transformer(aiayn.ModelConfig.preset("tiny", vocab_size=20, dropout=0.0)).eval()
    for keyword in ({"compile": True}, {"draft": "int8", "precision": "int8"}, {"draft": "bf16", "dtype": "int8"},
                    {"draft_tokens": 4}):
        with pytest.raises(TypeError, match=r"generate\((compile|draft|draft_tokens)=...\) is removed.* use "
                                             r"precision='int8'"):
            model.generate(torch.tensor([[4, 5]]), beam_size=1, **keyword)
    for flags in (["--compile"], ["--draft", "int8"], ["--greedy", "--draft"]):
        with pytest.raises(SystemExit) as exit_:
            parse_args(["translate", "M", "x", *flags])
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"error: {flags[-1 if flags[-1].startswith('--') else -2]} was removed:" in err
        assert "--precision int8" in err
