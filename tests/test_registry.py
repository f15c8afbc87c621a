"""One model-type table (model/registry.py): the loaders read it, and it agrees with config.json's types."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

import aiayn
from aiayn.inference.quantize import PrecisionError, for_decoding, int8_problem
from aiayn.io import export, loading
from aiayn.io.huggingface import FAMILIES
from aiayn.model import config
from aiayn.model.recurrent import RecurrentSeq2Seq
from aiayn.model.registry import MODEL_TYPES, for_task
from aiayn.training.settings import BY_NAME
from aiayn.training.translation import ARCHITECTURES
from aiayn.viz import collect_attention


def test_the_table_agrees_with_the_classes_and_config_json_types():
    assert tuple(MODEL_TYPES) == config.MODEL_TYPES
    for name, entry in MODEL_TYPES.items():
        assert entry.model_class.model_type == name
        assert entry.config_class is config.CONFIG_CLASSES.get(name, config.ModelConfig)
    assert loading.MODEL_CLASSES == {name: t.model_class for name, t in MODEL_TYPES.items()}
    assert loading.TRANSLATORS == ("transformer", "rnn")


@pytest.mark.parametrize("name", list(MODEL_TYPES))
def test_every_type_saves_loads_and_decodes_as_its_entry_says(name, tmp_path):
    entry = MODEL_TYPES[name]
    cfg = entry.config_class.preset("tiny" if name != "rnn" else "shallow", vocab_size=24, dropout=0.0)
    model = entry.model_class(cfg).eval()
    back = aiayn.load(model.save(tmp_path / name))
    assert type(back) is entry.model_class
    ids = torch.tensor([[4, 5, 6]])
    if entry.translator:
        assert back.generate(ids, beam_size=2, max_new_tokens=3) == model.generate(ids, beam_size=2, max_new_tokens=3)
    if int8_problem(torch.device("cpu")) is not None:
        return  # no int8 kernels in this build
    if entry.int8:
        assert for_decoding(model, "int8") is not model
    else:
        with pytest.raises(PrecisionError, match="int8 decoding is for translators"):
            for_decoding(model, "int8")


def test_the_trainers_read_the_table():
    assert ARCHITECTURES == {"transformer": (config.ModelConfig, aiayn.Transformer),
                             "rnn": (config.RNNConfig, RecurrentSeq2Seq)}
    assert BY_NAME["arch"].choices == ("transformer", "rnn")
    assert {task: for_task(task).name for task in ("translate", "lm", "mlm")} == {
        "translate": "transformer", "lm": "decoder_lm", "mlm": "encoder_lm"}


def test_the_hf_families_are_the_converters_own():
    """Every Hugging Face family converts to and from exactly the type whose entry names it."""
    named = [f for entry in MODEL_TYPES.values() for f in entry.hf_families]
    assert sorted(named) == sorted(FAMILIES)
    for entry in MODEL_TYPES.values():
        assert all(FAMILIES[f].model_class is entry.model_class for f in entry.hf_families), entry.name
        assert bool(entry.exports) == bool(entry.hf_families) == bool(entry.pipeline) == bool(entry.hf_auto)


# the options each exporting type needs so that one of its families holds it exactly (BERT: post-LN, learned
# positions, an embedding LayerNorm, GELU; the tiny preset fits OPT and Marian as it is)
_EXPORTABLE = {"transformer": {}, "decoder_lm": {"n_encoder_layers": 0},
               "encoder_lm": {"n_decoder_layers": 0, "positions": "learned", "embedding_norm": True,
                              "scale_embeddings": False, "activation": "gelu"}}


@pytest.mark.parametrize("name", list(MODEL_TYPES))
def test_every_type_exports_as_its_entry_says(name, tmp_path):
    """export reads the entry: the card's pipeline tag and Auto class (which loads the folder), the family it
    becomes, and each target it does not list refused before anything is written."""
    transformers = pytest.importorskip("transformers")
    entry = MODEL_TYPES[name]
    cfg = entry.config_class.preset("tiny" if name != "rnn" else "shallow", vocab_size=24, dropout=0.0,
                                    **_EXPORTABLE.get(name, {}))
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "[MASK]": 4, "a": 5, "b": 6}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = Whitespace()
    folder = entry.model_class(cfg).save(tmp_path / "model", tokenizer=tokenizer)
    for to in export.TARGETS:
        if to not in entry.exports:
            with pytest.raises(export.ExportError, match=f"holds {entry.described}"):
                export.export_model(folder, to, tmp_path / to)
            assert not (tmp_path / to).exists()
    if "hf" not in entry.exports:
        return
    export.export_model(folder, "hf", tmp_path / "hf")
    card = (tmp_path / "hf" / "README.md").read_text()
    assert f"pipeline_tag: {entry.pipeline}\n" in card and card.count(entry.hf_auto) == 2
    assert f"\n{entry.card_kind} trained with aiayn" in card
    hf = getattr(transformers, entry.hf_auto).from_pretrained(str(tmp_path / "hf"))
    assert hf.config.model_type in entry.hf_families


@pytest.mark.parametrize("name", list(MODEL_TYPES))
def test_every_type_shows_its_attention(name):
    """viz reads the entry: an encoder-decoder (the RNN too) gets the source + EOS and its translation."""
    entry = MODEL_TYPES[name]
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "a": 4, "b": 5, "c": 6}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = Whitespace()
    torch.manual_seed(0)
    cfg = entry.config_class.preset("tiny" if name != "rnn" else "shallow", vocab_size=24, dropout=0.0)
    record = collect_attention(entry.model_class(cfg), tokenizer, "a b c", beam_size=2)
    if entry.encoder_decoder:
        assert record.source_tokens == ["a", "b", "c", "</s>"] and "cross" in record.kinds
        assert record.target_tokens[0] == "<s>"
    else:
        assert record.kinds == (["encoder_self"] if name == "encoder_lm" else ["decoder_self"])
        assert (record.source_tokens or record.target_tokens) == ["a", "b", "c"]
