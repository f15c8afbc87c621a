"""Small real model folders for command-line tests: a translator, a GPT-style and a BERT-style model, a run
folder with checkpoints, and a Hugging Face checkpoint; random weights, built in a second."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from aiayn import DecoderLM, EncoderLM, ModelConfig, Transformer
from aiayn.data.lm import train_char_tokenizer, train_wordpiece_tokenizer
from aiayn.data.tokenizer import train_bpe

from .helpers_translation import EN, ES

TEXT = "the king and the land of god, the son of man. " * 20


def model_folders(tmp: Path) -> dict[str, Path]:
    """{"MODEL": translator, "LM": DecoderLM, "MLM": EncoderLM, "RUN": run folder, "HF": a GPT-2 folder,
    "FILE": a file, "DIR": an existing folder, "SRC"/"REF": a 2-line test set} under tmp."""
    torch.manual_seed(0)
    words = [" ".join(EN[i:] + ES[:i]) for i in range(len(EN))] * 4
    bpe = train_bpe(words, vocab_size=64)
    tiny = dict(dropout=0.0, max_positions=64)
    translator = Transformer(ModelConfig.preset("tiny", vocab_size=bpe.get_vocab_size(), **tiny)).eval()
    folders = {"MODEL": translator.save(tmp / "model", tokenizer=bpe)}
    chars = train_char_tokenizer(TEXT)
    lm = DecoderLM(ModelConfig.preset("tiny", vocab_size=chars.get_vocab_size(), n_encoder_layers=0, **tiny))
    folders["LM"] = lm.save(tmp / "lm", tokenizer=chars)
    pieces = train_wordpiece_tokenizer(TEXT, vocab_size=60)
    mlm = EncoderLM(ModelConfig.preset("tiny", vocab_size=pieces.get_vocab_size(), n_decoder_layers=0,
                                       **tiny))
    folders["MLM"] = mlm.save(tmp / "mlm", tokenizer=pieces)
    run = tmp / "run"
    for step in (1, 2):
        shutil.copytree(folders["MODEL"], run / "checkpoints" / f"step_{step}")
    shutil.copytree(folders["MODEL"], run / "model")
    shutil.copy(folders["MODEL"] / "tokenizer.json", run / "tokenizer.json")
    folders["RUN"] = run
    import transformers  # the test extra

    config = transformers.GPT2Config(vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=32,
                                     bos_token_id=2, eos_token_id=2)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp / "hf")
    shutil.copy(folders["LM"] / "tokenizer.json", tmp / "hf" / "tokenizer.json")
    folders["HF"] = tmp / "hf"
    (tmp / "file.txt").write_text("a file\n", encoding="utf-8")
    folders["FILE"] = tmp / "file.txt"
    (tmp / "dir").mkdir()
    folders["DIR"] = tmp / "dir"
    (tmp / "src.txt").write_text("the king\nwater\n", encoding="utf-8")
    (tmp / "ref.txt").write_text("el rey\nagua\n", encoding="utf-8")
    folders["SRC"], folders["REF"] = tmp / "src.txt", tmp / "ref.txt"
    return folders
