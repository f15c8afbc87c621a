"""Prepare a token store (aiayn.data.store) from a corpus of any size: read it as a stream, learn the tokenizer on
a bounded sample, encode in batches on every core, write the arrays. `aiayn prepare` and `aiayn train` call it.

Pairs take two passes over the input: the first checks every line (a malformed one is named by its number, or
skipped and counted), counts the pairs, hashes the bytes and keeps the tokenizer's sample; the second encodes.
Text takes three: count the characters (where the train / validation cut falls), sample the training part,
encode. Only a sample, a chunk being encoded and the held-out pairs are ever in memory.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import itertools
import json
import random
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer
from tqdm import tqdm

from .corpus import BUNDLED, BUNDLED_FILE, DEV_BOOKS, TEST_BOOKS, CorpusError, book_of, read_pairs
from .store import (
    STORE_TOKENIZER,
    Store,
    StoreError,
    StoreWriter,
    quick_key,
    read_meta,
    same_source,
    tokenizer_hash,
)
from .tokenizer import train_bpe

PAIR_CHUNK = 20_000  # pairs encoded per batch (one encode_batch call per side)
TEXT_CHUNK = 1 << 18  # characters per text chunk; TEXT_BATCH chunks per encode_batch call
TEXT_BATCH = 16
BPE_SAMPLE = 1_000_000  # sentences (pairs: half as many pairs) the vocabulary is learned on, as SentencePiece's
# input_sentence_size; the bpe_sample setting


def _encoder(tok: Tokenizer) -> Callable[[list[str]], list[list[int]]]:
    """texts -> id lists (no special tokens), in parallel in Rust; encode_batch_fast skips the character offsets."""
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
    return lambda texts: [e.ids for e in encode(texts, add_special_tokens=False)]


def is_store(path: str | Path) -> bool:
    """True if `path` is a folder holding a prepared store's meta.json."""
    return read_meta(Path(path)) is not None


# ------------------------------------------------------------------ reading lines
class _Lines:
    """The lines of a UTF-8 file (optionally .gz), numbered from 1, without line endings; every byte is hashed."""

    def __init__(self, path: Path, skip_bad: bool) -> None:
        """Not read yet."""
        self.path, self.skip_bad = path, skip_bad
        self.digest = hashlib.blake2b(digest_size=16)
        self.bad = 0

    def __iter__(self) -> Iterator[tuple[int, str | None]]:
        """(number, text), text None for a line that is not UTF-8 when bad lines are skipped."""
        path = self.path
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as handle:
            for number, raw in enumerate(handle, 1):
                self.digest.update(raw)
                try:
                    yield number, raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as error:
                    if not self.skip_bad:
                        raise CorpusError(f"{path}, line {number:,}: bytes that are not UTF-8 "
                                          f"({error.object[error.start:error.end]!r}); convert the file (e.g. `iconv "
                                          f"-f latin1 -t utf-8`), or skip such lines with --skip-bad-lines") from None
                    self.bad += 1
                    yield number, None


def _check_file(path: Path, what: str) -> None:
    """CorpusError unless path is an existing, non-empty file."""
    if not path.is_file():
        folder = " (it is a folder)" if path.is_dir() else ""
        raise CorpusError(f"{what} {path} does not exist{folder}; give the path of a TSV file (source<TAB>target) "
                          f"or two aligned text files")
    if path.stat().st_size == 0:
        raise CorpusError(f"{what} {path} is empty; it needs one sentence pair per line")


