"""Collecting attention: run a model on one sentence (pair) and keep every layer's weights with their tokens.

The three kinds of §3.2.3: encoder self-attention (every source token sees every source token), decoder
masked self-attention (a target position sees itself and earlier positions only) and encoder-decoder
("cross") attention (each target position looks at the source). An EncoderLM has the first kind only,
a DecoderLM the second only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..model.registry import MODEL_TYPES

KINDS = ("encoder_self", "decoder_self", "cross")
KIND_TITLES = {
    "encoder_self": "encoder self-attention",
    "decoder_self": "decoder masked self-attention",
    "cross": "encoder-decoder (cross) attention",
}


@dataclass
class AttentionRecord:
    """Attention weights of one sentence (pair), as numpy arrays, with the tokens that label them.

    `weights[kind][layer]` is (H, T_query, T_key) for kind in "encoder_self", "decoder_self", "cross".
    source_tokens label the encoder side (EncoderLM: the text); target_tokens the decoder side (the
    decoder input: BOS + target for a Transformer; the text for a DecoderLM).
    """

    model_type: str
    source_tokens: list[str]
    target_tokens: list[str]
    weights: dict[str, list[np.ndarray]]
    source_text: str = ""
    target_text: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def kinds(self) -> list[str]:
        """The kinds of attention this model has, in the paper's order."""
        return [kind for kind in KINDS if self.weights.get(kind)]

    def tokens(self, kind: str) -> tuple[list[str], list[str]]:
        """(query tokens, key tokens) labelling the rows and columns of `kind`'s matrices."""
        self._check_kind(kind)
        if kind == "encoder_self":
            return self.source_tokens, self.source_tokens
        if kind == "decoder_self":
            return self.target_tokens, self.target_tokens
        return self.target_tokens, self.source_tokens

    def matrix(self, kind: str, layer: int, head: int | str | None = "mean") -> np.ndarray:
        """(T_query, T_key) weights of one head, or the mean over heads (head="mean")."""
        self._check_kind(kind)
        layers = self.weights[kind]
        if not -len(layers) <= layer < len(layers):
            raise ValueError(f"layer {layer} is out of range: {kind} has layers 0..{len(layers) - 1}")
        heads = layers[layer]  # (H, Tq, Tk)
        if head is None or head == "mean":
            return heads.mean(0)
        if not isinstance(head, int) or not -heads.shape[0] <= head < heads.shape[0]:
            raise ValueError(f"head {head!r} is out of range: the model has heads 0..{heads.shape[0] - 1} "
                             f"(or 'mean')")
        return heads[head]

    def _check_kind(self, kind: str) -> None:
        """Raise a clear ValueError unless the model has attention of this kind."""
        if kind not in self.kinds:
            raise ValueError(f"a {self.model_type} model has no {kind!r} attention; choose one of {self.kinds}")



def token_strings(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """The tokenizer's string for each id (e.g. '▁the', '##ing', '</s>'), '<id N>' for unknown ids."""
    out = []
    for i in ids:
        token = tokenizer.id_to_token(int(i)) if tokenizer is not None else None
        out.append(token if token is not None else f"<id {int(i)}>")
    return out


def source_ids(model: Any, tokenizer: Any, text: str) -> list[int]:
    """Token ids of the text as the model reads it: BPE ids + [EOS] for an encoder-decoder's source;
    the tokenizer's own encoding (with its special tokens, e.g. BERT's [CLS] .. [SEP]) otherwise."""
    encoder_decoder = MODEL_TYPES[model.model_type].encoder_decoder
    encoding = tokenizer.encode(text, add_special_tokens=not encoder_decoder)
    ids = [i for i, keep in zip(encoding.ids, encoding.attention_mask) if keep]  # a tokenizer may pad
    return ids + [model.cfg.eos_id] if encoder_decoder else ids


@torch.no_grad()
def collect_attention(model: Any, tokenizer: Any, text: str, target: str | None = None,
                      beam_size: int = 4) -> AttentionRecord:
    """Run `model` on one text (and target) and keep every layer's attention weights.

    An encoder-decoder (the Transformer, the RNN): text is the source; target is the reference translation, or,
    when None, the model's own translation (beam search of §6.1; greedy where beam search is not available).
    EncoderLM and DecoderLM read the text alone.
    """
    was_training = model.training
    try:
        model.eval()  # no dropout: the weights a reader sees are the ones inference uses
        return _collect(model, tokenizer, text, target, beam_size)
    finally:
        model.train(was_training)


def _collect(model: Any, tokenizer: Any, text: str, target: str | None, beam_size: int) -> AttentionRecord:
    """collect_attention's work, on a model in eval mode."""
    device = next(model.parameters()).device
    ids = source_ids(model, tokenizer, text)
    if not ids:
        raise ValueError("the text has no tokens; give at least one word")
    src = torch.tensor([ids], dtype=torch.long, device=device)  # (1, S)
    notes: dict[str, Any] = {}
    if MODEL_TYPES[model.model_type].encoder_decoder:
        if target is None:
            target_ids, notes["decoding"] = _translate(model, src, beam_size)
            target = tokenizer.decode(target_ids)
        else:
            encoding = tokenizer.encode(target, add_special_tokens=False)
            target_ids = [i for i, keep in zip(encoding.ids, encoding.attention_mask) if keep]
        decoder_in = [model.cfg.bos_id] + list(target_ids)  # BOS + target, shifted right
        tgt = torch.tensor([decoder_in], dtype=torch.long, device=device)  # (1, T)
        out = model(src, tgt, return_attention=True)
        src_tokens, tgt_tokens = token_strings(tokenizer, ids), token_strings(tokenizer, decoder_in)
    elif target is not None:
        raise ValueError(f"a target is only for encoder-decoder models; this is a {model.model_type}: "
                         f"put the whole text in the first argument")
    else:
        out = model(src, return_attention=True)
        tokens = token_strings(tokenizer, ids)
        src_tokens = tokens if "encoder_self" in out.attentions else []  # one stack: the text labels its kind
        tgt_tokens = tokens if "decoder_self" in out.attentions else []
    weights = {kind: [w[0].float().cpu().numpy() for w in out.attentions[kind]]  # layers of (H, Tq, Tk)
               for kind in KINDS if kind in out.attentions}
    return AttentionRecord(model.model_type, src_tokens, tgt_tokens, weights, source_text=text,
                           target_text=target or "", notes=notes)


def _translate(model: Any, src: Tensor, beam_size: int) -> tuple[list[int], str]:
    """The model's translation of src (1, S) and how it was decoded."""
    if beam_size == 1:
        return model.generate(src, beam_size=1)[0], "greedy search"
    return model.generate(src, beam_size=beam_size)[0], f"beam search, beam {beam_size}"
