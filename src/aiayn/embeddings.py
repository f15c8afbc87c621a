"""Token embeddings scaled by sqrt(d_model) (§3.4) plus sinusoidal or learned positions (§3.5)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .config import ModelConfig
from .dropout import Dropout


def sinusoidal_table(n_positions: int, d_model: int) -> Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(same) (§3.5): (n, d_model)."""
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]  # (n, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (d/2,)
    angle = position / torch.pow(10000.0, two_i / d_model)  # (n, d/2)
    table = torch.zeros(n_positions, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return table.float()


class PositionalEncoding(nn.Module):
    """Token vectors (B, T, d) -> dropout(vectors * sqrt(d_model) + P[start:start+T]) (§3.4, §3.5, §5.4).

    The token table itself lives in the model, so one table can serve the encoder, the decoder and the
    pre-softmax projection without being stored twice.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        """Sinusoidal (fixed buffer) or learned positions per cfg.positions."""
        super().__init__()
        self.scale = math.sqrt(cfg.d_model) if cfg.scale_embeddings else 1.0
        self.max_positions = cfg.max_positions
        if cfg.positions == "sinusoidal":
            self.register_buffer("sinusoids", sinusoidal_table(cfg.max_positions, cfg.d_model), persistent=False)
            self.learned = None
        else:
            self.sinusoids = None
            self.learned = nn.Embedding(cfg.max_positions, cfg.d_model)
            nn.init.normal_(self.learned.weight, std=0.02)
        self.dropout = Dropout(cfg.dropout)  # on the sums of embeddings and positions, §5.4

    def forward(self, token_vectors: Tensor, start: int = 0) -> Tensor:
        """Scale (B, T, d) token vectors placed at positions start..start+T-1 and add positions."""
        end = start + token_vectors.shape[1]
        if end > self.max_positions:
            raise ValueError(f"sequence reaches position {end} but the model has max_positions="
                             f"{self.max_positions}: shorten or truncate the input")
        positions = self.sinusoids[start:end] if self.learned is None else self.learned.weight[start:end]
        return self.dropout(token_vectors * self.scale + positions)


def make_token_embedding(cfg: ModelConfig) -> nn.Embedding:
    """A (vocab, d_model) table initialised N(0, d_model^-1/2), so scaled embeddings have unit size."""
    table = nn.Embedding(cfg.vocab_size, cfg.d_model)
    nn.init.normal_(table.weight, mean=0.0, std=cfg.d_model ** -0.5)
    return table