@dataclass
class PairSource:
    """What a translation store is made of: the corpus, held-out files or sizes, and the tokenizer's settings."""

    data: str = BUNDLED
    target: str | None = None
    dev: str | None = None
    dev_target: str | None = None
    test: str | None = None
    test_target: str | None = None
    dev_size: int = 500
    test_size: int = 1000
    split_seed: int = 1
    vocab_size: int = 8000
    bpe_sample: int = BPE_SAMPLE
    skip_bad_lines: bool = False

    def check(self) -> None:
        """The files exist and the flags pair up (CorpusError naming the fix), before anything is read."""
        for given, name, needs in ((self.dev_target, "--dev-target", self.dev),
                                   (self.test_target, "--test-target", self.test)):
            if given is not None and needs is None:
                flag = name.removesuffix("-target")
                raise CorpusError(f"{name} needs {flag}: {flag} names the source side, {name} its aligned target "
                                  f"file (or give {flag} a TSV and no {name})")
        if self.bundled:
            if self.target is not None:
                raise CorpusError(f"--target {self.target} pairs with --data a source text file, not the bundled "
                                  f"corpus: give --data SOURCE_FILE --target TARGET_FILE (or a TSV as --data)")
            if not BUNDLED_FILE.is_file():
                raise CorpusError(f"the bundled corpus {BUNDLED_FILE} is missing from this installation; reinstall "
                                  f"aiayn or rebuild it with scripts/build_bible_corpus.py")
        for name, path in self.inputs().items():
            _check_file(path, "corpus file" if name == "data" else f"{name.replace('_', '-')} file")

    @property
    def bundled(self) -> bool:
        """True for the bundled Bible (split by book)."""
        return self.data == BUNDLED

    def inputs(self) -> dict[str, Path]:
        """The files read, by setting name."""
        named = {"data": BUNDLED_FILE if self.bundled else self.data, "target": self.target, "dev": self.dev,
                 "dev_target": self.dev_target, "test": self.test, "test_target": self.test_target}
        return {name: Path(path) for name, path in named.items() if path is not None}

    def shape(self) -> dict[str, Any]:
        """The settings that shape the store (compared, with the inputs, before a store is reused)."""
        return asdict(self)


class _PairRows:
    """The pairs of a corpus, read as a stream: (reference or "", source, target); blank lines skipped as before.

    A TSV has 2 fields (source, target) or 3 (reference, source, target) on every line; two files are aligned
    line by line (pairs with a blank side are dropped). A malformed line raises CorpusError naming its number,
    or with skip_bad is skipped and counted in `bad`.
    """

    def __init__(self, source: PairSource) -> None:
        """Not read yet."""
        inputs = source.inputs()
        self.source = source
        self.files = [_Lines(inputs["data"], source.skip_bad_lines)]
        if "target" in inputs:
            self.files.append(_Lines(inputs["target"], source.skip_bad_lines))
        self.bad = 0

    def digests(self) -> list[str]:
        """The content hash of each file read (after a whole pass)."""
        return [lines.digest.hexdigest() for lines in self.files]

    def __iter__(self) -> Iterator[tuple[str, str, str]]:
        """The pairs, in corpus order."""
        yield from (self._tsv() if len(self.files) == 1 else self._aligned())

    def _bad(self, message: str) -> None:
        """Raise CorpusError(message), or count a skipped line."""
        if not self.source.skip_bad_lines:
            raise CorpusError(message + ", or skip such lines with --skip-bad-lines")
        self.bad += 1

    def _tsv(self) -> Iterator[tuple[str, str, str]]:
        lines = self.files[0]
        width = 0
        for number, line in lines:
            if line is None:
                self.bad += 1
                continue
            if not line.strip():
                continue
            fields = line.split("\t")
            if not width and len(fields) in (2, 3):
                width = len(fields)
            if len(fields) != width:
                if not width:
                    self._bad(f"{lines.path}, line {number:,}: {len(fields)} tab-separated field(s); a corpus TSV "
                              f"has 2 (source, target) or 3 (reference, source, target): fix or remove that line")
                else:
                    self._bad(f"{lines.path}, line {number:,}: {len(fields)} tab-separated field(s) but earlier "
                              f"lines have {width}: fix or remove that line")
                continue
            if width == 2:
                yield "", fields[0].strip(), fields[1].strip()
            else:
                yield fields[0].strip(), fields[1].strip(), fields[2].strip()

    def _aligned(self) -> Iterator[tuple[str, str, str]]:
        src_lines, tgt_lines = self.files
        done = object()
        for (_, src), (_, tgt) in itertools.zip_longest(src_lines, tgt_lines, fillvalue=(0, done)):
            if src is done or tgt is done:
                raise CorpusError(f"misaligned parallel files: {src_lines.path} has {_line_count(src_lines):,} lines "
                                  f"but {tgt_lines.path} has {_line_count(tgt_lines):,}; line i of one must translate "
                                  f"line i of the other")
            if src is None or tgt is None:
                self.bad += 1
                continue
            src, tgt = src.strip(), tgt.strip()  # type: ignore[union-attr]
            if src and tgt:
                yield "", src, tgt


