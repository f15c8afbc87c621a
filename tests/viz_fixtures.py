"""Tiny saved models of all three kinds, each with a BPE tokenizer.json trained on a few sentences."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

import aiayn

SENTENCES = [
    "the cat sat on the mat", "el gato se sentó en la alfombra",
    "the dog ran to the river", "el perro corrió al río",
    "a small house by the river", "una casa pequeña junto al río",
    "the animal did not cross the street because it was too tired",
    "el animal no cruzó la calle porque estaba demasiado cansado",
]
SPECIAL = ["<pad>", "<s>", "</s>", "<unk>"]  # ids 0..3: ModelConfig's pad_id, bos_id, eos_id


def train_tokenizer() -> Tokenizer:
    """A word-piece-sized BPE with the lead's special tokens at ids 0..3."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(SENTENCES, trainers.BpeTrainer(vocab_size=160, special_tokens=SPECIAL))
    assert [tok.token_to_id(t) for t in SPECIAL] == [0, 1, 2, 3]
    return tok


def save_models(folder: Path) -> dict[str, Path]:
    """Save a Transformer, an EncoderLM and a DecoderLM (tiny, dropout 0) with the tokenizer."""
    tok = train_tokenizer()
    cfg = aiayn.ModelConfig.preset("tiny", dropout=0.0, vocab_size=tok.get_vocab_size())
    torch.manual_seed(0)
    paths = {}
    for model_class in (aiayn.Transformer, aiayn.EncoderLM, aiayn.DecoderLM):
        paths[model_class.model_type] = model_class(cfg).save(folder / model_class.model_type, tokenizer=tok)
    return paths
