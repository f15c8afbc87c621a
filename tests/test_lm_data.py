"""Language-modelling data: bundled text, char tokenizer, windows, and BERT's masking proportions."""

import pytest
import torch

from aiayn.data.lm import (
    IGNORE_INDEX,
    MASK_TOKEN,
    bundled_shakespeare,
    encode_text,
    mask_tokens,
    random_windows,
    read_text,
    split_text,
    train_char_tokenizer,
)


def test_bundled_shakespeare_has_the_documented_size_and_split():
    text = bundled_shakespeare()
    assert len(text) == 5_053_113
    assert len(set(text)) == 83
    train, val = split_text(text)
    assert len(train) == int(0.9 * len(text)) == 4_547_801 and train + val == text


def test_char_tokenizer_round_trips_and_never_crashes_on_unseen_characters():
    tokenizer = train_char_tokenizer("To be, or not to be:\nthat is the question.", [MASK_TOKEN])
    text = "to be\nor not"
    assert tokenizer.decode(tokenizer.encode(text).ids) == text
    assert tokenizer.token_to_id("<pad>") == 0 and tokenizer.token_to_id("</s>") == 2
    unseen = tokenizer.encode("zé")
    assert unseen.ids[-1] == tokenizer.token_to_id("<unk>")


def test_windows_are_shifted_by_one():
    ids = torch.arange(100)
    x, y = random_windows(ids, 4, 10, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 10)
    assert torch.equal(y, x + 1)
    with pytest.raises(ValueError, match="fewer than one context window"):
        random_windows(torch.arange(5), 2, 10, torch.Generator())


def test_masking_proportions_on_100k_tokens():
    vocab, mask_id = 1000, 4
    ids = torch.randint(5, vocab, (100, 1000), generator=torch.Generator().manual_seed(1))
    ids[:, 0] = 1  # BOS: special, never chosen
    ids[:, -3:] = 0  # padding: never chosen
    inputs, labels = mask_tokens(ids, mask_id, vocab, [0, 1, 2, 3, 4], torch.Generator().manual_seed(2))
    chosen = labels != IGNORE_INDEX
    regular = ids >= 5
    assert not chosen[~regular].any()
    assert chosen.sum() / regular.sum() == pytest.approx(0.15, abs=0.005)
    masked = (inputs == mask_id) & chosen
    unchanged = (inputs == ids) & chosen
    replaced = chosen & ~masked & ~unchanged
    n = chosen.sum()
    assert masked.sum() / n == pytest.approx(0.8, abs=0.01)
    # "unchanged" also catches the ~0.1% of random replacements that drew the same token
    assert unchanged.sum() / n == pytest.approx(0.1 + 0.1 / 995, abs=0.01)
    assert replaced.sum() / n == pytest.approx(0.1, abs=0.01)
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(inputs[~chosen], ids[~chosen])
    assert (inputs[replaced] >= 5).all()


def test_read_text_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_text(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(ValueError, match="is empty"):
        read_text(tmp_path / "empty.txt")
    folder = tmp_path / "works"
    folder.mkdir()
    with pytest.raises(ValueError, match="holds no .txt files"):
        read_text(folder)
    (folder / "b.txt").write_text("second")
    (folder / "a.txt").write_text("first")
    assert read_text(folder) == "first\n\nsecond"
    assert encode_text(train_char_tokenizer("abc"), "cab").tolist() == [6, 4, 5]
