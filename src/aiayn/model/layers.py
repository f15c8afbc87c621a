"""Position-wise feed-forward (§3.3) and the Transformer layer (§3.1) for encoder and decoder stacks."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from .attention import KVCache, MultiHeadAttention
from .config import ModelConfig
from .dropout import Dropout
from .embeddings import RotaryPositions

ACTIVATION_FUNCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,  # FFN(x) = max(0, x W1 + b1) W2 + b2, §3.3
    "gelu": F.gelu,  # BERT
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),  # GPT-2
    "silu": F.silu,  # Marian
}


def _identity(x: Tensor) -> Tensor:
    """x itself (dropout in eval mode)."""
    return x


class FeedForward(nn.Module):
    """FFN(x) = act(x W1 + b1) W2 + b2, applied to each position alike: (B, T, d) -> (B, T, d)."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "relu") -> None:
        """Inner width d_ff (2048 in the base model)."""
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.activation = ACTIVATION_FUNCTIONS[activation]

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, d_model) -> (B, T, d_model)."""
        return self.linear2(self.activation(self.linear1(x)))


class TransformerLayer(nn.Module):
    """Self-attention, optional cross-attention, feed-forward; each as a residual sub-layer.

    Post-LN (the paper, §3.1): x = LayerNorm(x + Dropout(Sublayer(x))).
    Pre-LN (option norm="pre"): x = x + Dropout(Sublayer(LayerNorm(x))).
    An encoder layer has no cross-attention; a decoder layer has it; a GPT block is an encoder layer
    under a causal mask.
    """

    def __init__(self, cfg: ModelConfig, cross_attention: bool) -> None:
        """Sub-layers sized by cfg."""
        super().__init__()
        self.pre_norm = cfg.norm == "pre"
        rotary = RotaryPositions(cfg.d_k) if cfg.positions == "rotary" else None  # self-attention only
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.attention_dropout, d_k=cfg.d_k,
                                            rotary=rotary)
        self.self_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.cross_attn = MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.attention_dropout, d_k=cfg.d_k) \
            if cross_attention else None
        self.cross_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps) if cross_attention else None
        self.ffn = FeedForward(cfg.d_model, cfg.d_ff, cfg.activation)
        self.ffn_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.dropout = Dropout(cfg.dropout)  # on each sub-layer output before the residual add, §5.4

    def forward(self, x: Tensor, self_mask: Tensor | None = None, memory: Tensor | None = None,
                memory_mask: Tensor | None = None, cache: "LayerCache | None" = None,
                need_weights: bool = False) -> tuple[Tensor, dict[str, Tensor]]:
        """(B, T, d) -> (B, T, d) and, if need_weights, {"self": (B,H,T,T), "cross": (B,H,T,S)}."""
        weights: dict[str, Tensor] = {}

        def self_attention(h: Tensor) -> Tensor:
            out, w = self.self_attn(h, mask=self_mask, cache=cache.self_kv if cache else None,
                                    need_weights=need_weights)
            if w is not None:
                weights["self"] = w
            return out

        x = self._sublayer(x, self.self_norm, self_attention)
        if self.cross_attn is not None and memory is not None:
            cross = self.cross_attn

            def cross_attention(h: Tensor) -> Tensor:
                out, w = cross(h, memory=memory, mask=memory_mask, cache=cache.cross_kv if cache else None,
                               need_weights=need_weights)
                if w is not None:
                    weights["cross"] = w
                return out

            assert self.cross_norm is not None
            x = self._sublayer(x, self.cross_norm, cross_attention)
        x = self._sublayer(x, self.ffn_norm, self.ffn)
        return x, weights

    def _sublayer(self, x: Tensor, norm: nn.LayerNorm, fn: Callable[[Tensor], Tensor]) -> Tensor:
        """Residual connection around fn with dropout and LayerNorm placed per cfg.norm."""
        dropout = self.dropout if self.training else _identity  # eval (decoding steps): skip the call
        if self.pre_norm:
            return x + dropout(fn(norm(x)))
        return norm(x + dropout(fn(x)))


class LayerCache:
    """The KV caches of one layer: its self-attention and (decoder) cross-attention."""

    def __init__(self, capacity: int | None = None) -> None:
        """Empty caches; `capacity` preallocates the self-attention buffer."""
        self.self_kv = KVCache(capacity)
        self.cross_kv = KVCache()


class Stack(nn.Module):
    """N identical layers (§3.1), with a final LayerNorm when pre-LN is used."""

    def __init__(self, cfg: ModelConfig, n_layers: int, cross_attention: bool) -> None:
        """n_layers TransformerLayers; cross_attention makes it a decoder stack."""
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(cfg, cross_attention) for _ in range(n_layers))
        self.final_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps) if cfg.norm == "pre" else None

    def forward(self, x: Tensor, self_mask: Tensor | None = None, memory: Tensor | None = None,
                memory_mask: Tensor | None = None, caches: list[LayerCache] | None = None,
                need_weights: bool = False) -> tuple[Tensor, list[dict[str, Tensor]]]:
        """Run every layer: (B, T, d) -> (B, T, d), plus each layer's attention weights if asked."""
        all_weights = []
        for i, layer in enumerate(self.layers):
            x, weights = layer(x, self_mask, memory, memory_mask, caches[i] if caches else None, need_weights)
            all_weights.append(weights)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x, all_weights
