"""Property-based tests (hypothesis): any valid input gives finite outputs; invalid input a clear error."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiayn import DecoderLM, EncoderLM, ModelConfig, Transformer

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODEL_CLASSES = [Transformer, EncoderLM, DecoderLM]


@st.composite
def configs(draw) -> ModelConfig:
    heads = draw(st.sampled_from([1, 2, 4]))
    return ModelConfig(
        vocab_size=draw(st.integers(4, 50)), d_model=heads * draw(st.sampled_from([2, 4, 8])), n_heads=heads,
        d_ff=draw(st.integers(1, 24)), n_encoder_layers=draw(st.integers(0, 2)),
        n_decoder_layers=draw(st.integers(0, 2)), dropout=0.0, max_positions=draw(st.integers(1, 24)),
        norm=draw(st.sampled_from(["post", "pre"])), positions=draw(st.sampled_from(["sinusoidal", "learned"])),
        activation=draw(st.sampled_from(["relu", "gelu", "gelu_tanh", "silu"])),
        tie_embeddings=draw(st.booleans()))


@st.composite
def model_and_ids(draw):
    cfg = draw(configs())
    batch = draw(st.integers(1, 3))
    length = draw(st.integers(1, cfg.max_positions))
    ids = draw(st.lists(st.lists(st.integers(0, cfg.vocab_size - 1), min_size=length, max_size=length),
                        min_size=batch, max_size=batch))
    return cfg, torch.tensor(ids, dtype=torch.long)


def run(model, ids: torch.Tensor) -> torch.Tensor:
    """Forward pass of any of the three models on ids (also used as the target for a Transformer)."""
    return model(ids, ids) if isinstance(model, Transformer) else model(ids)


@SETTINGS
@given(model_and_ids(), st.sampled_from(MODEL_CLASSES), st.booleans())
def test_valid_inputs_give_finite_outputs_and_gradients(case, model_class, all_pad_row):
    cfg, ids = case
    if all_pad_row:
        ids[0] = cfg.pad_id
    model = model_class(cfg)
    logits = run(model, ids)
    assert logits.shape == (*ids.shape, cfg.vocab_size)
    assert torch.isfinite(logits).all()
    logits.square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@SETTINGS
@given(configs(), st.sampled_from(MODEL_CLASSES), st.sampled_from(["float", "too_big", "negative", "1d", "long"]))
def test_invalid_ids_raise_type_or_value_error(cfg, model_class, kind):
    model = model_class(cfg)
    bad = {"float": torch.zeros(1, 2), "too_big": torch.full((1, 2), cfg.vocab_size),
           "negative": torch.full((1, 2), -1), "1d": torch.zeros(3, dtype=torch.long),
           "long": torch.zeros(1, cfg.max_positions + 1, dtype=torch.long)}[kind]
    long = rf"length {cfg.max_positions + 1} > max_positions={cfg.max_positions}"
    error, message = {"float": (TypeError, "must hold integer token ids"),
                      "too_big": (ValueError, rf"ids outside \[0, vocab_size={cfg.vocab_size}\)"),
                      "negative": (ValueError, r"ids outside \[0, vocab_size"),
                      "1d": (ValueError, r"must have shape \(batch, length\)"),
                      "long": (ValueError, long)}[kind]
    with pytest.raises(error, match=message):
        run(model, bad)


@SETTINGS
@given(configs(), st.integers(1, 3), st.integers(1, 5))
def test_masks_of_the_wrong_shape_are_rejected(cfg, batch, extra):
    length = min(4, cfg.max_positions)
    ids = torch.full((batch, length), 3 % cfg.vocab_size)
    with pytest.raises(ValueError, match="mask has shape"):
        EncoderLM(cfg)(ids, mask=torch.ones(batch, length + extra, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask has shape"):
        Transformer(cfg)(ids, ids, src_mask=torch.ones(batch, length + extra, dtype=torch.bool))


@SETTINGS
@given(configs(), st.integers(1, 3), st.integers(1, 3), st.sampled_from(["batch", "query", "tgt_batch", "tgt_query"]))
def test_masks_of_the_wrong_batch_or_query_size_are_rejected(cfg, batch, extra, kind):
    """Not only the key length: a mask for another batch size or another number of queries is a clear error."""
    length = min(4, cfg.max_positions)
    ids = torch.full((batch, length), 3 % cfg.vocab_size)
    bad = {"batch": torch.ones(batch + extra, length, dtype=torch.bool),
           "query": torch.ones(batch, length + extra, length, dtype=torch.bool),
           "tgt_batch": torch.ones(batch + extra, length, length, dtype=torch.bool),
           "tgt_query": torch.ones(batch, 1, length + extra, length, dtype=torch.bool)}[kind]
    with pytest.raises(ValueError, match="mask has shape"):
        if kind.startswith("tgt"):
            DecoderLM(cfg)(ids, mask=bad)
        else:
            EncoderLM(cfg)(ids, mask=bad)
    with pytest.raises(ValueError, match="mask has shape"):
        if kind.startswith("tgt"):
            Transformer(cfg)(ids, ids, tgt_mask=bad)
        else:
            Transformer(cfg)(ids, ids, src_mask=bad)


@SETTINGS
@given(configs(), st.sampled_from(["float", "too_big", "negative", "long"]))
def test_invalid_decoder_input_of_the_transformer_is_rejected(cfg, kind):
    src = torch.full((1, 1), 3 % cfg.vocab_size)
    bad = {"float": torch.zeros(1, 1), "too_big": torch.full((1, 1), cfg.vocab_size),
           "negative": torch.full((1, 1), -1), "long": torch.zeros(1, cfg.max_positions + 1, dtype=torch.long)}[kind]
    with pytest.raises((TypeError, ValueError), match="tgt"):
        Transformer(cfg)(src, bad)
