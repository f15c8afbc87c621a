"""The `aiayn` command line: one sub-command per job; exit 0 done, 1 user error, 2 bad usage."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import NoReturn

from ..runtime.log import print_always
from .errors import UserError

# OpenMP threads that spin while waiting (libgomp's default) lose 3x when another process holds a core; sleeping
# waiters lose 1.7x (docs/benchmarks.md, "Thread settings"). libgomp reads OMP_WAIT_POLICY once, when torch loads
# it: so this module imports no torch (nor does `import aiayn`), and main() sets the variable, where it is unset,
# before it imports the sub-commands (and with them torch). A value the user set is never overridden.
WAIT_POLICY = ("OMP_WAIT_POLICY", "PASSIVE")


def commands() -> tuple[ModuleType, ...]:
    """The sub-command modules, in the order `aiayn --help` lists them (imported here: they import torch)."""
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
        serve,
        sweep,
        train,
        translate,
    )

    return (demo, attention, import_hf, export, prepare, train, sweep, translate, evaluate, average, generate,
            fill_mask, serve)


def one_line(text: str) -> str:
    """text with each character a terminal would not print as itself (a newline, a control character in a path
    given on the command line) written as its escape, so that an error stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class OneLineParser(argparse.ArgumentParser):
    """argparse's parser whose usage errors are one line (the flag, what is wrong, where help is), exit 2."""

    def error(self, message: str) -> NoReturn:
        """Print `PROG: error: MESSAGE (see `PROG --help`)` on stderr and exit 2 (argparse prints the usage first)."""
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command (each a OneLineParser too)."""
    parser = OneLineParser(prog="aiayn", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in commands():
        command.add_parser(subparsers)
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
    if argv is None:  # the command line of this process: set the wait policy before torch loads (parse_args)
        # Where torch is loaded already (main() called from Python), this process keeps the policy it has; the
        # variable still reaches the processes it starts (sweep runs, workers). Nothing is re-executed.
        os.environ.setdefault(*WAIT_POLICY)
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    args.owns_process = argv is None  # the command line of this process: process-wide settings may apply
    print_always()  # the library's log lines (logger "aiayn") on stderr, as plain lines
    run: Callable[[argparse.Namespace], None] = args.run
    try:
        run(args)
    except UserError as error:
        print(f"aiayn {args.command}: error: {one_line(str(error))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"aiayn {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


__all__ = ["UserError", "build_parser", "main", "parse_args"]
