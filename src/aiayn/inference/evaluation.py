"""Translate a test set and score it with sacreBLEU (BLEU and chrF, with signatures) on detokenized output."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sacrebleu.metrics import BLEU, CHRF

from ..data.batching import length_batches
from ..data.tokenizer import decode, encode_source
from ..runtime.log import get_logger
from .workers import WorkerPool, generate_batches, workers_problem

logger = get_logger("inference")


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


def score(hypotheses: list[str], references: list[str]) -> Scores:
    """sacreBLEU's default BLEU (13a tokenization) and chrF of detokenized hypotheses against raw references."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references: they must align")
    bleu, chrf = BLEU(), CHRF()
    b = bleu.corpus_score(hypotheses, [references])
    c = chrf.corpus_score(hypotheses, [references])
    return Scores(b.score, c.score, str(bleu.get_signature()), str(chrf.get_signature()))


def translate(model: Any, tok: Any, texts: list[str], beam_size: int = 4, length_penalty: float = 0.6,
              batch_tokens: int = 4000, max_source_tokens: int | None = None,
              progress: Callable[[int], None] | None = None, warn: Callable[[str], None] | None = None,
              workers: int | WorkerPool = 1, **generate_options: Any) -> list[str]:
    """Translate texts in length-sorted batches (beam 4, alpha 0.6 by default, §6.1); output in input order.

    `generate_options` go to model.generate (e.g. do_sample=True, top_p=0.9, seed=0). `workers` > 1 searches
    that many batches at once in forked processes of one intra-op thread each (inference.workers): the same
    batches, so the output of one process on one thread (more threads may round sums differently). A
    WorkerPool of the same model is used as it is, so many calls fork once.
    One output per text, always: an empty (or blank) text gives "", a text longer than the model takes
    (max_positions - 50 tokens, leaving §6.1's +50 for the output) is cut to its first tokens, with a warning.
    translate_scored gives the n best with their scores instead.
    """
    found = _search(model, tok, texts, beam_size, length_penalty, batch_tokens, max_source_tokens, progress, warn,
                    workers, generate_options)
    return ["" if ids is None else decode(tok, ids) for ids in found]


def translate_scored(model: Any, tok: Any, texts: list[str], n_best: int = 1, beam_size: int = 4,
                     length_penalty: float = 0.6, batch_tokens: int = 4000, max_source_tokens: int | None = None,
                     progress: Callable[[int], None] | None = None, warn: Callable[[str], None] | None = None,
                     workers: int | WorkerPool = 1, **generate_options: Any) -> list[list[tuple[str, float]]]:
    """translate(), with the n_best hypotheses of each text as (text, length-penalised score), best first.

    The same batches, truncation and workers as translate(); the first hypothesis of each text is the line
    translate() gives. A blank text gives [("", 0.0)]. n_best <= beam_size (model.generate checks it).
    """
    found = _search(model, tok, texts, beam_size, length_penalty, batch_tokens, max_source_tokens, progress, warn,
                    workers, {**generate_options, "n_best": n_best, "return_scores": True})
    out = []
    for hyps in found:
        hyps = [] if hyps is None else hyps if isinstance(hyps, list) else [hyps]  # n_best 1: one Hypothesis
        out.append([(decode(tok, h.tokens), float(h.score)) for h in hyps] or [("", 0.0)])
    return out


@torch.no_grad()
def _search(model: Any, tok: Any, texts: list[str], beam_size: int, length_penalty: float, batch_tokens: int,
            max_source_tokens: int | None, progress: Callable[[int], None] | None,
            warn: Callable[[str], None] | None, workers: int | WorkerPool,
            generate_options: dict[str, Any]) -> list[Any]:
    """model.generate's result for every text in input order (None for a blank text), as translate() batches."""
    cfg = model.cfg
    device = next(model.parameters()).device
    if not isinstance(workers, WorkerPool):  # a pool was checked when it was made
        problem = workers_problem(workers, device)
        if problem is not None:
            raise ValueError(problem)
    warn = warn or (lambda message: logger.warning(f"warning: {message}"))
    limit = max_source_tokens or max(cfg.max_positions - 50, 1)
    texts = [_valid_unicode(text) for text in texts]
    encoded = [encode_source(tok, text) for text in texts]
    too_long = [i for i, ids in enumerate(encoded) if len(ids) > limit]
    if too_long:
        shown = ", ".join(f"{i + 1} ({len(encoded[i])} tokens)" for i in too_long[:5])
        more = f" and {len(too_long) - 5} more" if len(too_long) > 5 else ""
        warn(f"input line(s) {shown}{more} exceed the {limit} source tokens this model takes (max_positions "
             f"{cfg.max_positions} - 50 for the output, §6.1); translating only their first {limit}")
    encoded = [ids if len(ids) <= limit else ids[:limit - 1] + ids[-1:] for ids in encoded]  # keep the EOS
    results: list[Any] = [None] * len(texts)
    kept = np.array([i for i in range(len(texts)) if texts[i].strip()], dtype=np.int64)  # blank texts: None
    lengths = np.array([len(encoded[i]) for i in kept], dtype=np.int64)
    # the training batcher's length bucketing (aiayn.data.batching): sorted by length, <= budget padded tokens
    chunks = [kept[part].tolist() for part in length_batches(lengths, max(batch_tokens // max(beam_size, 1), 1))]
    batches = [_padded([encoded[i] for i in chunk], cfg.pad_id, device) for chunk in chunks]  # (B, S) each

    was_training = model.training
    model.eval()
    try:
        for index, hyps in generate_batches(model, batches, workers, beam_size=beam_size,
                                            length_penalty=length_penalty, **generate_options):
            for i, found in zip(chunks[index], hyps):
                results[i] = found
            if progress is not None:
                progress(len(chunks[index]))
    finally:
        model.train(was_training)
    return results


def _padded(rows: list[list[int]], pad_id: int, device: torch.device) -> torch.Tensor:
    """Id lists as one (B, S) tensor, padded at the end to the longest."""
    width = max(len(row) for row in rows)
    return torch.tensor([row + [pad_id] * (width - len(row)) for row in rows], device=device)


def _valid_unicode(text: str) -> str:
    """Text with lone surrogates (e.g. undecodable bytes kept by surrogateescape) replaced by U+FFFD."""
    if not any("\ud800" <= ch <= "\udfff" for ch in text):
        return text
    return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
