"""`aiayn average`: the mean of a run's last k checkpoints as one model folder (§6.1)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..io.loading import load
from ..io.model_folder import TOKENIZER_FILE, save_model
from ..training.checkpoints import average_checkpoints, list_checkpoints
from .common import UserError, check_out_folder, int_at_least, user_errors, write_failed


def run(args: argparse.Namespace) -> None:
    """Average the weights of a run's last k checkpoints into one model folder (§6.1)."""
    check_out_folder(args.out)
    checkpoints = list_checkpoints(args.run_dir)
    if not checkpoints:
        raise UserError(f"{args.run_dir} has no checkpoints/step_N folders: give a run folder written by `aiayn train`")
    chosen = checkpoints[-args.last:]
    try:
        model = load(chosen[-1])
        state = average_checkpoints(chosen)
    except user_errors() as error:
        raise UserError(str(error)) from None
    model.load_state_dict(state)
    tokenizer = chosen[-1] / TOKENIZER_FILE
    try:
        save_model(model, Path(args.out), tokenizer if tokenizer.is_file() else None)
    except OSError as error:  # WriteError, or a folder that cannot be made
        raise write_failed(error, args.out) from None
    names = ", ".join(c.name for c in chosen)
    print(f"averaged {len(chosen)} checkpoint(s) ({names}) into {args.out}")
    if len(chosen) < args.last:
        print(f"note: asked for {args.last} but the run keeps only {len(chosen)}", file=sys.stderr)


def add_parser(commands: argparse._SubParsersAction) -> None:
    """`aiayn average RUN_DIR --last 5 --out MODEL_DIR`."""
    parser = commands.add_parser(
        "average", help="average the last k checkpoints of a run (§6.1)", description=run.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  aiayn average runs/kjv-en-es --last 5 --out runs/kjv-en-es/averaged")
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--last", type=int_at_least(1), default=5, help="how many of the last checkpoints (default 5; "
                                                            "the paper averaged the last 5 for base models)")
    parser.add_argument("--out", required=True, metavar="MODEL_DIR", help="where to write the averaged model")
    parser.set_defaults(run=run)
