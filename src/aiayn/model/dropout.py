"""Dropout (§5.4) with cheaper random masks on the CPU.

torch's CPU dropout draws one random float per element; here one 64-bit draw gives four 16-bit
numbers, each compared with p * 2^16, so the keep-mask costs about a fifth of the random-number work.
The drop probability is p rounded to a multiple of 1/65536 (0.1 becomes 0.1000061), and the kept
values are scaled by 1 / (1 - that rounded p). On a GPU, torch's fused dropout is already cheap and is
used as is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_LEVELS = 1 << 16


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> Tensor:
    """Boolean mask of `shape`, each element True with probability 1 - p (p rounded to 1/65536)."""
    count = 1
    for size in shape:
        count *= size
    words = torch.randint(-(2**63), 2**63 - 1, ((count + 3) // 4,), dtype=torch.int64, device=device)
    halves = words.view(torch.int16)[:count]  # uniform over [-32768, 32767]
    threshold = round(p * _LEVELS) - _LEVELS // 2  # P(halves < threshold) = rounded_p(p)
    return (halves >= threshold).view(shape)


def rounded_p(p: float) -> float:
    """The drop probability keep_mask really uses: p rounded to a multiple of 1/65536."""
    return round(p * _LEVELS) / _LEVELS


class _MaskedScale(torch.autograd.Function):
    """y = x * keep / (1 - p); the gradient uses the same mask."""

    @staticmethod
    def forward(ctx, x: Tensor, keep: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x * keep * scale

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (keep,) = ctx.saved_tensors
        return grad * keep * ctx.scale, None, None


class Dropout(nn.Module):
    """Inverted dropout: zero each element with probability p in training, scale the rest by 1/(1-p)."""

    def __init__(self, p: float) -> None:
        """Drop probability p in [0, 1)."""
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        """x unchanged in eval mode or with p == 0; else x with dropped elements zeroed."""
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        # scaled by the kept share the mask really has, so the expected output is x exactly
        return _MaskedScale.apply(x, keep_mask(x.shape, self.p, x.device), 1.0 / (1.0 - rounded_p(self.p)))

    def extra_repr(self) -> str:
        """Shown in print(model)."""
        return f"p={self.p}"


def set_dropout(model: nn.Module, p: float) -> None:
    """Set the residual and embedding dropout (§5.4) of a built model, in its modules and in model.cfg; an
    LSTM's dropout between its layers (the recurrent baseline) follows where it has more than one layer."""
    for module in model.modules():
        if isinstance(module, Dropout):
            module.p = p
        elif isinstance(module, nn.RNNBase) and module.num_layers > 1:
            module.dropout = p
    model.cfg = model.cfg.replace(dropout=p)
