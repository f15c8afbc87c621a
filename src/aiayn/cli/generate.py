"""`aiayn generate`: continue a prompt with a GPT-style model."""

from __future__ import annotations

import argparse

from ..inference.text import generate_text
from .common import UserError, add_device_flags, add_sampling_flags, int_at_least, load_model, set_threads


def run(args: argparse.Namespace) -> None:
    """Continue a prompt with a GPT-style model: sampling with temperature, top-k, top-p and a seed."""
    set_threads(args.threads)
    model, tokenizer = load_model(args.model, "generate", "decoder_lm", args.device)
    options = {"do_sample": not args.greedy, "temperature": args.temperature, "top_k": args.top_k or None,
               "top_p": args.top_p, "seed": args.seed}
    if args.greedy:
        options = {}
    try:
        text = generate_text(model, tokenizer, args.prompt, max_new_tokens=args.max_new_tokens, **options)
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
    parser.add_argument("--max-new-tokens", type=int_at_least(0), default=500, help="default 500")
    add_sampling_flags(parser)
    parser.add_argument("--greedy", action="store_true", help="always the most probable token (no sampling)")
    add_device_flags(parser)
    parser.set_defaults(run=run)
