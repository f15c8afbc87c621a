"""Joint source/target BPE (Hugging Face `tokenizers`), §5.1; special ids fixed: <pad>=0 <s>=1 </s>=2 <unk>=3."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

TOKENIZER_FILE = "tokenizer.json"  # a model folder's tokenizer (io.model_folder names the folder's other files)

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")  # ids 0, 1, 2, 3 = ModelConfig pad/bos/eos defaults
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)


class TokenizerError(ValueError):
    """A tokenizer file that is missing, unreadable, or does not fit the model; names the fix."""


def train_bpe(texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2) -> Tokenizer:
    """Learn one BPE vocabulary over source and target texts together (joint BPE, §5.1).

    Words are split on spaces with SentencePiece's "▁" marker, so decoding restores the exact spacing
    (detokenized output for sacreBLEU). Characters never seen in training map to <unk>, never crash.
    """
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    check_special_ids(tok, "the trained tokenizer")
    return tok


def load_tokenizer(folder_or_file: str | Path) -> Tokenizer:
    """aiayn's tokenizer.json (or the one inside a model/run folder): read_tokenizer, then its special ids checked."""
    path = Path(folder_or_file)
    tok = read_tokenizer(path / TOKENIZER_FILE if path.is_dir() else path)
    check_special_ids(tok, str(path / TOKENIZER_FILE if path.is_dir() else path))
    return tok


def read_tokenizer(path: Path) -> Tokenizer:
    """Any tokenizers JSON file, with a clear TokenizerError if it is missing or broken."""
    if not path.is_file():
        raise TokenizerError(f"{path} is missing: the model folder needs the {TOKENIZER_FILE} it was trained with "
                             f"(written by `aiayn train` or model.save(folder, tokenizer=tok))")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as error:  # noqa: BLE001 - tokenizers raises a plain Exception on a bad file
        raise TokenizerError(f"{path} is not a valid tokenizers JSON file ({error}); restore it from the run folder") \
            from None


def check_special_ids(tok: Tokenizer, name: str) -> None:
    """Raise TokenizerError unless <pad>, <s>, </s>, <unk> have ids 0, 1, 2, 3."""
    for expected, token in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(token) != expected:
            raise TokenizerError(f"{name}: token {token} has id {tok.token_to_id(token)}, expected {expected}; "
                                 f"use a tokenizer made by aiayn.data.tokenizer.train_bpe")


def check_fits(tok: Tokenizer, cfg: Any, name: str = "tokenizer") -> None:
    """Raise TokenizerError unless the tokenizer's ids fit the model config (vocab size, special ids)."""
    size = tok.get_vocab_size()
    if size > cfg.vocab_size:
        raise TokenizerError(f"{name} has {size} tokens but the model's vocab_size is {cfg.vocab_size}: use the "
                             f"tokenizer.json saved with this model")
    wanted = {"pad_id": PAD_ID, "bos_id": BOS_ID, "eos_id": EOS_ID}
    for field, value in wanted.items():
        if getattr(cfg, field) != value:
            raise TokenizerError(f"the model's {field} is {getattr(cfg, field)} but {name} uses {value}; "
                                 f"use the tokenizer.json saved with this model")


def encode_source(tok: Tokenizer, text: str) -> list[int]:
    """Source ids: BPE ids + [EOS] (the sequence layout shared by training and translation)."""
    return tok.encode(text, add_special_tokens=False).ids + [EOS_ID]


def encode_batch(tok: Tokenizer, texts: list[str]) -> list[list[int]]:
    """BPE ids of many texts at once (parallel in Rust), without special tokens."""
    return [enc.ids for enc in tok.encode_batch(texts, add_special_tokens=False)]


def decode(tok: Tokenizer, ids: list[int]) -> str:
    """Detokenized text of ids, special tokens dropped."""
    return tok.decode(ids, skip_special_tokens=True)
