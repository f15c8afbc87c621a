"""`aiayn generate`: continue a prompt with a GPT-style model."""

from __future__ import annotations

import argparse

from ..inference import options
from ..inference.text import generate_text
from .common import UserError, add_decoding_flags, load_model, set_threads


def run(args: argparse.Namespace) -> None:
    """Continue a prompt with a GPT-style model: sampling with temperature, top-k, top-p and a seed, or --greedy."""
    set_threads(args.threads)
    model, tokenizer = load_model(args.model, "generate", "decoder_lm", args.device)
    decoding = options.from_args(args, "generate")
    try:
        text = generate_text(model, tokenizer, args.prompt, **decoding)
    except ValueError as error:
        raise UserError(str(error)) from None
    print(args.prompt + text)


def add_parser(commands: argparse._SubParsersAction) -> None:
    """`aiayn generate MODEL_DIR ["prompt"] [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P]`."""
    parser = commands.add_parser(
        "generate", help="sample text from a GPT-style model (aiayn train --task lm)",
        description=run.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='example:\n  aiayn generate runs/shakespeare-char/model "ROMEO:" --max-new-tokens 300 --seed 1')
    parser.add_argument("model", metavar="MODEL_DIR", help="a DecoderLM folder (config.json, model.safetensors, "
                                                           "tokenizer.json)")
    parser.add_argument("prompt", nargs="?", default="\n", help="text to continue (default: a newline)")
    add_decoding_flags(parser, "generate")
    parser.set_defaults(run=run)
