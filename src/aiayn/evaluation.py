"""Translate a test set and score it with sacreBLEU (BLEU and chrF, with signatures) on detokenized output."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from sacrebleu.metrics import BLEU, CHRF

from .tokenizer import decode, encode_source

_warned_greedy = False  # set once beam search was asked for but unavailable (greedy was used)


@dataclass
class Scores:
    """Corpus BLEU and chrF with their sacreBLEU signatures."""

    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str

    def __str__(self) -> str:
        """Two report lines, as sacreBLEU prints them."""
        return f"BLEU = {self.bleu:.2f}  ({self.bleu_signature})\nchrF = {self.chrf:.2f}  ({self.chrf_signature})"


def beam_fell_back() -> bool:
    """True if an earlier `translate` asked for beam search but this build only had greedy search."""
    return _warned_greedy


def score(hypotheses: list[str], references: list[str]) -> Scores:
    """sacreBLEU's default BLEU (13a tokenization) and chrF of detokenized hypotheses against raw references."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references: they must align")
    bleu, chrf = BLEU(), CHRF()
    b = bleu.corpus_score(hypotheses, [references])
    c = chrf.corpus_score(hypotheses, [references])
    return Scores(b.score, c.score, str(bleu.get_signature()), str(chrf.get_signature()))


@torch.no_grad()
def translate(model: Any, tok: Any, texts: list[str], beam_size: int = 4, length_penalty: float = 0.6,
              batch_tokens: int = 4000, max_source_tokens: int | None = None,
              progress: Callable[[int], None] | None = None) -> list[str]:
    """Translate texts in length-sorted batches (beam 4, alpha 0.6 by default, §6.1); output in input order."""
    global _warned_greedy
    cfg = model.cfg
    limit = max_source_tokens or max(cfg.max_positions - 50, 1)
    encoded = [encode_source(tok, text) for text in texts]
    encoded = [ids if len(ids) <= limit else ids[:limit - 1] + ids[-1:] for ids in encoded]  # keep the EOS
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
    results: list[str] = [""] * len(texts)
    budget = max(batch_tokens // max(beam_size, 1), 1)
    start = 0
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    while start < len(order):
        end = start + 1
        while end < len(order) and len(encoded[order[end]]) * (end - start + 1) <= budget:
            end += 1
        chunk = order[start:end]
        width = max(len(encoded[i]) for i in chunk)
        src = torch.tensor([encoded[i] + [cfg.pad_id] * (width - len(encoded[i])) for i in chunk],
                           device=device)  # (B, S)
        try:
            hyps = model.generate(src, beam_size=beam_size, length_penalty=length_penalty)
        except NotImplementedError:  # beam search not in this build: say so once, then decode greedily
            if not _warned_greedy:
                print(f"warning: beam search (beam {beam_size}) is not available in this build; decoding "
                      f"greedily", file=sys.stderr)
                _warned_greedy = True
            hyps = model.generate(src, beam_size=1)
        for i, ids in zip(chunk, hyps):
            results[i] = decode(tok, ids)
        if progress is not None:
            progress(len(chunk))
        start = end
    model.train(was_training)
    return results
