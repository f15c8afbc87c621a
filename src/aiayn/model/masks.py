"""The one mask convention: boolean, True = may attend; shapes broadcast to (B, H, T_query, T_key)."""

from __future__ import annotations

import torch
from torch import Tensor


def padding_mask(ids: Tensor, pad_id: int) -> Tensor:
    """Key mask from token ids: (B, S) -> (B, 1, 1, S), True where the token is not padding."""
    return (ids != pad_id)[:, None, None, :]


def causal_mask(query_len: int, key_len: int | None = None, device: torch.device | None = None) -> Tensor:
    """(1, 1, Tq, Tk) lower-triangular mask aligned bottom-right: query i sees keys <= i + (Tk - Tq).

    With a KV cache the queries are the last Tq of Tk positions, so the diagonal is shifted right;
    SDPA's is_causal aligns top-left and would be wrong there.
    """
    key_len = query_len if key_len is None else key_len
    offset = key_len - query_len
    q = torch.arange(query_len, device=device)[:, None]
    k = torch.arange(key_len, device=device)[None, :]
    return (k <= q + offset)[None, None]


def as_key_mask(mask: Tensor | None, ids: Tensor, pad_id: int, n_heads: int | None = None) -> Tensor:
    """A user's (B, S) keep-mask (True = token) or None -> the (B, 1, 1, S) attention mask."""
    if mask is None:
        return padding_mask(ids, pad_id)
    check_mask(mask, "src_mask", ids.shape, n_heads)
    batch, length = ids.shape
    if mask.shape[0] not in (1, batch) or mask.dim() >= 3 and mask.shape[-2] not in (1, length):
        raise ValueError(f"src_mask has shape {tuple(mask.shape)} but the ids have shape {tuple(ids.shape)}: give "
                         f"a (B, S) keep-mask of the same shape as the ids (or (B, 1|S, S), (B, 1|H, 1|S, S))")
    if mask.dim() == 2:
        return mask[:, None, None, :]
    return mask if mask.dim() == 4 else mask[:, None]


def decoder_self_mask(mask: Tensor | None, ids: Tensor, pad_id: int, n_heads: int | None = None) -> Tensor:
    """Causal self-attention mask (B, 1, T, T) for decoder input ids, combined with padding.

    `mask` may be None (padding from pad_id), a (B, T) keep-mask combined with the causal mask, or a
    full (T, T) / (B, T, T) / (B, 1|H, T, T) mask used as given.
    """
    length = ids.shape[1]
    if mask is None or mask.dim() == 2 and mask.shape == ids.shape:
        keep = ids != ids.new_full((), pad_id) if mask is None else mask
        check_mask(keep, "tgt_mask", ids.shape)
        return causal_mask(length, device=ids.device) & keep[:, None, None, :]
    check_mask(mask, "tgt_mask", (length, length), n_heads)
    if mask.shape[-2] != length or mask.dim() >= 3 and mask.shape[0] not in (1, ids.shape[0]):
        raise ValueError(f"tgt_mask has shape {tuple(mask.shape)} but the decoder ids have shape {tuple(ids.shape)}: "
                         f"give a (B, T) keep-mask, or a (T, T), (B, T, T) or (B, 1|H, T, T) attention mask")
    while mask.dim() < 4:
        mask = mask.unsqueeze(0) if mask.dim() == 2 else mask.unsqueeze(1)
    return mask


def cached_self_mask(mask: Tensor | None, query_len: int, start: int, device: torch.device,
                     n_heads: int | None = None) -> Tensor | None:
    """Self-attention mask of `query_len` new positions after `start` cached ones (KV-cache decoding).

    The cache does not remember which of its keys were padding, so `mask` covers every position so far:
    a (B, start + t) keep-mask, combined with the causal mask, or a (B, 1|H, t, start + t) attention mask used
    as given. None hides nothing (and needs no mask at all for a single new position).
    """
    total = start + query_len
    if mask is None:
        return None if query_len == 1 else causal_mask(query_len, total, device)
    wrong = ValueError(f"with caches, mask has shape {tuple(getattr(mask, 'shape', ()))}: give a (B, start + t) = "
                       f"(B, {total}) keep-mask over every position so far (cached and new), or a "
                       f"(B, 1|H, {query_len}, {total}) attention mask")
    try:
        check_mask(mask, "mask", (total,))
    except ValueError:
        raise wrong from None
    check_mask(mask, "mask", (total,), n_heads)  # a 4-D mask's head dimension
    if mask.dim() == 2:
        return causal_mask(query_len, total, device) & mask[:, None, None, :]
    if mask.shape[-2] != query_len:
        raise wrong
    return mask if mask.dim() == 4 else mask[:, None]


def memory_key_mask(src_mask: Tensor | None) -> Tensor | None:
    """Cross-attention's mask from a source mask: its key-padding part, (B, 1|H, 1, S).

    A (B, S) keep-mask is that part already. A (B, 1|S, S) or (B, 1|H, 1|S, S) encoder self-attention mask
    is no mask for the decoder's queries: the keys it hides from every source query are the padding.
    """
    if src_mask is None:
        return None
    if src_mask.dim() == 2:
        return src_mask[:, None, None, :]
    if src_mask.dim() == 3:
        src_mask = src_mask[:, None]
    return src_mask if src_mask.shape[-2] == 1 else src_mask.any(dim=-2, keepdim=True)


def check_mask(mask: Tensor, name: str, expected_tail: tuple[int, ...] | torch.Size,
               n_heads: int | None = None) -> None:
    """Raise a clear error unless `mask` is boolean, its last dims match `expected_tail` and a 4-D mask's
    head dimension is 1 or n_heads (when given)."""
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        kind = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(f"{name} must be a torch.bool tensor (True = may attend), got {kind}; "
                        f"convert with `mask.bool()` or `ids != pad_id`")
    tail = tuple(expected_tail)[-1:]
    if mask.dim() < 2 or mask.dim() > 4 or tuple(mask.shape[-1:]) != tail:
        raise ValueError(f"{name} has shape {tuple(mask.shape)}; expected (B, S) matching the ids "
                         f"{tuple(expected_tail)} or a (.., T_query, T_key) attention mask")
    if n_heads is not None and mask.dim() == 4 and mask.shape[1] not in (1, n_heads):
        raise ValueError(f"{name} has shape {tuple(mask.shape)}: its dimension 1 ({mask.shape[1]}) must be 1 (the "
                         f"same for every head) or the model's n_heads={n_heads}")
