"""Scheduled sampling for Transformers (Mihaylova & Liu 2019): decoder inputs mixed with the model's own guesses.

Teacher forcing (the paper's training, §5) feeds the decoder the true previous token at every position; at test
time it reads its own output (exposure bias; benchmarks/teacher_forcing.py measures the gap). Bengio et al.
(2015) feed a recurrent decoder its own prediction instead, with probability p, one step at a time. A
Transformer decoder trains every position in one pass, so Mihaylova & Liu (2019) take the guesses from a
first, teacher-forced pass without gradient (its argmax at every position) and train a second pass on the
mixed inputs, scored against the true targets as usual.
"""

from __future__ import annotations

import torch
from torch import Tensor


def mixed_decoder_input(tgt_in: Tensor, predictions: Tensor, probability: float, pad_id: int,
                        generator: torch.Generator | None = None) -> Tensor:
    """tgt_in (B, T) = BOS + target with each position t >= 1 that holds a token replaced, with `probability`, by
    predictions[:, t - 1], the first pass's guess for that token (predictions (B, T): argmax per position).

    BOS (position 0) and padding are never replaced; probability 1 replaces every other position.
    """
    guesses = torch.cat([tgt_in[:, :1], predictions[:, :-1]], 1)  # (B, T): the guess for position t
    draw = torch.rand(tgt_in.shape, generator=generator, device=tgt_in.device)  # in [0, 1): < 1 always holds
    replace = (draw < probability) & (tgt_in != pad_id)
    replace[:, 0] = False
    return torch.where(replace, guesses, tgt_in)


def decoder_keep_mask(tgt_in: Tensor, pad_id: int) -> Tensor:
    """(B, T) keep-mask of the true decoder input: a guess that happens to be the padding id stays a token."""
    keep = tgt_in != pad_id
    keep[:, 0] = True  # BOS, even where it shares the padding id (Marian)
    return keep