def _line_count(lines: _Lines) -> int:
    """The number of lines of a file read to its end."""
    with gzip.open(lines.path, "rb") if lines.path.suffix == ".gz" else lines.path.open("rb") as handle:
        return sum(1 for _ in handle)


def _split_plan(source: PairSource, count: int) -> Callable[[int, str], str]:
    """pair index, reference -> 'train', 'dev', 'test' or '' (held out of training, not kept), as load_corpus
    splits: the bundled corpus by book; a user corpus draws what no file gives with Random(split_seed)."""
    if source.bundled:
        dev_name = "" if source.dev is not None else "dev"
        test_name = "" if source.test is not None else "test"

        def by_book(index: int, reference: str) -> str:
            book = book_of(reference)
            return test_name if book in TEST_BOOKS else dev_name if book in DEV_BOOKS else "train"

        return by_book
    dev_size = 0 if source.dev is not None else source.dev_size
    test_size = 0 if source.test is not None else source.test_size
    if dev_size + test_size >= count:
        raise CorpusError(f"the corpus has {count:,} pairs, too few for dev_size={dev_size} + test_size={test_size} "
                          f"held out; lower them or give dev/test files")
    order = list(range(count))  # the draw of aiayn.data.corpus.random_split, for the same dev / test pairs
    random.Random(source.split_seed).shuffle(order)
    dev, test = set(order[:dev_size]), set(order[dev_size:dev_size + test_size])
    del order
    return lambda index, reference: "dev" if index in dev else "test" if index in test else "train"


def _bar(total: int | None, unit: str, desc: str, show: bool) -> tqdm:
    """A progress bar on a terminal (none elsewhere)."""
    return tqdm(total=total, unit=unit, unit_scale=True, desc=desc, dynamic_ncols=True,
                disable=not (show and sys.stderr.isatty()))


class _Pipeline:
    """Encodes chunks on a worker thread (the tokenizer's Rust code runs without the GIL) while the caller reads the
    next one; at most two chunks wait, so memory stays bounded."""

    def __init__(self) -> None:
        """A worker thread."""
        self.pool = ThreadPoolExecutor(1)
        self.pending: deque[Future[None]] = deque()

    def submit(self, work: Callable[[], None]) -> None:
        """Run work() after the chunks submitted before it."""
        self.pending.append(self.pool.submit(work))
        while len(self.pending) > 2:
            self.pending.popleft().result()

    def close(self) -> None:
        """Wait for every chunk (re-raising a worker's error)."""
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


