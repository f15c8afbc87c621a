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
