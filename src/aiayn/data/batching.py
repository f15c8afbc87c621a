"""Length-bucketed batches of about N source and N target tokens (§5.1), reshuffled each epoch with a seed."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import Tensor

Example = tuple[list[int], list[int]]  # (source ids + [EOS], target BPE ids without specials)


@dataclass
class Batch:
    """One padded batch: source (B, S), decoder input [BOS]+target (B, T), labels target+[EOS] (B, T)."""

    src: Tensor
    tgt_in: Tensor
    labels: Tensor
    scored: Tensor  # (n_tokens,) flat indices into (B*T) of the non-pad labels, found on the host

    def to(self, device: torch.device) -> Batch:
        """The batch on `device` (unchanged if already there); to a GPU from pinned memory, without waiting."""
        if self.src.device == device:
            return self
        pin = device.type == "cuda"

        def move(t: Tensor) -> Tensor:
            return (t.pin_memory() if pin else t).to(device, non_blocking=True)

        return Batch(move(self.src), move(self.tgt_in), move(self.labels), move(self.scored))

    @property
    def n_tokens(self) -> int:
        """Real (non-pad) label tokens: what the loss is averaged over (a size, no GPU read-back)."""
        return self.scored.numel()

    @property
    def scored_labels(self) -> Tensor:
        """The non-pad labels (n_tokens,), in the order of `scored` (no GPU read-back: the indices are known)."""
        return self.labels.reshape(-1).index_select(0, self.scored)


def collate(examples: list[Example], pad_id: int = 0, bos_id: int = 1, eos_id: int = 2) -> Batch:
    """Pad a list of examples into a Batch (the sequence layout of the whole project)."""
    src_len = max(len(src) for src, _ in examples)
    tgt_len = max(len(tgt) for _, tgt in examples) + 1
    src_rows = [src + [pad_id] * (src_len - len(src)) for src, _ in examples]
    tgt_in = [[bos_id] + tgt + [pad_id] * (tgt_len - 1 - len(tgt)) for _, tgt in examples]
    labels = [tgt + [eos_id] + [pad_id] * (tgt_len - 1 - len(tgt)) for _, tgt in examples]
    label_ids = torch.tensor(labels)  # (B, T)
    scored = label_ids.reshape(-1).ne(pad_id).nonzero().squeeze(1)  # (n_tokens,): on the host, no GPU sync
    return Batch(torch.tensor(src_rows), torch.tensor(tgt_in), label_ids, scored)


class TokenBatcher:
    """Group examples of similar length into batches whose padded source and target each hold at most
    `batch_tokens` tokens; the grouping and the batch order are redrawn each epoch from (seed, epoch)."""

    def __init__(self, examples: list[Example], batch_tokens: int, seed: int = 1) -> None:
        """Examples are (source ids + EOS, target ids); one longer than batch_tokens forms a batch alone."""
        if not examples:
            raise ValueError("no training examples: the training split is empty")
        if batch_tokens < 1:
            raise ValueError(f"batch_tokens must be a positive integer, got {batch_tokens}")
        self.examples = examples
        self.batch_tokens = batch_tokens
        self.seed = seed

    def epoch(self, epoch: int) -> list[list[int]]:
        """Batches of example indices for one epoch, deterministic in (seed, epoch)."""
        rng = random.Random(self.seed * 1_000_003 + epoch)
        order = list(range(len(self.examples)))
        rng.shuffle(order)  # random tie-breaks among equal lengths, so buckets differ between epochs
        # Sort by the longer side first: a batch's padded size is n x max(source, target) length, so this
        # key packs both sides tightly (on the bundled corpus at 4,096 tokens: 96-97% real tokens on both
        # sides and 7% fewer batches, against 89% of the target when sorting by source length).
        order.sort(key=lambda i: (max(len(self.examples[i][0]), len(self.examples[i][1]) + 1),
                                  len(self.examples[i][0]), len(self.examples[i][1])))
        batches: list[list[int]] = []
        current: list[int] = []
        max_src = max_tgt = 0
        for i in order:
            src_len, tgt_len = len(self.examples[i][0]), len(self.examples[i][1]) + 1
            grow_src, grow_tgt = max(max_src, src_len), max(max_tgt, tgt_len)
            if current and max(grow_src, grow_tgt) * (len(current) + 1) > self.batch_tokens:
                batches.append(current)
                current, grow_src, grow_tgt = [], src_len, tgt_len
            current.append(i)
            max_src, max_tgt = grow_src, grow_tgt
        if current:
            batches.append(current)
        rng.shuffle(batches)
        return batches

    def batch(self, indices: list[int], pad_id: int = 0, bos_id: int = 1, eos_id: int = 2) -> Batch:
        """The padded Batch of these example indices."""
        return collate([self.examples[i] for i in indices], pad_id, bos_id, eos_id)
