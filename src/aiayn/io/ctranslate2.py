"""Pre-LN translators -> CTranslate2, built with ctranslate2.specs directly (its TransformerSpec, pre_norm=True).

Post-LN translators go through Marian (export.py); a pre-LN one (whose Hugging Face export is Pegasus) is
described to CTranslate2 tensor by tensor here. The layout CTranslate2 expects:
self-attention linear[0] is the fused (3d, d) Q;K;V projection (aiayn's in_proj), linear[1] W^O;
cross-attention linear[0] is W^Q (in_proj rows 0:d), linear[1] the fused (2d, d) K;V rows, linear[2] W^O;
each sub-layer's layer_norm is the one applied to its input (pre-LN), and each stack ends with a final
LayerNorm. Positions are given as the model's own table (§3.5's interleaved sinusoids or the learned rows),
so CTranslate2 adds exactly what aiayn adds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokenizers import Tokenizer
from torch import Tensor, nn

from ..model.embeddings import sinusoidal_table
from ..model.layers import Stack
from ..model.models import Transformer

# aiayn's activation names -> CTranslate2's common_spec.Activation members
_ACTIVATIONS = {"relu": "RELU", "gelu": "GELU", "gelu_tanh": "GELUTanh", "silu": "SWISH"}


def pre_ln_problems(model: Transformer) -> list[str]:
    """What a pre-LN translator has that CTranslate2's TransformerSpec cannot hold (empty: it can)."""
    cfg = model.cfg
    problems = []
    if cfg.norm != "pre":
        problems.append("norm='post' (exported through Marian instead)")
    if cfg.type_vocab_size:
        problems.append(f"type_vocab_size={cfg.type_vocab_size} (segment embeddings)")
    if cfg.embedding_norm:
        problems.append("embedding_norm=True")
    if cfg.positions not in ("sinusoidal", "learned"):
        problems.append(f"positions={cfg.positions!r} (the spec adds a position table; use sinusoidal or learned)")
    if cfg.position_offset:
        problems.append(f"position_offset={cfg.position_offset}")
    return problems


def _array(tensor: Tensor) -> Any:
    """A float32 numpy copy of a weight (CTranslate2's specs take numpy arrays)."""
    return tensor.detach().float().cpu().contiguous().numpy().copy()


def _norm(spec: Any, norm: nn.LayerNorm) -> None:
    """LayerNorm gain and bias."""
    spec.gamma, spec.beta = _array(norm.weight), _array(norm.bias)


def _linear(spec: Any, weight: Tensor, bias: Tensor | None) -> None:
    """A (out, in) weight and its (out,) bias (zeros where the model has none)."""
    spec.weight = _array(weight)
    spec.bias = _array(bias if bias is not None else weight.new_zeros(weight.shape[0]))


def _stack(spec: Any, stack: Stack, d: int) -> None:
    """Every layer of an encoder or decoder stack, and its final LayerNorm."""
    for layer_spec, layer in zip(spec.layer, stack.layers):
        attn = layer.self_attn
        _norm(layer_spec.self_attention.layer_norm, layer.self_norm)
        _linear(layer_spec.self_attention.linear[0], attn.in_proj.weight, attn.in_proj.bias)  # Q;K;V (3d, d)
        _linear(layer_spec.self_attention.linear[1], attn.out_proj.weight, attn.out_proj.bias)
        if layer.cross_attn is not None:
            cross, w, b = layer.cross_attn, layer.cross_attn.in_proj.weight, layer.cross_attn.in_proj.bias
            _norm(layer_spec.attention.layer_norm, layer.cross_norm)
            _linear(layer_spec.attention.linear[0], w[:d], None if b is None else b[:d])  # W^Q
            _linear(layer_spec.attention.linear[1], w[d:], None if b is None else b[d:])  # W^K;W^V (2d, d)
            _linear(layer_spec.attention.linear[2], cross.out_proj.weight, cross.out_proj.bias)
        _norm(layer_spec.ffn.layer_norm, layer.ffn_norm)
        _linear(layer_spec.ffn.linear_0, layer.ffn.linear1.weight, layer.ffn.linear1.bias)
        _linear(layer_spec.ffn.linear_1, layer.ffn.linear2.weight, layer.ffn.linear2.bias)
    assert stack.final_norm is not None  # pre-LN stacks end with a LayerNorm
    _norm(spec.layer_norm, stack.final_norm)


