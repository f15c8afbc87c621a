"""Hugging Face <-> aiayn weights: BERT -> EncoderLM, GPT-2 and OPT -> DecoderLM, Marian, BART and Pegasus ->
Transformer.

Each family is described once, as data: a function from its config.json to a ModelConfig, and a list of
`Rule`s naming which Hugging Face tensor(s) make each aiayn tensor. The same rules run forwards
(`from_huggingface`) and backwards (`to_huggingface`). Nothing is downloaded: the source is a local
folder (config.json + model.safetensors, sharded safetensors or pytorch_model.bin) or a model object.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..model.config import ModelConfig
from ..model.embeddings import sinusoidal_table
from ..model.models import DecoderLM, EncoderLM, Transformer, TransformerBase
from ..model.registry import MODEL_TYPES, of_model
from .equivalents import as_learned_positions, fold_embedding_scale, to_halves_layout
from .model_folder import CheckpointError, read_weights


class ConversionError(CheckpointError):
    """A Hugging Face checkpoint aiayn cannot convert; the message names the architecture, option or keys."""


@dataclass(frozen=True)
class Rule:
    """One aiayn tensor `ours` and the Hugging Face tensor(s) `theirs` it is made from.

    how: "copy"; "transpose" (GPT-2's Conv1D stores (in, out)); "concat" (separate Q, K, V stacked into
    the fused in_proj, rows Q;K;V); "row" (theirs is (1, n), ours (n,)); "tied" (theirs are aliases of
    one tensor: any one may be stored, and all stored ones must be equal).
    """

    ours: str
    theirs: tuple[str, ...]
    how: str = "copy"


@dataclass(frozen=True)
class Family:
    """How one Hugging Face architecture maps onto an aiayn model."""

    model_type: str  # config.json's model_type
    hf_class: str  # the transformers class to_huggingface builds
    hf_config_class: str
    model_class: type[TransformerBase]
    prefix: str  # the base-model prefix that head classes put before the body's keys
    top_level: tuple[str, ...]  # key prefixes of head tensors that never carry `prefix`
    dropped: tuple[str, ...]  # regexes of tensors aiayn has no place for (buffers, pooler, NSP head)
    config: Callable[["_Fields"], dict[str, Any]]  # HF config -> ModelConfig fields
    rules: Callable[[ModelConfig, set[str]], list[Rule]]  # (cfg, stored keys) -> rules
    to_config: Callable[[ModelConfig], dict[str, Any]]  # ModelConfig -> HF config fields
    needs: dict[str, Any]  # ModelConfig fields the family fixes (met exactly or refused by to_huggingface)


# ---------------------------------------------------------------------------------------------------
# Reading a checkpoint


def read_checkpoint(source: Any) -> tuple[dict[str, Any], dict[str, Tensor], Path | None]:
    """(config dict, state dict, folder or None) from a local HF folder or a transformers model object."""
    if hasattr(source, "config") and hasattr(source, "state_dict") and not isinstance(source, (str, Path)):
        return source.config.to_dict(), dict(source.state_dict()), None
    try:
        folder = Path(source).expanduser()
    except RuntimeError:  # "~user" naming no user: the path as given, which the next check names
        folder = Path(source)
    if not folder.is_dir():
        raise ConversionError(f"{folder} is not a folder: give a local Hugging Face checkpoint folder "
                              f"(config.json + model.safetensors or pytorch_model.bin); nothing is "
                              f"downloaded")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ConversionError(f"{config_path} is missing: a Hugging Face checkpoint folder needs config.json")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConversionError(f"{config_path} is not valid JSON ({error})") from None
    return config, _read_tensors(folder), folder


def _read_tensors(folder: Path) -> dict[str, Tensor]:
    """All tensors of a folder: model.safetensors, its sharded form, or pytorch_model.bin (weights only)."""
    if (folder / "model.safetensors").is_file():
        return read_weights(folder / "model.safetensors")
    for index_name, loader in (("model.safetensors.index.json", read_weights),
                               ("pytorch_model.bin.index.json", _read_bin)):
        index = folder / index_name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            state: dict[str, Tensor] = {}
            for shard in shards:
                state.update(loader(folder / shard))
            return state
    if (folder / "pytorch_model.bin").is_file():
        return _read_bin(folder / "pytorch_model.bin")
    raise ConversionError(f"{folder} has no weights: expected model.safetensors, a sharded "
                          f"model.safetensors.index.json, or pytorch_model.bin")


def _read_bin(path: Path) -> dict[str, Tensor]:
    """A PyTorch checkpoint loaded with weights_only=True (no arbitrary code runs)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or pickled-code files
        raise ConversionError(f"{path} cannot be read as plain tensors ({error}); "
                              f"convert it to safetensors") from None
    return dict(state.get("state_dict", state))


