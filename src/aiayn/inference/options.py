"""Every decoding option, declared once: the library's keywords, the commands' flags and their checks.

OPTIONS below is the one declaration. Each Option names a keyword of the library's searches
(`model.generate` / `generate_seq2seq`, `generate_lm`, `translate`), its type, its default (the paper's,
§6.1, where the paper says one), a one-line help, the searches that take it as a keyword (`library`) and the
commands that have it as a flag (`commands`). From it come:

- the flags of `aiayn translate`, `evaluate` and `generate` and their --help: `add_flags(parser, command)`,
  and the keywords those flags mean: `from_args(args, command)`;
- the keyword checks of the library: `names("seq2seq")`, `names("lm")` (an unknown keyword is a TypeError);
- training's BLEU decoding settings (`beam`, `length_penalty` in training/settings.py) take their defaults
  and help from here: `OPTIONS["beam_size"].default`;
- request checks of a server: `for_command("serve")` lists the options of `aiayn serve` (name, type, default,
  help: enough for a schema; serving/options.py makes them the fields of a request, except --precision and
  --workers, the server's flags), and `validate(values, "serve")` checks a dict of them, raising ValueError
  naming the option and what it allows, and returns the dict with the defaults filled in; `keywords(checked, "serve")`
  turns it into the library's keywords (translate(model, tok, texts, **keywords)).

Adding a decoding option is one `Option(...)` line here plus its reader in inference/decoding.py (or
translate()): its flag is `--name-with-dashes` (or `flag`), and every command listed gets it.

Precision has one name everywhere: `precision` ("fp32", the paper's; "bf16"; "int8"; "auto"), the `--precision`
flag and the `precision=` keyword (`dtype=` is its deprecated old keyword). A command resolves it once
(inference.quantize.resolve_precision) and searches the copy it made, so the library never resolves it again.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .quantize import DECODING_PRECISIONS

SEQ2SEQ, LM = "seq2seq", "lm"  # the library's searches: generate_seq2seq (and translate), generate_lm
TRANSLATORS = frozenset({"translate", "evaluate", "serve"})  # commands that search with a Transformer
ALL_TEXT = TRANSLATORS | {"generate"}


@dataclass(frozen=True)
class Option:
    """One decoding option: its keyword, type, default, help, the searches that take it and the commands with it."""

    name: str  # the library's keyword
    kind: type  # int, float, str or bool
    default: Any  # the paper's where it says one; None: see `none`
    help: str
    library: frozenset[str] = frozenset({SEQ2SEQ, LM})
    commands: frozenset[str] = frozenset()
    flag: str = ""  # the command-line flag, when not --name-with-dashes
    none: str = ""  # what None means, where None is allowed
    choices: tuple[Any, ...] | None = None
    bounds: str | None = None  # numbers: ">= 0", ">= 1", "> 0", "(0, 1]"
    command_defaults: tuple[tuple[str, Any], ...] = ()  # (command, default) where a command's default differs
    metavar: str | None = None

    @property
    def cli_flag(self) -> str:
        """The flag: --name-with-dashes unless named."""
        return self.flag or "--" + self.name.replace("_", "-")

    def default_for(self, command: str) -> Any:
        """This option's default in `command` (the library's where the command does not name its own)."""
        return dict(self.command_defaults).get(command, self.default)

    def check(self, value: Any) -> Any:
        """The value, checked (an int taken as a float where a float is asked for); ValueError says what is allowed."""
        if value is None:
            if self.none:
                return None
            raise ValueError(f"{self.name} must be {self.allowed()}, got None")
        if self.kind is bool and not isinstance(value, bool) or self.kind is int and not _is_int(value) or \
                self.kind is float and not (_is_int(value) or isinstance(value, float)) or \
                self.kind is str and not isinstance(value, str):
            raise ValueError(f"{self.name} must be {self.allowed()}, got {value!r}")
        value = float(value) if self.kind is float else value
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{self.name} must be one of {list(self.choices)}, got {value!r}")
        if self.bounds and not _within(value, self.bounds):
            raise ValueError(f"{self.name} must be {self.allowed()}, got {value!r}")
        return value

    def parse(self, text: str) -> Any:
        """A flag's text as this option's value (argparse shows the ArgumentTypeError as one line, exit 2)."""
        try:
            value = self.kind(text) if self.kind in (int, float) else text
            return self.check(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {self.allowed()}, got {text!r}") from None

    def allowed(self) -> str:
        """The values allowed, in words."""
        if self.choices is not None:
            return f"one of {list(self.choices)}"
        noun = {int: "an integer", float: "a number", str: "a text", bool: "true or false"}[self.kind]
        if self.bounds:
            noun += f" in {self.bounds}" if self.bounds[0] in "[(" else f" {self.bounds}"
        return noun + (" or none" if self.none else "")

    def help_for(self, command: str) -> str:
        """--help text: the help and the command's default."""
        default = self.default_for(command)
        if isinstance(default, bool):
            return self.help
        shown = self.none if default is None else str(default)
        return f"{self.help} (default {shown})"


