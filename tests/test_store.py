"""The prepared token store: exact ids, reuse only of an unchanged corpus, no store from an interrupted or failed
prepare, bad lines named before training, the numpy batcher against the list-based algorithm it replaced, and
language-model validation on one fixed sample (issue #32, item 3)."""

from __future__ import annotations

import errno
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest

from aiayn.cli import main
from aiayn.data import prepare as prep
from aiayn.data.batching import Examples, TokenBatcher, length_batches
from aiayn.data.corpus import CorpusError, load_corpus
from aiayn.data.prepare import PairSource, TextSource, is_store, open_or_prepare_pairs, prepare_pairs, prepare_text
from aiayn.data.store import Store, StoreError
from aiayn.data.tokenizer import EOS_ID, encode_batch, train_bpe
from aiayn.training.lm import LMTrainConfig, make_tokenizer, train_lm
from aiayn.training.run_folder import read_metrics
from aiayn.training.translation import TrainConfig, train

from .helpers_translation import write_corpus


def _source(path: Path, **changes) -> PairSource:
    return PairSource(data=str(path), dev_size=10, test_size=15, vocab_size=80, **changes)


def test_the_store_holds_exactly_the_ids_of_the_split_load_corpus_makes(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "c.tsv", n=200)
    store = prepare_pairs(_source(corpus), tmp_path / "store", progress=False)
    split = load_corpus(str(corpus), dev_size=10, test_size=15, seed=1)  # the in-memory reader, as before
    tok = store.tokenizer()
    # the same BPE as learned on the whole training split (the sample holds it all: 400 sentences < 1M)
    assert tok.to_str() == train_bpe((t for pair in split.train for t in pair), 80).to_str()
    src, tgt = store.column("train.src"), store.column("train.tgt")
    assert len(src) == len(split.train) == 175 and store.dtype == np.uint16
    assert [src[i] for i in range(len(src))] == encode_batch(tok, [s for s, _ in split.train])
    assert [tgt[i] for i in range(len(tgt))] == encode_batch(tok, [t for _, t in split.train])
    assert store.pairs("dev") == [tuple(p) for p in split.dev] and store.pairs("test") == [tuple(p) for p in split.test]
    dev = store.column("dev.src")
    assert [dev[i] for i in range(len(dev))] == encode_batch(tok, [s for s, _ in split.dev])
    # a batch from the store is the batch the list-based examples give
    listed = [(s + [EOS_ID], t) for s, t in zip(encode_batch(tok, [s for s, _ in split.train]),
                                               encode_batch(tok, [t for _, t in split.train]))]
    rows = [3, 0, 17, 99]
    a, b = Examples(src, tgt).collate(np.array(rows)), TokenBatcher(listed, 100).batch(rows)
    for name in ("src", "tgt_in", "labels", "scored"):
        assert getattr(a, name).tolist() == getattr(b, name).tolist()


def test_ids_beyond_65536_tokens_are_stored_as_uint32(tmp_path: Path) -> None:
    from aiayn.data.store import StoreWriter

    with StoreWriter(tmp_path / "s", vocab_size=70_000) as writer:
        writer.append("a", [[69_999, 1], [], [65_536]])
        store = writer.finish({"kind": "pairs"})
    column = store.column("a")
    assert store.dtype == np.uint32 and [column[i] for i in range(3)] == [[69_999, 1], [], [65_536]]


