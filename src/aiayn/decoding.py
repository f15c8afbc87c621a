"""Decoding on the KV cache: greedy search (beam search and sampling build on the same step)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .models import DecoderLM, Transformer


def _strip(ids: list[int], eos_id: int, pad_id: int) -> list[int]:
    """Cut a generated row at its first EOS and drop padding."""
    out = []
    for token in ids:
        if token == eos_id:
            break
        if token != pad_id:
            out.append(token)
    return out


@torch.no_grad()
def generate_seq2seq(model: "Transformer", src: Tensor, beam_size: int = 4, length_penalty: float = 0.6,
                     max_new_tokens: int | None = None, **options: Any) -> list[list[int]]:
    """Translate each row of src (B, S); max length defaults to source length + 50 (§6.1)."""
    if beam_size != 1:
        raise NotImplementedError("beam search lands with issue 3; use beam_size=1")
    cfg = model.cfg
    model.check_ids(src, "src")
    was_training = model.training
    model.eval()
    src_keep = src != cfg.pad_id  # (B, S)
    memory = model.encode(src, src_keep)
    limit = max_new_tokens if max_new_tokens is not None else int(src_keep.sum(1).max()) + 50
    limit = min(limit, cfg.max_positions)
    caches = model.new_caches(limit)
    batch = src.shape[0]
    token = torch.full((batch, 1), cfg.bos_id, dtype=torch.long, device=src.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=src.device)
    outputs: list[Tensor] = []
    for step in range(limit):
        logits = model.decode(token, memory, src_mask=src_keep, caches=caches, start=step)[:, -1]  # (B, V)
        token = logits.argmax(-1).masked_fill(finished, cfg.pad_id)[:, None]
        outputs.append(token)
        finished |= token[:, 0] == cfg.eos_id
        if bool(finished.all()):
            break
    model.train(was_training)
    rows = torch.cat(outputs, 1).tolist()
    return [_strip(row, cfg.eos_id, cfg.pad_id) for row in rows]


@torch.no_grad()
def generate_lm(model: "DecoderLM", prompt_ids: Tensor, max_new_tokens: int = 100, **options: Any) -> list[list[int]]:
    """Greedy continuation of each prompt row (all rows the same length); the new ids only."""
    cfg = model.cfg
    model.check_ids(prompt_ids, "prompt_ids")
    was_training = model.training
    model.eval()
    limit = min(max_new_tokens, cfg.max_positions - prompt_ids.shape[1])
    caches = model.new_caches(prompt_ids.shape[1] + limit)
    logits = model(prompt_ids, caches=caches)[:, -1]
    finished = torch.zeros(prompt_ids.shape[0], dtype=torch.bool, device=prompt_ids.device)
    outputs: list[Tensor] = []
    position = prompt_ids.shape[1]
    for _ in range(limit):
        token = logits.argmax(-1).masked_fill(finished, cfg.pad_id)[:, None]
        outputs.append(token)
        finished |= token[:, 0] == cfg.eos_id
        if bool(finished.all()) or position >= cfg.max_positions:
            break
        logits = model(token, caches=caches, start=position)[:, -1]
        position += 1
    model.train(was_training)
    if not outputs:
        return [[] for _ in range(prompt_ids.shape[0])]
    return [_strip(row, cfg.eos_id, cfg.pad_id) for row in torch.cat(outputs, 1).tolist()]
