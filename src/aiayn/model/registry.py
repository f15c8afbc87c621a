"""Every model type, declared once: config.json's model_type -> class, config class, task and what it supports.

Read by io/loading.py (aiayn.load, the commands' kind checks and their messages), inference/quantize.py (which
types have an int8 copy), training/init_from.py (the type each task starts from), training/translation.py and
settings.py (the translators `--arch` chooses), and viz/collect.py (encoder-decoder or one stack). Adding a model
type: its module, one `ModelType(...)` line here, and its name in model/config.py's MODEL_TYPES (with its config
class in CONFIG_CLASSES where it has its own); tests/test_registry.py holds them equal.

hf_families, exports, pipeline, hf_auto and card_kind are what io/huggingface.py and io/export.py convert and
write; translator, causal_lm and encoder_decoder are what `aiayn serve` (cli/serve.py, serving/) offers.
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
    causal_lm: bool = False  # continues a prompt through inference.decoding.generate_lm (generate, serve's /generate)
    int8: bool = False  # inference.quantize has an int8 copy of it
    encoder_decoder: bool = False  # reads a source (ids + EOS) and a target; else one stack reads the text
    hf_families: tuple[str, ...] = ()  # Hugging Face model_types it converts to and from (io/huggingface.py)
    exports: tuple[str, ...] = ()  # `aiayn export --to` targets (io/export.py)
    pipeline: str = ""  # the Hugging Face pipeline_tag of its model card
    hf_auto: str = ""  # the transformers Auto class that loads its Hugging Face export
    card_kind: str = ""  # its exported model card's first words: "An encoder-decoder translator"


MODEL_TYPES: dict[str, ModelType] = {t.name: t for t in (
    ModelType("transformer", Transformer, ModelConfig, "translate", "an encoder-decoder", "`aiayn train`",
              translator=True, int8=True, encoder_decoder=True, hf_families=("marian", "bart", "pegasus"),
              exports=("hf", "ctranslate2"), pipeline="translation", hf_auto="AutoModelForSeq2SeqLM",
              card_kind="An encoder-decoder translator"),
    ModelType("encoder_lm", EncoderLM, ModelConfig, "mlm", "an EncoderLM", "`aiayn train --task mlm`",
              hf_families=("bert",), exports=("hf",), pipeline="fill-mask", hf_auto="AutoModelForMaskedLM",
              card_kind="A BERT-style masked language model (EncoderLM)"),
    ModelType("decoder_lm", DecoderLM, ModelConfig, "lm", "a DecoderLM", "`aiayn train --task lm`", causal_lm=True,
              hf_families=("gpt2", "opt"), exports=("hf", "ctranslate2"), pipeline="text-generation",
              hf_auto="AutoModelForCausalLM", card_kind="A GPT-style language model (DecoderLM)"),
    ModelType("rnn", RecurrentSeq2Seq, RNNConfig, "translate", "a recurrent encoder-decoder",
              "`aiayn train --arch rnn`", translator=True, encoder_decoder=True),
)}


def for_task(task: str) -> ModelType:
    """The type `aiayn train --task task` builds by default (the first entry of that task: the paper's first)."""
    return next(t for t in MODEL_TYPES.values() if t.task == task)


def of_task(task: str) -> tuple[str, ...]:
    """The names of every type a task trains: translate's are the `--arch` choices."""
    return tuple(name for name, t in MODEL_TYPES.items() if t.task == task)


def of_model(model: TransformerBase) -> ModelType:
    """The entry of a model (its class's model_type)."""
    return MODEL_TYPES[model.model_type]
