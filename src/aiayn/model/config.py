"""ModelConfig: every size and option of a model, with the paper's values as defaults."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

# Allowed values of the categorical options; each name is checked in __post_init__.
NORM_PLACEMENTS = ("post", "pre")  # post-LN is the paper's LayerNorm(x + Sublayer(x)), §3.1
# sinusoids are the paper's choice (§3.5); "rotary" (RoFormer, Su et al. 2021, not in the paper) adds nothing to
# the input and rotates each head's queries and keys by their position in every self-attention layer
POSITION_KINDS = ("sinusoidal", "learned", "rotary")
ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu")  # relu is the paper's FFN, §3.3
# config.json's model_types, in model/registry.py's order (its table says what each is; this names them for
# io/model_folder.py, which reads a config.json without building a model)
MODEL_TYPES = ("transformer", "encoder_lm", "decoder_lm", "rnn")
RNN_ATTENTION_SCORES = ("general", "dot")  # Luong et al. 2015, §3.1: h_t^T W_a h_s, or h_t^T h_s
SINUSOID_LAYOUTS = ("interleaved", "halves")  # §3.5 interleaves sin/cos; Marian puts sines then cosines

PRESETS: dict[str, dict[str, Any]] = {
    # Table 3, "base": N=6, d_model=512, d_ff=2048, h=8, P_drop=0.1; 37k shared BPE vocabulary (§5.1).
    "paper-base": dict(d_model=512, n_heads=8, d_ff=2048, n_encoder_layers=6, n_decoder_layers=6,
                       dropout=0.1, vocab_size=37000),
    # Table 3, "big": N=6, d_model=1024, d_ff=4096, h=16, P_drop=0.3.
    "paper-big": dict(d_model=1024, n_heads=16, d_ff=4096, n_encoder_layers=6, n_decoder_layers=6,
                      dropout=0.3, vocab_size=37000),
    # A CPU-sized model: 3+3 layers, d_model 256, 4 heads.
    "small": dict(d_model=256, n_heads=4, d_ff=1024, n_encoder_layers=3, n_decoder_layers=3,
                  dropout=0.1, vocab_size=8000),
    # small's widths at one layer a side: the default of `aiayn train`, because ten minutes on a 2-core CPU
    # train it further than any deeper stack measured (docs/results.md, "The levers, fourth round").
    "shallow": dict(d_model=256, n_heads=4, d_ff=1024, n_encoder_layers=1, n_decoder_layers=1,
                    dropout=0.1, vocab_size=8000),
    # For tests: a few thousand parameters, runs in milliseconds.
    "tiny": dict(d_model=32, n_heads=4, d_ff=64, n_encoder_layers=2, n_decoder_layers=2,
                 dropout=0.1, vocab_size=64, max_positions=128),
}


@dataclass
class ModelConfig:
    """Sizes, special ids and named options of a Transformer; defaults are the paper's base model."""

    vocab_size: int = 37000
    d_model: int = 512
    n_heads: int = 8
    # Width of one head's queries, keys and values; None: d_model / n_heads (§3.2.2). Table 3 (B) varies it
    # apart from d_model (there d_v stays 64; here values have width d_k too).
    d_k: int | None = None
    d_ff: int = 2048
    n_encoder_layers: int = 6
    n_decoder_layers: int = 6
    dropout: float = 0.1  # residual and embedding dropout, §5.4
    attention_dropout: float = 0.0  # dropout on attention weights; not in the paper, so off
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    max_positions: int = 1024
    norm: str = "post"
    positions: str = "sinusoidal"
    activation: str = "relu"
    tie_embeddings: bool = True  # one matrix for source, target and pre-softmax, §3.4
    scale_embeddings: bool = True  # multiply token embeddings by sqrt(d_model), §3.4
    layer_norm_eps: float = 1e-5  # the paper gives none; PyTorch's default
    # Options for loading other families' weights (aiayn.from_huggingface); all off in the paper (§3.4, §3.5).
    type_vocab_size: int = 0  # >0: learned segment (token-type) embeddings added to the input, as in BERT
    embedding_norm: bool = False  # LayerNorm on the summed embeddings before dropout, as in BERT and BART
    position_offset: int = 0  # position p reads row p + offset of the position table (BART's learned: 2)
    sinusoid_layout: str = "interleaved"  # sin, cos interleaved (§3.5); "halves": sines then cosines (Marian)
    final_logits_bias: bool = False  # a fixed (vocab,) bias on Transformer/DecoderLM logits (Marian, BART)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes (e.g. provenance); not used

    def __post_init__(self) -> None:
        """Check every field and raise ValueError naming the field and what is allowed."""
        for name in ("vocab_size", "d_model", "n_heads", "d_ff", "max_positions"):
            _require(isinstance(getattr(self, name), int) and getattr(self, name) > 0, name,
                     "a positive integer")
        for name in ("n_encoder_layers", "n_decoder_layers"):
            _require(isinstance(getattr(self, name), int) and getattr(self, name) >= 0, name,
                     "a non-negative integer")
        if self.d_k is None:  # the paper's d_k = d_model / h (§3.2.2)
            _require(self.d_model % self.n_heads == 0, "d_model",
                     f"divisible by n_heads={self.n_heads} (d_k = d_model / n_heads, §3.2.2), or set d_k")
            self.d_k = self.d_model // self.n_heads
        _require(isinstance(self.d_k, int) and not isinstance(self.d_k, bool) and self.d_k > 0, "d_k",
                 "a positive integer (or None: d_model / n_heads)")
        _require(self.positions != "rotary" or self.d_k % 2 == 0, "d_k",
                 "even with positions='rotary' (it rotates pairs of components)")
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            _require(isinstance(value, (int, float)) and 0.0 <= value < 1.0, name, "a float in [0, 1)")
        for name in ("pad_id", "bos_id", "eos_id"):
            value = getattr(self, name)
            _require(isinstance(value, int) and 0 <= value < self.vocab_size, name,
                     f"an id in [0, vocab_size={self.vocab_size})")
        _require(self.norm in NORM_PLACEMENTS, "norm", f"one of {NORM_PLACEMENTS}")
        _require(self.positions in POSITION_KINDS, "positions", f"one of {POSITION_KINDS}")
        _require(self.activation in ACTIVATIONS, "activation", f"one of {ACTIVATIONS}")
        _require(isinstance(self.layer_norm_eps, float) and self.layer_norm_eps > 0, "layer_norm_eps",
                 "a positive float")
        _require(isinstance(self.tie_embeddings, bool), "tie_embeddings", "true or false")
        _require(isinstance(self.scale_embeddings, bool), "scale_embeddings", "true or false")
        for name in ("type_vocab_size", "position_offset"):
            _require(isinstance(getattr(self, name), int) and not isinstance(getattr(self, name), bool)
                     and getattr(self, name) >= 0, name, "a non-negative integer")
        _require(isinstance(self.embedding_norm, bool), "embedding_norm", "true or false")
        _require(self.sinusoid_layout in SINUSOID_LAYOUTS, "sinusoid_layout", f"one of {SINUSOID_LAYOUTS}")
        _require(isinstance(self.final_logits_bias, bool), "final_logits_bias", "true or false")

    @property
    def d_k_is_default(self) -> bool:
        """True when each head has the paper's width d_model / n_heads (§3.2.2)."""
        return self.d_k * self.n_heads == self.d_model

    @property
    def pad_is_token(self) -> bool:
        """True when pad_id is also BOS or EOS (GPT-2: all three are <|endoftext|>): an id real text holds, so a
        decoder-only model then takes padding only from an explicit mask, never from the ids."""
        return self.pad_id in (self.bos_id, self.eos_id)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "ModelConfig":
        """A named preset ("paper-base", "paper-big", "small", "tiny") with fields overridden."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}: choose one of {sorted(PRESETS)}")
        return cls.from_dict({**PRESETS[name], **overrides})

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with some fields changed (validated again); a d_k of d_model / n_heads follows new sizes."""
        if {"d_model", "n_heads"} & set(changes) and "d_k" not in changes and self.d_k_is_default:
            changes["d_k"] = None
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        """Build from a dict; unknown fields raise ValueError naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s) {unknown}: allowed fields are {sorted(known)}")
        return cls(**values)

    def to_json(self) -> str:
        """The config as indented JSON."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        """Parse JSON written by to_json."""
        return cls.from_dict(json.loads(text))


# The recurrent baseline's sizes, one per Transformer preset of the same name and with about its parameter
# count (with their vocabularies, small: 7,557,840 against the Transformer's 7,577,600; shallow: 3,890,332
# against 3,891,200; tiny: 45,188 against 44,800). Small has two LSTM layers each side, as the GNMT /
# OpenNMT baselines' smaller configurations.
# n_heads and d_ff are unused by the RNN (n_heads=1 only satisfies ModelConfig's checks; d_ff = 4 d_model is
# the width of its gate matmuls, which the search's thread heuristic reads).
RNN_PRESETS: dict[str, dict[str, Any]] = {
    "small": dict(d_model=360, n_heads=1, d_ff=1440, n_encoder_layers=2, n_decoder_layers=2, dropout=0.1,
                  vocab_size=8000),
    "shallow": dict(d_model=278, n_heads=1, d_ff=1112, n_encoder_layers=1, n_decoder_layers=1, dropout=0.1,
                    vocab_size=8000),
    "tiny": dict(d_model=44, n_heads=1, d_ff=176, n_encoder_layers=1, n_decoder_layers=1, dropout=0.1,
                 vocab_size=64, max_positions=128),
}


@dataclass
class RNNConfig(ModelConfig):
    """The recurrent encoder-decoder's config (aiayn.model.recurrent), a baseline for §4's comparison.

    Of ModelConfig it uses vocab_size, the special ids, max_positions (the longest output a search makes),
    d_model (the embedding, decoder state and attention width; each direction of the bidirectional encoder
    has d_model / 2), n_encoder_layers / n_decoder_layers (stacked LSTM layers), dropout and tie_embeddings
    (one table for source, target and output, as §3.4 ties the Transformer's). The Transformer's n_heads,
    d_ff, norm, positions, activation and scale_embeddings are kept in the file but not used.
    """

    attention: str = "general"  # Luong et al. 2015's score (§3.1): "general" h_t^T W_a h_s, or "dot" h_t^T h_s
    input_feeding: bool = True  # Luong §3.3: the last attentional vector joins the next step's input

    def __post_init__(self) -> None:
        """ModelConfig's checks, then the recurrent options."""
        super().__post_init__()
        _require(self.d_model % 2 == 0, "d_model", "even (each encoder direction has d_model / 2)", "RNNConfig")
        _require(self.attention in RNN_ATTENTION_SCORES, "attention", f"one of {RNN_ATTENTION_SCORES}", "RNNConfig")
        _require(isinstance(self.input_feeding, bool), "input_feeding", "true or false", "RNNConfig")
        _require(self.n_encoder_layers >= 1 and self.n_decoder_layers >= 1, "n_encoder_layers",
                 "at least 1, as n_decoder_layers (an LSTM needs a layer)", "RNNConfig")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "RNNConfig":
        """The RNN sized like the Transformer preset `name` ("small", "shallow", "tiny"), with fields overridden."""
        if name not in RNN_PRESETS:
            raise ValueError(f"no RNN preset {name!r}: choose one of {sorted(RNN_PRESETS)} (sized like the "
                             f"Transformer presets of those names), or set d_model and the layer counts")
        return cls.from_dict({**RNN_PRESETS[name], **overrides})


# The config class each model_type's config.json holds (ModelConfig unless named here).
CONFIG_CLASSES: dict[str, type[ModelConfig]] = {"rnn": RNNConfig}


def _require(ok: bool, field_name: str, allowed: str, owner: str = "ModelConfig") -> None:
    """Raise ValueError('owner.field must be allowed') unless ok."""
    if not ok:
        raise ValueError(f"{owner}.{field_name} must be {allowed}")
