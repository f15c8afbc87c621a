"""One model-type table (model/registry.py): the loaders read it, and it agrees with config.json's types."""

from __future__ import annotations

import pytest
import torch

import aiayn
from aiayn.inference.quantize import PrecisionError, for_decoding, int8_problem
from aiayn.io import loading
from aiayn.model import config
from aiayn.model.registry import MODEL_TYPES


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