class _Fields:
    """A Hugging Face config dict whose missing required fields raise a ConversionError naming them."""

    REQUIRED = object()

    def __init__(self, values: dict[str, Any], model_type: str) -> None:
        """Wrap config.json's values."""
        self.values, self.model_type = values, model_type

    def __call__(self, name: str, default: Any = REQUIRED) -> Any:
        """The value of `name`, its default if absent (or None), or a clear error if required."""
        value = self.values.get(name)
        if value is not None:
            return value
        if default is _Fields.REQUIRED:
            raise ConversionError(f"config.json of this {self.model_type} checkpoint lacks {name!r}")
        return default

    def expect(self, **allowed: Any) -> None:
        """Stop with a ConversionError if an option has a value aiayn does not implement."""
        for name, (default, ok) in allowed.items():
            value = self(name, default)
            if value not in ok:
                raise ConversionError(f"unsupported {self.model_type} option {name}={value!r}: "
                                      f"aiayn implements only {name} in {list(ok)}")


_ACTIVATIONS_FROM_HF = {"relu": "relu", "gelu": "gelu", "gelu_new": "gelu_tanh",
                        "gelu_pytorch_tanh": "gelu_tanh", "silu": "silu", "swish": "silu"}
_ACTIVATIONS_TO_HF = {"relu": "relu", "gelu": "gelu", "gelu_tanh": "gelu_new", "silu": "silu"}


def _activation(fields: _Fields, name: str, default: str) -> str:
    """The aiayn activation for HF's `name` (e.g. gelu_new -> gelu_tanh), or a clear error."""
    value = fields(name, default)
    if value not in _ACTIVATIONS_FROM_HF:
        raise ConversionError(f"unsupported {fields.model_type} option {name}={value!r}: aiayn implements "
                              f"{sorted(_ACTIVATIONS_FROM_HF)}")
    return _ACTIVATIONS_FROM_HF[value]


# ---------------------------------------------------------------------------------------------------
# Rules shared by the families


def _affine(ours: str, theirs: str, how: str = "copy") -> list[Rule]:
    """weight and bias of a Linear or LayerNorm."""
    return [Rule(f"{ours}.weight", (f"{theirs}.weight",), how), Rule(f"{ours}.bias", (f"{theirs}.bias",))]


def _qkv_attention(ours: str, theirs: str, q: str, k: str, v: str, out: str) -> list[Rule]:
    """Separate Q, K, V projections -> aiayn's fused in_proj (rows Q;K;V), and the output projection."""
    names = tuple(f"{theirs}.{p}" for p in (q, k, v))
    return [Rule(f"{ours}.in_proj.weight", tuple(f"{n}.weight" for n in names), "concat"),
            Rule(f"{ours}.in_proj.bias", tuple(f"{n}.bias" for n in names), "concat"),
            *_affine(f"{ours}.out_proj", f"{theirs}.{out}")]


# --- BERT -> EncoderLM --------------------------------------------------------------------------------


def _bert_config(f: _Fields) -> dict[str, Any]:
    """BertConfig -> ModelConfig fields: post-LN, learned positions, segments, embedding LayerNorm."""
    f.expect(position_embedding_type=("absolute", {"absolute"}), is_decoder=(False, {False}),
             add_cross_attention=(False, {False}))
    return dict(vocab_size=f("vocab_size"), d_model=f("hidden_size"), n_heads=f("num_attention_heads"),
                d_ff=f("intermediate_size"), n_encoder_layers=f("num_hidden_layers"), n_decoder_layers=0,
                dropout=float(f("hidden_dropout_prob", 0.1)),
                attention_dropout=float(f("attention_probs_dropout_prob", 0.1)),
                pad_id=f("pad_token_id", 0), max_positions=f("max_position_embeddings", 512),
                norm="post", positions="learned", activation=_activation(f, "hidden_act", "gelu"),
                tie_embeddings=bool(f("tie_word_embeddings", True)), scale_embeddings=False,
                layer_norm_eps=float(f("layer_norm_eps", 1e-12)), type_vocab_size=f("type_vocab_size", 2),
                embedding_norm=True)


def _bert_rules(cfg: ModelConfig, stored: set[str]) -> list[Rule]:
    """BertModel / BertForMaskedLM tensors (prefix "bert." removed) -> EncoderLM tensors."""
    has_head = any(key.startswith("cls.predictions.") for key in stored)
    words = ("embeddings.word_embeddings.weight",) + \
        (("cls.predictions.decoder.weight",) if has_head and cfg.tie_embeddings else ())
    rules = [Rule("token_embedding.weight", words, "tied"),
             Rule("positions.learned.weight", ("embeddings.position_embeddings.weight",)),
             *_affine("positions.norm", "embeddings.LayerNorm")]
    if cfg.type_vocab_size:
        rules.append(Rule("positions.token_types.weight", ("embeddings.token_type_embeddings.weight",)))
    for i in range(cfg.n_encoder_layers):
        ours, theirs = f"encoder.layers.{i}", f"encoder.layer.{i}"
        rules += [*_qkv_attention(f"{ours}.self_attn", f"{theirs}.attention", "self.query", "self.key",
                                  "self.value", "output.dense"),
                  *_affine(f"{ours}.self_norm", f"{theirs}.attention.output.LayerNorm"),
                  *_affine(f"{ours}.ffn.linear1", f"{theirs}.intermediate.dense"),
                  *_affine(f"{ours}.ffn.linear2", f"{theirs}.output.dense"),
                  *_affine(f"{ours}.ffn_norm", f"{theirs}.output.LayerNorm")]
    if has_head:  # BertForMaskedLM's head: dense + activation + LayerNorm, then the vocabulary projection
        rules += [*_affine("mlm_dense", "cls.predictions.transform.dense"),
                  *_affine("mlm_norm", "cls.predictions.transform.LayerNorm"),
                  Rule("mlm_bias", ("cls.predictions.bias", "cls.predictions.decoder.bias"), "tied")]
        if not cfg.tie_embeddings:
            rules.append(Rule("lm_head.weight", ("cls.predictions.decoder.weight",)))
    return rules