def _is_int(value: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _within(value: float, bounds: str) -> bool:
    """value within ">= 1", "> 0", "(0, 1]"-style bounds."""
    if bounds[0] in "[(":
        low, high = (_number(x) for x in bounds[1:-1].split(","))
        return (value >= low if bounds[0] == "[" else value > low) and \
            (value <= high if bounds[-1] == "]" else value < high)
    op, number = bounds.split()
    return value >= _number(number) if op == ">=" else value > _number(number)


def _number(text: str) -> int | float:
    """A bound's number: an int where it is one (so large integer bounds compare exactly), else a float."""
    try:
        return int(text)
    except ValueError:
        return float(text)


OPTIONS: dict[str, Option] = {o.name: o for o in (
    # --- search (§6.1: beam 4, length penalty alpha 0.6, maximum output length = input length + 50)
    Option("beam_size", int, 4, "beam size (§6.1); 1: greedy search (or sampling, for a language model)",
           flag="--beam", bounds=">= 1", commands=ALL_TEXT, command_defaults=(("generate", 1),), metavar="N"),
    Option("greedy", bool, False, "greedy search (beam 1)", library=frozenset(),
           commands=ALL_TEXT),
    Option("length_penalty", float, 0.6, "length penalty alpha: beam scores are log P / ((5 + |Y|) / 6)^alpha "
           "(§6.1; 0: none)", bounds=">= 0", commands=ALL_TEXT, metavar="ALPHA"),
    Option("length_penalty_form", str, "gnmt", "gnmt: ((5 + |Y|) / 6)^alpha, the paper's; plain: |Y|^alpha (Hugging "
           "Face, fairseq)", choices=("gnmt", "plain")),
    Option("max_new_tokens", int, None, "most new tokens per row", none="source length + 50 (§6.1)", bounds=">= 0",
           commands=frozenset({"generate"}), command_defaults=(("generate", 500),), metavar="N"),
    Option("min_length", int, 0, "no EOS before this many new tokens", bounds=">= 0"),
    Option("n_best", int, 1, "hypotheses per source, best first (<= beam size)", library=frozenset({SEQ2SEQ}),
           bounds=">= 1", commands=frozenset({"serve"})),
    Option("return_scores", bool, False, "return Hypothesis objects (tokens, log-probability, score)",
           library=frozenset({SEQ2SEQ}), commands=frozenset({"serve"})),
    # --- sampling (instead of searching)
    Option("do_sample", bool, False, "sample instead of searching (see --top-p, --top-k)", flag="--sample",
           commands=TRANSLATORS),
    Option("temperature", float, 1.0, "with sampling: softmax temperature", bounds="> 0", commands=ALL_TEXT,
           metavar="T"),
    Option("top_k", int, None, "with sampling: among the k likeliest tokens", none="all", bounds=">= 1",
           commands=ALL_TEXT, metavar="K"),
    Option("top_p", float, None, "with sampling: nucleus, the smallest set with probability >= p",
           none="off", bounds="(0, 1]", commands=ALL_TEXT, metavar="P"),
    Option("seed", int, None, "with sampling: a seed makes the output reproducible", none="random",
           bounds="[-9223372036854775808, 18446744073709551615]",  # the seeds torch.Generator.manual_seed takes
           commands=ALL_TEXT, metavar="N"),
    Option("generator", object, None, "with sampling: a torch.Generator (or seed)", none="torch's global one"),
    Option("mask", object, None, "a (B, T) bool keep-mask of a padded prompt tensor", library=frozenset({LM}),
           none="from pad_id"),
    # --- how the search runs (same output)
    Option("precision", str, "fp32", "weights for decoding: fp32 (the paper's), bf16, int8 (CPU: int8 linear "
           "layers), or auto (the fastest that keeps quality on this machine: int8 on CPUs with VNNI, else bf16 "
           "where it is native, else fp32)", choices=DECODING_PRECISIONS, commands=TRANSLATORS),
    Option("threads", int, None, "intra-op threads of this search", none="torch's count",
           bounds=">= 1"),
    Option("workers", int, 1, "processes that search batches at once, each on one thread (CPU, Linux): on N "
           "cores, --workers N translates a file faster than N threads of one search (docs/benchmarks.md)",
           library=frozenset({"translate"}), bounds=">= 1", commands=TRANSLATORS, metavar="N"),
)}

DEPRECATED = {"dtype": "precision"}  # old keyword -> its one name now
# Options that were removed, with why and what to use: calling them is one clear error, not "unknown option".
# (The code is in git history: e4e2b6c has inference/static_step.py and inference/speculative.py.)
REMOVED = {
    "compile": "removed: each batch shape compiled for 33-98 s and eager int8 searched faster than the compiled "
               "fp32 step (docs/benchmarks.md, 'What the speed paths buy'); use precision='int8' (--precision int8)",
    "draft": "removed: drafted greedy search was 0.95x plain fp32 greedy at batch 1 and slower than int8 "
             "(docs/benchmarks.md, 'What the speed paths buy'); use precision='int8' (--precision int8)",
    "draft_tokens": "removed with draft= (drafted greedy search); use precision='int8' (--precision int8)",
}


def names(search: str) -> set[str]:
    """The keywords `search` ("seq2seq", "lm", "translate") takes besides its positional arguments."""
    wanted = {search} | ({SEQ2SEQ} if search == "translate" else set())
    return {o.name for o in OPTIONS.values() if o.library & wanted} | set(DEPRECATED)


def for_command(command: str) -> list[Option]:
    """The options `command` ("translate", "evaluate", "generate", "serve") offers, in declaration order."""
    return [o for o in OPTIONS.values() if command in o.commands]


def validate(values: dict[str, Any], command: str) -> dict[str, Any]:
    """`values` checked against `command`'s options (ValueError naming the first bad one), defaults filled in."""
    offered = {o.name: o for o in for_command(command)}
    unknown = sorted(set(values) - set(offered))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}: {command} takes {sorted(offered)}")
    return {name: option.check(values[name]) if name in values else option.default_for(command)
            for name, option in offered.items()}


