"""Token embeddings scaled by sqrt(d_model) (§3.4) plus sinusoidal or learned positions (§3.5)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .config import ModelConfig
from .dropout import Dropout


def sinusoidal_table(n_positions: int, d_model: int, layout: str = "interleaved") -> Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(same) (§3.5): (n, d_model).

    layout="halves" stores the same values as all the sines first, then all the cosines (Marian's order).
    """
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]  # (n, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (ceil(d/2),)
    angle = position / torch.pow(10000.0, two_i / d_model)  # (n, ceil(d/2))
    sines, cosines = torch.sin(angle), torch.cos(angle[:, : d_model // 2])
    table = torch.zeros(n_positions, d_model, dtype=torch.float64)
    if layout == "interleaved":
        table[:, 0::2], table[:, 1::2] = sines, cosines
    elif layout == "halves":
        table[:, : sines.shape[1]], table[:, sines.shape[1]:] = sines, cosines
    else:
        raise ValueError(f"unknown sinusoid layout {layout!r}: use 'interleaved' or 'halves'")
    return table.float()


class PositionalEncoding(nn.Module):
    """Token vectors (B, T, d) -> dropout(vectors * sqrt(d_model) + P[start:start+T]) (§3.4, §3.5, §5.4).

    The token table itself lives in the model, so one table can serve the encoder, the decoder and the
    pre-softmax projection without being stored twice. Options for other families: segment (token-type)
    embeddings (cfg.type_vocab_size), a LayerNorm on the sum (cfg.embedding_norm) and a position offset.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        """Sinusoidal (fixed buffer) or learned positions per cfg.positions."""
        super().__init__()
        self.scale = math.sqrt(cfg.d_model) if cfg.scale_embeddings else 1.0
        self.max_positions = cfg.max_positions
        self.offset = cfg.position_offset  # position p reads table row p + offset (BART: 2)
        rows = cfg.max_positions + cfg.position_offset
        if cfg.positions == "sinusoidal":
            self.register_buffer("sinusoids", sinusoidal_table(rows, cfg.d_model, cfg.sinusoid_layout),
                                 persistent=False)
            self.learned = None
        else:
            self.sinusoids = None
            self.learned = nn.Embedding(rows, cfg.d_model)
            nn.init.normal_(self.learned.weight, std=0.02)
        self.token_types = nn.Embedding(cfg.type_vocab_size, cfg.d_model) if cfg.type_vocab_size else None
        if self.token_types is not None:
            nn.init.normal_(self.token_types.weight, std=0.02)
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps) if cfg.embedding_norm else None
        self.dropout = Dropout(cfg.dropout)  # on the sums of embeddings and positions, §5.4

    def forward(self, token_vectors: Tensor, start: int = 0, token_types: Tensor | None = None) -> Tensor:
        """Scale (B, T, d) token vectors placed at positions start..start+T-1 and add positions.

        token_types (B, T) picks segment embeddings when cfg.type_vocab_size > 0 (default: segment 0).
        """
        end = start + token_vectors.shape[1]
        if end > self.max_positions:
            raise ValueError(f"sequence reaches position {end} but the model has max_positions="
                             f"{self.max_positions}: shorten or truncate the input")
        table = self.sinusoids if self.learned is None else self.learned.weight  # (rows, d)
        x = token_vectors * self.scale + table[start + self.offset:end + self.offset]  # (B, T, d)
        if self.token_types is not None:
            x = x + (self.token_types.weight[0] if token_types is None else self.token_types(token_types))
        elif token_types is not None:
            raise ValueError("token_types given but the model has type_vocab_size=0 (no segment embeddings)")
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(x)


def make_token_embedding(cfg: ModelConfig) -> nn.Embedding:
    """A (vocab, d_model) table initialised N(0, d_model^-1/2), so scaled embeddings have unit size."""
    table = nn.Embedding(cfg.vocab_size, cfg.d_model)
    nn.init.normal_(table.weight, mean=0.0, std=cfg.d_model ** -0.5)
    return table
