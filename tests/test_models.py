"""The three models: causality, padding invariance, attention outputs, parameter counts, learning."""

import pytest
import torch
import torch.nn.functional as F

import aiayn
from aiayn import DecoderLM, EncoderLM, ModelConfig, Transformer

from .conftest import random_ids


def test_transformer_shapes_and_attention_output(tiny_cfg):
    model = Transformer(tiny_cfg).eval()
    src, tgt = random_ids(2, 7), random_ids(2, 5)
    logits = model(src, tgt)
    assert logits.shape == (2, 5, tiny_cfg.vocab_size)
    out = model(src, tgt, return_attention=True)
    assert torch.allclose(out.logits, logits, atol=1e-5)
    n_layers, heads = tiny_cfg.n_decoder_layers, tiny_cfg.n_heads
    assert len(out.attentions["encoder_self"]) == tiny_cfg.n_encoder_layers
    assert out.attentions["encoder_self"][0].shape == (2, heads, 7, 7)
    assert out.attentions["decoder_self"][n_layers - 1].shape == (2, heads, 5, 5)
    assert out.attentions["cross"][0].shape == (2, heads, 5, 7)
    assert set(out.attentions[0]) == {"encoder_self", "decoder_self", "cross"}
    assert model.encode(src).shape == (2, 7, tiny_cfg.d_model)


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_transformer_is_causal(tiny_cfg, norm):
    model = Transformer(tiny_cfg.replace(norm=norm)).eval()
    src, tgt = random_ids(2, 6), random_ids(2, 8)
    changed = tgt.clone()
    changed[:, 5:] = random_ids(2, 3)
    a, b = model(src, tgt), model(src, changed)
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-6)
    assert not torch.allclose(a[:, 5:], b[:, 5:], atol=1e-3)


def test_decoder_lm_is_causal(tiny_cfg):
    model = DecoderLM(tiny_cfg).eval()
    ids = random_ids(3, 10)
    changed = ids.clone()
    changed[:, 4:] = random_ids(3, 6)
    a, b = model(ids), model(changed)
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-6)
    assert not torch.allclose(a[:, 4:], b[:, 4:], atol=1e-3)
    weights = model(ids, return_attention=True).attentions["decoder_self"]
    upper = torch.triu(torch.ones(10, 10, dtype=torch.bool), diagonal=1)
    assert all(float(w[..., upper].abs().max()) == 0.0 for w in weights)


def test_encoder_lm_is_bidirectional(tiny_cfg):
    model = EncoderLM(tiny_cfg).eval()
    ids = random_ids(1, 8)
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1 - 3) % 60 + 3
    assert not torch.allclose(model(ids)[:, 0], model(changed)[:, 0], atol=1e-4)
    assert model.encode(ids).shape == (1, 8, tiny_cfg.d_model)
    assert model(ids).shape == (1, 8, tiny_cfg.vocab_size)


def test_appending_padding_to_the_source_changes_nothing(tiny_cfg):
    model = Transformer(tiny_cfg).eval()
    src, tgt = random_ids(2, 6), random_ids(2, 4)
    padded = torch.cat([src, torch.full((2, 5), tiny_cfg.pad_id)], 1)
    memory, memory_padded = model.encode(src), model.encode(padded)
    assert torch.allclose(memory, memory_padded[:, :6], atol=1e-5)
    a = model(src, tgt, return_attention=True)
    b = model(padded, tgt, return_attention=True)
    assert torch.allclose(a.logits, b.logits, atol=1e-5)
    for layer in range(tiny_cfg.n_decoder_layers):
        cross_a, cross_b = a.attentions["cross"][layer], b.attentions["cross"][layer]
        assert torch.allclose(cross_a, cross_b[..., :6], atol=1e-6)
        assert float(cross_b[..., 6:].abs().max()) == 0.0
    encoder_lm = EncoderLM(tiny_cfg).eval()
    assert torch.allclose(encoder_lm.encode(src), encoder_lm.encode(padded)[:, :6], atol=1e-5)


