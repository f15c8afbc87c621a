"""`--init-from DIR`: a run that starts from a model's weights, with its tokenizer and architecture (not in the
paper). DIR is an aiayn model folder or a local Hugging Face one (BERT, GPT-2, OPT, Marian, BART)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from ..data.tokenizer import TokenizerError
from ..io.loading import KIND_NAMES, load_with_tokenizer
from ..io.model_folder import CheckpointError
from ..model.models import TransformerBase
from ..model.registry import for_task


class InitError(ValueError):
    """An --init-from folder or setting that cannot start the run; the message names it and the fix."""


def load_start(folder: str, task: str) -> tuple[TransformerBase, Tokenizer]:
    """The model (on the CPU) and tokenizer in `folder`, of the kind `task` trains; InitError if they do not fit."""
    try:
        return load_with_tokenizer(folder, "cpu", for_task(task).name, f"`aiayn train --task {task}`")
    except (CheckpointError, TokenizerError) as error:
        raise InitError(f"--init-from {folder}: {error}") from None


def named_settings(cfg: Any) -> dict[str, Any]:
    """The settings of cfg (a dataclass) that differ from their defaults: those a run names itself."""
    named = {}
    for f in dataclasses.fields(cfg):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        value = getattr(cfg, f.name)
        if value is not None and value != default:
            named[f.name] = value
    return named


def check_architecture(named: dict[str, Any], fields: dict[str, str], model: TransformerBase, folder: str,
                       recipe: tuple[str, dict[str, Any]] | None = None) -> None:
    """Refuse a named setting (setting -> ModelConfig field in `fields`) that differs from the model's value;
    `recipe` (its name and values) says which values a --recipe set, for the message to name it."""
    for setting, field in fields.items():
        if setting in named and named[setting] != getattr(model.cfg, field):
            flag, held = "--" + setting.replace("_", "-"), getattr(model.cfg, field)
            if recipe is not None and recipe[1].get(setting, object()) == named[setting]:
                raise InitError(f"--recipe {recipe[0]} sets {setting} {named[setting]}, which contradicts the "
                                f"--init-from model {folder}, whose {field} is {held}: give {flag} {held} (a flag "
                                f"wins over the recipe), or drop --recipe")
            raise InitError(f"{flag} {named[setting]} contradicts the --init-from model {folder}, whose {field} is "
                            f"{held}: the run takes that model's architecture; drop {flag}")


def describe(model: TransformerBase, tokenizer: Tokenizer, folder: str) -> str:
    """A log line: where the run starts."""
    source = model.cfg.extra.get("huggingface", {}).get("model_type")
    kind = f"Hugging Face {source} -> {KIND_NAMES[model.model_type]}" if source else KIND_NAMES[model.model_type]
    return (f"starting from {Path(folder).resolve()}: {kind} model, {model.num_parameters():,} parameters, "
            f"tokenizer of {tokenizer.get_vocab_size():,} tokens")