def test_a_changed_corpus_is_prepared_again_and_an_unchanged_one_reused(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "c.tsv", n=200)
    notes: list[str] = []
    first = open_or_prepare_pairs(_source(corpus), tmp_path / "store", log=notes.append)
    assert any("prepared" in n for n in notes)
    notes.clear()
    again = open_or_prepare_pairs(_source(corpus), tmp_path / "store", log=notes.append)
    assert notes == [f"corpus: reusing the prepared store {tmp_path / 'store'}"]
    assert again.meta == first.meta
    # one character changed, size and modification time kept (as `cp -p` of another file would)
    stat = corpus.stat()
    text = corpus.read_text(encoding="utf-8")
    corpus.write_text(text.replace("king", "kong", 1), encoding="utf-8")
    os.utime(corpus, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert corpus.stat().st_size == stat.st_size and corpus.stat().st_mtime_ns == stat.st_mtime_ns
    notes.clear()
    changed = open_or_prepare_pairs(_source(corpus), tmp_path / "store", log=notes.append)
    assert notes[0].startswith("corpus: preparing") and "the corpus files changed" in notes[0]
    assert changed.meta["inputs"]["data"]["blake2b"] != first.meta["inputs"]["data"]["blake2b"]
    # other settings that shape the store: prepared again too
    notes.clear()
    open_or_prepare_pairs(_source(corpus, split_seed=2), tmp_path / "store", log=notes.append)
    assert "other settings (split_seed)" in notes[0]


def test_an_interrupted_prepare_leaves_no_store_and_the_next_one_starts_clean(tmp_path: Path, monkeypatch) -> None:
    corpus = write_corpus(tmp_path / "c.tsv", n=200)
    out = tmp_path / "store"
    monkeypatch.setattr(prep, "PAIR_CHUNK", 20)
    calls = []

    def append(self, name, rows):  # the process is killed while the third chunk is written
        calls.append(name)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return original(self, name, rows)

    from aiayn.data.store import StoreWriter
    original = StoreWriter.append
    monkeypatch.setattr(StoreWriter, "append", append)
    with pytest.raises(KeyboardInterrupt):
        prepare_pairs(_source(corpus), out, progress=False)
    assert not out.exists() and not list(tmp_path.glob(".store.tmp-*"))  # nothing that could pass for a store
    monkeypatch.undo()
    # a killed process leaves its temporary folder (no meta.json): never taken for a store, removed by the next
    stale = tmp_path / ".store.tmp-999999"
    stale.mkdir()
    (stale / "train.src.bin").write_bytes(b"\0\0" * 10)
    assert not is_store(stale) and not is_store(out)
    with pytest.raises(StoreError, match="not a prepared token store"):
        Store(stale)
    store = prepare_pairs(_source(corpus), out, progress=False)
    assert not stale.exists() and len(store.column("train.src")) == 175
    # a store with a file cut short is refused with the fix
    (out / "train.tgt.bin").write_bytes(b"\0")
    with pytest.raises(StoreError, match="prepare the store again"):
        Store(out)


def test_a_full_disk_while_preparing_is_one_clear_error_and_leaves_no_store(tmp_path: Path, monkeypatch) -> None:
    corpus = write_corpus(tmp_path / "c.tsv", n=200)
    from aiayn.data.store import StoreWriter

    class Disk:  # a file system that fills after 300 bytes
        used = 0

    class Filling:
        def __init__(self, path):
            self.handle = path.open("wb")

        def write(self, data):
            Disk.used += len(data)
            if Disk.used > 300:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.handle.write(data)

        def __getattr__(self, name):
            return getattr(self.handle, name)

    monkeypatch.setattr(prep, "PAIR_CHUNK", 20)
    monkeypatch.setattr(StoreWriter, "_open", staticmethod(Filling))
    with pytest.raises(StoreError, match="No space left on device; no store was left. Free some disk space"):
        prepare_pairs(_source(corpus), tmp_path / "store", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tsv"]


def test_a_malformed_line_deep_in_the_corpus_is_named_before_training_or_skipped_and_counted(
        tmp_path: Path, capsys) -> None:
    lines = [f"{i} the king\t{i} el rey" for i in range(1, 5001)]
    lines[4321] = "4322 the king without a tab"
    bad = tmp_path / "bad.tsv"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    assert main(["train", "--data", str(bad), "--out", str(out), "--steps", "1", "--threads", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"aiayn train: error: {bad}, line 4,322: 1 tab-separated field(s) but earlier lines have 2: fix "
                   f"or remove that line, or skip such lines with --skip-bad-lines")
    assert not out.exists()  # nothing written
    store = prepare_pairs(_source(bad, skip_bad_lines=True), tmp_path / "store", progress=False)
    assert store.meta["counts"]["skipped"] == 1 and store.meta["counts"]["train"] == 4999 - 25
    # bytes that are not UTF-8, on line 3,001 of two aligned files
    src, tgt = tmp_path / "a.en", tmp_path / "a.es"
    src.write_bytes(b"".join(b"the king %d\n" % i for i in range(3000)) + b"caf\xe9\n")
    tgt.write_text("".join(f"el rey {i}\n" for i in range(3001)), encoding="utf-8")
    assert main(["prepare", "--data", str(src), "--target", str(tgt), "--out", str(tmp_path / "s2")]) == 1
    err = capsys.readouterr().err
    assert f"{src}, line 3,001: bytes that are not UTF-8" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s2").exists()


def test_aiayn_prepare_then_train_from_the_store_and_resume_without_tokenizing_again(tmp_path: Path, capsys) -> None:
    corpus = write_corpus(tmp_path / "c.tsv", n=300)
    store = tmp_path / "store"
    assert main(["prepare", "--data", str(corpus), "--out", str(store), "--vocab-size", "60", "--dev-size", "20",
                 "--test-size", "20"]) == 0
    assert "train with: aiayn train --data" in capsys.readouterr().out
    flags = ["--preset", "tiny", "--batch-tokens", "300", "--threads", "1", "--eval-every", "0", "--log-every", "1",
             "--no-final-test", "--warmup", "5", "--keep-best", "none", "--save-every", "3"]
    files = {p.name: p.stat().st_mtime_ns for p in store.iterdir()}
    assert main(["train", "--data", str(store), "--out", str(tmp_path / "a"), "--steps", "6", *flags]) == 0
    assert main(["train", "--data", str(store), "--out", str(tmp_path / "b"), "--steps", "3", *flags]) == 0
    assert main(["train", "--out", str(tmp_path / "b"), "--resume", "--steps", "6", *flags]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in store.iterdir()} == files  # used as it is, never rewritten
    assert not (tmp_path / "a" / "data").exists()
    losses = [{r["step"]: r["loss"] for r in read_metrics(tmp_path / run) if "loss" in r} for run in ("a", "b")]
    assert losses[0] == losses[1] and len(losses[0]) == 6  # the resumed run continues exactly

    # the implicit store in RUN/data: prepared once, reused by --resume (no re-tokenizing)
    run = tmp_path / "c"
    assert main(["train", "--data", str(corpus), "--out", str(run), "--steps", "3", "--vocab-size", "60",
                 "--dev-size", "20", "--test-size", "20", *flags]) == 0
    inside = {p.name: p.stat().st_mtime_ns for p in (run / "data").iterdir()}
    assert main(["train", "--out", str(run), "--resume", "--steps", "6", *flags]) == 0
    assert "corpus: reusing the prepared store" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in (run / "data").iterdir()} == inside


def _old_epoch(lengths: list[tuple[int, int]], batch_tokens: int, tie_order: list[int]) -> list[list[int]]:
    """The list-based bucketing this project used before the store (git e4e2b6c), with a given tie-break order."""
    order = sorted(tie_order, key=lambda i: (max(lengths[i][0], lengths[i][1] + 1), lengths[i][0], lengths[i][1]))
    batches: list[list[int]] = []
    current: list[int] = []
    max_src = max_tgt = 0
    for i in order:
        src_len, tgt_len = lengths[i][0], lengths[i][1] + 1
        grow_src, grow_tgt = max(max_src, src_len), max(max_tgt, tgt_len)
        if current and max(grow_src, grow_tgt) * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, grow_src, grow_tgt = [], src_len, tgt_len
        current.append(i)
        max_src, max_tgt = grow_src, grow_tgt
    if current:
        batches.append(current)
    return batches


@pytest.mark.parametrize("batch_tokens", [9, 64, 300, 4096])
def test_the_numpy_batcher_cuts_the_batches_the_list_based_loop_did(batch_tokens: int) -> None:
    rng = random.Random(batch_tokens)
    examples = [([5] * rng.randint(1, 60) + [EOS_ID], [6] * rng.randint(0, 70)) for _ in range(2000)]
    batcher = TokenBatcher(examples, batch_tokens, seed=3)
    epoch = batcher.epoch(0)
    # the same tie-break order (numpy's draw) fed to the old loop gives the same batches, as sets of batches
    tie_order = np.random.default_rng([3, 0]).permutation(len(examples)).tolist()  # the old loop's shuffled list
    old = _old_epoch([(len(s), len(t)) for s, t in examples], batch_tokens, tie_order)
    assert sorted(map(tuple, epoch)) == sorted(map(tuple, old))


def test_translate_batches_by_length_as_its_own_loop_did() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(1, 80) for _ in range(500)]
    budget = 1000
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])  # translate()'s loop before (git e4e2b6c)
    chunks, start = [], 0
    while start < len(order):
        end = start + 1
        while end < len(order) and lengths[order[end]] * (end - start + 1) <= budget:
            end += 1
        chunks.append(order[start:end])
        start = end
    assert [c.tolist() for c in length_batches(np.array(lengths), budget)] == chunks


