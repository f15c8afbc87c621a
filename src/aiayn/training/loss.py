"""Label-smoothed cross entropy (§5.4, epsilon_ls = 0.1), averaged over the non-pad target tokens.

The loss is F.cross_entropy(..., label_smoothing=eps) computed in fewer passes over the (N, V) logits:
the forward keeps only the log-probabilities, and the backward turns them into the gradient in place,
softmax - q, without the zero-filled one-hot, the broadcast smoothing term and their sum that torch's
composite version materialises (each as large as the logits: 111 MB for 752 tokens x 37000 words).
fp32_cross_entropy is the language models' plain cross entropy, on fp32 log-probabilities under autocast too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable


class _SmoothedCrossEntropy(torch.autograd.Function):
    """Summed label-smoothed cross entropy of (N, V) logits; the backward reuses the saved log-probabilities."""

    @staticmethod
    def forward(ctx, logits: Tensor, labels: Tensor, epsilon: float, pad_id: int) -> Tensor:  # type: ignore[override]
        """Sum over the non-pad rows of -(1 - eps) log p(label) - eps / V sum_k log p(k)."""
        vocab = logits.shape[1]
        # half-precision logits (autocast) are softmaxed in fp32; torch converts bf16 on the way in (the same
        # copy as logits.float()), fp16 on CUDA it reads as is
        wide = torch.float32 if logits.dtype in (torch.float16, torch.bfloat16) else None
        log_probs = torch.log_softmax(logits, dim=1, dtype=wide)  # (N, V)
        keep = labels != pad_id  # (N,)
        index = labels.masked_fill(~keep, 0)[:, None]  # (N, 1): pad rows read column 0, then weigh 0
        picked = log_probs.gather(1, index).squeeze(1)  # (N,) log p(label)
        per_row = -(1.0 - epsilon) * picked - (epsilon / vocab) * log_probs.sum(1)  # (N,)
        ctx.save_for_backward(log_probs, index, keep)
        ctx.epsilon, ctx.logits_dtype = epsilon, logits.dtype
        return (per_row * keep).sum()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        """grad * (softmax(logits) - q) on non-pad rows, zeros on pad rows: (N, V)."""
        log_probs, index, keep = ctx.saved_tensors
        epsilon, vocab = ctx.epsilon, log_probs.shape[1]
        weight = (keep * grad).to(log_probs.dtype)[:, None]  # (N, 1): the output gradient, 0 on pad rows
        # d loss / d logits = softmax - q with q = (1 - eps) one_hot + eps / V; written over the saved
        # log-probabilities (a second backward through this graph fails torch's in-place check)
        out = log_probs.exp_().sub_(epsilon / vocab).mul_(weight)  # (N, V)
        out.scatter_add_(1, index, weight * -(1.0 - epsilon))
        return out.to(ctx.logits_dtype), None, None, None


def label_smoothed_loss(logits: Tensor, labels: Tensor, epsilon: float = 0.1, pad_id: int = 0,
                        reduction: str = "sum") -> Tensor:
    """Cross entropy against q = (1 - eps) * one_hot(label) + eps / V (uniform over all V classes),
    the smoothing of Szegedy et al. that §5.4 cites; pad labels contribute nothing.

    logits (B, T, V) or (N, V), labels (B, T) or (N,). reduction "sum" (the caller divides by the token
    count) or "mean" (over the non-pad labels). Equals F.cross_entropy(logits, labels,
    ignore_index=pad_id, label_smoothing=epsilon) up to float rounding, gradients too. bf16/fp16 logits
    are taken as they are (log-probabilities in fp32); the loss is fp32, their gradient in their own dtype.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    flat_labels = labels.reshape(-1)
    total = _SmoothedCrossEntropy.apply(logits.reshape(-1, logits.shape[-1]), flat_labels, epsilon, pad_id)
    if reduction == "mean":
        return total / (flat_labels != pad_id).sum()
    return total


def fp32_cross_entropy(logits: Tensor, labels: Tensor, ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """F.cross_entropy of logits (..., V) against labels (...), on fp32 log-probabilities whatever the logits' dtype.

    Called outside autocast: bf16 logits go through one log_softmax(dtype=float32), which converts them on the
    way in as autocast's own fp32 cross_entropy does (torch 2.13 skips that copy only for fp16 on CUDA), and
    their gradient comes back in bf16. fp32 logits give F.cross_entropy's loss and gradient bit for bit.
    """
    log_probs = torch.log_softmax(logits.reshape(-1, logits.shape[-1]), dim=1, dtype=torch.float32)  # (N, V)
    return F.nll_loss(log_probs, labels.reshape(-1), ignore_index=ignore_index, reduction=reduction)
