"""aiayn.load: a model folder (config.json + model.safetensors) back into the model it was saved from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..model.models import MODEL_CLASSES
from .model_folder import WEIGHTS_FILE, CheckpointError, load_state, read_config, read_weights


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
