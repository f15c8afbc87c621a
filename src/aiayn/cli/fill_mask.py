"""`aiayn fill-mask`: the likeliest fillers of each [MASK] with a BERT-style model."""

from __future__ import annotations

import argparse

from ..inference.text import fill_mask
from .common import UserError, add_device_flags, int_at_least, load_model, set_threads


def run(args: argparse.Namespace) -> None:
    """Print the most probable fillers of each [MASK] with their probabilities (BERT-style model)."""
    set_threads(args.threads)
    model, tokenizer = load_model(args.model, "fill-mask", "encoder_lm", args.device)
    try:
        results = fill_mask(model, tokenizer, args.text, top_k=args.top_k)
    except ValueError as error:
        raise UserError(str(error)) from None
    for n, candidates in enumerate(results, 1):
        if len(results) > 1:
            print(f"[MASK] {n}:")
        for candidate in candidates:
            print(f"{candidate.probability:8.4f}  {candidate.token}")


def add_parser(commands: argparse._SubParsersAction) -> None:
    """`aiayn fill-mask MODEL_DIR "text with [MASK]" [--top-k 5]`."""
    parser = commands.add_parser(
        "fill-mask", help="fill in [MASK] with a BERT-style model (aiayn train --task mlm)",
        description=run.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='example:\n  aiayn fill-mask runs/shakespeare-mlm/model "To be or not to [MASK]." --top-k 5')
    parser.add_argument("model", metavar="MODEL_DIR", help="an EncoderLM folder")
    parser.add_argument("text", help="text with one or more [MASK]")
    parser.add_argument("--top-k", type=int_at_least(1), default=5, help="how many candidates per [MASK] (default 5)")
    add_device_flags(parser)
    parser.set_defaults(run=run)