def test_a_pad_id_in_the_middle_of_a_source_is_a_hidden_key_that_keeps_its_position(tiny_cfg):
    model = Transformer(tiny_cfg).eval()
    src, tgt = random_ids(2, 7), random_ids(2, 4)
    src[0, 3], src[1, 1:3] = tiny_cfg.pad_id, tiny_cfg.pad_id
    with torch.no_grad():
        out = model(src, tgt, return_attention=True)
        assert torch.allclose(out.logits, model(src, tgt, src_mask=src != tiny_cfg.pad_id), atol=1e-5)
        assert float(out.attentions["cross"][0][0, :, :, 3].abs().max()) == 0.0  # no weight on the pad
        assert float(out.attentions["encoder_self"][0][1, :, :, 1:3].abs().max()) == 0.0
        seen = model(src, tgt, src_mask=torch.ones_like(src, dtype=torch.bool))
        deleted = model(torch.cat([src[:1, :3], src[:1, 4:]], 1), tgt[:1])  # the pad removed: positions shift
    assert float((out.logits - seen).abs().max()) > 1e-3
    assert float((out.logits[:1] - deleted).abs().max()) > 1e-4


def test_demo_builds_paper_base_and_translates_with_random_weights(capsys):
    from aiayn.cli import main

    assert main(["demo", "--seed", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "paper-base: 63,082,496 parameters (63.1M; the paper's Table 3 gives 65M)"
    rows = [line for line in lines[1:] if "->" in line]
    assert len(rows) == 3 and all("(random weights: noise until trained)" in line for line in rows)
    outputs = [eval(line.split("-> ")[1].split(" (")[0]) for line in rows]
    assert all(isinstance(out, list) and len(out) <= 10 and all(3 <= t < 37000 or t == 1 for t in out)
               for out in outputs)


def test_all_pad_rows_give_no_nan_in_outputs_or_gradients(tiny_cfg):
    model = Transformer(tiny_cfg)
    src = random_ids(2, 5)
    src[1] = tiny_cfg.pad_id  # a source of padding only: every cross-attention row fully masked
    tgt = random_ids(2, 4)
    tgt[1, 1:] = tiny_cfg.pad_id
    logits = model(src, tgt)
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_parameter_counts_match_table_3():
    base = Transformer(ModelConfig.preset("paper-base", vocab_size=37000)).num_parameters()
    assert abs(base - 65e6) / 65e6 < 0.05
    assert base == 63_082_496  # every weight, bias and LayerNorm; one shared 37000 x 512 table
    big = Transformer(ModelConfig.preset("paper-big", vocab_size=37000)).num_parameters()
    assert abs(big - 213e6) / 213e6 < 0.03


def test_shared_embeddings_are_one_table_and_scaled(tiny_cfg):
    model = Transformer(tiny_cfg).eval()
    names = [name for name, _ in model.named_parameters()]
    assert sum("token_embedding" in n for n in names) == 1
    ids = random_ids(1, 3)
    x = model.tgt_positions(model.token_embedding(ids))
    expected = model.token_embedding.weight[ids] * tiny_cfg.d_model ** 0.5 + aiayn.sinusoidal_table(3, 32)
    assert torch.allclose(x, expected, atol=1e-6)
    untied = Transformer(tiny_cfg.replace(tie_embeddings=False))
    assert untied.num_parameters() == model.num_parameters() + 2 * tiny_cfg.vocab_size * tiny_cfg.d_model


@pytest.mark.parametrize("model_class", [Transformer, EncoderLM, DecoderLM])
@pytest.mark.parametrize("variant", [{}, dict(norm="pre", positions="learned", activation="gelu")])
def test_one_training_step_gives_every_parameter_a_gradient(tiny_cfg, model_class, variant):
    model = model_class(tiny_cfg.replace(**variant))
    ids = random_ids(2, 6)
    logits = model(ids, random_ids(2, 5)) if model_class is Transformer else model(ids)
    F.cross_entropy(logits.flatten(0, 1), random_ids(logits.shape[0], logits.shape[1]).flatten()).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and float(parameter.grad.abs().sum()) > 0, name


def test_tiny_model_learns_the_copy_task():
    torch.manual_seed(1)
    cfg = ModelConfig.preset("tiny", vocab_size=16, dropout=0.0, d_model=64, d_ff=128, n_heads=4)
    model = Transformer(cfg)
    src = torch.randint(3, 16, (32, 8))
    tgt_in = torch.cat([torch.full((32, 1), cfg.bos_id), src], 1)
    tgt_out = torch.cat([src, torch.full((32, 1), cfg.eos_id)], 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.98), eps=1e-9)
    for _ in range(250):
        loss = F.cross_entropy(model(src, tgt_in).flatten(0, 1), tgt_out.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1
    model.eval()
    assert model.generate(src[:4], beam_size=1) == src[:4].tolist()


@pytest.mark.parametrize("bad, error, message", [
    (torch.randn(2, 5), TypeError, "integer token ids"),
    (torch.randint(3, 10, (5,)), ValueError, r"shape \(batch, length\)"),
    (torch.full((1, 4), 64), ValueError, r"outside \[0, vocab_size=64\)"),
    (torch.full((1, 4), -1), ValueError, "outside"),
    (torch.randint(3, 10, (1, 129)), ValueError, "max_positions=128"),
    (torch.zeros(1, 0, dtype=torch.long), ValueError, "empty"),
])
def test_bad_ids_raise_clear_errors(tiny_cfg, bad, error, message):
    for model in (Transformer(tiny_cfg), EncoderLM(tiny_cfg), DecoderLM(tiny_cfg)):
        with pytest.raises(error, match=message):
            model(bad, random_ids(1, 3)) if isinstance(model, Transformer) else model(bad)


def test_bad_masks_raise_clear_errors(tiny_cfg):
    model = Transformer(tiny_cfg)
    src, tgt = random_ids(2, 5), random_ids(2, 4)
    with pytest.raises(TypeError, match="src_mask must be a torch.bool"):
        model(src, tgt, src_mask=torch.ones(2, 5))
    with pytest.raises(ValueError, match="src_mask has shape"):
        model(src, tgt, src_mask=torch.ones(2, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match="batch size"):
        model(src, random_ids(3, 4))
    heads = tiny_cfg.n_heads  # 4
    with pytest.raises(ValueError, match=f"dimension 1 \\(3\\) must be 1 .* n_heads={heads}"):
        model(src, tgt, src_mask=torch.ones(2, 3, 1, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="tgt_mask .* n_heads"):
        model(src, tgt, tgt_mask=torch.ones(2, heads + 1, 4, 4, dtype=torch.bool))
    per_head = torch.ones(2, heads, 4, 4, dtype=torch.bool).tril()  # one mask per head is allowed
    assert torch.allclose(model.eval()(src, tgt, tgt_mask=per_head), model(src, tgt, tgt_mask=per_head[:, :1]))


@pytest.mark.parametrize("tgt_len", [4, 6])  # shorter than the source, and as long (where a wrong mask fits)
def test_a_3d_or_4d_source_mask_masks_cross_attention_by_its_key_padding(tiny_cfg, tgt_len):
    model = Transformer(tiny_cfg).eval()
    src, tgt = random_ids(2, 6), random_ids(2, tgt_len)
    keep = torch.ones(2, 6, dtype=torch.bool)
    keep[0, 4:], keep[1, 2:] = False, False
    pairwise = keep[:, None, :] & keep[:, :, None]  # (B, S, S): padding neither attends nor is attended
    with torch.no_grad():
        expected = model(src, tgt, src_mask=keep)
        for mask in (pairwise, pairwise[:, None], keep[:, None, :].expand(2, 6, 6)):
            assert torch.allclose(model(src, tgt, src_mask=mask), expected, atol=1e-5)
            out = model(src, tgt, src_mask=mask, return_attention=True)
            assert torch.allclose(out.logits, expected, atol=1e-5)
            assert float(out.attentions["cross"][-1][0, :, :, 4:].abs().max()) == 0.0  # padding gets no weight
        assert float((model(src, tgt) - expected).abs().max()) > 1e-3  # the masks matter here


def test_positions_returns_the_logits_of_the_selected_positions_only(tiny_cfg):
    model = Transformer(tiny_cfg).eval()
    src, tgt = random_ids(3, 6), random_ids(3, 5)
    keep = torch.rand(3, 5) > 0.4
    assert torch.allclose(model(src, tgt, positions=keep), model(src, tgt)[keep], atol=1e-6)
    with pytest.raises(ValueError, match="positions must be a bool tensor"):
        model(src, tgt, positions=keep.long())


def test_positions_also_select_the_logits_when_attention_is_returned(tiny_cfg):
    src, tgt = random_ids(3, 6), random_ids(3, 5)
    keep = torch.rand(3, 5) > 0.4
    model = Transformer(tiny_cfg).eval()
    out = model(src, tgt, positions=keep, return_attention=True)
    assert out.logits.shape == (int(keep.sum()), tiny_cfg.vocab_size)
    assert torch.allclose(out.logits, model(src, tgt)[keep], atol=1e-6) and len(out.attentions["cross"]) == 2
    encoder = EncoderLM(tiny_cfg).eval()
    out = encoder(tgt, positions=keep.reshape(-1).nonzero().squeeze(1), return_attention=True)
    assert torch.allclose(out.logits, encoder(tgt)[keep], atol=1e-6)


def test_cached_decoding_keeps_a_target_mask(tiny_cfg):
    """Transformer.decode with caches: tgt_mask covers every position so far, as without caches."""
    model = Transformer(tiny_cfg).eval()
    src, tgt = random_ids(2, 6), random_ids(2, 5)
    keep = torch.ones(2, 5, dtype=torch.bool)
    keep[0, 1], keep[1, 3] = False, False
    with torch.no_grad():
        memory = model.encode(src)
        full = model.decode(tgt, memory, src=src, tgt_mask=keep)
        caches = model.new_caches(5)
        steps = [model.decode(tgt[:, t:t + 1], memory, src=src, tgt_mask=keep[:, :t + 1], caches=caches, start=t)
                 for t in range(5)]
        assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)
        assert float((full - model.decode(tgt, memory, src=src)).abs().max()) > 1e-3  # the mask matters


def test_positions_as_flat_indices_select_the_same_rows_and_gradients_as_the_mask(tiny_cfg):
    model = Transformer(tiny_cfg).eval()
    src, tgt = random_ids(3, 6), random_ids(3, 5)
    keep = torch.rand(3, 5) > 0.4
    flat = keep.reshape(-1).nonzero().squeeze(1)  # (N,) indices into the 15 positions
    by_mask, by_index = model(src, tgt, positions=keep), model(src, tgt, positions=flat)
    assert by_index.shape == (int(keep.sum()), tiny_cfg.vocab_size)
    assert torch.equal(by_index, by_mask)
    weight = model.token_embedding.weight
    grad_mask = torch.autograd.grad(by_mask.square().sum(), weight)[0]
    grad_index = torch.autograd.grad(by_index.square().sum(), weight)[0]
    assert grad_index.abs().max() > 0 and torch.allclose(grad_index, grad_mask, atol=1e-6)
    with pytest.raises(ValueError, match="flat indices into its 15 positions"):
        model(src, tgt, positions=flat.float())


def test_ids_from_own_tokenizer_skips_only_the_value_check_and_restores_it(tiny_cfg):
    model = Transformer(tiny_cfg)
    too_big = torch.full((1, 4), tiny_cfg.vocab_size)
    with model.ids_from_own_tokenizer():
        model.check_ids(too_big, "src")  # no read-back, no error: the caller vouches for the values
        with pytest.raises(TypeError, match="integer token ids"):  # dtype and shape are still checked
            model.check_ids(too_big.float(), "src")
    with pytest.raises(ValueError, match="outside"):
        model.check_ids(too_big, "src")
    with pytest.raises(RuntimeError, match="inside"):  # an error inside the block also restores the check
        with model.ids_from_own_tokenizer():
            raise RuntimeError("inside")
    with pytest.raises(ValueError, match="outside"):
        model.check_ids(too_big, "src")


def test_encoder_lm_positions_give_the_full_logits_rows(tiny_cfg):
    model = EncoderLM(tiny_cfg).eval()
    ids = random_ids(3, 7)
    chosen = torch.rand(3, 7) < 0.3
    chosen[0, 0] = True  # at least one
    flat = chosen.reshape(-1).nonzero().squeeze(1)
    full = model(ids)  # (3, 7, V)
    assert torch.allclose(model(ids, positions=flat), full[chosen], atol=1e-6)
    assert torch.allclose(model(ids, positions=chosen), full[chosen], atol=1e-6)
    with pytest.raises(ValueError, match="shaped like ids"):
        model(ids, positions=chosen[:, :3])
