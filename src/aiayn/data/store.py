"""The prepared token store: a corpus tokenized once into memory-mapped arrays (as fairseq-preprocess and
nanoGPT's train.bin), so memory does not grow with the corpus and torchrun ranks share the pages.

A store is a folder:

    meta.json          format, kind ("pairs" or "text"), what it was made from (SourceKey per input file),
                       the tokenizer's hash, the settings that shaped it, counts and every file's size
    tokenizer.json     the tokenizer the ids are of
    NAME.bin           token ids, uint16 (uint32 when the vocabulary has more than 65,536 tokens)
    NAME.idx.npy       int64 offsets (N + 1,) into NAME.bin of the N sequences of a column (pairs only)
    dev.jsonl ...      the held-out pairs as text (pairs only), for BLEU

Columns: pairs have train.src / train.tgt and dev.src / dev.tgt (BPE ids, no special tokens); text has one
stream per split, train and val. A store is written into a hidden temporary folder beside it and renamed
into place when complete, meta.json written last: an interrupted or disk-full prepare leaves only that
temporary folder, which the next prepare removes; it never looks like a store.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from .corpus import CorpusError

FORMAT = 1
META_FILE = "meta.json"
STORE_TOKENIZER = "tokenizer.json"
SAMPLED_BLOCKS = 64  # blocks of 64 KiB hashed, spread over a file, in its quick key
BLOCK = 1 << 16


class StoreError(CorpusError):
    """A store that is missing, incomplete or cannot be written; the message names the fix."""


def as_write_error(path: Path, error: OSError) -> StoreError:
    """A StoreError naming the file that could not be written, the reason and the fix."""
    full = error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    fix = "Free some disk space or prepare elsewhere (--out)" if full else "Check the folder is writable"
    return StoreError(f"could not write {path}: {error.strerror or error}; no store was left. {fix}, then prepare "
                      f"again")


def id_dtype(vocab_size: int) -> np.dtype:
    """uint16 where every id fits (vocabularies of up to 65,536 tokens), else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def tokenizer_hash(tok: Tokenizer) -> str:
    """A hash of the tokenizer's JSON form: the same ids for the same text iff the same hash."""
    return hashlib.sha256(tok.to_str().encode("utf-8")).hexdigest()[:32]