def prepare_pairs(source: PairSource, out: str | Path, tokenizer: Tokenizer | None = None,
                  log: Callable[[str], None] = lambda message: None, progress: bool = True) -> Store:
    """Prepare a translation store at `out`: every line checked, the joint BPE learned on at most bpe_sample sentences
    of the training split (unless `tokenizer` is given), every pair encoded; the Store."""
    source.check()
    started = time.perf_counter()
    # pass 1: check every line, count the pairs, keep a seeded reservoir sample of them for the tokenizer
    rows = _PairRows(source)
    keep = 0 if tokenizer is not None else max(1, source.bpe_sample // 2)
    sample: list[tuple[int, str, str, str]] = []
    draw = random.Random(source.split_seed)
    count = 0
    with _bar(None, "pairs", "check", progress) as bar:
        for count, (reference, src, tgt) in enumerate(rows, 1):
            if count <= keep:
                sample.append((count - 1, reference, src, tgt))
            elif keep and (j := draw.randrange(count)) < keep:
                sample[j] = (count - 1, reference, src, tgt)
            if count % 65536 == 0:
                bar.update(65536)
    if count == 0:
        raise CorpusError(f"{source.data} holds no sentence pairs (only blank lines)")
    digests, skipped = rows.digests(), rows.bad + sum(lines.bad for lines in rows.files)
    split = _split_plan(source, count)
    if skipped:
        log(f"skipped {skipped:,} malformed line(s) of {source.data} (--skip-bad-lines)")
    learned = tokenizer is None
    if tokenizer is None:
        sample.sort()
        texts = [text for index, reference, src, tgt in sample if split(index, reference) == "train"
                 for text in (src, tgt)]
        del sample
        clock = time.perf_counter()
        tokenizer = train_bpe(texts, source.vocab_size)
        log(f"joint BPE: {tokenizer.get_vocab_size():,} tokens learned on {len(texts):,} sentences of the training "
            f"split in {time.perf_counter() - clock:.1f}s")
        del texts
    encode = _encoder(tokenizer)
    held: dict[str, list[tuple[str, str]]] = {"dev": [], "test": []}
    counts = {"train": 0, "src_tokens": 0, "tgt_tokens": 0}
    with StoreWriter(out, tokenizer.get_vocab_size()) as writer:
        def encode_train(chunk: list[tuple[str, str]]) -> None:
            src, tgt = encode([s for s, _ in chunk]), encode([t for _, t in chunk])
            writer.append("train.src", src)
            writer.append("train.tgt", tgt)
            counts["src_tokens"] += sum(map(len, src))
            counts["tgt_tokens"] += sum(map(len, tgt))
        # pass 2: encode the training pairs in chunks, keep the held-out pairs as text
        rows = _PairRows(source)
        pipeline = _Pipeline()
        chunk: list[tuple[str, str]] = []
        try:
            with _bar(count, "pairs", "encode", progress) as bar:
                for index, (reference, src, tgt) in enumerate(rows):
                    where = split(index, reference)
                    if where == "train":
                        chunk.append((src, tgt))
                        if len(chunk) == PAIR_CHUNK:
                            pipeline.submit(lambda chunk=chunk: encode_train(chunk))
                            counts["train"] += len(chunk)
                            bar.update(len(chunk))
                            chunk = []
                    elif where:
                        held[where].append((src, tgt))
                if chunk:
                    pipeline.submit(lambda chunk=chunk: encode_train(chunk))
                    counts["train"] += len(chunk)
        finally:
            pipeline.close()
        if rows.digests() != digests:
            raise CorpusError(f"{source.data} changed while it was being prepared; prepare again once it is written")
        if counts["train"] == 0:
            raise CorpusError(f"the training split of {source.data} is empty: every pair is held out for dev / test")
        if source.dev is not None:
            held["dev"] = read_pairs(source.dev, source.dev_target)
        if source.test is not None:
            held["test"] = read_pairs(source.test, source.test_target)
        for split_name, pairs in held.items():
            writer.write_text(f"{split_name}.jsonl", "".join(json.dumps(pair, ensure_ascii=False) + "\n"
                                                               for pair in pairs))
        writer.append("dev.src", encode([s for s, _ in held["dev"]]) if held["dev"] else [])
        writer.append("dev.tgt", encode([t for _, t in held["dev"]]) if held["dev"] else [])
        writer.write_text(STORE_TOKENIZER, tokenizer.to_str())
        seconds = time.perf_counter() - started
        meta = {"kind": "pairs", "inputs": _input_keys(source.inputs(), dict(zip(("data", "target"), digests))),
                "shape": source.shape(), "tokenizer": tokenizer_hash(tokenizer), "learned": learned,
                "counts": {**counts, "dev": len(held["dev"]), "test": len(held["test"]), "skipped": skipped},
                "seconds": round(seconds, 1)}
        store = writer.finish(meta)
    log(f"prepared {store.path}: {counts['train']:,} training pairs ({counts['train'] / seconds:,.0f} pairs/s), "
        f"dev {len(held['dev']):,}, test {len(held['test']):,}" + (f", {skipped:,} skipped" if skipped else ""))
    return store


def _input_keys(inputs: dict[str, Path], digests: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each input's quick key (aiayn.data.store.quick_key), with its full content hash where one was taken."""
    keys = {}
    for name, path in inputs.items():
        keys[name] = quick_key(path)
        if name in digests:
            keys[name]["blake2b"] = digests[name]
    return keys


def store_matches(meta: dict[str, Any] | None, kind: str, inputs: dict[str, Path], shape: dict[str, Any],
                  tokenizer: Tokenizer | None) -> str | None:
    """None if a store's meta describes these inputs, settings and tokenizer (any learned one when None); else
    why not, in words."""
    if meta is None:
        return "no complete store there"
    if meta.get("kind") != kind:
        return f"it is a store of {meta.get('kind')}, not {kind}"
    saved = meta.get("inputs", {})
    if set(saved) != set(inputs) or any(not same_source(saved[name], path) for name, path in inputs.items()):
        return "the corpus files changed (size, time or content)"
    if meta.get("shape") != shape:
        changed = sorted(k for k in shape if meta.get("shape", {}).get(k) != shape[k])
        return f"other settings ({', '.join(changed)})"
    if tokenizer is not None and meta.get("tokenizer") != tokenizer_hash(tokenizer):
        return "another tokenizer"
    if tokenizer is None and not meta.get("learned"):
        return "its tokenizer was given, not learned"
    return None


def _reuse_or_prepare(out: str | Path, kind: str, inputs: dict[str, Path], shape: dict[str, Any],
                      tokenizer: Tokenizer | None, log: Callable[[str], None], prepare: Callable[[], Store]) -> Store:
    """The `kind` store at `out` if it was prepared from these inputs and settings (and `tokenizer`), else
    prepare()'s new one."""
    label = "corpus" if kind == "pairs" else kind
    why = store_matches(read_meta(Path(out)), kind, inputs, shape, tokenizer)
    if why is None:
        try:
            store = Store(out)
            log(f"{label}: reusing the prepared store {out}")
            return store
        except StoreError as error:
            why = str(error)
    if Path(out).exists():
        log(f"{label}: preparing {out} again: {why}")
    return prepare()


def open_or_prepare_pairs(source: PairSource, out: str | Path, tokenizer: Tokenizer | None = None,
                          log: Callable[[str], None] = lambda message: None) -> Store:
    """The store at `out` if it was prepared from these files and settings (and `tokenizer`), else a new one."""
    source.check()
    return _reuse_or_prepare(out, "pairs", source.inputs(), source.shape(), tokenizer, log,
                             lambda: prepare_pairs(source, out, tokenizer, log))


# ------------------------------------------------------------------ text (language models)
@dataclass
class TextSource:
    """What a language model's store is made of: a text file, a folder of .txt files, or the bundled text (None)."""

    data: str | None = None
    train_fraction: float = 0.9

    def files(self) -> list[Path]:
        """The files read, in order (CorpusError for none)."""
        if self.data is None:
            return [Path(str(resources.files("aiayn") / "data" / "corpora" / "shakespeare.txt.gz"))]
        source = Path(self.data)
        if source.is_dir():
            files = sorted(source.rglob("*.txt"))
            if not files:
                raise CorpusError(f"{source} holds no .txt files: give a text file or a folder of .txt files")
            return files
        if not source.is_file():
            raise CorpusError(f"{source} does not exist: give a text file or a folder of .txt files")
        return [source]

    def pieces(self, digest: Any = None) -> Iterator[str]:
        """The text as a stream of lines (with their newlines, read as UTF-8 with U+FFFD for bad bytes, \\r\\n and
        \\r as \\n, as Python's text mode reads), files joined by a blank line as aiayn.data.lm.read_text does."""
        for k, path in enumerate(self.files()):
            if k:
                yield "\n\n"
            bundled = self.data is None
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as handle:
                for raw in handle:
                    if digest is not None:
                        digest.update(raw)
                    line = decoder.decode(raw)
                    yield line if bundled else line.replace("\r\n", "\n").replace("\r", "\n")
                tail = decoder.decode(b"", final=True)
                if tail:
                    yield tail


def prepare_text(source: TextSource, out: str | Path, learn: Callable[[str, str], Tokenizer] | None,
                 tokenizer: Tokenizer | None = None, bpe_sample: int = BPE_SAMPLE,
                 shape: dict[str, Any] | None = None, log: Callable[[str], None] = lambda message: None,
                 progress: bool = True) -> Store:
    """Prepare a language model's store: the first train_fraction of the characters train, the rest validate (as
    nanoGPT). learn(sample, chars) makes the tokenizer from a sample of at most bpe_sample lines of the training
    part (in order; all of it when shorter) and the characters it holds, unless `tokenizer` is given."""
    started = time.perf_counter()
    files = source.files()
    digest = hashlib.blake2b(digest_size=16)
    characters, blank = 0, True
    for piece in source.pieces(digest):  # pass 1: where the cut falls
        characters += len(piece)
        blank = blank and not piece.strip()
    if blank:
        raise CorpusError(f"{source.data} is empty: a language model needs text to train on")
    cut = int(characters * source.train_fraction)
    learned = tokenizer is None
    if tokenizer is None:  # pass 2: a seeded reservoir of the training part's lines, and its characters
        assert learn is not None
        sample: list[tuple[int, str]] = []
        chars: set[str] = set()
        draw = random.Random(0)
        for index, piece in enumerate(_before(source.pieces(), cut)):
            chars.update(piece)
            if index < bpe_sample:
                sample.append((index, piece))
            elif (j := draw.randrange(index + 1)) < bpe_sample:
                sample[j] = (index, piece)
        sample.sort()
        clock = time.perf_counter()
        tokenizer = learn("".join(piece for _, piece in sample), "".join(sorted(chars)))
        del sample
        log(f"tokenizer of {tokenizer.get_vocab_size():,} tokens learned in {time.perf_counter() - clock:.1f}s")
    encode = _encoder(tokenizer)
    tokens = {"train": 0, "val": 0}
    with StoreWriter(out, tokenizer.get_vocab_size()) as writer:
        def encode_chunks(name: str, chunks: list[str]) -> None:
            ids = encode(chunks)
            writer.extend(name, np.fromiter(itertools.chain.from_iterable(ids), dtype=writer.dtype,
                                            count=sum(map(len, ids))))
            tokens[name] += sum(map(len, ids))

        pipeline = _Pipeline()
        second = hashlib.blake2b(digest_size=16)
        try:
            with _bar(characters, "char", "encode", progress) as bar:
                for name, chunks in _chunks(source.pieces(second), cut):
                    pipeline.submit(lambda name=name, chunks=chunks: encode_chunks(name, chunks))
                    bar.update(sum(map(len, chunks)))
        finally:
            pipeline.close()
        if second.hexdigest() != digest.hexdigest():
            raise CorpusError(f"{source.data} changed while it was being prepared; prepare again once it is written")
        writer.write_text(STORE_TOKENIZER, tokenizer.to_str())
        inputs = {str(k): path for k, path in enumerate(files)}
        meta = {"kind": "text", "inputs": _input_keys(inputs, {}), "content": digest.hexdigest(),
                "shape": shape or {}, "tokenizer": tokenizer_hash(tokenizer), "learned": learned,
                "counts": {"characters": characters, "train_characters": cut, "train_tokens": tokens["train"],
                           "val_tokens": tokens["val"]}, "seconds": round(time.perf_counter() - started, 1)}
        if tokens["val"] == 0:
            writer.extend("val", np.zeros(0, dtype=writer.dtype))
        store = writer.finish(meta)
    log(f"prepared {store.path}: {characters:,} characters, train {tokens['train']:,} and validation "
        f"{tokens['val']:,} tokens in {time.perf_counter() - started:.1f}s")
    return store


def _before(pieces: Iterable[str], cut: int) -> Iterator[str]:
    """The pieces up to character `cut` (the last one shortened to end there)."""
    seen = 0
    for piece in pieces:
        if seen + len(piece) >= cut:
            if cut > seen:
                yield piece[:cut - seen]
            return
        seen += len(piece)
        yield piece


def _chunks(pieces: Iterable[str], cut: int) -> Iterator[tuple[str, list[str]]]:
    """('train' | 'val', TEXT_BATCH chunks of about TEXT_CHUNK characters), split exactly at character `cut`."""
    name, seen = "train", 0
    chunk: list[str] = []
    size = 0
    batch: list[str] = []
    for piece in pieces:
        if name == "train" and seen + len(piece) >= cut:  # the cut falls in this piece: end the training part
            head, piece = piece[:cut - seen], piece[cut - seen:]
            chunk.append(head)
            batch.append("".join(chunk))
            yield name, [text for text in batch if text]
            name, chunk, size, batch = "val", [], 0, []
            seen = cut
        seen += len(piece)
        chunk.append(piece)
        size += len(piece)
        if size >= TEXT_CHUNK:
            batch.append("".join(chunk))
            chunk, size = [], 0
            if len(batch) == TEXT_BATCH:
                yield name, batch
                batch = []
    if chunk:
        batch.append("".join(chunk))
    batch = [text for text in batch if text]
    if batch:
        yield name, batch


def open_or_prepare_text(source: TextSource, out: str | Path, learn: Callable[[str, str], Tokenizer],
                         tokenizer: Tokenizer | None, bpe_sample: int, shape: dict[str, Any],
                         log: Callable[[str], None] = lambda message: None) -> Store:
    """The text store at `out` if it was prepared from these files and settings (and `tokenizer`), else a new one."""
    inputs = {str(k): path for k, path in enumerate(source.files())}
    return _reuse_or_prepare(out, "text", inputs, shape, tokenizer, log,
                             lambda: prepare_text(source, out, learn, tokenizer, bpe_sample, shape, log))