class _Removed(argparse.Action):
    """A removed option's flag (hidden): argparse's one-line usage error saying why and what to use (exit 2)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        """Refuse the flag."""
        parser.error(f"{option_string} was {REMOVED[self.dest]}")


REMOVED_FLAGS = {"compile": "--compile", "draft": "--draft"}  # the commands that had them: translate, evaluate


def add_flags(parser: argparse.ArgumentParser, command: str, skip: Iterable[str] = ()) -> None:
    """The flags of `command`'s options, with their defaults and --help (and removed ones, refused)."""
    if command in ("translate", "evaluate"):
        for name, flag in REMOVED_FLAGS.items():
            parser.add_argument(flag, dest=name, action=_Removed, nargs="?", default=argparse.SUPPRESS,
                                help=argparse.SUPPRESS)
    for option in for_command(command):
        if option.name in skip:
            continue
        if option.kind is bool:
            parser.add_argument(option.cli_flag, dest=option.name, action="store_true",
                                help=option.help_for(command))
            continue
        parser.add_argument(option.cli_flag, dest=option.name, type=option.parse, default=option.default_for(command),
                            choices=option.choices, metavar=option.metavar, help=option.help_for(command))
        if option.name == "length_penalty":  # its hidden old name
            parser.add_argument("--alpha", dest="length_penalty", type=option.parse, default=argparse.SUPPRESS,
                                help=argparse.SUPPRESS)


def from_args(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """The library keywords that `command`'s flags mean (see keywords)."""
    return keywords(vars(args), command)


def keywords(values: dict[str, Any], command: str) -> dict[str, Any]:
    """The library keywords that `command`'s option values mean (from flags, or validate()'s dict of a request);
    left out: defaults that need no keyword, and precision (the command resolves it once and searches the copy
    it made)."""
    out = {o.name: values.get(o.name, o.default_for(command)) for o in for_command(command)
           if o.name not in ("greedy", "precision")}
    if command == "generate":  # a language model samples unless greedy (or beam > 1)
        out["do_sample"] = not values.get("greedy") and out.get("beam_size", 1) == 1
    if values.get("greedy") and "beam_size" in out:
        out["beam_size"] = 1
    if not out.get("do_sample"):  # the sampling options mean something with sampling only
        for name in ("do_sample", "temperature", "top_k", "top_p", "seed"):
            out.pop(name, None)
    return {name: value for name, value in out.items()
            if value is not None and value is not False and not (name in ("workers", "n_best") and value == 1)}
