"""`aiayn import-hf`: a local Hugging Face checkpoint into an aiayn model folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..io.huggingface import from_huggingface
from .common import UserError, check_out_folder, user_errors, write_failed


def run(args: argparse.Namespace) -> None:
    """Convert a local Hugging Face checkpoint (BERT, GPT-2, OPT, Marian, BART, Pegasus) into an aiayn model folder."""
    check_out_folder(args.out)
    try:
        model = from_huggingface(args.folder)
    except user_errors() as error:  # ConversionError, or a CheckpointError for corrupt weights
        raise UserError(str(error)) from None
    tokenizer = Path(args.folder) / "tokenizer.json"
    try:
        out = model.save(args.out, tokenizer=tokenizer if tokenizer.is_file() else None)
    except OSError as error:  # WriteError, or a folder that cannot be made
        raise write_failed(error, args.out) from None
    info = model.cfg.extra["huggingface"]
    print(f"{info['model_type']} -> {model.model_type}: {model.num_parameters():,} parameters, "
          f"written to {out}")
    if info["dropped"]:
        print(f"  left out (no place in aiayn): {', '.join(info['dropped'])}")
    if info["untrained"]:
        print(f"  not in the checkpoint, randomly initialised: {', '.join(info['untrained'])}")
    if not tokenizer.is_file():
        print(f"  {args.folder} has no tokenizer.json: put one in {out} before using the model on text")


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The `aiayn import-hf` sub-command."""
    parser = commands.add_parser(
        "import-hf", help="convert a local Hugging Face checkpoint to an aiayn model",
        description=run.__doc__,
        epilog="example: aiayn import-hf ~/models/all-MiniLM-L6-v2 --out models/minilm")
    parser.add_argument("folder", help="Hugging Face folder: config.json + model.safetensors or .bin")
    parser.add_argument("--out", required=True, help="aiayn model folder to write")
    parser.set_defaults(run=run)
