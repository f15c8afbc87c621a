"""Attention: fast path equals weights path, masks, fully masked rows, §3.2.1 by hand, §3.5 sinusoids."""

import math

import pytest
import torch

import aiayn
from aiayn import MultiHeadAttention, causal_mask, sinusoidal_table
from aiayn.model import attention
from aiayn.model.attention import attend


def _paths(mha, x, memory, mask):
    fast, none = mha(x, memory=memory, mask=mask)
    slow, weights = mha(x, memory=memory, mask=mask, need_weights=True)
    assert none is None
    return fast, slow, weights


@pytest.mark.parametrize("kind", ["encoder_self", "decoder_self", "cross"])
@pytest.mark.parametrize("masked", [False, True])
def test_fast_path_equals_weights_path(kind, masked):
    mha = MultiHeadAttention(32, 4).eval()
    x = torch.randn(3, 6, 32)
    memory = torch.randn(3, 9, 32) if kind == "cross" else None
    keys = 9 if kind == "cross" else 6
    mask = None
    if kind == "decoder_self":
        mask = causal_mask(6)
    if masked:
        keep = torch.ones(3, keys, dtype=torch.bool)
        keep[1, -3:] = False
        keep[2, -1:] = False
        pad = keep[:, None, None, :]
        mask = pad if mask is None else mask & pad
    with torch.no_grad():
        fast, slow, weights = _paths(mha, x, memory, mask)
    assert torch.allclose(fast, slow, atol=1e-5)
    assert weights.shape == (3, 4, 6, keys)
    assert torch.allclose(weights.sum(-1), torch.ones(3, 4, 6), atol=1e-6)
    if mask is not None:
        assert float(weights.masked_select(~mask.expand_as(weights)).abs().max()) == 0.0
    if kind == "decoder_self":
        upper = torch.triu(torch.ones(6, 6, dtype=torch.bool), diagonal=1)
        assert float(weights[..., upper].abs().max()) == 0.0


def test_attention_matches_formula_by_hand():
    """softmax(QK^T/sqrt(d_k))V for one head computed with plain loops."""
    q = torch.randn(1, 1, 2, 4)
    k = torch.randn(1, 1, 3, 4)
    v = torch.randn(1, 1, 3, 5)
    out, weights = attend(q, k, v, None, need_weights=True)
    for i in range(2):
        scores = [sum(q[0, 0, i, c] * k[0, 0, j, c] for c in range(4)) / math.sqrt(4) for j in range(3)]
        exp = [math.exp(s) for s in scores]
        probs = [e / sum(exp) for e in exp]
        for j in range(3):
            assert weights[0, 0, i, j].item() == pytest.approx(probs[j], abs=1e-6)
        for c in range(5):
            assert out[0, 0, i, c].item() == pytest.approx(sum(probs[j] * v[0, 0, j, c].item() for j in range(3)),
                                                           abs=1e-5)


