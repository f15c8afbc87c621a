"""Loading: aiayn.load (a model folder back into its model), and a model with its tokenizer for the commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from ..data.tokenizer import TokenizerError, check_fits, check_special_ids, read_tokenizer
from ..model.models import TransformerBase
from ..model.registry import MODEL_TYPES
from .huggingface import from_huggingface
from .model_folder import (
    CONFIG_FILE,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    check_tokenizer,
    load_state,
    read_config,
    read_weights,
)

# From model/registry.py's table: every model class a config.json's model_type names, and the types that
# translate (ids in, ids out through aiayn.inference.decoding.generate_seq2seq).
MODEL_CLASSES: dict[str, type[TransformerBase]] = {name: t.model_class for name, t in MODEL_TYPES.items()}
TRANSLATORS = tuple(name for name, t in MODEL_TYPES.items() if t.translator)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Load any aiayn model folder (config.json + model.safetensors); returns the model in eval mode."""
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a model folder (it does not exist or is a file); "
                              f"give the folder written by model.save() or `aiayn train`")
    model_type, cfg = read_config(folder)
    model = MODEL_CLASSES[model_type](cfg)
    load_state(model, read_weights(folder / WEIGHTS_FILE), folder / WEIGHTS_FILE)
    return model.to(map_location).eval()


KIND_NAMES = {name: t.described for name, t in MODEL_TYPES.items()}
TRAINED_BY = {name: t.trained_by for name, t in MODEL_TYPES.items()}


def load_with_tokenizer(path: str | Path, map_location: str | torch.device = "cpu", model_type: str | None = None,
                        purpose: str = "this") -> tuple[TransformerBase, Tokenizer]:
    """A model folder (aiayn's, or a Hugging Face one converted on the fly) and its tokenizer.json, checked to fit.

    model_type, when given, is the kind the caller needs ("transformer", "encoder_lm", "decoder_lm"; "transformer"
    takes any translator, the recurrent baseline too); purpose names the caller in that error. The tokenizer
    neither pads nor truncates: each text is encoded as it is (an over-long one is the model's error to report,
    never silently cut).
    """
    folder = Path(path)
    aiayn_folder = _is_aiayn_folder(folder)
    model = load(folder, map_location) if aiayn_folder else from_huggingface(folder).to(map_location).eval()
    translator = model_type == "transformer" and model.model_type in TRANSLATORS
    if model_type is not None and model.model_type != model_type and not translator:
        raise CheckpointError(f"{folder} holds {KIND_NAMES[model.model_type]} model; {purpose} needs "
                              f"{KIND_NAMES[model_type]} (a folder written by {TRAINED_BY[model_type]})")
    tokenizer_path = folder / TOKENIZER_FILE
    tokenizer = read_tokenizer(tokenizer_path)
    if model.model_type in TRANSLATORS:  # aiayn's translators: <pad> <s> </s> <unk> are ids 0-3
        check_special_ids(tokenizer, str(tokenizer_path))
        check_fits(tokenizer, model.cfg, str(tokenizer_path))
    elif tokenizer.get_vocab_size() > model.cfg.vocab_size:
        raise TokenizerError(f"{tokenizer_path} has {tokenizer.get_vocab_size()} tokens but the model only "
                             f"{model.cfg.vocab_size}: use the {TOKENIZER_FILE} saved with this model")
    if aiayn_folder:
        check_tokenizer(folder, tokenizer)  # the vocabulary fingerprint config.json records
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return model, tokenizer


def _is_aiayn_folder(folder: Path) -> bool:
    """True unless folder/config.json names a model_type aiayn does not have (a Hugging Face checkpoint)."""
    try:
        model_type = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8")).get("model_type", "transformer")
    except (OSError, ValueError, AttributeError):
        return True  # aiayn.load names the problem
    return model_type in MODEL_CLASSES
