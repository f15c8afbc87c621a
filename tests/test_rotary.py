"""Rotary positions (RoFormer, Su et al. 2021) and a head width d_k set apart from d_model / h (Table 3 (B))."""

import math

import pytest
import torch
from safetensors.torch import save_file

import aiayn
from aiayn import DecoderLM, EncoderLM, ModelConfig, RotaryPositions, Transformer

from .conftest import random_ids


@pytest.fixture
def rotary_cfg() -> ModelConfig:
    return ModelConfig.preset("tiny", dropout=0.0, positions="rotary", max_positions=8)


def test_rotation_matches_roformers_formula_by_hand():
    """RoFormer eq. 34: pair (x_2i, x_2i+1) at position m turns by m * 10000^(-2i/d); here d = 4, m = 2, 3."""
    x = torch.tensor([[0.5, -1.0, 2.0, 0.25], [1.5, 0.75, -0.5, 3.0]])  # positions 2 and 3
    got = RotaryPositions(4)(x[None, None], start=2)[0, 0]
    for row, m in zip(range(2), (2, 3)):
        expected = []
        for i in range(2):
            angle = m * 10000.0 ** (-2 * i / 4)  # theta_0 = 1, theta_1 = 1/100
            a, b = float(x[row, 2 * i]), float(x[row, 2 * i + 1])
            expected += [a * math.cos(angle) - b * math.sin(angle), a * math.sin(angle) + b * math.cos(angle)]
        assert got[row].tolist() == pytest.approx(expected, abs=1e-6)


def test_rotated_scores_depend_on_the_offset_only():
    rotary = RotaryPositions(8)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    near = (rotary(q, 5) * rotary(k, 2)).sum()
    far = (rotary(q, 105) * rotary(k, 102)).sum()
    assert float(near) == pytest.approx(float(far), abs=1e-4)
    assert float(near) != pytest.approx(float((rotary(q, 5) * rotary(k, 4)).sum()), abs=1e-3)


def test_rotary_models_have_no_position_table_and_take_inputs_past_max_positions(rotary_cfg):
    for cls in (Transformer, EncoderLM, DecoderLM):
        model = cls(rotary_cfg).eval()
        assert not any("positions" in name for name in model.state_dict())
        ids = random_ids(2, 20)  # > max_positions = 8
        out = model(ids, ids[:, :12]) if cls is Transformer else model(ids)
        assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="max_positions"):
        DecoderLM(rotary_cfg.replace(positions="sinusoidal"))(random_ids(1, 20))


def test_rotary_decoders_are_causal(rotary_cfg):
    lm, seq2seq = DecoderLM(rotary_cfg).eval(), Transformer(rotary_cfg).eval()
    src, tgt = random_ids(2, 6), random_ids(2, 12)
    changed = tgt.clone()
    changed[:, 9:] = random_ids(2, 3)
    for run in (lm, lambda ids: seq2seq(src, ids)):
        a, b = run(tgt), run(changed)
        assert torch.allclose(a[:, :9], b[:, :9], atol=1e-6)
        assert not torch.allclose(a[:, 9:], b[:, 9:], atol=1e-3)


def test_rotary_encoder_sees_word_order(rotary_cfg):
    """Swapping two source tokens changes the encoder output (a model without positions would just permute it)."""
    model = EncoderLM(rotary_cfg).eval()
    ids = random_ids(1, 6)
    swapped = ids[:, [1, 0, 2, 3, 4, 5]]
    a, b = model.encode(ids), model.encode(swapped)
    assert not torch.allclose(a[:, [1, 0, 2, 3, 4, 5]], b, atol=1e-4)


def test_rotary_cached_decoding_equals_uncached(rotary_cfg):
    lm = DecoderLM(rotary_cfg).eval()
    ids = random_ids(2, 11)  # past max_positions too
    full = lm(ids)
    caches = lm.new_caches()
    steps = [lm(ids[:, :4], caches=caches)] + [lm(ids[:, t:t + 1], caches=caches, start=t) for t in range(4, 11)]
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)

    seq2seq = Transformer(rotary_cfg).eval()
    src, tgt = random_ids(2, 5), random_ids(2, 7)
    memory = seq2seq.encode(src)
    full = seq2seq.decode(tgt, memory, src=src)
    caches = seq2seq.new_caches()
    steps = [seq2seq.decode(tgt[:, t:t + 1], memory, src=src, caches=caches, start=t) for t in range(7)]
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)
    # beam search (cached, with reordered caches) finds what a search re-running the whole prefix finds
    greedy = seq2seq.generate(src, beam_size=1, max_new_tokens=6)
    for row, hyp in enumerate(greedy):
        prefix = torch.tensor([[rotary_cfg.bos_id]])
        for token in hyp:
            logits = seq2seq(src[row:row + 1], prefix)[:, -1]
            assert int(logits.argmax()) == token
            prefix = torch.cat([prefix, torch.tensor([[token]])], dim=1)


def test_rotary_and_an_explicit_d_k_are_refused_by_the_hugging_face_export(rotary_cfg, tmp_path):
    with pytest.raises(ValueError, match="rotary"):
        aiayn.to_huggingface(DecoderLM(rotary_cfg))
    with pytest.raises(ValueError, match="d_k=4"):
        aiayn.to_huggingface(DecoderLM(ModelConfig.preset("tiny", d_k=4)))
    (tmp_path / "config.json").write_text('{"model_type": "roformer", "architectures": ["RoFormerModel"]}')
    save_file({"embeddings.word_embeddings.weight": torch.zeros(2, 2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(aiayn.ConversionError, match="rotary"):
        aiayn.from_huggingface(tmp_path)


def test_d_k_apart_from_d_model_over_h_sets_the_parameter_count():
    """d_model 32, 4 heads of d_k 4 (not 8), d_ff 64, 2 layers, vocabulary 64, tied, sinusoids, post-LN."""
    cfg = ModelConfig.preset("tiny", d_k=4)
    d, h, dk, ff, v, layers = 32, 4, 4, 64, 64, 2
    attention = d * 3 * h * dk + 3 * h * dk + h * dk * d + d  # W^Q, W^K, W^V (+ biases), W^O (+ bias)
    ffn = d * ff + ff + ff * d + d
    norm = 2 * d
    assert DecoderLM(cfg).num_parameters() == v * d + layers * (attention + ffn + 2 * norm)
    decoder_layer = 2 * attention + ffn + 3 * norm
    encoder_layer = attention + ffn + 2 * norm
    assert Transformer(cfg).num_parameters() == v * d + layers * (encoder_layer + decoder_layer)
    assert Transformer(cfg).num_parameters() != Transformer(ModelConfig.preset("tiny")).num_parameters()
    assert cfg.d_k == 4 and ModelConfig.preset("tiny").d_k == 8  # the paper's d_model / h by default
    assert cfg.replace(d_model=64).d_k == 4 and ModelConfig.preset("tiny").replace(d_model=64).d_k == 16
    DecoderLM(ModelConfig.preset("tiny", d_model=30, d_k=8))  # d_model need not divide by h when d_k is set
    with pytest.raises(ValueError, match="divisible by n_heads"):
        ModelConfig.preset("tiny", d_model=30)
