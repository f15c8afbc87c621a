"""What the searches need of a model, as typing Protocols: the models satisfy them without importing inference/.

Transformer and RecurrentSeq2Seq are Seq2SeqModels; DecoderLM is a CausalLM; every model that decodes (these
three) is a DecodingModel, which inference.quantize copies into another precision. A search runs on Steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from ..model.config import ModelConfig


class DecodingModel(Protocol):
    """A model the searches run: its config, parameters and train/eval switch (an nn.Module)."""

    cfg: ModelConfig
    model_type: str
    training: bool

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:
        """Its weights (the device is read from the first)."""
        ...

    def train(self, mode: bool = True) -> Any:
        """Set training mode (the searches run in eval mode and put the mode back)."""
        ...

    def eval(self) -> Any:
        """Set eval mode."""
        ...

    def check_ids(self, ids: Tensor, name: str) -> None:
        """Raise ValueError naming ids that are not a (B, T) LongTensor in the vocabulary and the positions."""
        ...


class Seq2SeqModel(DecodingModel, Protocol):
    """An encoder-decoder: encode the source once, then one decoder step at a time on caches."""

    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """Memory (B, S, d) of source ids (B, S) with keep-mask (B, S)."""
        ...

    def new_caches(self, capacity: int | None = None) -> list[Any]:
        """Empty per-layer caches for `capacity` decoder positions."""
        ...

    def decode_step(self, tokens: Tensor, memory: Tensor, memory_mask: Tensor | None, caches: list[Any],
                    start: int) -> Tensor:
        """Decoder outputs (b, T, d) of tokens (b, T) at positions start.. on the caches."""
        ...

    def step_projection(self) -> Callable[[Tensor], Tensor]:
        """Decoder outputs (b, T, d) -> logits (b, V) of the last position."""
        ...


class CausalLM(DecodingModel, Protocol):
    """A decoder-only language model: prompt and new tokens through one step on caches."""

    def new_caches(self, capacity: int | None = None) -> list[Any]:
        """Empty per-layer caches for `capacity` positions."""
        ...

    def step(self, ids: Tensor, mask: Tensor | None, caches: list[Any], start: int) -> Tensor:
        """Logits (b, T, V) of ids (b, T) at positions start.. on the caches."""
        ...


@runtime_checkable
class Steps(Protocol):
    """The model side of one search (inference.decoding's loops): logits for the live rows, and the rows kept.

    Rows are sentence-major: a sentence's beams are adjacent. A translator's steps start from BOS; a language
    model's consume the prompt at step 0.
    """

    def logits(self, token: Tensor, step: int) -> Tensor:
        """Logits (n, V) of the next token of each live row, after its newest token (n, 1) at output step `step`."""
        ...

    def keep_sources(self, index: Tensor) -> None:
        """Only the live sentences `index` go on (finished ones leave): drop the others' per-source state."""
        ...

    def follow(self, parent: Tensor) -> None:
        """Live row i continues from the previous step's row parent[i] (caches reordered)."""
        ...
