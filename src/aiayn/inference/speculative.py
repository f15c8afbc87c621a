"""Greedy search checked in the model's precision, drafted by a cheaper copy of it (not in the paper).

A reduced-precision copy (int8, bf16) splits from fp32's greedy tokens where two candidates are within its
rounding of each other, and on a trained translator many sentences meet such a near-tie somewhere
(docs/benchmarks.md). Speculative decoding (Leviathan et al. 2023; Chen et al. 2023) keeps the model's own
tokens while the copy does most of the steps:

1. the draft copy searches `draft_tokens` tokens greedily on its own KV cache (eager, or its compiled
   fixed-shape step: generate(draft="int8", compile=True));
2. the model runs once over them (teacher forcing on its cache: one pass of draft_tokens positions, reading
   every weight once), and takes its own argmax at each position;
3. the tokens up to the first position where they differ are kept, with the model's token there; both
   caches forget the positions after them (KVCache.truncate; a fixed-shape step masks and overwrites them),
   and the next round starts from there.

Every kept token is the model's argmax after the model's own prefix, so the output is the model's greedy
search (up to the rounding between one pass over several positions and single steps). The rows of a batch
advance together, by the shortest kept prefix of the round: the search is fastest for one sentence, and gains
less the more rows might disagree. Finished rows leave the batch, as in the plain search.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

Steps = Any  # decoding.py's steps: replaced by inference.protocols' Steps protocol (#34)


def drafted_greedy(target: Steps, draft: Steps, source: Any, min_length: int, draft_tokens: int,
                   threads: Any) -> tuple[Tensor, Tensor, int]:
    """Greedy tokens of target.model, drafted by the draft's steps `draft_tokens` at a time.

    Returns the (B, longest) tokens (rows padded, cut at their limits; EOS kept for the caller to strip), the
    (B,) summed log-probabilities of the target model, and the rounds the target ran (one pass each).
    """
    model, cfg = target.model, target.model.cfg
    device = source.ids.device
    batch = source.ids.shape[0]
    longest = max(source.limits)
    limits = torch.tensor(source.limits, device=device)
    tokens = torch.full((batch, max(longest, 1)), cfg.pad_id, dtype=torch.long, device=device)
    log_probs = torch.zeros(batch, device=device)
    active = torch.arange(batch, device=device)  # original row of each live row
    last = torch.full((batch, 1), cfg.bos_id, dtype=torch.long, device=device)  # newest token, not yet fed
    fed = rounds = 0  # positions both caches hold
    while fed < longest:
        rows = last.shape[0]
        wanted = min(draft_tokens, int(limits[active].max()) - fed)  # no position past the longest limit
        drafted = []  # (rows, 1) each
        token = last
        threads.set_for(draft.computed_rows(rows))
        for i in range(wanted):
            logits = draft.logits(token, fed + i)  # (rows, V)
            if fed + i < min_length:
                logits[:, cfg.eos_id] = float("-inf")
            token = logits.float().argmax(-1, keepdim=True)  # fp32: torch's bf16 argmax is slower
            drafted.append(token)
        proposal = torch.cat(drafted, 1)  # (rows, wanted)
        # the model over [last, d_1 .. d_{wanted-1}] at once: its own choice after each drafted prefix
        threads.set_for(rows * wanted)
        hidden = model.decode_step(torch.cat([last, proposal[:, :-1]], 1), target.memory, target.mask,
                                   target.caches, fed)  # (rows, wanted, d)
        logits = target.project(hidden).float()  # (rows, wanted, V)
        if fed < min_length:
            logits[:, :max(min_length - fed, 0), cfg.eos_id] = float("-inf")
        chosen = logits.argmax(-1)  # (rows, wanted)
        agreed = int((chosen == proposal).long().cumprod(1).sum(1).min())  # shortest agreeing prefix
        kept = min(agreed + 1, wanted)  # the agreeing tokens and the model's token after them
        accepted = chosen[:, :kept]  # (rows, kept)
        is_eos = accepted == cfg.eos_id
        counted = (is_eos.long().cumsum(1) - is_eos.long() == 0) \
            & (fed + torch.arange(kept, device=device) < limits[active, None])  # up to EOS and the row's limit
        token_log_probs = logits[:, :kept].log_softmax(-1).gather(2, accepted[..., None])[..., 0]  # (rows, kept)
        log_probs[active] += (token_log_probs * counted).sum(1)
        tokens[active, fed:fed + kept] = accepted
        for steps in (target, draft):  # forget the positions fed beyond the kept tokens
            steps.forget_after(fed + kept)
        fed += kept
        rounds += 1
        last = accepted[:, -1:]
        done = is_eos.any(1) | (limits[active] <= fed)  # (rows,)
        if bool(done.any()):  # finished rows leave the batch
            keep = (~done).nonzero().flatten()
            if keep.numel() == 0:
                break
            active, last = active[keep], last[keep]
            for steps in (target, draft):
                steps.keep_sources(keep)
                steps.follow(keep)
    beyond = torch.arange(tokens.shape[1], device=device)[None, :] >= limits[:, None]  # past a row's limit
    return tokens.masked_fill(beyond, cfg.pad_id), log_probs, rounds
