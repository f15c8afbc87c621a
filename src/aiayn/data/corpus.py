"""Parallel corpora: TSV or two aligned text files, the bundled KJV/RV1909 Bible, and train/dev/test splits."""

from __future__ import annotations

import gzip
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CORPORA = Path(__file__).parent / "corpora"
BUNDLED = "kjv-rv1909"  # the name that selects the bundled English-Spanish Bible
BUNDLED_FILE = CORPORA / "kjv_rv1909.tsv.gz"
# The bundled split is by book and fixed: test = John, dev = Ruth + James, train = every other book.
TEST_BOOKS = ("John",)
DEV_BOOKS = ("Ruth", "James")

Pair = tuple[str, str]  # (source sentence, target sentence)


class CorpusError(ValueError):
    """A corpus file that is missing, empty or malformed; the message names the file (and line) and the fix."""


@dataclass
class Corpus:
    """Train, dev and test sentence pairs (source, target), plus where they came from."""

    train: list[Pair]
    dev: list[Pair]
    test: list[Pair]
    name: str = ""

    def counts(self) -> dict[str, int]:
        """Number of pairs in each split."""
        return {"train": len(self.train), "dev": len(self.dev), "test": len(self.test)}


def _check_file(path: Path, what: str) -> None:
    """Raise CorpusError unless path is an existing, non-empty file."""
    if not path.exists() or path.is_dir():
        folder = " (it is a folder)" if path.is_dir() else ""
        raise CorpusError(f"{what} {path} does not exist{folder}; give the path of a TSV file (source<TAB>target) "
                          f"or two aligned text files")
    if path.is_file() and path.stat().st_size == 0:
        raise CorpusError(f"{what} {path} is empty; it needs one sentence pair per line")