def _bert_to_config(cfg: ModelConfig) -> dict[str, Any]:
    """ModelConfig -> BertConfig fields."""
    return dict(vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, num_attention_heads=cfg.n_heads,
                intermediate_size=cfg.d_ff, num_hidden_layers=cfg.n_encoder_layers,
                hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.attention_dropout,
                pad_token_id=cfg.pad_id, max_position_embeddings=cfg.max_positions,
                hidden_act=_ACTIVATIONS_TO_HF[cfg.activation], layer_norm_eps=cfg.layer_norm_eps,
                type_vocab_size=max(cfg.type_vocab_size, 1), tie_word_embeddings=cfg.tie_embeddings)


# --- GPT-2 -> DecoderLM -------------------------------------------------------------------------------


def _gpt2_config(f: _Fields) -> dict[str, Any]:
    """GPT2Config -> ModelConfig fields: pre-LN with a final LayerNorm, learned positions, unscaled."""
    f.expect(scale_attn_weights=(True, {True}), scale_attn_by_inverse_layer_idx=(False, {False}),
             reorder_and_upcast_attn=(False, {False}), add_cross_attention=(False, {False}))
    eos = f("eos_token_id", 50256)
    d_model = f("n_embd")
    return dict(vocab_size=f("vocab_size"), d_model=d_model, n_heads=f("n_head"),
                d_ff=f("n_inner", 4 * d_model), n_encoder_layers=0, n_decoder_layers=f("n_layer"),
                dropout=float(f("resid_pdrop", 0.1)), attention_dropout=float(f("attn_pdrop", 0.1)),
                pad_id=f("pad_token_id", eos), bos_id=f("bos_token_id", eos), eos_id=eos,
                max_positions=f("n_positions", 1024), norm="pre", positions="learned",
                activation=_activation(f, "activation_function", "gelu_new"),
                tie_embeddings=bool(f("tie_word_embeddings", True)), scale_embeddings=False,
                layer_norm_eps=float(f("layer_norm_epsilon", 1e-5)))


def _gpt2_rules(cfg: ModelConfig, stored: set[str]) -> list[Rule]:
    """GPT2Model / GPT2LMHeadModel tensors (prefix "transformer." removed) -> DecoderLM tensors."""
    words = ("wte.weight", "lm_head.weight") if cfg.tie_embeddings else ("wte.weight",)
    rules = [Rule("token_embedding.weight", words, "tied"), Rule("positions.learned.weight", ("wpe.weight",))]
    for i in range(cfg.n_decoder_layers):
        ours, theirs = f"decoder.layers.{i}", f"h.{i}"
        rules += [*_affine(f"{ours}.self_norm", f"{theirs}.ln_1"),
                  *_affine(f"{ours}.self_attn.in_proj", f"{theirs}.attn.c_attn", "transpose"),  # Conv1D
                  *_affine(f"{ours}.self_attn.out_proj", f"{theirs}.attn.c_proj", "transpose"),
                  *_affine(f"{ours}.ffn_norm", f"{theirs}.ln_2"),
                  *_affine(f"{ours}.ffn.linear1", f"{theirs}.mlp.c_fc", "transpose"),
                  *_affine(f"{ours}.ffn.linear2", f"{theirs}.mlp.c_proj", "transpose")]
    rules += _affine("decoder.final_norm", "ln_f")
    if not cfg.tie_embeddings:
        rules.append(Rule("lm_head.weight", ("lm_head.weight",)))
    return rules


def _gpt2_to_config(cfg: ModelConfig) -> dict[str, Any]:
    """ModelConfig -> GPT2Config fields."""
    return dict(vocab_size=cfg.vocab_size, n_embd=cfg.d_model, n_head=cfg.n_heads, n_inner=cfg.d_ff,
                n_layer=cfg.n_decoder_layers, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout,
                attn_pdrop=cfg.attention_dropout, pad_token_id=cfg.pad_id, bos_token_id=cfg.bos_id,
                eos_token_id=cfg.eos_id, n_positions=cfg.max_positions,
                activation_function=_ACTIVATIONS_TO_HF[cfg.activation], layer_norm_epsilon=cfg.layer_norm_eps,
                tie_word_embeddings=cfg.tie_embeddings)


# --- OPT -> DecoderLM (post-LN or pre-LN) -----------------------------------------------------------------


