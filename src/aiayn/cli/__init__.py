"""The `aiayn` command line: one sub-command per job; exit 0 done, 1 user error, 2 bad usage."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ..runtime.log import print_always
from . import (
    attention,
    average,
    demo,
    evaluate,
    export,
    fill_mask,
    generate,
    import_hf,
    prepare,
    sweep,
    train,
    translate,
)
from .common import UserError

COMMANDS = (demo, attention, import_hf, export, prepare, train, sweep, translate, evaluate, average, generate,
            fill_mask)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="aiayn", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The sub-command and its arguments; options and positional text may come in any order."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if argv and argv[0] in commands.choices:  # intermixed: `translate MODEL --greedy "text"` works too
        args = commands.choices[argv[0]].parse_intermixed_args(argv[1:])
        args.command = argv[0]
        return args
    return parser.parse_args(argv)  # no sub-command (or --help): argparse's usage and errors


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `aiayn` and `python -m aiayn`."""
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    args.owns_process = argv is None  # the command line of this process: process-wide settings may apply
    print_always()  # the library's log lines (logger "aiayn") on stderr, as plain lines
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


__all__ = ["UserError", "build_parser", "main", "parse_args"]
