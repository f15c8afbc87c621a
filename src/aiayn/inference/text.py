"""Language models on text: sample a continuation (DecoderLM) and fill in [MASK] (EncoderLM)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from tokenizers import Tokenizer

from ..data.lm import MASK_TOKEN
from ..model.models import DecoderLM, EncoderLM


@dataclass
class Candidate:
    """One filler of a [MASK]: the token, its id and its probability under the model."""

    token: str
    id: int
    probability: float


def generate_text(model: DecoderLM, tokenizer: Tokenizer, prompt: str, max_new_tokens: int = 500,
                  **options: Any) -> str:
    """The prompt's continuation (new text only); options go to model.generate (do_sample, top_k, seed, ...).

    Longer than the model's context (max_positions), generation goes on in chunks: each chunk is prompted
    with the last half-context of tokens, so the model always sees between max_positions/2 and
    max_positions tokens (nanoGPT crops to the last max_positions at every token instead).
    """
    ids = tokenizer.encode(prompt, add_special_tokens=False).ids
    if not ids:
        raise ValueError("the prompt is empty after tokenization: give at least one character, e.g. a newline")
    if options.get("seed") is not None:  # one generator for all chunks, so chunks do not repeat their draws
        device = next(model.parameters()).device
        options["generator"] = torch.Generator(device).manual_seed(int(options.pop("seed")))
    window = model.cfg.max_positions
    if window < 2:
        raise ValueError(f"max_positions={window}: a model needs a context of at least 2 tokens to generate")
    context = ids[-(window - 1):]  # the end of a long prompt
    new: list[int] = []
    while len(new) < max_new_tokens:
        limit = min(max_new_tokens - len(new), window - len(context))
        chunk = model.generate(torch.tensor([context]), max_new_tokens=limit, **options)[0]
        new += chunk
        if len(chunk) < limit:  # stopped at EOS
            break
        context = (context + chunk)[-max(window // 2, 1):]
    return tokenizer.decode(new, skip_special_tokens=True)


@torch.no_grad()
def fill_mask(model: EncoderLM, tokenizer: Tokenizer, text: str, top_k: int = 5) -> list[list[Candidate]]:
    """For each [MASK] in text, the top_k most probable tokens, most probable first."""
    mask_id = tokenizer.token_to_id(MASK_TOKEN)
    if mask_id is None:
        raise ValueError(f"the tokenizer has no {MASK_TOKEN} token: use a model trained with `aiayn train --task mlm`")
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    positions = [i for i, t in enumerate(ids) if t == mask_id]
    if not positions:
        raise ValueError(f"no {MASK_TOKEN} in {text!r}: write {MASK_TOKEN} where a word is missing")
    if len(ids) > model.cfg.max_positions:
        raise ValueError(f"the text has {len(ids)} tokens but the model reads at most {model.cfg.max_positions}: "
                         f"shorten it")
    if not 1 <= top_k <= model.cfg.vocab_size:
        raise ValueError(f"top_k must be in [1, {model.cfg.vocab_size}], got {top_k}")
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        logits = model(torch.tensor([ids], device=device))[0, positions]  # (M, V)
    finally:
        model.train(was_training)
    probs = logits.float().softmax(-1)
    best = probs.topk(top_k, dim=-1)  # sorted, most probable first
    return [[Candidate(tokenizer.id_to_token(i), i, p) for p, i in zip(row_p.tolist(), row_i.tolist())]
            for row_p, row_i in zip(best.values, best.indices)]
