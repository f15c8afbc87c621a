"""What the models hand on to the packages above them: searching (`model.generate`) and saving (`model.save`).

model/ imports nothing from inference/ or io/ (data flows one way: cli -> inference, io -> model). The convenience
methods stay on the models and call through this table, which inference/decoding.py and io/model_folder.py fill
when they are imported. `import aiayn` imports both, and importing any `aiayn.*` module runs `aiayn/__init__`
first, so the table is always full by the time a model exists; a missing entry is one clear RuntimeError.
"""

from __future__ import annotations

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


def provided(name: str) -> Any:
    """The function registered under `name`, or a RuntimeError naming the package to import."""
    function = getattr(Services, name)
    if function is None:
        raise RuntimeError(f"{name} is not registered: `import aiayn` (it imports the packages that provide it)")
    return function
