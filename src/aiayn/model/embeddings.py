"""Token embeddings scaled by sqrt(d_model) (§3.4) plus sinusoidal or learned positions (§3.5), or rotary ones."""

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


class TokenScale(nn.Module):
    """Token vectors (B, T, d) times sqrt(d_model) (§3.4), or times 1 when cfg.scale_embeddings is off."""

    def __init__(self, cfg: ModelConfig) -> None:
        """The factor sqrt(d_model) or 1."""
        super().__init__()
        self.factor = math.sqrt(cfg.d_model) if cfg.scale_embeddings else 1.0

    def forward(self, token_vectors: Tensor) -> Tensor:
        """(B, T, d) -> (B, T, d)."""
        return token_vectors * self.factor

    def extra_repr(self) -> str:
        """The factor, for print(model)."""
        return f"factor={self.factor:g}"


class PositionTable(nn.Module):
    """Rows P[start + offset : start + T + offset] of a (rows, d_model) table: the fixed sinusoids (§3.5,
    a buffer that is not saved) or a learned table (`weight`, saved). Position p reads row p + offset (BART: 2)."""

    def __init__(self, cfg: ModelConfig) -> None:
        """max_positions + position_offset rows, sinusoidal or learned per cfg.positions."""
        super().__init__()
        self.max_positions, self.offset = cfg.max_positions, cfg.position_offset
        rows = cfg.max_positions + cfg.position_offset
        if cfg.positions == "learned":
            table = nn.Embedding(rows, cfg.d_model)  # made as an Embedding: the same random draws as before
            nn.init.normal_(table.weight, std=0.02)
            self.weight = table.weight
        else:
            self.register_buffer("weight", sinusoidal_table(rows, cfg.d_model, cfg.sinusoid_layout),
                                 persistent=False)

    def forward(self, start: int | Tensor, length: int) -> Tensor:
        """The positions start..start+length-1 as (length, d_model); past max_positions a clear ValueError.

        start may be a (1,) tensor (a fixed-shape step, e.g. an exported one): its rows are then
        gathered without the check, which that step's caller made once for the whole search.
        """
        if isinstance(start, Tensor):
            return self.weight.index_select(0, start + self.offset + torch.arange(length, device=start.device))
        end = start + length
        if end > self.max_positions:
            raise ValueError(f"sequence reaches position {end} but the model has max_positions="
                             f"{self.max_positions}: shorten or truncate the input")
        return self.weight[start + self.offset:end + self.offset]


class RotaryPositions(nn.Module):
    """RoFormer's rotary positions (Su et al. 2021, eq. 34; not in the paper): a query or key vector x at position
    m has each pair (x_2i, x_2i+1) rotated by the angle m * 10000^(-2i/d_k), so q_m . k_n depends on m - n only.

    No table: angles are computed for any position, so there is no max_positions to overflow.
    """

    def __init__(self, d_k: int, base: float = 10000.0) -> None:
        """Frequencies theta_i = base^(-2i/d_k) for the d_k / 2 pairs."""
        super().__init__()
        if d_k % 2:
            raise ValueError(f"rotary positions rotate pairs of components: d_k={d_k} must be even")
        two_i = torch.arange(0, d_k, 2, dtype=torch.float64)
        self.register_buffer("theta", (base ** (-two_i / d_k)).float(), persistent=False)  # (d_k / 2,)

    def forward(self, x: Tensor, start: int | Tensor = 0) -> Tensor:
        """Rotate x (B, H, T, d_k) whose rows are positions start..start+T-1 (start: an int or a (1,) tensor)."""
        t = x.shape[-2]
        position = torch.arange(t, device=x.device, dtype=torch.float32) + start  # (T,)
        angle = position[:, None] * self.theta[None, :]  # (T, d_k / 2)
        cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
        pairs = x.unflatten(-1, (-1, 2))  # (B, H, T, d_k / 2, 2): (x_2i, x_2i+1)
        even, odd = pairs[..., 0], pairs[..., 1]
        return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)


class InputEmbedding(nn.Module):
    """Token vectors (B, T, d) -> the first layer's input: dropout(scale(vectors) + positions) (§3.4, §3.5, §5.4).

    Each part is a module of its own: `scale` (TokenScale), `learned` or `sinusoids` (PositionTable; none for
    rotary positions, which the attention applies), and, for other families' weights, `token_types` (segment
    embeddings, cfg.type_vocab_size) and `norm` (a LayerNorm on the sum, cfg.embedding_norm). The token table
    lives in the model, so one table can serve the encoder, the decoder and the pre-softmax projection; the
    part names keep the saved keys of earlier versions (`positions.learned.weight`, ...).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        """The parts cfg asks for."""
        super().__init__()
        self.scale = TokenScale(cfg)
        self.learned = PositionTable(cfg) if cfg.positions == "learned" else None
        self.sinusoids = PositionTable(cfg) if cfg.positions == "sinusoidal" else None
        self.token_types = nn.Embedding(cfg.type_vocab_size, cfg.d_model) if cfg.type_vocab_size else None
        if self.token_types is not None:
            nn.init.normal_(self.token_types.weight, std=0.02)
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps) if cfg.embedding_norm else None
        self.dropout = Dropout(cfg.dropout)  # on the sums of embeddings and positions, §5.4

    def forward(self, token_vectors: Tensor, start: int | Tensor = 0, token_types: Tensor | None = None) -> Tensor:
        """Scale (B, T, d) token vectors placed at positions start..start+T-1 and add positions.

        start is an int, or a (1,) tensor in a fixed-shape decoding step (see PositionTable.forward).

        token_types (B, T) picks segment embeddings when cfg.type_vocab_size > 0 (default: segment 0).
        """
        x = self.scale(token_vectors)  # (B, T, d)
        table = self.learned if self.learned is not None else self.sinusoids
        if table is not None:
            x = x + table(start, token_vectors.shape[1])
        if self.token_types is not None:
            x = x + (self.token_types.weight[0] if token_types is None else self.token_types(token_types))
        elif token_types is not None:
            raise ValueError("token_types given but the model has type_vocab_size=0 (no segment embeddings)")
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(x)


PositionalEncoding = InputEmbedding  # its former name, kept for callers (the public API extends, never renames)


def make_token_embedding(cfg: ModelConfig) -> nn.Embedding:
    """A (vocab, d_model) table initialised N(0, d_model^-1/2), so scaled embeddings have unit size."""
    table = nn.Embedding(cfg.vocab_size, cfg.d_model)
    nn.init.normal_(table.weight, mean=0.0, std=cfg.d_model ** -0.5)
    return table
