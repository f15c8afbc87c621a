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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="aiayn", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="build paper-base and translate with random weights",
                               description=cmd_demo.__doc__)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=cmd_demo)
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