def test_lm_text_store_of_a_folder_and_validation_on_one_fixed_sample(tmp_path: Path) -> None:
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("To be, or not to be: that is the question.\r\n" * 300, encoding="utf-8")
    (folder / "b.txt").write_bytes(b"Whether 'tis nobler in the mind to suffer\n" * 300 + b"bad \xff byte\n")
    from aiayn.data.lm import read_text, split_text

    text = read_text(folder)  # the in-memory reader, as before
    tok = make_tokenizer("char", split_text(text)[0], 0, "lm")
    store = prepare_text(TextSource(str(folder), 0.9), tmp_path / "store", None, tokenizer=tok, progress=False)
    train, val = split_text(text)
    assert store.stream("train").tolist() == tok.encode(train, add_special_tokens=False).ids
    assert store.stream("val").tolist() == tok.encode(val, add_special_tokens=False).ids
    # every evaluation, the last included, scores the same eval_windows windows: keep-best compares like with like
    out = tmp_path / "run"
    result = train_lm(LMTrainConfig(data=str(folder), out=str(out), steps=6, eval_every=2, eval_windows=5,
                                    n_layers=1, n_heads=2, d_model=16, d_ff=32, context=16, batch_size=4,
                                    warmup=2, threads=1, save_every=0, keep_best="loss"), log=lambda _: None)
    records = [r for r in read_metrics(out) if "val_loss" in r]
    assert [r["step"] for r in records] == [2, 4, 6] and {r["val_windows"] for r in records} == {5}
    best = json.loads((out / "best" / "best.json").read_text())
    assert best["score"] == min(r["val_loss"] for r in records) and result.final["val_windows"] == 5


def test_a_store_of_the_wrong_kind_or_a_folder_that_is_no_store_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "t.txt"
    text.write_text("hello world\n" * 200, encoding="utf-8")
    store = prepare_text(TextSource(str(text)), tmp_path / "text-store",
                         lambda sample, chars: make_tokenizer("char", chars, 0, "lm"), progress=False)
    with pytest.raises(Exception, match="a store of text"):
        train(TrainConfig(data=str(store.path), out=str(tmp_path / "run"), steps=1, threads=1), log=lambda _: None)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(CorpusError, match="exists and is not a token store"):
        prepare_pairs(_source(write_corpus(tmp_path / "c.tsv", n=100)), tmp_path / "mine", progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
