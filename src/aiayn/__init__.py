"""aiayn: the Transformer of "Attention Is All You Need" (Vaswani et al., 2017) in PyTorch."""

# Lazy (PEP 562): `import aiayn` imports no torch, so the command line (aiayn/cli) can set OMP_WAIT_POLICY before
# torch loads libgomp, which reads it once. The public names are imported from their modules on first use.
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, imported eagerly
    from .inference.decoding import generate_lm, generate_seq2seq
    from .inference.quantize import PrecisionError, for_decoding
    from .io.huggingface import ConversionError, from_huggingface, to_huggingface
    from .io.loading import load
    from .io.model_folder import CheckpointError
    from .model.attention import KVCache, MultiHeadAttention, attend
    from .model.config import PRESETS, ModelConfig, RNNConfig
    from .model.embeddings import InputEmbedding, PositionalEncoding, RotaryPositions, sinusoidal_table
    from .model.layers import FeedForward, LayerCache, Stack, TransformerLayer
    from .model.masks import causal_mask, padding_mask
    from .model.models import Attentions, DecoderLM, EncoderLM, ModelOutput, Transformer
    from .model.recurrent import RecurrentSeq2Seq

__version__ = "0.1.0"

_MODULES = {  # the module that defines each public name (relative to this package)
    ".inference.decoding": ("generate_lm", "generate_seq2seq"),
    ".inference.quantize": ("PrecisionError", "for_decoding"),
    ".io.huggingface": ("ConversionError", "from_huggingface", "to_huggingface"),
    ".io.loading": ("load",),
    ".io.model_folder": ("CheckpointError",),
    ".model.attention": ("KVCache", "MultiHeadAttention", "attend"),
    ".model.config": ("PRESETS", "ModelConfig", "RNNConfig"),
    ".model.embeddings": ("InputEmbedding", "PositionalEncoding", "RotaryPositions", "sinusoidal_table"),
    ".model.layers": ("FeedForward", "LayerCache", "Stack", "TransformerLayer"),
    ".model.masks": ("causal_mask", "padding_mask"),
    ".model.models": ("Attentions", "DecoderLM", "EncoderLM", "ModelOutput", "Transformer"),
    ".model.recurrent": ("RecurrentSeq2Seq",),
}
_MODULE_OF = {name: module for module, names in _MODULES.items() for name in names}
# The subpackages the eager `import aiayn` loaded: `import aiayn; aiayn.io.loading.load_with_tokenizer` still works
_SUBPACKAGES = ("data", "inference", "io", "model", "runtime")

__all__ = [
    "Attentions", "CheckpointError", "ConversionError", "DecoderLM", "EncoderLM", "FeedForward", "InputEmbedding",
    "KVCache", "LayerCache", "ModelConfig", "ModelOutput", "MultiHeadAttention", "PRESETS", "PositionalEncoding",
    "PrecisionError", "RNNConfig", "RecurrentSeq2Seq", "RotaryPositions", "Stack", "Transformer", "TransformerLayer",
    "attend", "causal_mask", "for_decoding", "from_huggingface", "generate_lm", "generate_seq2seq", "load",
    "padding_mask", "sinusoidal_table",
    "to_huggingface",
]


def __getattr__(name: str) -> Any:
    """A public name or one of the subpackages above, on first use; AttributeError for any other name."""
    if name not in _MODULE_OF and name not in _SUBPACKAGES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # The first use loads every module, as the eager `import aiayn` did (torch is loading anyway): the same names,
    # subpackage attributes and model/services.py table as before, whichever name came first
    for module, names in _MODULES.items():
        loaded = importlib.import_module(module, __name__)
        globals().update({n: getattr(loaded, n) for n in names})  # later look-ups skip __getattr__
    return globals()[name] if name in _MODULE_OF else importlib.import_module(f".{name}", __name__)


def __dir__() -> list[str]:
    """The module's attributes, every public name and the subpackages above, imported or not."""
    return sorted({*globals(), *__all__, *_SUBPACKAGES})
