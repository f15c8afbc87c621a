"""Label-smoothed cross entropy (§5.4, epsilon_ls = 0.1), averaged over the non-pad target tokens."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def label_smoothed_loss(logits: Tensor, labels: Tensor, epsilon: float = 0.1, pad_id: int = 0,
                        reduction: str = "sum") -> Tensor:
    """Cross entropy against q = (1 - eps) * one_hot(label) + eps / V (uniform over all V classes),
    the smoothing of Szegedy et al. that §5.4 cites; pad labels contribute nothing.

    logits (B, T, V), labels (B, T). reduction "sum" (the caller divides by the token count) or "mean".
    """
    vocab = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, vocab), labels.reshape(-1), ignore_index=pad_id,
                           label_smoothing=epsilon, reduction=reduction)
