import json

import pytest

from aiayn import ModelConfig


def test_presets_have_the_paper_sizes():
    base = ModelConfig.preset("paper-base")
    assert (base.n_encoder_layers, base.d_model, base.d_ff, base.n_heads, base.dropout) == (6, 512, 2048, 8, 0.1)
    big = ModelConfig.preset("paper-big")
    assert (big.n_encoder_layers, big.d_model, big.d_ff, big.n_heads, big.dropout) == (6, 1024, 4096, 16, 0.3)
    small = ModelConfig.preset("small", vocab_size=8000)
    assert (small.n_encoder_layers, small.n_decoder_layers, small.d_model, small.d_ff, small.n_heads) == \
        (3, 3, 256, 1024, 4)
    assert small.vocab_size == 8000
    shallow = ModelConfig.preset("shallow")  # the training default: small's widths, one layer a side
    assert (shallow.n_encoder_layers, shallow.n_decoder_layers, shallow.d_model, shallow.d_ff, shallow.n_heads) == \
        (1, 1, 256, 1024, 4)
    assert base.norm == "post" and base.positions == "sinusoidal" and base.activation == "relu"
    assert base.tie_embeddings and base.scale_embeddings


@pytest.mark.parametrize("changes, field", [
    (dict(d_model=100, n_heads=8), "d_model"),
    (dict(dropout=1.0), "dropout"),
    (dict(dropout=-0.1), "dropout"),
    (dict(norm="middle"), "norm"),
    (dict(positions="rotary-ish"), "positions"),
    (dict(activation="tanh"), "activation"),
    (dict(vocab_size=0), "vocab_size"),
    (dict(pad_id=40000), "pad_id"),
])
def test_invalid_values_name_the_field(changes, field):
    with pytest.raises(ValueError, match=f"ModelConfig.{field}"):
        ModelConfig(**changes)


def test_unknown_preset_and_field():
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        ModelConfig.preset("huge")
    with pytest.raises(ValueError, match=r"unknown ModelConfig field\(s\) \['d_modle'\]"):
        ModelConfig.from_dict({"d_modle": 3})


def test_json_round_trip():
    cfg = ModelConfig.preset("small", vocab_size=123, norm="pre", positions="learned", activation="gelu")
    again = ModelConfig.from_json(json.dumps(json.loads(cfg.to_json())))
    assert again == cfg
    assert again.d_k == 64
