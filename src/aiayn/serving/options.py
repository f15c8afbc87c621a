"""Request fields -> decoding keywords: the one place serve maps what a client asks for to translate()'s options.

The names and defaults are `aiayn translate`'s flags (cli/common.py's add_decoding_flags): beam 4 and
length penalty 0.6 (§6.1), sampling with temperature / top_k / top_p / seed, plus n_best with scores.
When decoding options are declared in one table (DESIGN.md), this function reads that table instead.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Decoding(BaseModel):
    """The decoding fields of a native request (each optional; defaults as `aiayn translate`'s)."""

    model_config = ConfigDict(extra="forbid")

    beam: int = Field(4, ge=1, le=64, description="beam size (1: greedy search); §6.1's 4 by default")
    length_penalty: float = Field(0.6, ge=0.0, description="alpha in ((5 + |Y|) / 6)^alpha (§6.1); 0: none")
    n_best: int = Field(1, ge=1, le=64, description="hypotheses per sentence, best first (<= beam)")
    scores: bool = Field(False, description="return each hypothesis's length-penalised log-probability")
    sample: bool = Field(False, description="sample instead of searching")
    temperature: float = Field(1.0, gt=0.0, description="with sample: softmax temperature")
    top_k: int = Field(0, ge=0, description="with sample: the k likeliest tokens only (0: all)")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="with sample: nucleus sampling")
    seed: int | None = Field(None, description="with sample: a seed makes the output reproducible")


class OptionError(ValueError):
    """Fields that do not go together; the message names them."""


def decoding_keywords(fields: Decoding) -> dict[str, Any]:
    """translate()'s keyword options for the request's decoding fields (as cli.common.decoding_options)."""
    if fields.n_best > fields.beam:
        raise OptionError(f"n_best ({fields.n_best}) must be at most beam ({fields.beam})")
    if fields.sample and fields.n_best > 1:
        raise OptionError("n_best > 1 needs beam search: leave out sample")
    options: dict[str, Any] = {"beam_size": fields.beam, "length_penalty": fields.length_penalty}
    if fields.n_best > 1:
        options["n_best"] = fields.n_best
    if fields.scores or fields.n_best > 1:
        options["return_scores"] = True
    if fields.sample:
        options.update(do_sample=True, temperature=fields.temperature, top_k=fields.top_k or None,
                       top_p=fields.top_p if fields.top_p is not None and fields.top_p < 1.0 else None,
                       seed=fields.seed)
    return options
