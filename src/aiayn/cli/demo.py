"""`aiayn demo`: build the paper's base model and translate with random weights."""

from __future__ import annotations

import argparse

import torch

from ..model.config import ModelConfig
from ..model.models import Transformer
from .common import seed_value


def run(args: argparse.Namespace) -> None:
    """Build the paper's base model, compare its size with the paper's, translate with random weights."""
    torch.manual_seed(args.seed)
    cfg = ModelConfig.preset("paper-base", vocab_size=37000)
    model = Transformer(cfg).eval()
    n = model.num_parameters()
    print(f"paper-base: {n:,} parameters ({n / 1e6:.1f}M; the paper's Table 3 gives 65M)")
    src = torch.randint(3, cfg.vocab_size, (3, 12))
    hyp = model.generate(src, beam_size=1, max_new_tokens=10)
    for row, out in zip(src.tolist(), hyp):
        print(f"  {row[:6]}... -> {out} (random weights: noise until trained)")


def add_parser(commands: argparse._SubParsersAction) -> None:
    """`aiayn demo [--seed N]`."""
    parser = commands.add_parser("demo", help="build paper-base and translate with random weights",
                                 description=run.__doc__, epilog="example: aiayn demo --seed 1")
    parser.add_argument("--seed", type=seed_value, default=0, help="seed of the random weights (default 0)")
    parser.set_defaults(run=run)