def read_tsv(path: str | Path) -> list[tuple[str, ...]]:
    """Rows of a TSV (optionally .gz): 2 fields (source, target) or 3 (reference, source, target), all rows alike."""
    path = Path(path)
    _check_file(path, "corpus file")
    rows: list[tuple[str, ...]] = []
    width = 0
    for number, line in enumerate(_utf8_lines(path), 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        fields = tuple(field.strip() for field in line.split("\t"))
        if not width:
            width = len(fields)
            if width not in (2, 3):
                raise CorpusError(f"{path}, line {number}: {width} tab-separated field(s); a corpus TSV has "
                                  f"2 (source, target) or 3 (reference, source, target)")
        if len(fields) != width:
            raise CorpusError(f"{path}, line {number}: {len(fields)} tab-separated field(s) but earlier lines "
                              f"have {width}; fix or remove that line")
        rows.append(fields)
    if not rows:
        raise CorpusError(f"{path} holds no sentence pairs (only blank lines)")
    return rows


def read_lines(path: str | Path) -> list[str]:
    """The lines of a text file (optionally .gz), without line endings."""
    path = Path(path)
    _check_file(path, "text file")
    return [line.rstrip("\r\n") for line in _utf8_lines(path)]


def _utf8_lines(path: Path) -> Iterator[str]:
    """The lines of a UTF-8 text file (optionally .gz), split on "\\n"; bytes that are not UTF-8 raise
    CorpusError naming the line."""
    with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise CorpusError(f"{path}, line {number}: bytes that are not UTF-8 "
                                  f"({error.object[error.start:error.end]!r}); convert the file, e.g. "
                                  f"`iconv -f latin1 -t utf-8 {path.name}`") from None


def read_parallel(src_path: str | Path, tgt_path: str | Path) -> list[Pair]:
    """Pairs from two aligned text files (line i of one translates line i of the other)."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise CorpusError(f"misaligned parallel files: {src_path} has {len(src)} lines but {tgt_path} has "
                          f"{len(tgt)}; line i of one must translate line i of the other")
    pairs = [(s.strip(), t.strip()) for s, t in zip(src, tgt) if s.strip() and t.strip()]
    if not pairs:
        raise CorpusError(f"{src_path} and {tgt_path} hold no non-empty sentence pairs")
    return pairs


def read_pairs(path: str | Path, target_path: str | Path | None = None) -> list[Pair]:
    """Pairs from a TSV (2 or 3 fields; the reference column is dropped) or from two aligned text files."""
    if target_path is not None:
        return read_parallel(path, target_path)
    return [(row[-2], row[-1]) for row in read_tsv(path)]


def book_of(reference: str) -> str:
    """The book of a verse reference: "1 John 3:16" -> "1 John", "John 3:16" -> "John"."""
    return reference.rsplit(" ", 1)[0]


def split_by_book(rows: list[tuple[str, ...]], test_books: tuple[str, ...] = TEST_BOOKS,
                  dev_books: tuple[str, ...] = DEV_BOOKS) -> Corpus:
    """Split (reference, source, target) rows by the reference's book into train/dev/test."""
    splits: dict[str, list[Pair]] = {"train": [], "dev": [], "test": []}
    for reference, src, tgt in rows:
        book = book_of(reference)
        name = "test" if book in test_books else "dev" if book in dev_books else "train"
        splits[name].append((src, tgt))
    return Corpus(**splits)


def random_split(pairs: list[Pair], dev_size: int, test_size: int, seed: int) -> Corpus:
    """Draw dev and test pairs at random with `seed`; the rest (in corpus order) is train."""
    if dev_size + test_size >= len(pairs):
        raise CorpusError(f"the corpus has {len(pairs)} pairs, too few for dev_size={dev_size} + "
                          f"test_size={test_size} held out; lower them or give dev/test files")
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    dev_index = set(order[:dev_size])
    test_index = set(order[dev_size:dev_size + test_size])
    return Corpus(train=[p for i, p in enumerate(pairs) if i not in dev_index and i not in test_index],
                  dev=[pairs[i] for i in sorted(dev_index)], test=[pairs[i] for i in sorted(test_index)])


def load_corpus(data: str = BUNDLED, target: str | None = None, dev: str | None = None,
                dev_target: str | None = None, test: str | None = None, test_target: str | None = None,
                dev_size: int = 500, test_size: int = 1000, seed: int = 1) -> Corpus:
    """The bundled Bible split by book, or a user corpus with dev/test files given or drawn with `seed`.

    Dev and test files replace the bundled corpus's dev and test books (which stay out of training).
    """
    for given, name, needs in ((dev_target, "--dev-target", dev), (test_target, "--test-target", test)):
        if given is not None and needs is None:
            flag = name.removesuffix("-target")
            raise CorpusError(f"{name} needs {flag}: {flag} names the source side, {name} its aligned target "
                              f"file (or give {flag} a TSV and no {name})")
    if data == BUNDLED:
        if target is not None:
            raise CorpusError(f"--target {target} pairs with --data a source text file, not the bundled corpus: "
                              f"give --data SOURCE_FILE --target TARGET_FILE (or a TSV as --data)")
        if not BUNDLED_FILE.is_file():
            raise CorpusError(f"the bundled corpus {BUNDLED_FILE} is missing from this installation; reinstall "
                              f"aiayn or rebuild it with scripts/build_bible_corpus.py")
        corpus = split_by_book(read_tsv(BUNDLED_FILE))
        if dev is not None:
            corpus.dev = read_pairs(dev, dev_target)
        if test is not None:
            corpus.test = read_pairs(test, test_target)
        corpus.name = BUNDLED
        return corpus
    pairs = read_pairs(data, target)
    if dev is None and test is None:
        corpus = random_split(pairs, dev_size, test_size, seed)
    else:
        held_dev = read_pairs(dev, dev_target) if dev is not None else []
        held_test = read_pairs(test, test_target) if test is not None else []
        if not held_dev or not held_test:  # draw the missing one from the corpus
            drawn = random_split(pairs, 0 if held_dev else dev_size, 0 if held_test else test_size, seed)
            pairs, held_dev, held_test = drawn.train, held_dev or drawn.dev, held_test or drawn.test
        corpus = Corpus(train=pairs, dev=held_dev, test=held_test)
    corpus.name = str(data)
    return corpus
