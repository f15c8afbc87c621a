"""`aiayn generate`: continue a prompt with a GPT-style model."""

from __future__ import annotations

import argparse

from ..inference.text import generate_text
from .common import UserError, load_lm, set_threads


def run(args: argparse.Namespace) -> None:
    """Continue a prompt with a GPT-style model: sampling with temperature, top-k, top-p and a seed."""
    set_threads(args.threads)
    model, tokenizer = load_lm(args.model, "decoder_lm", args.device, "generate")
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
    parser.add_argument("--max-new-tokens", type=int, default=500, help="default 500")
    parser.add_argument("--temperature", type=float, default=1.0, help="softmax temperature (default 1.0)")
    parser.add_argument("--top-k", type=int, default=0, help="sample among the k most probable (0: all)")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus sampling: smallest set with "
                                                                   "probability >= p (default: off)")
    parser.add_argument("--seed", type=int, default=None, help="a seed makes the output reproducible")
    parser.add_argument("--greedy", action="store_true", help="always the most probable token (no sampling)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda")
    parser.set_defaults(run=run)
