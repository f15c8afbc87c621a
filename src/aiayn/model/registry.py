"""Every model type, declared once: config.json's model_type -> class, config class, task and what it supports.

io/loading.py (aiayn.load, the commands' kind checks and their messages) and inference/quantize.py (which types
have an int8 copy) read this table. Adding a model type: its module, one `ModelType(...)` line here, and its
config class in model/config.py's MODEL_TYPES / CONFIG_CLASSES where it has its own (tests/test_registry.py holds
them equal). Not yet read from here (#34's plan): io/huggingface.py's and io/export.py's tuples of exportable
types, training/init_from.py's TASK_KINDS, training/translation.py's ARCHS and viz/collect.py's type compares.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import ModelConfig, RNNConfig
from .models import DecoderLM, EncoderLM, Transformer, TransformerBase
from .recurrent import RecurrentSeq2Seq


@dataclass(frozen=True)
class ModelType:
    """One model type: its class and config class, the task that trains it, and what it supports."""

    name: str  # config.json's "model_type" and the class's model_type
    model_class: type[TransformerBase]
    config_class: type[ModelConfig]
    task: str  # `aiayn train --task` that trains it
    described: str  # as an error message names it: "an encoder-decoder"
    trained_by: str  # the command that writes such a folder
    translator: bool = False  # ids in, ids out through inference.decoding.generate_seq2seq (translate, serve)
    int8: bool = False  # inference.quantize has an int8 copy of it


MODEL_TYPES: dict[str, ModelType] = {t.name: t for t in (
    ModelType("transformer", Transformer, ModelConfig, "translate", "an encoder-decoder", "`aiayn train`",
              translator=True, int8=True),
    ModelType("encoder_lm", EncoderLM, ModelConfig, "mlm", "an EncoderLM", "`aiayn train --task mlm`"),
    ModelType("decoder_lm", DecoderLM, ModelConfig, "lm", "a DecoderLM", "`aiayn train --task lm`"),
    ModelType("rnn", RecurrentSeq2Seq, RNNConfig, "translate", "a recurrent encoder-decoder",
              "`aiayn train --arch rnn`", translator=True),
)}