@pytest.mark.parametrize("need_weights", [False, True])
def test_fully_masked_rows_give_zeros_and_finite_gradients(need_weights):
    mha = MultiHeadAttention(16, 2)
    x = torch.randn(2, 4, 16, requires_grad=True)
    mask = torch.ones(2, 1, 4, 4, dtype=torch.bool)
    mask[0, :, 2, :] = False  # query 2 of batch 0 may attend nothing
    mask[1] = False  # every query of batch 1
    out, weights = mha(x, mask=mask, need_weights=need_weights)
    assert torch.isfinite(out).all()
    # the output of a fully masked row is the out-projection of zeros: just the bias
    assert torch.allclose(out[0, 2], mha.out_proj.bias, atol=1e-6)
    assert torch.allclose(out[1], mha.out_proj.bias.expand(4, 16), atol=1e-6)
    if need_weights:
        assert float(weights[1].detach().abs().max()) == 0.0
    out.pow(2).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in mha.parameters())
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("need_weights", [False, True])
def test_the_gpu_way_of_repairing_masked_rows_gives_the_cpu_results(monkeypatch, need_weights):
    import aiayn.model.attention as attention

    q, k, v = torch.randn(2, 2, 4, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    masks = [torch.ones(2, 1, 4, 5, dtype=torch.bool), torch.rand(2, 1, 4, 5) > 0.4]
    masks[1][0, :, 1] = False  # a fully masked row
    cpu_way = [attention.attend(q, k, v, m, need_weights=need_weights) for m in masks]
    monkeypatch.setattr(attention, "_can_branch_on_values", lambda x: False)  # as on a GPU: never read back
    for mask, (out, weights) in zip(masks, cpu_way):
        gpu_out, gpu_weights = attention.attend(q, k, v, mask, need_weights=need_weights)
        assert torch.allclose(gpu_out, out, atol=1e-6)
        if need_weights:
            assert torch.allclose(gpu_weights, weights, atol=1e-6)
    assert float(cpu_way[1][0][0, :, 1].abs().max()) == 0.0


def test_causal_mask_with_cache_is_aligned_bottom_right():
    mask = causal_mask(2, 5)[0, 0]
    assert mask.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]


def test_sinusoids_match_section_3_5_by_hand():
    d = 16
    table = sinusoidal_table(50, d)
    for pos in (0, 1, 7, 49):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    assert table[0, 0].item() == 0.0 and table[0, 1].item() == 1.0


def test_cross_attention_uses_query_rows_and_key_value_rows_of_one_projection():
    mha = MultiHeadAttention(8, 2).eval()
    x, memory = torch.randn(1, 3, 8), torch.randn(1, 5, 8)
    _, weights = mha(x, memory=memory, need_weights=True)
    w, b = mha.in_proj.weight, mha.in_proj.bias
    q = (x @ w[:8].T + b[:8]).view(1, 3, 2, 4).transpose(1, 2)
    k = (memory @ w[8:16].T + b[8:16]).view(1, 5, 2, 4).transpose(1, 2)
    expected = torch.softmax(q @ k.transpose(-1, -2) / 2.0, -1)
    assert torch.allclose(weights, expected, atol=1e-6)


def test_module_serves_all_three_kinds_in_the_models():
    model = aiayn.Transformer(aiayn.ModelConfig.preset("tiny"))
    layer = model.decoder.layers[0]
    assert type(layer.self_attn) is type(layer.cross_attn) is type(model.encoder.layers[0].self_attn) \
        is MultiHeadAttention


@pytest.mark.parametrize("causal", [False, True])
def test_half_precision_cpu_path_matches_torchs_fused_kernel(causal):
    """bf16 on a CPU takes the explicit formula for short keys: its output and gradients agree with torch's
    fused scaled_dot_product_attention on the same bf16 inputs, within bf16 rounding."""
    torch.manual_seed(0)
    B, H, T, d_k = 3, 2, 7, 16
    q, k, v = (torch.randn(B, H, T, d_k).bfloat16().requires_grad_() for _ in range(3))
    padding = torch.ones(B, 1, 1, T, dtype=torch.bool).index_fill_(3, torch.tensor([6]), False)
    mask = causal_mask(T) if causal else padding
    assert attention._explicit_is_faster(q, k)
    out, weights = attend(q, k, v, mask)
    assert weights is None
    out.float().square().sum().backward()
    ours = (out.detach().float(), *(t.grad.float() for t in (q, k, v)))
    for t in (q, k, v):
        t.grad = None
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    ref.float().square().sum().backward()
    theirs = (ref.detach().float(), *(t.grad.float() for t in (q, k, v)))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=3e-2, rtol=3e-2)
    long_keys = torch.zeros(1, 1, attention.EXPLICIT_MAX_KEYS + 1, d_k, dtype=torch.bfloat16)
    assert not attention._explicit_is_faster(q, long_keys) and not attention._explicit_is_faster(q.float(), k)
