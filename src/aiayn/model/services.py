"""What the models hand on to the packages above them: searching (`model.generate`) and saving (`model.save`).

model/ imports nothing from inference/ or io/ (data flows one way: cli -> inference, io -> model). The convenience
methods stay on the models and call through this table, which inference/decoding.py and io/model_folder.py fill
when they are imported. `import aiayn` is lazy (it imports no torch), so an entry still empty when a model first
needs it is filled by importing, by name, the module that provides it (PROVIDERS); still empty after that is one
clear RuntimeError.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

from torch import Tensor, nn


class Seq2SeqSearch(Protocol):
    """inference.decoding.generate_seq2seq: token ids without BOS/EOS/padding, one list per source row."""

    def __call__(self, model: Any, src: Tensor, beam_size: int = 4, length_penalty: float = 0.6,
                 max_new_tokens: int | None = None, **options: Any) -> list[list[int]]: ...


class LMSearch(Protocol):
    """inference.decoding.generate_lm: the new ids of each prompt row."""

    def __call__(self, model: Any, prompt_ids: Tensor, max_new_tokens: int = 100,
                 **options: Any) -> list[list[int]]: ...


class Saver(Protocol):
    """io.model_folder.save_model: config.json + model.safetensors (+ tokenizer.json) in a folder."""

    def __call__(self, model: nn.Module, path: str | Path, tokenizer: Any = None) -> Path: ...


class Services:
    """The functions the models delegate to; None until the package that defines them is imported."""

    generate_seq2seq: Seq2SeqSearch | None = None
    generate_lm: LMSearch | None = None
    save_model: Saver | None = None


# The module that fills each entry when imported; imported by name only when a model first needs the entry, so
# model/ still loads, and imports, nothing from the packages above it
PROVIDERS = {"generate_seq2seq": "aiayn.inference.decoding", "generate_lm": "aiayn.inference.decoding",
             "save_model": "aiayn.io.model_folder"}


def provided(name: str) -> Any:
    """The function registered under `name` (importing its provider first where none is yet), or a RuntimeError."""
    function = getattr(Services, name)
    if function is None:
        importlib.import_module(PROVIDERS[name])
        function = getattr(Services, name)
    if function is None:
        raise RuntimeError(f"{name} is not registered: importing {PROVIDERS[name]} did not register it")
    return function
