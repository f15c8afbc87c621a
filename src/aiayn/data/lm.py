"""Language-modelling data: the bundled Shakespeare text, character tokenizer, context windows, BERT masking."""

from __future__ import annotations

import gzip
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from torch import Tensor

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]  # ids 0..3, the ModelConfig defaults
MASK_TOKEN = "[MASK]"
IGNORE_INDEX = -100  # label of positions that carry no loss (cross_entropy's default ignore_index)


def bundled_shakespeare() -> str:
    """The complete works of Shakespeare bundled with aiayn (see corpora/shakespeare.LICENSE.txt)."""
    data = resources.files("aiayn") / "data" / "corpora" / "shakespeare.txt.gz"
    return gzip.decompress(data.read_bytes()).decode("utf-8")


def read_text(path: str | Path | None = None) -> str:
    """A text file, every *.txt file of a folder (sorted), or the bundled Shakespeare when path is None."""
    if path is None:
        return bundled_shakespeare()
    source = Path(path)
    if source.is_dir():
        files = sorted(source.rglob("*.txt"))
        if not files:
            raise ValueError(f"{source} holds no .txt files: give a text file or a folder of .txt files")
        text = "\n\n".join(f.read_text(encoding="utf-8", errors="replace") for f in files)
    elif source.is_file():
        text = source.read_text(encoding="utf-8", errors="replace")
    else:
        raise ValueError(f"{source} does not exist: give a text file or a folder of .txt files")
    if not text.strip():
        raise ValueError(f"{source} is empty: a language model needs text to train on")
    return text


def split_text(text: str, train_fraction: float = 0.9) -> tuple[str, str]:
    """First train_fraction of the characters for training, the rest for validation (as nanoGPT)."""
    cut = int(len(text) * train_fraction)
    return text[:cut], text[cut:]


def train_char_tokenizer(text: str, extra_special: list[str] | None = None) -> Tokenizer:
    """A character-level tokenizer: one id per distinct character after the special tokens."""
    specials = SPECIAL_TOKENS + (extra_special or [])
    vocab = {token: i for i, token in enumerate(specials)}
    for char in sorted(set(text)):
        vocab.setdefault(char, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split("", "isolated")  # every character is a token
    tokenizer.decoder = decoders.Fuse()  # join characters back without spaces
    tokenizer.add_special_tokens(specials)
    return tokenizer


def encode_text(tokenizer: Tokenizer, text: str) -> Tensor:
    """The whole text as one (N,) LongTensor of ids (one stream: no [CLS] / [SEP] a BERT tokenizer would add)."""
    return torch.tensor(tokenizer.encode(text, add_special_tokens=False).ids, dtype=torch.long)


def random_windows(ids: Tensor | np.ndarray, batch_size: int, context: int,
                   generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """batch_size random windows of ids (a tensor, or a store's memory-mapped array): inputs (B, context) and
    next-token targets (B, context), LongTensors."""
    if len(ids) < context + 1:
        raise ValueError(f"the text has {len(ids)} tokens, fewer than one context window of {context} + 1: "
                         f"give more text or a smaller --context")
    starts = torch.randint(0, len(ids) - context, (batch_size,), generator=generator)
    offsets = starts[:, None] + torch.arange(context)  # (B, T)
    if isinstance(ids, np.ndarray):  # only these windows' pages are read
        index = offsets.numpy()
        return (torch.from_numpy(ids[index].astype(np.int64)), torch.from_numpy(ids[index + 1].astype(np.int64)))
    return ids[offsets], ids[offsets + 1]


def mask_tokens(ids: Tensor, mask_id: int, vocab_size: int, special_ids: list[int], generator: torch.Generator,
                select_prob: float = 0.15, mask_prob: float = 0.8, random_prob: float = 0.1,
                first_regular_id: int | None = None) -> tuple[Tensor, Tensor]:
    """BERT's masking (Devlin et al. 2019, §3.1): choose 15% of the non-special tokens; of those 80% become
    [MASK], 10% a random token, 10% stay. Returns (inputs, labels); labels are IGNORE_INDEX where not chosen."""
    special = torch.zeros(vocab_size, dtype=torch.bool)
    special[torch.tensor(special_ids, dtype=torch.long)] = True
    candidates = ~special[ids]
    chosen = (torch.rand(ids.shape, generator=generator) < select_prob) & candidates
    action = torch.rand(ids.shape, generator=generator)
    to_mask = chosen & (action < mask_prob)
    to_random = chosen & (action >= mask_prob) & (action < mask_prob + random_prob)
    low = first_regular_id if first_regular_id is not None else max(special_ids) + 1
    random_ids = torch.randint(low, vocab_size, ids.shape, generator=generator)
    inputs = torch.where(to_mask, torch.full_like(ids, mask_id), ids)
    inputs = torch.where(to_random, random_ids, inputs)
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE_INDEX))
    return inputs, labels


def train_wordpiece_tokenizer(text: str, vocab_size: int = 8000) -> Tokenizer:
    """BERT's tokenizer for masked-LM: WordPiece over words and punctuation, ids 0-3 as above, [MASK]=4.

    Splitting punctuation from words (BERT's pre-tokenizer) lets "[MASK]." stand for one word; "##" marks
    word continuations, which the decoder joins back. Not reproducible between calls: the trainer numbers
    its "##" pieces in hash-map order, which breaks merge ties (huggingface/tokenizers#1794).
    """
    tokenizer = Tokenizer(models.WordPiece(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS + [MASK_TOKEN],
                                        show_progress=False)
    lines = text.splitlines()
    tokenizer.train_from_iterator((" ".join(lines[i:i + 1000]) for i in range(0, len(lines), 1000)), trainer)
    return tokenizer
