"""Every sub-command refuses a bad value with one line (exit 1 or 2, no traceback) before doing any work, and
takes its options and its positional text in any order."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aiayn.cli import main, parse_args

from .helpers_cli import model_folders

# (argv, the one line it must give): MODEL, LM, MLM, RUN, HF, FILE, DIR, SRC, REF are real (helpers_cli), so a
# command whose check is removed would go on and run, and give another line (or none)
BAD_VALUES = [
    (["demo", "--seed", "x"], "argument --seed: expected an integer, got 'x'"),
    (["demo", "--seed", "99999999999999999999"], "argument --seed: must be in [-2^63, 2^64 - 1]"),
    (["translate", "MODEL", "hi", "--sample", "--seed", "99999999999999999999"],
     "argument --seed: expected an integer in [-9223372036854775808, 18446744073709551615] or none, got "),
    (["translate", "MODEL", "hi", "--beam", "0"], "argument --beam: expected an integer >= 1, got '0'"),
    (["translate", "MODEL", "hi", "--length-penalty", "-1"],
     "argument --length-penalty: expected a number >= 0, got '-1'"),
    (["translate", "MODEL", "hi", "--alpha", "-1"], "argument --alpha: expected a number >= 0, got '-1'"),
    (["translate", "MODEL", "hi", "--sample", "--top-p", "1.5"],
     "argument --top-p: expected a number in (0, 1] or none, got '1.5'"),
    (["translate", "MODEL", "hi", "--sample", "--temperature", "0"],
     "argument --temperature: expected a number > 0, got '0'"),
    (["translate", "MODEL", "hi", "--threads", "-1"], "argument --threads: must be at least 0, got -1"),
    (["evaluate", "MODEL", "--beam", "0"], "argument --beam: expected an integer >= 1, got '0'"),
    (["evaluate", "MODEL", "--top-k", "-3"], "argument --top-k: expected an integer >= 1 or none, got '-3'"),
    (["evaluate", "MODEL", "--src", "SRC", "--ref", "REF", "--output", "DIR", "--greedy"],
     "--output DIR is a folder: give a file to write into"),
    (["evaluate", "MODEL", "--src", "SRC", "--ref", "REF", "--output", "FILE/hyp.txt", "--greedy"],
     "--output FILE/hyp.txt: FILE is a file, not a folder"),
    (["generate", "LM", "hi", "--max-new-tokens", "-1"],
     "argument --max-new-tokens: expected an integer >= 0 or none, got '-1'"),
    (["generate", "LM", "--temperature", "-1"], "argument --temperature: expected a number > 0, got '-1'"),
    (["generate", "LM", "--top-p", "0"], "argument --top-p: expected a number in (0, 1] or none, got '0'"),
    (["fill-mask", "MLM", "a [MASK]", "--top-k", "0"], "argument --top-k: must be at least 1, got 0"),
    (["attention", "MODEL", "hi", "--beam", "0"], "argument --beam: must be at least 1, got 0"),
    (["attention", "MODEL", "hi", "--layer", "x"], "argument --layer: invalid int value: 'x'"),
    (["attention", "MODEL", "hi", "--out", "FILE"], "--out FILE is a file: give a folder"),
    (["attention", "MODEL", "hi", "--out", "OUT", "--html", "DIR"], "--html DIR is a folder: give a file"),
    (["average", "RUN", "--last", "0", "--out", "OUT"], "argument --last: must be at least 1, got 0"),
    (["average", "RUN", "--out", "FILE"], "--out FILE is a file: give a folder"),
    (["export", "MODEL", "--to", "nosuch", "--out", "OUT"], "argument --to: invalid choice: 'nosuch'"),
    (["export", "MODEL", "--to", "hf", "--out", "FILE"], "--out FILE is a file: give a folder"),
    (["export", "MODEL", "--to", "hf", "--out", "", "--force"], "--out is empty: name the folder"),
    (["export", "MODEL", "--to", "hf", "--out", "MODEL/..", "--force"], "--out MODEL/.. holds the model folder"),
    (["import-hf", "NOSUCH-FOLDER", "--out", "OUT"], "NOSUCH-FOLDER is not a folder: give a local Hugging Face"),
    (["import-hf", "HF", "--out", "FILE"], "--out FILE is a file: give a folder"),
    (["import-hf", "~nosuchuser0", "--out", "OUT"], "~nosuchuser0 is not a folder"),  # no such user's home
    (["import-hf", "a\x1eb\nc", "--out", "OUT"], "a\\x1eb\\nc is not a folder"),  # escaped: still one line
    (["translate", "MODEL", "hi", "--beam", "x\ny"], "argument --beam: expected an integer >= 1, got 'x\\ny'"),
    (["import-hf", "HF-CORRUPT", "--out", "OUT"], "HF-CORRUPT/model.safetensors is truncated or corrupt"),
    (["train", "--preset", "nosuch"], "argument --preset: must be one of ('paper-base'"),
    (["train", "--beam", "0"], "argument --beam: must be an integer >= 1, got 0"),
    (["train", "--steps", "-1"], "argument --steps: must be an integer >= 0, got -1"),
    (["train", "--threads", "-1"], "argument --threads: must be an integer >= 0, got -1"),
    (["train", "--dropout", "2"], "argument --dropout: must be a number in [0, 1), got 2.0"),
    (["train", "--label-smoothing", "-0.1"], "argument --label-smoothing: must be a number in [0, 1), got -0.1"),
    (["train", "--task", "lm", "--beam", "2"], "--beam does not apply to --task lm"),
    (["train", "--task", "lm", "--context", "0"], "argument --context: must be an integer >= 1, got 0"),
    (["train", "--steps", "1", "--out", "FILE"], "--out FILE is a file: give a folder"),  # before the data is read
]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real model folders (random weights), a run folder, a Hugging Face one and a corrupt copy of it."""
    tmp = tmp_path_factory.mktemp("cli-values")
    found = model_folders(tmp)
    corrupt = shutil.copytree(found["HF"], tmp / "hf-corrupt")
    weights = corrupt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:300])  # a header cut short, as by an interrupted download
    found["HF-CORRUPT"] = corrupt
    return found


