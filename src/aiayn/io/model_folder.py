"""Model folders: config.json + model.safetensors (+ tokenizer.json), written atomically, loaded with checks."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from ..data.tokenizer import TOKENIZER_FILE
from ..model import services
from ..model.config import CONFIG_CLASSES, MODEL_TYPES, ModelConfig
from .atomic import atomic_write, atomic_write_text

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_KEY = "tokenizer_vocab_sha256"  # in config.json: the vocabulary the model was saved with
# Fields a config.json must state: a missing one would silently take a default and change the model
# (options added to ModelConfig later may be absent and take their paper defaults).
REQUIRED_FIELDS = ("vocab_size", "d_model", "n_heads", "d_ff", "n_encoder_layers", "n_decoder_layers",
                   "max_positions", "pad_id", "bos_id", "eos_id", "norm", "positions", "activation",
                   "tie_embeddings", "scale_embeddings")


class CheckpointError(ValueError):
    """A model folder or file that cannot be loaded; the message names the file and the fix."""


def save_model(model: Any, path: str | Path, tokenizer: Any = None) -> Path:
    """Save a model (and optionally its tokenizer) into folder `path`; each file replaced atomically."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}
    atomic_write(folder / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
    config = {"model_type": model.model_type, **model.cfg.to_dict()}
    fingerprint = _fingerprint_or_none(tokenizer)
    if fingerprint is not None:
        config[TOKENIZER_KEY] = fingerprint
    atomic_write_text(folder / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True) + "\n")
    if tokenizer is not None:
        save_tokenizer(tokenizer, folder / TOKENIZER_FILE)
    return folder


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """SHA-256 of a tokenizer's vocabulary (token -> id), whatever the layout of its JSON file."""
    if isinstance(tokenizer, (str, Path)):
        tokenizer = Tokenizer.from_file(str(tokenizer))
    vocab = sorted(tokenizer.get_vocab(with_added_tokens=True).items(), key=lambda item: (item[1], item[0]))
    return hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode("utf-8")).hexdigest()


def _fingerprint_or_none(tokenizer: Any) -> str | None:
    """The tokenizer's fingerprint, or None if there is none or it cannot be read (then it is copied as is)."""
    if tokenizer is None:
        return None
    try:
        return tokenizer_fingerprint(tokenizer)
    except Exception:  # noqa: BLE001 - tokenizers raises a plain Exception for a file it cannot parse
        return None


def check_tokenizer(folder: str | Path, tokenizer: Any) -> None:
    """Raise CheckpointError if folder/config.json names another tokenizer vocabulary than `tokenizer`'s."""
    config_path = Path(folder) / CONFIG_FILE
    try:
        expected = json.loads(config_path.read_text(encoding="utf-8")).get(TOKENIZER_KEY)
    except (OSError, ValueError, AttributeError):
        return  # read_config reports a missing or broken config.json
    if expected is not None and expected != tokenizer_fingerprint(tokenizer):
        raise CheckpointError(f"{Path(folder) / TOKENIZER_FILE} is not the tokenizer this model was saved with "
                              f"(its vocabulary differs from the one {config_path} records); copy the "
                              f"{TOKENIZER_FILE} of the model's own run folder next to it")


def save_tokenizer(tokenizer: Any, path: Path) -> None:
    """Save a tokenizer (an object with .save(path) or a path to a tokenizer.json) atomically."""
    if isinstance(tokenizer, (str, Path)):
        atomic_write(path, lambda tmp: shutil.copyfile(tokenizer, tmp))
    else:
        atomic_write(path, lambda tmp: tokenizer.save(str(tmp)))


def read_config(folder: Path) -> tuple[str, ModelConfig]:
    """The model type and ModelConfig stored in folder/config.json, with clear errors."""
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(f"{config_path} is missing: a model folder needs {CONFIG_FILE} and {WEIGHTS_FILE} "
                              f"(written by model.save(folder))")
    try:
        values = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{config_path} is not valid JSON ({error}); re-save the model") from None
    if not isinstance(values, dict):
        raise CheckpointError(f"{config_path} must hold a JSON object of ModelConfig fields")
    model_type = values.pop("model_type", "transformer")
    values.pop(TOKENIZER_KEY, None)
    if model_type not in MODEL_TYPES:
        raise CheckpointError(f"{config_path}: unknown model_type {model_type!r}; expected one of "
                              f"{sorted(MODEL_TYPES)}")
    try:
        cfg = CONFIG_CLASSES.get(model_type, ModelConfig).from_dict(values)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{config_path}: {error}") from None
    missing = [name for name in REQUIRED_FIELDS if name not in values]
    if missing:
        raise CheckpointError(f"{config_path} lacks the field(s) {missing}: without them the model would be "
                              f"built with default values that may not match its weights; restore the "
                              f"config.json saved with the model (model.save writes every field)")
    return model_type, cfg


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file (never pickle), with a clear error if missing or corrupt."""
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the model folder has no weights; save the model again")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path} is truncated or corrupt ({error}); restore it or save the model again") \
            from None


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Copy state into model, naming missing, unexpected and mis-shaped tensors if they do not fit."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mis_shaped = [f"{name}: file {tuple(state[name].shape)} vs model {tuple(expected[name].shape)}"
                  for name in sorted(set(state) & set(expected)) if state[name].shape != expected[name].shape]
    if missing or unexpected or mis_shaped:
        parts = [f"missing {missing[:8]}{' ...' if len(missing) > 8 else ''}" if missing else "",
                 f"unexpected {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}" if unexpected else "",
                 f"wrong shapes {mis_shaped[:8]}" if mis_shaped else ""]
        raise CheckpointError(f"{source} does not fit its config.json: " + "; ".join(p for p in parts if p)
                              + ". The weights were saved from a different model; use the matching config.json")
    model.load_state_dict(state)


services.Services.save_model = save_model  # model.save() calls this (model/ imports nothing from io/)
