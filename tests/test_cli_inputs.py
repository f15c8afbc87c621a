"""`aiayn translate` on hostile input: empty lines, over-long lines, bytes that are not UTF-8, control
characters and unusual Unicode, an empty file. Never a crash; exactly one output line per input line, in order."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aiayn
from aiayn.cli import main
from aiayn.data.tokenizer import load_tokenizer, train_bpe
from aiayn.inference.evaluation import translate

from .helpers_translation import EN, ES

MAX_POSITIONS = 100  # the model takes max_positions - 50 = 50 source tokens (§6.1 leaves +50 for the output)

ODD_LINES: list[bytes] = [
    b"the king of the land",
    b"",  # an empty line
    b"   \t ",  # only blanks
    " ".join(EN * 6).encode(),  # ~100 words: far beyond 50 source tokens
    b"caf\xe9 \xff\xfe half \xc3( bytes",  # Latin-1 and broken UTF-8
    "rtl \u202e override, zero\u200dwidth, emoji \U0001f916, e\u0301 combining".encode(),
    b"tab\there, nul \x00, bell \x07, escape \x1b[31m red",
    "form feed \x0c, vertical tab \x0b, line sep \u2028, para sep \u2029, next line \x85 end".encode(),
    b"a lone \r carriage return inside",
    "中文 العربية ☃ \ufeff zero-width no-break".encode(),
    b"\xef\xbb\xbf a BOM inside a line",
    b"god",
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny translator (random weights: only the shape of the output matters) with its own tokenizer."""
    texts = [" ".join(EN[i:] + ES[:i]) for i in range(len(EN))] * 4
    tok = train_bpe(texts, vocab_size=90)
    cfg = aiayn.ModelConfig.preset("tiny", vocab_size=tok.get_vocab_size(), max_positions=MAX_POSITIONS)
    folder = tmp_path_factory.mktemp("inputs") / "model"
    aiayn.Transformer(cfg).save(folder, tokenizer=tok)
    return folder


def one_by_one(model_dir: Path, lines: list[str]) -> list[str]:
    """Each line translated alone (greedy): what line i of a batched run must equal."""
    model, tok = aiayn.load(model_dir), load_tokenizer(model_dir)
    return [" ".join(translate(model, tok, [line], beam_size=1, warn=lambda _: None)[0].splitlines())
            for line in lines]


def run_cli(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, list[str], str]:
    """main(args): exit code, stdout lines, stderr."""
    capsys.readouterr()
    code = main(args)
    captured = capsys.readouterr()
    assert captured.out == "" or captured.out.endswith("\n")
    return code, captured.out.split("\n")[:-1], captured.err


def test_odd_lines_from_a_file_give_one_output_line_each_in_order(model_dir: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "odd.txt"
    path.write_bytes(b"\n".join(ODD_LINES))  # the last line has no newline
    code, out, err = run_cli(["translate", str(model_dir), "--input", str(path), "--greedy"], capsys)
    assert code == 0, err
    assert len(out) == len(ODD_LINES)
    assert out[1] == "" and out[2] == ""  # empty and blank lines: an empty translation, not a skipped line
    assert "Traceback" not in err
    assert "line(s) 5 are not valid UTF-8" in err  # named, replaced by U+FFFD, still translated
    assert re.search(r"input line\(s\) 4 \(\d+ tokens\)(, \d+ \(\d+ tokens\))* exceed the 50 source tokens", err)
    expected = one_by_one(model_dir, [raw.decode("utf-8", "replace").removesuffix("\r") for raw in ODD_LINES])
    assert out == expected  # in input order (batches are sorted by length inside)


def test_stdin_crlf_and_the_same_lines_with_beam_search(model_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    data = b"\r\n".join(ODD_LINES[:6]) + b"\r\n"  # Windows line ends

    class Stdin(io.TextIOWrapper):
        def isatty(self) -> bool:
            return False

    monkeypatch.setattr(sys, "stdin", Stdin(io.BytesIO(data), encoding="utf-8"))
    code, out, err = run_cli(["translate", str(model_dir)], capsys)  # beam 4, §6.1
    assert code == 0, err
    assert len(out) == 6 and out[1] == "" and out[2] == ""


def test_an_empty_file_gives_no_output_and_exit_0(model_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert run_cli(["translate", str(model_dir), "--input", str(empty)], capsys)[:2] == (0, [])
    newline = tmp_path / "newline.txt"
    newline.write_bytes(b"\n\n")  # two empty lines
    assert run_cli(["translate", str(model_dir), "--input", str(newline)], capsys)[:2] == (0, ["", ""])
    code, out, err = run_cli(["translate", str(model_dir), "--input", str(tmp_path / "nope.txt")], capsys)
    assert code == 1 and out == [] and "nope.txt does not exist" in err and "Traceback" not in err


def test_arguments_with_undecodable_bytes_and_newlines(model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    # a non-UTF-8 argv byte reaches Python as a lone surrogate (surrogateescape); a quoted argument may hold "\n"
    code, out, err = run_cli(["translate", str(model_dir), "caf\udce9 king", "two\nlines", "\udcff", "--greedy"],
                             capsys)
    assert code == 0, err
    assert len(out) == 3


FUZZ = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                     HealthCheck.function_scoped_fixture])
TEXT_LINE = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\n"), max_size=40).map(
    lambda text: text.encode("utf-8"))  # any Unicode: controls, marks, private use, unassigned code points
BYTES_LINE = st.binary(max_size=40).map(lambda data: data.replace(b"\n", b" "))  # any bytes, mostly not UTF-8


@FUZZ
@given(st.lists(st.one_of(TEXT_LINE, BYTES_LINE), min_size=1, max_size=6), st.booleans())
def test_any_lines_give_one_output_line_each(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                             lines: list[bytes], final_newline: bool) -> None:
    path = tmp_path / "fuzz.txt"
    path.write_bytes(b"\n".join(lines) + (b"\n" if final_newline else b""))
    code, out, err = run_cli(["translate", str(model_dir), "--input", str(path), "--greedy"], capsys)
    assert code == 0, err
    # a file ending in an empty line without a newline cannot be told from one without that line
    expected = len(lines) - (not final_newline and lines[-1] == b"")
    assert len(out) == expected
    for number, (raw, translated) in enumerate(zip(lines, out)):
        raw = raw.removeprefix(b"\xef\xbb\xbf") if number == 0 else raw  # a byte-order mark opens the file only
        if not raw.removesuffix(b"\r").decode("utf-8", "replace").strip():
            assert translated == ""  # blank in, blank out


def test_corpus_and_reference_files_that_are_not_utf8_name_the_line(model_dir: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    """Training and scoring read text that must be exact: there, bytes that are not UTF-8 are a clear error."""
    corpus = tmp_path / "latin1.tsv"
    corpus.write_bytes(b"the king\tel rey\nthe caf\xe9\tel caf\xe9\n")
    code, out, err = run_cli(["train", "--data", str(corpus), "--out", str(tmp_path / "run")], capsys)
    assert code == 1 and "latin1.tsv, line 2: bytes that are not UTF-8 (b'\\xe9')" in err and "iconv" in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()
    src, ref = tmp_path / "test.en", tmp_path / "test.es"
    src.write_bytes(b"the king\n")
    ref.write_bytes(b"\xff\xfeel rey\n")  # UTF-16's byte-order mark
    code, out, err = run_cli(["evaluate", str(model_dir), "--src", str(src), "--ref", str(ref)], capsys)
    assert code == 1 and "test.es, line 1: bytes that are not UTF-8" in err and "Traceback" not in err