def _opt_config(f: _Fields) -> dict[str, Any]:
    """OPTConfig -> ModelConfig fields: learned positions read at row p + 2, unscaled, post- or pre-LN."""
    f.expect(enable_bias=(True, {True}), layer_norm_elementwise_affine=(True, {True}),
             _remove_final_layer_norm=(False, {False}),
             word_embed_proj_dim=(f("hidden_size"), {f("hidden_size")}))
    return dict(vocab_size=f("vocab_size"), d_model=f("hidden_size"), n_heads=f("num_attention_heads"),
                d_ff=f("ffn_dim"), n_encoder_layers=0, n_decoder_layers=f("num_hidden_layers"),
                dropout=float(f("dropout", 0.1)), attention_dropout=float(f("attention_dropout", 0.0)),
                pad_id=f("pad_token_id", 1), bos_id=f("bos_token_id", 2), eos_id=f("eos_token_id", 2),
                max_positions=f("max_position_embeddings", 2048),
                norm="pre" if f("do_layer_norm_before", True) else "post", positions="learned",
                position_offset=2, activation=_activation(f, "activation_function", "relu"),
                tie_embeddings=bool(f("tie_word_embeddings", True)), scale_embeddings=False, layer_norm_eps=1e-5)


def _opt_rules(cfg: ModelConfig, stored: set[str]) -> list[Rule]:
    """OPTForCausalLM tensors (prefix "model." removed) -> DecoderLM tensors."""
    words = ("decoder.embed_tokens.weight", "lm_head.weight") if cfg.tie_embeddings else \
        ("decoder.embed_tokens.weight",)
    rules = [Rule("token_embedding.weight", words, "tied"),
             Rule("positions.learned.weight", ("decoder.embed_positions.weight",))]
    for i in range(cfg.n_decoder_layers):
        ours = theirs = f"decoder.layers.{i}"
        rules += [*_qkv_attention(f"{ours}.self_attn", f"{theirs}.self_attn", "q_proj", "k_proj", "v_proj",
                                  "out_proj"),
                  *_affine(f"{ours}.self_norm", f"{theirs}.self_attn_layer_norm"),
                  *_affine(f"{ours}.ffn.linear1", f"{theirs}.fc1"),
                  *_affine(f"{ours}.ffn.linear2", f"{theirs}.fc2"),
                  *_affine(f"{ours}.ffn_norm", f"{theirs}.final_layer_norm")]
    if cfg.norm == "pre":  # pre-LN ends with a LayerNorm on the last layer's output
        rules += _affine("decoder.final_norm", "decoder.final_layer_norm")
    if not cfg.tie_embeddings:
        rules.append(Rule("lm_head.weight", ("lm_head.weight",)))
    return rules


def _opt_to_config(cfg: ModelConfig) -> dict[str, Any]:
    """ModelConfig -> OPTConfig fields."""
    return dict(vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, word_embed_proj_dim=cfg.d_model,
                num_attention_heads=cfg.n_heads, ffn_dim=cfg.d_ff, num_hidden_layers=cfg.n_decoder_layers,
                dropout=cfg.dropout, attention_dropout=cfg.attention_dropout, activation_dropout=0.0,
                pad_token_id=cfg.pad_id, bos_token_id=cfg.bos_id, eos_token_id=cfg.eos_id,
                max_position_embeddings=cfg.max_positions, do_layer_norm_before=cfg.norm == "pre",
                activation_function=_ACTIVATIONS_TO_HF[cfg.activation], tie_word_embeddings=cfg.tie_embeddings,
                enable_bias=True)


# --- Marian, BART and Pegasus -> Transformer ---------------------------------------------------------------


def _seq2seq_config(f: _Fields, kind: str) -> dict[str, Any]:
    """MarianConfig / BartConfig / PegasusConfig -> ModelConfig fields.

    Marian and BART are post-LN (§3.1); Pegasus is pre-LN with a final LayerNorm in each stack, Marian's
    sinusoids (sines then cosines, positions from 0) and its own special ids (pad 0, eos 1). BART has learned
    positions read at row p + 2 and a LayerNorm on the embeddings.
    """
    f.expect(share_encoder_decoder_embeddings=(True, {True}),
             decoder_vocab_size=(f("vocab_size"), {f("vocab_size")}),
             decoder_attention_heads=(f("encoder_attention_heads"), {f("encoder_attention_heads")}),
             decoder_ffn_dim=(f("encoder_ffn_dim"), {f("encoder_ffn_dim")}),
             normalize_before=(False, {False}), add_final_layer_norm=(False, {False}))
    pad, eos = {"marian": (58100, 0), "bart": (1, 2), "pegasus": (0, 1)}[kind]
    pad = f("pad_token_id", pad)
    positions = dict(positions="learned", position_offset=2, embedding_norm=True) if kind == "bart" else \
        dict(positions="sinusoidal", sinusoid_layout="halves")
    return dict(vocab_size=f("vocab_size"), d_model=f("d_model"), n_heads=f("encoder_attention_heads"),
                d_ff=f("encoder_ffn_dim"), n_encoder_layers=f("encoder_layers"),
                n_decoder_layers=f("decoder_layers"), dropout=float(f("dropout", 0.1)),
                attention_dropout=float(f("attention_dropout", 0.0)), pad_id=pad,
                bos_id=f("decoder_start_token_id", 2 if kind == "bart" else pad),
                eos_id=f("eos_token_id", eos),
                max_positions=f("max_position_embeddings", 1024), norm="pre" if kind == "pegasus" else "post",
                activation=_activation(f, "activation_function", "gelu"),
                tie_embeddings=bool(f("tie_word_embeddings", True)),
                scale_embeddings=bool(f("scale_embedding", False)), layer_norm_eps=1e-5, **positions)


