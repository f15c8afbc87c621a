"""Every sub-command refuses a bad value with one line (exit 1 or 2, no traceback) before doing any work, and
takes its options and its positional text in any order."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiayn.cli import main, parse_args

BAD_VALUES = [
    ["demo", "--seed", "x"],
    ["translate", "MODEL", "hi", "--beam", "0"],
    ["translate", "MODEL", "hi", "--length-penalty", "-1"],
    ["translate", "MODEL", "hi", "--alpha", "-1"],
    ["translate", "MODEL", "hi", "--sample", "--top-p", "1.5"],
    ["translate", "MODEL", "hi", "--sample", "--temperature", "0"],
    ["translate", "MODEL", "hi", "--threads", "-1"],
    ["evaluate", "MODEL", "--beam", "0"],
    ["evaluate", "MODEL", "--top-k", "-3"],
    ["generate", "MODEL", "hi", "--max-new-tokens", "-1"],
    ["generate", "MODEL", "--temperature", "-1"],
    ["generate", "MODEL", "--top-p", "0"],
    ["fill-mask", "MODEL", "a [MASK]", "--top-k", "0"],
    ["attention", "MODEL", "hi", "--beam", "0"],
    ["attention", "MODEL", "hi", "--layer", "x"],
    ["average", "RUN", "--last", "0", "--out", "OUT"],
    ["export", "MODEL", "--to", "nosuch", "--out", "OUT"],
    ["import-hf", "NOSUCH-FOLDER", "--out", "OUT"],
    ["train", "--preset", "nosuch"],
    ["train", "--beam", "0"],
    ["train", "--steps", "-1"],
    ["train", "--threads", "-1"],
    ["train", "--dropout", "2"],
    ["train", "--label-smoothing", "-0.1"],
    ["train", "--task", "lm", "--beam", "2"],
    ["train", "--task", "lm", "--context", "0"],
]


@pytest.mark.parametrize("argv", BAD_VALUES, ids=[" ".join(a) for a in BAD_VALUES])
def test_a_bad_value_is_one_line_before_any_work(argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    if argv[0] == "train":
        argv = [*argv, "--out", str(tmp_path / "run")]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse: bad usage
        code = exit_.code
    err = capsys.readouterr().err
    assert code in (1, 2)
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"aiayn {argv[0]}: error: ")
    assert not (tmp_path / "run").exists() and not (tmp_path / "OUT").exists()  # nothing written


def test_an_option_not_for_the_task_names_the_task(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--task", "lm", "--beam", "2", "--out", str(tmp_path / "run")]) == 1
    assert "--task lm" in capsys.readouterr().err


def test_options_and_text_in_any_order() -> None:
    late = parse_args(["translate", "MODEL", "--greedy", "The Lord is my shepherd"])
    early = parse_args(["translate", "MODEL", "The Lord is my shepherd", "--greedy"])
    assert late.text == early.text == ["The Lord is my shepherd"] and late.greedy and early.greedy
    assert parse_args(["generate", "--seed", "1", "MODEL", "ROMEO:"]).prompt == "ROMEO:"


def test_length_penalty_has_one_name_and_keeps_alpha_as_an_alias() -> None:
    assert parse_args(["translate", "M", "x", "--length-penalty", "1.0"]).length_penalty == 1.0
    assert parse_args(["evaluate", "M", "--alpha", "0.2"]).length_penalty == 0.2
    assert parse_args(["translate", "M", "x"]).length_penalty == 0.6


TRAIN_REFUSALS = [  # (arguments, exit code, the words the one line must hold); each before any run folder is written
    (["--preset", "tiny", "--max-len", "256"], 1, "--max-len 256 is longer than the model's positions (max_positions "
                                                  "128, --preset tiny): give --max-len 128 or less"),
    (["--task", "lm", "--context", "16", "--max-positions", "8"], 1, "--context 16 is longer than --max-positions 8"),
    (["--dev-size", "0"], 2, "argument --dev-size: must be an integer >= 1, got 0"),
    (["--seed", "99999999999999999999"], 2, "argument --seed: must be an integer in [0, 4294967295]"),
    (["--time-budget", "0"], 2, "time budget '0' must be a positive duration (or none for no budget)"),
    (["--time-budget", ""], 2, "(or none for no budget)"),
]


@pytest.mark.parametrize("argv, code, words", TRAIN_REFUSALS, ids=[" ".join(a) for a, _, _ in TRAIN_REFUSALS])
def test_train_refuses_with_its_own_message(argv: list[str], code: int, words: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    try:
        got = main(["train", *argv, "--out", str(tmp_path / "run"), "--steps", "1"])
    except SystemExit as exit_:  # argparse: bad usage
        got = exit_.code
    err = capsys.readouterr().err
    assert got == code and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("aiayn train: error: ") and words in err
    assert not (tmp_path / "run").exists()


def test_train_refuses_a_corrupt_train_json_on_resume(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    (out / "checkpoints" / "step_1").mkdir(parents=True)
    for text, words in (("{bad", "is not readable JSON"), ("[1]", "holds no settings")):
        (out / "train.json").write_text(text, encoding="utf-8")
        assert main(["train", "--out", str(out), "--resume"]) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and f"{out / 'train.json'} {words}" in err.strip().splitlines()[-1]