def _positions(model: Transformer, which: str) -> Any:
    """The (max_positions, d) table position p reads (sinusoids in the model's layout, or learned rows)."""
    cfg = model.cfg
    if cfg.positions == "sinusoidal":
        return _array(sinusoidal_table(cfg.max_positions, cfg.d_model, cfg.sinusoid_layout))
    return _array(getattr(model, which).learned.weight[:cfg.max_positions])


def vocabulary(tokenizer: Tokenizer, size: int) -> list[str]:
    """Token strings by id for ids 0..size-1 (rows the tokenizer does not name: <unused_i>)."""
    by_id = {i: token for token, i in tokenizer.get_vocab(with_added_tokens=True).items()}
    return [by_id.get(i, f"<unused_{i}>") for i in range(size)]


def transformer_spec(model: Transformer, words: list[str], unk_token: str | None = None) -> Any:
    """CTranslate2's TransformerSpec (pre_norm=True) holding the weights of a pre-LN translator.

    words: the token string of every id (vocabulary()); unk_token: the tokenizer's unknown token, if any.
    """
    import ctranslate2  # optional: pip install 'aiayn[ct2]' (export checks it first)

    cfg = model.cfg
    problems = pre_ln_problems(model)
    if problems:
        raise ValueError("CTranslate2's pre-norm Transformer cannot hold " + "; ".join(problems))
    activation = getattr(ctranslate2.specs.Activation, _ACTIVATIONS[cfg.activation])
    spec = ctranslate2.specs.TransformerSpec.from_config(
        (cfg.n_encoder_layers, cfg.n_decoder_layers), cfg.n_heads, pre_norm=True, activation=activation)
    src_table = model.token_embedding if cfg.tie_embeddings else model.src_token_embedding
    tgt_table = model.token_embedding if cfg.tie_embeddings else model.tgt_token_embedding
    encoder, decoder = spec.encoder, spec.decoder
    encoder.embeddings[0].weight = _array(src_table.weight)
    decoder.embeddings.weight = _array(tgt_table.weight)
    encoder.scale_embeddings = decoder.scale_embeddings = bool(cfg.scale_embeddings)  # x sqrt(d_model), §3.4
    encoder.position_encodings.encodings = _positions(model, "src_positions")
    decoder.position_encodings.encodings = _positions(model, "tgt_positions")
    _stack(encoder, model.encoder, cfg.d_model)
    _stack(decoder, model.decoder, cfg.d_model)
    output = tgt_table.weight if cfg.tie_embeddings else model.lm_head.weight  # (V, d), §3.4
    decoder.projection.weight = _array(output)
    if model.final_logits_bias is not None:
        decoder.projection.bias = _array(model.final_logits_bias)
    if len(words) != cfg.vocab_size:
        raise ValueError(f"{len(words)} vocabulary words for a model of vocab_size={cfg.vocab_size}")
    spec.register_source_vocabulary(words)
    spec.register_target_vocabulary(words)
    spec.config.bos_token, spec.config.eos_token = words[cfg.bos_id], words[cfg.eos_id]
    spec.config.decoder_start_token = words[cfg.bos_id]  # the decoder starts from BOS's embedding, as aiayn's
    if unk_token is not None:
        spec.config.unk_token = unk_token
    spec.config.layer_norm_epsilon = cfg.layer_norm_eps
    return spec


def write_pre_ln_translator(model: Transformer, tokenizer: Tokenizer, out: Path, quantization: str | None) -> None:
    """Write the CTranslate2 model (model.bin, config.json, vocabularies) of a pre-LN translator into out."""
    words = vocabulary(tokenizer, model.cfg.vocab_size)
    spec = transformer_spec(model.eval(), words, getattr(tokenizer.model, "unk_token", None))
    spec.validate()
    spec.optimize(quantization=quantization)
    out.mkdir(parents=True, exist_ok=True)
    spec.save(str(out))

