"""Corpora, splits, BPE tokenizer and token-budget batching."""

import gzip
from pathlib import Path

import pytest
import torch

from aiayn.data import CorpusError, TokenBatcher, collate, load_corpus, read_parallel, read_tsv, split_by_book
from aiayn.data.corpus import BUNDLED_FILE, book_of
from aiayn.data.tokenizer import TokenizerError, check_fits, decode, encode_source, load_tokenizer, train_bpe

from .helpers_translation import write_corpus


# ---------------------------------------------------------------- readers and their errors
def test_read_tsv_plain_and_gzip(tmp_path: Path) -> None:
    plain = write_corpus(tmp_path / "c.tsv", n=12)
    rows = read_tsv(plain)
    assert len(rows) == 12 and len(rows[0]) == 3
    packed = tmp_path / "c.tsv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_tsv(packed) == rows


def test_tsv_row_with_wrong_field_count_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text("a\tb\nc\td\ne\tf\tg\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"bad.tsv, line 3: 3 tab-separated field\(s\) but earlier lines have 2"):
        read_tsv(path)
    path.write_text("just one field\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="line 1: 1 tab-separated"):
        read_tsv(path)


def test_missing_and_empty_corpus_files(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="nope.tsv does not exist"):
        read_tsv(tmp_path / "nope.tsv")
    (tmp_path / "empty.tsv").write_text("", encoding="utf-8")
    with pytest.raises(CorpusError, match="empty.tsv is empty"):
        read_tsv(tmp_path / "empty.tsv")


def test_misaligned_parallel_files_name_both_counts(tmp_path: Path) -> None:
    (tmp_path / "a.en").write_text("one\ntwo\nthree\n", encoding="utf-8")
    (tmp_path / "a.es").write_text("uno\ndos\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"a.en has 3 lines but .*a.es has 2"):
        read_parallel(tmp_path / "a.en", tmp_path / "a.es")


def test_book_split_and_seeded_random_split(tmp_path: Path) -> None:
    assert book_of("1 John 3:16") == "1 John" and book_of("John 3:16") == "John"
    rows = [("John 1:1", "a", "b"), ("1 John 1:1", "c", "d"), ("Ruth 1:1", "e", "f"), ("James 2:3", "g", "h")]
    corpus = split_by_book(rows)
    assert corpus.test == [("a", "b")] and corpus.train == [("c", "d")] and corpus.dev == [("e", "f"), ("g", "h")]
    path = write_corpus(tmp_path / "c.tsv", n=100)
    a = load_corpus(str(path), dev_size=10, test_size=15, seed=4)
    b = load_corpus(str(path), dev_size=10, test_size=15, seed=4)
    c = load_corpus(str(path), dev_size=10, test_size=15, seed=5)
    assert a.counts() == {"train": 75, "dev": 10, "test": 15}
    assert a == b and a.test != c.test
    assert not set(a.test) & set(a.dev) or len(set(read_tsv(path))) < 100  # disjoint draws
    with pytest.raises(CorpusError, match="too few"):
        load_corpus(str(path), dev_size=60, test_size=60)


@pytest.mark.skipif(not BUNDLED_FILE.is_file(), reason="the bundled Bible corpus is not in this checkout yet")
def test_bundled_corpus_counts_and_split() -> None:
    rows = read_tsv(BUNDLED_FILE)
    assert len(rows) == 30_418  # verses aligned one to one (chapters numbered differently are dropped)
    assert rows[0][0] == "Genesis 1:1" and rows[0][1].startswith("In the beginning God created")
    assert all("<" not in en and "¶" not in en for _, en, _ in rows[:2000])  # Strong's numbers, pilcrows gone
    corpus = load_corpus()
    counts = corpus.counts()
    assert counts["test"] == 879  # the Gospel of John
    assert counts["dev"] == 85 + 108  # Ruth and James
    assert counts["train"] == len(rows) - counts["test"] - counts["dev"]
    assert corpus.test[0][0].startswith("In the beginning was the Word")


@pytest.mark.skipif(not BUNDLED_FILE.is_file(), reason="the bundled Bible corpus is not in this checkout yet")
def test_dev_and_test_files_replace_the_bundled_splits(tmp_path: Path) -> None:
    bundled = load_corpus()
    dev, test = write_corpus(tmp_path / "dev.tsv", n=7, seed=1), write_corpus(tmp_path / "test.tsv", n=9, seed=2)
    with_dev = load_corpus(dev=str(dev))
    assert with_dev.dev == [(en, es) for _, en, es in read_tsv(dev)] and with_dev.test == bundled.test
    assert with_dev.train == bundled.train  # the held-out books stay out of training
    both = load_corpus(dev=str(dev), test=str(test))
    assert both.counts() == {"train": len(bundled.train), "dev": 7, "test": 9}
    en, es = tmp_path / "test.en", tmp_path / "test.es"
    en.write_text("the king\nthe man\n", encoding="utf-8")
    es.write_text("el rey\nel hombre\n", encoding="utf-8")
    assert load_corpus(test=str(en), test_target=str(es)).test == [("the king", "el rey"), ("the man", "el hombre")]
    with pytest.raises(CorpusError, match=r"--target .* not the bundled corpus: give --data SOURCE_FILE"):
        load_corpus(target=str(es))
    with pytest.raises(CorpusError, match=r"--dev-target needs --dev"):
        load_corpus(dev_target=str(es))
    with pytest.raises(CorpusError, match=r"--test-target needs --test"):
        load_corpus(str(write_corpus(tmp_path / "c.tsv", n=100)), test_target=str(es), dev_size=5, test_size=5)


# ---------------------------------------------------------------- tokenizer
def test_bpe_special_ids_round_trip_and_unseen_characters(tmp_path: Path) -> None:
    texts = ["In the beginning God created the heaven and the earth.",
             "En el principio crió Dios los cielos y la tierra."] * 20
    tok = train_bpe(texts, vocab_size=120)
    assert [tok.token_to_id(t) for t in ("<pad>", "<s>", "</s>", "<unk>")] == [0, 1, 2, 3]
    ids = encode_source(tok, texts[1])
    assert ids[-1] == 2 and 0 not in ids and 1 not in ids
    assert decode(tok, ids) == texts[1]  # detokenized exactly (spacing, accents, punctuation)
    odd = encode_source(tok, "God ☃ 漢字 €")  # characters never seen: <unk>, no crash
    assert 3 in odd and odd[-1] == 2
    tok.save(str(tmp_path / "tokenizer.json"))
    again = load_tokenizer(tmp_path)
    assert encode_source(again, texts[0]) == encode_source(tok, texts[0])


def test_tokenizer_errors(tmp_path: Path) -> None:
    from aiayn import ModelConfig

    with pytest.raises(TokenizerError, match="tokenizer.json is missing"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(TokenizerError, match="not a valid tokenizers JSON"):
        load_tokenizer(tmp_path)
    tok = train_bpe(["a b c d e f g"] * 5, vocab_size=40)
    with pytest.raises(TokenizerError, match=r"has \d+ tokens but the model's vocab_size is 5"):
        check_fits(tok, ModelConfig.preset("tiny", vocab_size=5, max_positions=16))
    check_fits(tok, ModelConfig.preset("tiny"))  # 64 >= its size: fits


# ---------------------------------------------------------------- batching
def _examples(n: int = 400) -> list[tuple[list[int], list[int]]]:
    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        s, noise = int(torch.randint(1, 40, (1,), generator=gen)), int(torch.randint(-3, 4, (1,), generator=gen))
        t = max(1, s + noise)  # target lengths follow source lengths, as in real translations
        out.append((list(range(4, 4 + s)) + [2], list(range(5, 5 + t))))
    return out


def test_batches_respect_the_token_budget_and_cover_every_example_once() -> None:
    examples = _examples()
    batcher = TokenBatcher(examples, batch_tokens=256, seed=7)
    batches = batcher.epoch(0)
    assert sorted(i for b in batches for i in b) == list(range(len(examples)))
    for indices in batches:
        batch = batcher.batch(indices)
        assert batch.src.numel() <= 256 and batch.tgt_in.numel() <= 256  # padded tokens, each side
    # length-bucketed: padding is a small part of the tokens on both sides
    real_src = sum(len(examples[i][0]) for b in batches for i in b)
    real_tgt = sum(len(examples[i][1]) + 1 for b in batches for i in b)
    assert real_src / sum(batcher.batch(b).src.numel() for b in batches) > 0.9
    assert real_tgt / sum(batcher.batch(b).labels.numel() for b in batches) > 0.8
    assert batcher.epoch(0) == TokenBatcher(examples, 256, seed=7).epoch(0)  # deterministic in (seed, epoch)
    assert batcher.epoch(1) != batches and TokenBatcher(examples, 256, seed=8).epoch(0) != batches


def test_collate_layout_bos_target_eos() -> None:
    batch = collate([([7, 8, 2], [5, 6, 9]), ([7, 2], [4])])
    assert batch.src.tolist() == [[7, 8, 2], [7, 2, 0]]
    assert batch.tgt_in.tolist() == [[1, 5, 6, 9], [1, 4, 0, 0]]  # [BOS] + target, padded
    assert batch.labels.tolist() == [[5, 6, 9, 2], [4, 2, 0, 0]]  # target + [EOS], padded
    assert batch.n_tokens == 6 and batch.src.dtype == torch.long
    assert batch.scored.tolist() == [0, 1, 2, 3, 4, 5]  # flat (B*T) indices of the non-pad labels, row by row
    assert batch.scored_labels.tolist() == [5, 6, 9, 2, 4, 2]


def test_bucketed_batches_waste_little_padding_on_either_side():
    import random as _random

    from aiayn.data.batching import TokenBatcher as _Batcher

    rng = _random.Random(0)
    examples = []
    for _ in range(3000):
        n = rng.randint(3, 60)
        examples.append(([5] * n, [6] * max(1, int(n * rng.uniform(0.7, 1.4)))))  # correlated lengths
    batcher = _Batcher(examples, 1024, seed=1)
    real = padded = real_tgt = padded_tgt = 0
    for indices in batcher.epoch(0):
        batch = batcher.batch(indices)
        real += int((batch.src != 0).sum())
        padded += batch.src.numel()
        real_tgt += batch.n_tokens
        padded_tgt += batch.labels.numel()
        assert max(batch.src.shape[1], batch.labels.shape[1]) * len(indices) <= 1024 or len(indices) == 1
    assert real / padded > 0.9 and real_tgt / padded_tgt > 0.9