def _seq2seq_rules(cfg: ModelConfig, stored: set[str], kind: str) -> list[Rule]:
    """MarianMTModel / BartForConditionalGeneration / PegasusForConditionalGeneration tensors (prefix "model."
    removed) -> Transformer."""
    shared = ("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
    if cfg.tie_embeddings:
        rules = [Rule("token_embedding.weight", shared + ("lm_head.weight",), "tied")]
    else:
        rules = [Rule("src_token_embedding.weight", shared, "tied"),
                 Rule("tgt_token_embedding.weight", shared, "tied"),
                 Rule("lm_head.weight", ("lm_head.weight",))]
    if kind == "bart":  # learned positions (offset 2) and a LayerNorm on the embeddings, per stack
        for ours, theirs in (("src_positions", "encoder"), ("tgt_positions", "decoder")):
            rules += [Rule(f"{ours}.learned.weight", (f"{theirs}.embed_positions.weight",)),
                      *_affine(f"{ours}.norm", f"{theirs}.layernorm_embedding")]
    for stack, n_layers in (("encoder", cfg.n_encoder_layers), ("decoder", cfg.n_decoder_layers)):
        for i in range(n_layers):
            ours = theirs = f"{stack}.layers.{i}"
            rules += [*_qkv_attention(f"{ours}.self_attn", f"{theirs}.self_attn", "q_proj", "k_proj",
                                      "v_proj", "out_proj"),
                      *_affine(f"{ours}.self_norm", f"{theirs}.self_attn_layer_norm")]
            if stack == "decoder":
                rules += [*_qkv_attention(f"{ours}.cross_attn", f"{theirs}.encoder_attn", "q_proj", "k_proj",
                                          "v_proj", "out_proj"),
                          *_affine(f"{ours}.cross_norm", f"{theirs}.encoder_attn_layer_norm")]
            rules += [*_affine(f"{ours}.ffn.linear1", f"{theirs}.fc1"),
                      *_affine(f"{ours}.ffn.linear2", f"{theirs}.fc2"),
                      *_affine(f"{ours}.ffn_norm", f"{theirs}.final_layer_norm")]
    if kind == "pegasus":  # pre-LN: each stack ends with a LayerNorm on its last layer's output
        rules += [*_affine("encoder.final_norm", "encoder.layer_norm"),
                  *_affine("decoder.final_norm", "decoder.layer_norm")]
    if cfg.final_logits_bias:
        rules.append(Rule("final_logits_bias", ("final_logits_bias",), "row"))
    return rules


def _seq2seq_to_config(cfg: ModelConfig) -> dict[str, Any]:
    """ModelConfig -> MarianConfig / BartConfig / PegasusConfig fields (no forced EOS: aiayn's generate never
    forces one)."""
    return dict(vocab_size=cfg.vocab_size, d_model=cfg.d_model, encoder_attention_heads=cfg.n_heads,
                decoder_attention_heads=cfg.n_heads, encoder_ffn_dim=cfg.d_ff, decoder_ffn_dim=cfg.d_ff,
                encoder_layers=cfg.n_encoder_layers, decoder_layers=cfg.n_decoder_layers, dropout=cfg.dropout,
                attention_dropout=cfg.attention_dropout, activation_dropout=0.0, pad_token_id=cfg.pad_id,
                decoder_start_token_id=cfg.bos_id, eos_token_id=cfg.eos_id, forced_eos_token_id=None,
                max_position_embeddings=cfg.max_positions,
                activation_function=_ACTIVATIONS_TO_HF[cfg.activation],
                tie_word_embeddings=cfg.tie_embeddings, scale_embedding=cfg.scale_embeddings)


_SEQ2SEQ_HEADS = ("lm_head.", "final_logits_bias")
FAMILIES: dict[str, Family] = {f.model_type: f for f in (
    Family("bert", "BertForMaskedLM", "BertConfig", EncoderLM, "bert.", ("cls.",),
           (r"embeddings\.position_ids", r"embeddings\.token_type_ids", r"pooler\..*",
            r"cls\.seq_relationship\..*"),
           _bert_config, _bert_rules, _bert_to_config,
           dict(norm="post", positions="learned", position_offset=0, embedding_norm=True,
                scale_embeddings=False)),
    Family("gpt2", "GPT2LMHeadModel", "GPT2Config", DecoderLM, "transformer.", ("lm_head.",),
           (r"h\.\d+\.attn\.(masked_)?bias",), _gpt2_config, _gpt2_rules, _gpt2_to_config,
           dict(norm="pre", positions="learned", position_offset=0, embedding_norm=False,
                scale_embeddings=False, type_vocab_size=0, final_logits_bias=False)),
    Family("opt", "OPTForCausalLM", "OPTConfig", DecoderLM, "model.", ("lm_head.",), (), _opt_config,
           _opt_rules, _opt_to_config,
           dict(positions="learned", position_offset=2, embedding_norm=False, scale_embeddings=False,
                type_vocab_size=0, final_logits_bias=False, layer_norm_eps=1e-5)),
    Family("marian", "MarianMTModel", "MarianConfig", Transformer, "model.", _SEQ2SEQ_HEADS,
           (r"(en|de)coder\.embed_positions\.weight",),  # fixed sinusoids, recomputed (and checked) here
           lambda f: _seq2seq_config(f, "marian"), lambda c, s: _seq2seq_rules(c, s, "marian"),
           _seq2seq_to_config,
           dict(norm="post", positions="sinusoidal", sinusoid_layout="halves", position_offset=0,
                embedding_norm=False, type_vocab_size=0, layer_norm_eps=1e-5)),
    Family("bart", "BartForConditionalGeneration", "BartConfig", Transformer, "model.", _SEQ2SEQ_HEADS, (),
           lambda f: _seq2seq_config(f, "bart"), lambda c, s: _seq2seq_rules(c, s, "bart"),
           _seq2seq_to_config,
           dict(norm="post", positions="learned", position_offset=2, embedding_norm=True, type_vocab_size=0,
                layer_norm_eps=1e-5)),
    # Pegasus: Marian made pre-LN (a LayerNorm before each sub-layer and at the end of each stack), so it holds
    # aiayn's pre-LN translators (norm="pre") exactly; its LayerNorms have PyTorch's fixed eps 1e-5
    Family("pegasus", "PegasusForConditionalGeneration", "PegasusConfig", Transformer, "model.", _SEQ2SEQ_HEADS,
           (r"(en|de)coder\.embed_positions\.weight",),  # fixed sinusoids, recomputed (and checked) here
           lambda f: _seq2seq_config(f, "pegasus"), lambda c, s: _seq2seq_rules(c, s, "pegasus"),
           _seq2seq_to_config,
           dict(norm="pre", positions="sinusoidal", sinusoid_layout="halves", position_offset=0,
                embedding_norm=False, type_vocab_size=0, layer_norm_eps=1e-5)),
)}


# ---------------------------------------------------------------------------------------------------
# Hugging Face -> aiayn


def from_huggingface(source: Any) -> TransformerBase:
    """A local Hugging Face checkpoint folder (or transformers model) -> the aiayn model, in eval mode.

    BERT -> EncoderLM, GPT-2 and OPT -> DecoderLM, Marian, BART and Pegasus -> Transformer. Raises ConversionError
    naming an unsupported architecture or option, or the missing / unexpected / mis-shaped tensors. Tensors aiayn
    has no place for (BERT's pooler, buffers) are listed in `cfg.extra["huggingface"]["dropped"]`; parts the
    checkpoint lacks (the MLM head of a plain BertModel) keep their initialisation and are listed under
    "untrained".
    """
    hf_config, state, folder = read_checkpoint(source)
    family = _family_of(hf_config, folder)
    fields = _Fields(hf_config, family.model_type)
    values = family.config(fields)
    if family.model_type == "bert" and folder is not None:
        values.update(_cls_sep_ids(folder))
    names = {_strip(key, family): key for key in state}  # our view of each stored key -> its real name
    if family.model_class is Transformer:
        values["final_logits_bias"] = "final_logits_bias" in names
    dropped = sorted(key for name, key in names.items() if any(re.fullmatch(p, name) for p in family.dropped))
    values["extra"] = {"huggingface": {"model_type": family.model_type,
                                       "architectures": hf_config.get("architectures"), "dropped": dropped}}
    try:
        cfg = ModelConfig(**values)
    except ValueError as error:
        raise ConversionError(f"this {family.model_type} config.json does not make a valid aiayn model: "
                              f"{error}") from None
    rules = family.rules(cfg, set(names))
    tensors = {name: state[key] for name, key in names.items()}
    if family.model_type in ("marian", "pegasus"):
        _check_marian_sinusoids(cfg, tensors, names)
    model = family.model_class(cfg)
    ours = _apply_rules(rules, tensors, names, dropped, family, model.state_dict())
    untrained = sorted(set(model.state_dict()) - set(ours))
    model.load_state_dict(ours, strict=False)
    cfg.extra["huggingface"]["untrained"] = untrained  # e.g. the MLM head of a plain BertModel
    return model.eval()


def _family_of(hf_config: dict[str, Any], folder: Path | None) -> Family:
    """The Family for config.json's model_type, or an error naming it and the supported ones."""
    model_type = hf_config.get("model_type")
    if model_type in MODEL_TYPES:  # aiayn's own config.json
        raise ConversionError(f"{folder} is an aiayn model folder, not a Hugging Face one: "
                              f"load it with aiayn.load")
    rotary = [key for key in ("rotary_dim", "rotary_pct", "rope_theta", "rope_scaling") if key in hf_config]
    if model_type == "roformer" or rotary:
        raise ConversionError(f"{model_type!r} uses rotary position embeddings ({', '.join(rotary) or 'RoFormer'}): "
                              f"aiayn imports {sorted(FAMILIES)}, whose positions are a table added to the input; "
                              f"a rotary checkpoint's pairing and scaling of the rotation are not converted")
    if model_type not in FAMILIES:
        raise ConversionError(f"unsupported architecture {model_type!r} (config.json model_type, "
                              f"architectures {hf_config.get('architectures')}): aiayn converts "
                              f"{sorted(FAMILIES)}")
    return FAMILIES[model_type]


def _strip(key: str, family: Family) -> str:
    """A stored key without the head class's base-model prefix ("bert.", "transformer.", "model.")."""
    return key[len(family.prefix):] if key.startswith(family.prefix) else key


def _cls_sep_ids(folder: Path) -> dict[str, int]:
    """BERT's [CLS] and [SEP] ids from tokenizer.json as bos_id / eos_id, when the folder has one."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        return {}
    tokens = json.loads(path.read_text(encoding="utf-8")).get("added_tokens", [])
    added = {t["content"]: t["id"] for t in tokens}
    return {name: added[t] for name, t in (("bos_id", "[CLS]"), ("eos_id", "[SEP]")) if t in added}


def _check_marian_sinusoids(cfg: ModelConfig, tensors: dict[str, Tensor], names: dict[str, str]) -> None:
    """A stored Marian position table must equal the one aiayn computes ("halves" layout)."""
    expected = sinusoidal_table(cfg.max_positions, cfg.d_model, "halves")
    for name in ("encoder.embed_positions.weight", "decoder.embed_positions.weight"):
        if name in tensors and (tensors[name].shape != expected.shape
                                or not torch.allclose(tensors[name].float(), expected, atol=1e-5)):
            raise ConversionError(f"{names[name]} is not Marian's sinusoid table (sines then cosines) for "
                                  f"{cfg.max_positions} positions x {cfg.d_model}: the checkpoint is not a "
                                  f"Marian model")


def _apply_rules(rules: list[Rule], tensors: dict[str, Tensor], names: dict[str, str], dropped: list[str],
                 family: Family, expected: dict[str, Tensor]) -> dict[str, Tensor]:
    """Build aiayn's tensors from the rules, naming every missing, unexpected or mis-shaped tensor."""
    missing: list[str] = []
    used: set[str] = set()
    for rule in rules:
        present = [t for t in rule.theirs if t in tensors]
        used.update(present)
        if rule.how == "tied":
            if not present:
                missing.append(" or ".join(_full(t, family) for t in rule.theirs))
        else:
            missing += [_full(t, family) for t in rule.theirs if t not in tensors]
    unexpected = sorted(names[t] for t in set(tensors) - used if names[t] not in dropped)
    if missing or unexpected:
        parts = [f"missing {_first(missing)}"] if missing else []
        parts += [f"unexpected {_first(unexpected)}"] if unexpected else []
        raise ConversionError(f"this {family.model_type} checkpoint does not fit its config.json: "
                              + "; ".join(parts) + ". Use the config.json saved with these weights")
    ours: dict[str, Tensor] = {}
    wrong: list[str] = []
    for rule in rules:
        tensor = _gather(rule, tensors, names)
        if tuple(tensor.shape) != tuple(expected[rule.ours].shape):
            source = "+".join(names[t] for t in rule.theirs if t in names)
            wrong.append(f"{source} gives {tuple(tensor.shape)}, {rule.ours} needs "
                         f"{tuple(expected[rule.ours].shape)}")
        ours[rule.ours] = tensor
    if wrong:
        raise ConversionError(f"this {family.model_type} checkpoint has tensors of the wrong shape for its "
                              f"config.json: {_first(wrong, 6)}")
    return ours


def _first(names: list[str], n: int = 8) -> str:
    """At most n names, and how many there are in all."""
    return f"{names[:n]}" + (f" ... ({len(names)} in all)" if len(names) > n else "")


def _gather(rule: Rule, tensors: dict[str, Tensor], names: dict[str, str]) -> Tensor:
    """The aiayn tensor for one rule."""
    if rule.how == "tied":
        first, *others = [t for t in rule.theirs if t in tensors]
        for other in others:
            a, b = tensors[other], tensors[first]
            if a.shape != b.shape or not torch.equal(a, b):
                raise ConversionError(f"{names[other]} differs from {names[first]} but config.json ties them "
                                      f"(tie_word_embeddings): use the config.json saved with these weights")
        return tensors[first]
    parts = [tensors[t] for t in rule.theirs]
    if rule.how == "copy":
        return parts[0]
    if rule.how == "transpose":
        return parts[0].t()
    if rule.how == "concat":
        return torch.cat(parts, dim=0)
    if rule.how == "row":
        return parts[0].reshape(-1)
    raise AssertionError(f"unknown rule kind {rule.how}")


def _full(name: str, family: Family) -> str:
    """A stripped name as a head class stores it."""
    return name if name.startswith(family.top_level) else family.prefix + name


# ---------------------------------------------------------------------------------------------------
# aiayn -> Hugging Face


def to_huggingface(model: TransformerBase) -> Any:
    """The equivalent transformers model (BertForMaskedLM, GPT2LMHeadModel, OPTForCausalLM, MarianMTModel,
    BartForConditionalGeneration or, for pre-LN translators, PegasusForConditionalGeneration), in eval mode;
    raises ValueError naming the options with no equivalent.

    Options a family fixes otherwise are converted when an exact conversion exists (see huggingface_equivalent).
    """
    family, model, _ = huggingface_equivalent(model)
    try:
        import transformers
    except ImportError:
        raise ImportError("to_huggingface needs transformers: pip install 'aiayn[hf]'") from None
    cfg = model.cfg
    hf_config = getattr(transformers, family.hf_config_class)(**family.to_config(cfg))
    hf_model = getattr(transformers, family.hf_class)(hf_config)
    ours = model.state_dict()
    state: dict[str, Tensor] = {}
    for rule in family.rules(cfg, set(_strip(k, family) for k in hf_model.state_dict())):
        for name, tensor in zip(rule.theirs, _scatter(rule, ours[rule.ours]), strict=True):
            state[_full(name, family)] = tensor
    if family.model_class is Transformer and not cfg.final_logits_bias:
        state["final_logits_bias"] = torch.zeros(1, cfg.vocab_size)  # no bias = a zero bias
    if family.model_type == "bert" and cfg.type_vocab_size == 0:  # no segments = one zero segment vector
        state["bert.embeddings.token_type_embeddings.weight"] = torch.zeros(1, cfg.d_model)
    missing, unexpected = hf_model.load_state_dict(state, strict=False)
    left = [k for k in missing if not any(re.fullmatch(p, _strip(k, family)) for p in family.dropped)]
    if left or unexpected:
        raise AssertionError(f"to_huggingface left {left} unset and {unexpected} unused: please report this")
    return hf_model.eval()


def huggingface_equivalent(model: TransformerBase) -> tuple[Family, TransformerBase, list[str]]:
    """(family, an exactly equivalent aiayn model with that family's options, the conversions made).

    Exact conversions (aiayn.io.equivalents): interleaved sinusoids -> Marian's sines-then-cosines layout (a
    fixed permutation of d_model), sinusoids or an offset table -> a learned table at the family's offset,
    and the sqrt(d_model) embedding scale folded into an untied table. Anything else that differs (pre- vs
    post-LN, an embedding LayerNorm, learned positions where the family fixes sinusoids) raises a ValueError
    naming, for each candidate family, the options it needs.
    """
    cfg = model.cfg
    if cfg.positions == "rotary":
        raise ValueError("this model uses rotary positions (positions='rotary', RoFormer): BERT, GPT-2, OPT, Marian "
                         "and BART add a position table to the input instead, so it has no Hugging Face "
                         "equivalent; train with positions='sinusoidal' or 'learned' to export")
    if not cfg.d_k_is_default:
        raise ValueError(f"this model has heads of width d_k={cfg.d_k}, not d_model / n_heads = "
                         f"{cfg.d_model / cfg.n_heads:g}: the Hugging Face families fix d_k = d_model / n_heads, "
                         f"so it has no Hugging Face equivalent")
    candidates = [FAMILIES[name] for name in of_model(model).hf_families]
    if isinstance(model, Transformer) and not cfg.tie_embeddings and not torch.equal(
            model.src_token_embedding.weight, model.tgt_token_embedding.weight):
        raise ValueError("this Transformer has separate source and target embeddings; Marian, BART and Pegasus share "
                         "one table (share_encoder_decoder_embeddings), so it has no Hugging Face equivalent")
    origin = cfg.extra.get("huggingface", {}).get("model_type")  # an imported model goes back to its family
    candidates.sort(key=lambda family: family.model_type != origin)
    problems = []
    for family in candidates:
        fitted, conversions = _fit(model, family.needs)
        wrong = [f"{name}={value!r} (this model: {getattr(fitted.cfg, name)!r})"
                 for name, value in family.needs.items() if getattr(fitted.cfg, name) != value]
        if not wrong:
            return family, fitted, conversions
        problems.append(f"{family.hf_class} needs " + ", ".join(wrong))
    raise ValueError(f"this {type(model).__name__} has no exact Hugging Face equivalent: " + "; ".join(problems))


def _fit(model: TransformerBase, needs: dict[str, Any]) -> tuple[TransformerBase, list[str]]:
    """The model rewritten exactly towards the options `needs` fixes, where it can be, and what was done."""
    cfg, done = model.cfg, []
    if needs.get("sinusoid_layout") == "halves" and cfg.positions == "sinusoidal" and \
            cfg.sinusoid_layout == "interleaved":
        model = to_halves_layout(model)
        done.append("d_model permuted (even components, then odd) so that the interleaved sinusoids (§3.5) "
                    "become Marian's sines-then-cosines layout; exact")
    offset = needs.get("position_offset", 0)
    if needs.get("positions") == "learned" and (cfg.positions == "sinusoidal" or cfg.position_offset != offset):
        model = as_learned_positions(model, offset)
        what = "the fixed sinusoid table stored as a position table" if cfg.positions == "sinusoidal" else \
            "the position table moved"
        done.append(f"{what} (position p at row p + {offset}); exact")
    if needs.get("scale_embeddings") is False and cfg.scale_embeddings:
        model = fold_embedding_scale(model)
        done.append("the sqrt(d_model) embedding scale (§3.4) folded into the input table, the output "
                    "projection untied from it; exact")
    return model, done


def _scatter(rule: Rule, tensor: Tensor) -> list[Tensor]:
    """The Hugging Face tensor(s) for one rule, the inverse of _gather."""
    tensor = tensor.detach().clone()
    if rule.how == "tied":
        return [tensor] * len(rule.theirs)
    if rule.how == "transpose":
        return [tensor.t().contiguous()]
    if rule.how == "concat":
        return list(tensor.chunk(len(rule.theirs), dim=0))
    if rule.how == "row":
        return [tensor.reshape(1, -1)]
    return [tensor]