def _real(argv: list[str], folders: dict[str, Path]) -> list[str]:
    """argv with each placeholder (also as a path's first part) replaced by its real path."""
    out = []
    for arg in argv:
        head, _, rest = arg.partition("/")
        out.append(str(folders[head] / rest if rest else folders[head]) if head in folders else arg)
    return out


@pytest.mark.parametrize("argv, message", BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_a_bad_value_is_one_line_before_any_work(argv: list[str], message: str, folders: dict[str, Path],
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    real = _real(argv, folders)
    if argv[0] == "train" and "--out" not in argv:
        real = [*real, "--out", str(tmp_path / "run")]
    before = {path: path.stat().st_mtime_ns for path in folders.values()}
    files = sorted(str(p) for p in folders["DIR"].parent.rglob("*"))

    def work(*args: object, **kwargs: object) -> None:
        raise AssertionError("the work started before the bad value was refused")

    monkeypatch.setattr("aiayn.cli.evaluate.translate", work)  # evaluate checks --output before translating
    try:
        code = main(real)
    except SystemExit as exit_:  # argparse: bad usage
        code = exit_.code
    err = capsys.readouterr().err
    assert code in (1, 2)
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err  # one line: no usage block, no log lines before it
    line = err.strip()
    for name in ("FILE", "DIR", "SRC", "REF", "HF-CORRUPT", "MODEL"):  # messages name the real paths
        message = message.replace(name, str(folders[name]))
    assert line.startswith(f"aiayn {argv[0]}: error: {message}"), line
    assert code == 2 if "argument " in message else code == 1
    assert not (tmp_path / "run").exists() and not (tmp_path / "OUT").exists()  # nothing written
    assert sorted(str(p) for p in folders["DIR"].parent.rglob("*")) == files  # nor anywhere else
    assert {path: path.stat().st_mtime_ns for path in folders.values()} == before


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