def quick_key(path: Path) -> dict[str, Any]:
    """What identifies a file without reading it all: size, modification time (ns) and a hash of 64 blocks of
    64 KiB spread evenly over it (the first and last included).

    A store is reused only if every input's quick key matches (changing a file through any editor or tool
    changes its size or mtime; a copy with the same size and time, as cp -p makes, still differs in the
    sampled blocks). Reading 4 MiB instead of the whole file keeps a 2.7 GB corpus's store opening in
    milliseconds; the full content hash (blake2b of every byte, taken while preparing) is kept in meta.json
    and compared by `aiayn prepare`, which re-reads the file anyway.
    """
    stat = path.stat()
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as handle:
        blocks = max(1, min(SAMPLED_BLOCKS, stat.st_size // BLOCK))
        for k in range(blocks):
            handle.seek(0 if blocks == 1 else (stat.st_size - BLOCK) * k // (blocks - 1))
            digest.update(handle.read(BLOCK))
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "sampled": digest.hexdigest()}


def same_source(saved: dict[str, Any], path: Path) -> bool:
    """True if `path` is the file `saved` (a quick key) describes: same size, mtime and sampled blocks."""
    try:
        now = quick_key(path)
    except OSError:
        return False
    return all(now[k] == saved.get(k) for k in ("size", "mtime_ns", "sampled"))


@dataclass
class Column:
    """N token sequences in one id array: sequence i is ids[offsets[i]:offsets[i + 1]]."""

    ids: np.ndarray  # (total,) uint16 / uint32, memory-mapped
    offsets: np.ndarray  # (N + 1,) int64, memory-mapped

    def __len__(self) -> int:
        """The number of sequences."""
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> list[int]:
        """Sequence i as a list of ids."""
        return self.ids[self.offsets[i]:self.offsets[i + 1]].tolist()

    def lengths(self) -> np.ndarray:
        """(N,) int32 sequence lengths (in memory: 4 bytes a sequence)."""
        return np.diff(self.offsets).astype(np.int32)

    @classmethod
    def from_lists(cls, rows: list[list[int]]) -> Column:
        """A column held in memory (for a few held-out pairs)."""
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = np.fromiter((i for r in rows for i in r), dtype=np.int64, count=int(offsets[-1]))
        return cls(ids, offsets)


class Store:
    """A complete store, opened read-only: its meta, tokenizer, columns (memory-mapped) and held-out text."""

    def __init__(self, path: str | Path) -> None:
        """Open the store at `path`; StoreError if it is not a complete store of this format."""
        self.path = Path(path)
        self.meta = read_meta(self.path)
        if self.meta is None:
            raise StoreError(f"{self.path} is not a prepared token store (no complete {META_FILE}): prepare one "
                             f"with `aiayn prepare --data FILE --out {self.path}`")
        if self.meta.get("format") != FORMAT:
            raise StoreError(f"{self.path} is a store of format {self.meta.get('format')}, this aiayn reads format "
                             f"{FORMAT}: prepare it again with `aiayn prepare`")
        for name, size in self.meta["files"].items():
            file = self.path / name
            if not file.is_file() or file.stat().st_size != size:
                raise StoreError(f"{file} is missing or has another size than when the store was prepared: "
                                 f"prepare the store again (`aiayn prepare`)")
        self.dtype = np.dtype(self.meta["dtype"])

    @property
    def kind(self) -> str:
        """'pairs' (a translation corpus) or 'text' (a language model's)."""
        return str(self.meta["kind"])

    def tokenizer(self) -> Tokenizer:
        """The tokenizer the ids are of."""
        return Tokenizer.from_file(str(self.path / STORE_TOKENIZER))

    def stream(self, name: str) -> np.ndarray:
        """The ids of column `name` (e.g. 'train' of a text store), memory-mapped."""
        size = self.meta["files"][f"{name}.bin"] // self.dtype.itemsize
        if size == 0:
            return np.zeros(0, dtype=self.dtype)
        return np.memmap(self.path / f"{name}.bin", dtype=self.dtype, mode="r", shape=(size,))

    def column(self, name: str) -> Column:
        """Sequences of column `name` (e.g. 'train.src'), memory-mapped."""
        return Column(self.stream(name), np.load(self.path / f"{name}.idx.npy", mmap_mode="r"))

    def pairs(self, split: str) -> list[tuple[str, str]]:
        """The held-out pairs of `split` ('dev' or 'test') as text."""
        path = self.path / f"{split}.jsonl"
        with path.open(encoding="utf-8") as handle:
            return [tuple(json.loads(line)) for line in handle]  # type: ignore[misc]


def read_meta(path: Path) -> dict[str, Any] | None:
    """A store's meta.json, or None where there is none (or it cannot be read)."""
    try:
        return json.loads((path / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class StoreWriter:
    """Writes a store into a temporary folder beside `path`; finish() renames it into place, abort() removes it.

    Use it as a context manager: an exception (a bad line, a full disk, Ctrl-C) aborts, leaving no store.
    """

    def __init__(self, path: str | Path, vocab_size: int) -> None:
        """Start an empty store for a tokenizer of vocab_size tokens (stale temporary folders of `path` go)."""
        self.path = Path(path)
        if self.path.exists() and read_meta(self.path) is None and not (self.path.is_dir() and
                                                                        not any(self.path.iterdir())):
            raise StoreError(f"{self.path} exists and is not a token store: prepare into a new or empty folder")
        self.dtype = id_dtype(vocab_size)
        self.tmp = self.path.parent / f".{self.path.name}.tmp-{os.getpid()}"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for stale in self.path.parent.glob(f".{self.path.name}.tmp-*"):  # left by an interrupted prepare
                shutil.rmtree(stale, ignore_errors=True)
            self.tmp.mkdir()
        except OSError as error:
            raise as_write_error(self.tmp, error) from None
        self._files: dict[str, Any] = {}
        self._lengths: dict[str, list[np.ndarray]] = {}

    def __enter__(self) -> StoreWriter:
        """The writer."""
        return self

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        """Abort on any exception (the temporary folder goes; an older store at `path` stays as it was)."""
        if kind is not None:
            self.abort()

    def append(self, name: str, rows: list[list[int]]) -> None:
        """Add sequences to column `name` (offsets written at the end)."""
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        self.append_flat(name, np.fromiter(itertools.chain.from_iterable(rows), dtype=self.dtype,
                                           count=int(lengths.sum())), lengths)

    def append_flat(self, name: str, ids: np.ndarray, lengths: np.ndarray) -> None:
        """Add sequences to column `name` given as their concatenated ids and their lengths."""
        self._lengths.setdefault(name, []).append(np.asarray(lengths, dtype=np.int64))
        self.extend(name, ids)

    def extend(self, name: str, ids: np.ndarray) -> None:
        """Add ids to the stream `name`."""
        try:
            handle = self._files.get(name)
            if handle is None:
                handle = self._files[name] = self._open(self.tmp / f"{name}.bin")
            handle.write(np.ascontiguousarray(ids, dtype=self.dtype).tobytes())
        except OSError as error:
            raise as_write_error(self.tmp / f"{name}.bin", error) from None

    @staticmethod
    def _open(path: Path) -> Any:
        """A column's file, open for writing."""
        return path.open("wb")

    def write_text(self, name: str, text: str) -> None:
        """A small text file of the store (tokenizer.json, dev.jsonl)."""
        try:
            (self.tmp / name).write_text(text, encoding="utf-8")
        except OSError as error:
            raise as_write_error(self.tmp / name, error) from None

    def finish(self, meta: dict[str, Any]) -> Store:
        """Close the columns, write offsets and meta.json (last), rename the folder into place; the Store."""
        try:
            for name, handle in self._files.items():
                handle.flush()
                os.fsync(handle.fileno())
                handle.close()
                if name in self._lengths:
                    lengths = np.concatenate(self._lengths[name])
                    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
                    np.cumsum(lengths, out=offsets[1:])
                    np.save(self.tmp / f"{name}.idx.npy", offsets)
            files = {p.name: p.stat().st_size for p in sorted(self.tmp.iterdir())}
            meta = {"format": FORMAT, **meta, "dtype": self.dtype.name, "files": files}
            self.write_text(META_FILE, json.dumps(meta, indent=1) + "\n")
            if self.path.exists():  # an older or stale store: replaced only now that the new one is whole
                old = self.path.parent / f".{self.path.name}.old-{os.getpid()}"
                self.path.rename(old)
                shutil.rmtree(old, ignore_errors=True)
            self.tmp.rename(self.path)
        except OSError as error:
            self.abort()
            raise as_write_error(self.path, error) from None
        return Store(self.path)

    def abort(self) -> None:
        """Remove the temporary folder."""
        for handle in self._files.values():
            handle.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
