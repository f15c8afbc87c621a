"""Beam search's row layout inside attention: K beams of one source share that source's memory row.

Beam search keeps the encoder output (and its cross-attention keys and values) once per source, while the
decoder runs K rows per source. Folding stacks each group of K query rows along the query axis, so one
source's keys and values are read once for all its beams; unfolding restores the rows.
"""

from __future__ import annotations

from torch import Tensor


def fold_beams(x: Tensor, group: int) -> Tensor:
    """(R * group, H, T, d) -> (R, H, group * T, d): stack each group's rows along the query axis."""
    rg, h, t, d = x.shape
    return x.view(rg // group, group, h, t, d).transpose(1, 2).reshape(rg // group, h, group * t, d)


def unfold_beams(x: Tensor, group: int) -> Tensor:
    """Inverse of fold_beams: (R, H, group * T, d) -> (R * group, H, T, d)."""
    r, h, gt, d = x.shape
    return x.view(r, h, group, gt // group, d).transpose(1, 2).reshape(r * group, h, gt // group, d)
