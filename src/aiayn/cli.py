"""The `aiayn` command line: one sub-command per job; exit 0 done, 1 user error, 2 bad usage."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence


class UserError(Exception):
    """An error the user can fix; printed as one line without a traceback (exit code 1)."""


def cmd_demo(args: argparse.Namespace) -> None:
    """Build the paper's base model, compare its size with the paper's, translate with random weights."""
    import torch

    from .config import ModelConfig
    from .models import Transformer

    torch.manual_seed(args.seed)
    cfg = ModelConfig.preset("paper-base", vocab_size=37000)
    model = Transformer(cfg).eval()
    n = model.num_parameters()
    print(f"paper-base: {n:,} parameters ({n / 1e6:.1f}M; the paper's Table 3 gives 65M)")
    src = torch.randint(3, cfg.vocab_size, (3, 12))
    hyp = model.generate(src, beam_size=1, max_new_tokens=10)
    for row, out in zip(src.tolist(), hyp):
        print(f"  {row[:6]}... -> {out} (random weights: noise until trained)")


def cmd_attention(args: argparse.Namespace) -> None:
    """Draw a model's attention for one sentence: PNG heatmaps (and an HTML explorer with --html)."""
    from .viz import attention_command

    attention_command(args)


def add_attention_parser(commands: argparse._SubParsersAction) -> None:
    """`aiayn attention MODEL_DIR "text" [--target "..."] [--html FILE] [--out DIR]`."""
    parser = commands.add_parser(
        "attention", help="draw attention heatmaps (PNG) and an HTML explorer for one sentence",
        description=cmd_attention.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               '  aiayn attention runs/en-es/model "The cat sat on the mat." --html pictures/explorer.html\n'
               '  aiayn attention runs/en-es/model "The cat sat on the mat." --kind cross --layer -1 --head mean\n'
               '  aiayn attention MINILM_DIR "The animal didn\'t cross the street because it was too tired" '
               "--focus it")
    parser.add_argument("model_dir", metavar="MODEL_DIR",
                        help="an aiayn model folder (config.json, model.safetensors, tokenizer.json)")
    parser.add_argument("text", metavar="TEXT", help="the source sentence (EncoderLM/DecoderLM: the text)")
    parser.add_argument("--target", default=None,
                        help="the target sentence (encoder-decoder only); default: the model's own translation")
    parser.add_argument("--out", default="attention", metavar="DIR",
                        help="folder for the PNGs (default: ./attention)")
    parser.add_argument("--html", default=None, metavar="FILE", help="also write the HTML attention explorer")
    parser.add_argument("--focus", default=None, metavar="TOKEN",
                        help="also draw where this token (a word or a position) attends in every layer")
    parser.add_argument("--kind", choices=("encoder_self", "decoder_self", "cross"), default=None,
                        help="draw only this kind of attention (default: every kind the model has)")
    parser.add_argument("--layer", type=int, default=None,
                        help="draw only this layer (0 is the first, -1 the last; default: every layer)")
    parser.add_argument("--head", default=None, metavar="H|mean",
                        help="draw only head H, or 'mean' for the mean over heads (default: a grid of all)")
    parser.add_argument("--beam", type=int, default=4,
                        help="beam size for the model's own translation (default 4, as in §6.1)")
    parser.set_defaults(run=cmd_attention)
def cmd_import_hf(args: argparse.Namespace) -> None:
    """Convert a local Hugging Face checkpoint (BERT, GPT-2, Marian, BART) into an aiayn model folder."""
    from pathlib import Path

    from .interop import ConversionError, from_huggingface

    try:
        model = from_huggingface(args.folder)
    except ConversionError as error:
        raise UserError(str(error)) from None
    tokenizer = Path(args.folder) / "tokenizer.json"
    out = model.save(args.out, tokenizer=tokenizer if tokenizer.is_file() else None)
    info = model.cfg.extra["huggingface"]
    print(f"{info['model_type']} -> {model.model_type}: {model.num_parameters():,} parameters, "
          f"written to {out}")
    if info["dropped"]:
        print(f"  left out (no place in aiayn): {', '.join(info['dropped'])}")
    if info["untrained"]:
        print(f"  not in the checkpoint, randomly initialised: {', '.join(info['untrained'])}")
    if not tokenizer.is_file():
        print(f"  {args.folder} has no tokenizer.json: put one in {out} before using the model on text")


def add_import_hf_parser(commands: argparse._SubParsersAction) -> None:
    """The `aiayn import-hf` sub-command."""
    parser = commands.add_parser(
        "import-hf", help="convert a local Hugging Face checkpoint to an aiayn model",
        description=cmd_import_hf.__doc__,
        epilog="example: aiayn import-hf ~/models/all-MiniLM-L6-v2 --out models/minilm")
    parser.add_argument("folder", help="Hugging Face folder: config.json + model.safetensors or .bin")
    parser.add_argument("--out", required=True, help="aiayn model folder to write")
    parser.set_defaults(run=cmd_import_hf)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="aiayn", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="build paper-base and translate with random weights",
                               description=cmd_demo.__doc__)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=cmd_demo)
    add_attention_parser(commands)
    add_import_hf_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `aiayn` and `python -m aiayn`."""
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], None] = args.run
    try:
        run(args)
    except UserError as error:
        print(f"aiayn {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"aiayn {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
