"""What the sub-commands share: the one-line user error, model loading, decoding and thread flags."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..data.corpus import CorpusError
from ..data.tokenizer import TokenizerError
from ..inference.quantize import DECODING_PRECISIONS, PrecisionError, for_decoding, resolve_precision
from ..inference.static_step import check_compilable, decoding_copy
from ..inference.workers import workers_problem
from ..io.atomic import WriteError
from ..io.loading import load_with_tokenizer
from ..io.model_folder import CheckpointError
from ..runtime.device import DeviceError, resolve_device
from ..training.trainer import TrainingError


class UserError(Exception):
    """An error the user can fix; printed as one line without a traceback (exit code 1)."""


def user_errors() -> tuple[type[Exception], ...]:
    """The library's user-fixable errors, shown by the CLI as one line."""
    return CorpusError, CheckpointError, DeviceError, TokenizerError, TrainingError, WriteError


def check_out_folder(path: str | Path, flag: str = "--out") -> None:
    """Refuse (one line) a folder to write into that is a file or lies under a file, before any work."""
    if not str(path).strip():
        raise UserError(f"{flag} is empty: name the folder to write into")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{flag} {path} is a file: give a folder to write into (a new or an existing one)")
    _check_parents(folder, flag, path)


def check_out_file(path: str | Path, flag: str = "--output") -> None:
    """Refuse (one line) a file to write that is a folder or lies under a file, before any work."""
    if not str(path).strip():
        raise UserError(f"{flag} is empty: name the file to write")
    file = Path(path)
    if file.is_dir():
        raise UserError(f"{flag} {path} is a folder: give a file to write into, e.g. {file / 'output.txt'}")
    _check_parents(file, flag, path)


def _check_parents(path: Path, flag: str, given: str | Path) -> None:
    """Refuse a path whose nearest existing ancestor is not a folder."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{flag} {given}: {parent} is a file, not a folder: write somewhere else")
            return


def write_failed(error: OSError, path: str | Path) -> UserError:
    """The one-line error for a failed write: a WriteError's own message, else the folder and the reason."""
    if isinstance(error, WriteError):
        return UserError(str(error))
    return UserError(f"could not write {path}: {error.strerror or error}; check the folder is writable, or write "
                     f"elsewhere")


def set_threads(threads: int) -> None:
    """torch.set_num_threads when asked."""
    if threads:
        torch.set_num_threads(threads)


def load_model(folder: str, command: str, model_type: str | None = None, device: str = "auto") -> tuple[Any, Any]:
    """The model in folder (aiayn's or a Hugging Face one) and its tokenizer, checked to fit; errors as one line.

    model_type, when given, is the kind the command needs ("transformer", "encoder_lm", "decoder_lm").
    """
    try:
        return load_with_tokenizer(folder, resolve_device(device), model_type, f"`aiayn {command}`")
    except user_errors() as error:
        raise UserError(str(error)) from None


def decoding_model(model: Any, precision: str, compiled: bool = False, workers: int = 1) -> tuple[Any, str]:
    """The model to search with in `precision` (fp32|bf16|int8|auto) and the precision chosen; errors as one line.

    compiled: the search will run on the compiled fixed-shape step (--compile), which refuses some precisions;
    workers: processes searching batches at once (--workers), checked here, before any work.
    """
    device = next(model.parameters()).device
    problem = workers_problem(workers, device, compiled, cli=True)
    if problem is not None:
        raise UserError(problem)
    try:
        chosen = resolve_precision(precision, device)
        if compiled:  # int8 then runs weight-only (fbgemm's kernels cannot be compiled)
            check_compilable(model, flag="--compile")
            return decoding_copy(model, chosen), chosen
        return for_decoding(model, chosen), chosen
    except (PrecisionError, ValueError) as error:
        raise UserError(str(error)) from None


def draft_model(model: Any, args: argparse.Namespace, precision: str) -> Any:
    """The copy of the loaded (fp32) model that --draft names, or None; impossible settings as one line."""
    if getattr(args, "draft", None) is None:
        return None
    if not args.greedy or args.sample:
        raise UserError("--draft drafts greedy search: add --greedy (and leave out --sample)")
    if args.compile or args.workers > 1:
        raise UserError(f"--draft runs the eager steps in one process: leave out "
                        f"{'--compile' if args.compile else '--workers'}")
    try:
        chosen = resolve_precision(args.draft, next(model.parameters()).device)
        if chosen == precision:
            raise UserError(f"--draft {args.draft} drafts in the precision the search checks ({precision}): check "
                            f"in a finer one (--precision fp32) or leave out --draft")
        return for_decoding(model, chosen)
    except (PrecisionError, ValueError) as error:
        raise UserError(str(error)) from None


def int_at_least(minimum: int) -> Callable[[str], int]:
    """A flag's parser: an integer >= minimum, else argparse's one-line error (exit 2) before any work."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


# torch.manual_seed and torch.Generator.manual_seed take seeds in [-2^63, 2^64 - 1]
SEED_RANGE = (-(2 ** 63), 2 ** 64 - 1)


def seed_value(text: str) -> int:
    """A --seed flag's parser: an integer torch can seed with, else argparse's one-line error (exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not SEED_RANGE[0] <= value <= SEED_RANGE[1]:
        raise argparse.ArgumentTypeError(f"must be in [-2^63, 2^64 - 1] (torch's seeds), got {value}")
    return value


def float_in(low: float, high: float = float("inf"), low_open: bool = False) -> Callable[[str], float]:
    """A flag's parser: a number in [low, high] ((low, high] with low_open), else a one-line error (exit 2)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (value > low if low_open else value >= low) or value > high or value != value:
            where = f"{'(' if low_open else '['}{low:g}, {high:g}]" if high != float("inf") else \
                f"{'>' if low_open else '>='} {low:g}"
            raise argparse.ArgumentTypeError(f"must be {'in ' if high != float('inf') else ''}{where}, got {text}")
        return value

    return parse


def add_device_flags(parser: argparse.ArgumentParser) -> None:
    """--threads and --device, the same in every sub-command that runs a model."""
    parser.add_argument("--threads", type=int_at_least(0), default=0, help="torch threads (default 0: torch's)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda (default auto)")


def add_length_penalty_flag(parser: argparse.ArgumentParser) -> None:
    """--length-penalty (§6.1's alpha; `aiayn train` names it the same); --alpha is its hidden old name."""
    parser.add_argument("--length-penalty", type=float_in(0.0), default=0.6, metavar="ALPHA",
                        help="length penalty alpha: beam scores are log P / ((5 + |Y|) / 6)^alpha (default 0.6, "
                             "§6.1; 0: none)")
    parser.add_argument("--alpha", dest="length_penalty", type=float_in(0.0), default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)


def add_decoding_flags(parser: argparse.ArgumentParser) -> None:
    """--beam/--greedy/--length-penalty (§6.1), sampling, threads and device: shared by translate and evaluate."""
    parser.add_argument("--beam", type=int_at_least(1), default=4, help="beam size (default 4, §6.1)")
    parser.add_argument("--greedy", action="store_true", help="greedy search (beam 1)")
    add_length_penalty_flag(parser)
    add_sampling_flags(parser, "with --sample: ")
    parser.add_argument("--sample", action="store_true", help="sample instead of searching (see --top-p, --top-k)")
    parser.add_argument("--precision", choices=DECODING_PRECISIONS, default="fp32",
                        help="weights for decoding: fp32 (the paper's), bf16, int8 (CPU: int8 linear layers), or "
                             "auto (the fastest that keeps quality on this machine: int8 on CPUs with VNNI, else bf16 "
                             "where it is native, else fp32) (default fp32)")
    parser.add_argument("--compile", action="store_true",
                        help="run the search on a fixed-shape decoder step compiled by torch.compile (int8 there is "
                             "weight-only, activations in bf16 where native): each new batch shape is compiled "
                             "before its first use and kept for the run, so it suits many sentences decoded a few "
                             "rows at a time (docs/benchmarks.md; default off)")
    parser.add_argument("--draft", choices=["bf16", "int8"], default=None,
                        help="with --greedy: a copy in this precision drafts tokens and the model (in --precision) "
                             "keeps those it would have chosen, so the output is --precision's greedy search with "
                             "most steps in the draft's (speculative decoding; docs/guide.md; default off)")
    parser.add_argument("--workers", type=int_at_least(1), default=1,
                        help="processes that search batches at once, each on one thread (CPU, Linux): on N "
                             "cores, --workers N translates a file faster than N threads of one search "
                             "(docs/benchmarks.md; default 1)")
    add_device_flags(parser)


def add_sampling_flags(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """--temperature, --top-k, --top-p, --seed: the same names and defaults in translate, evaluate, generate."""
    parser.add_argument("--temperature", type=float_in(0.0, low_open=True), default=1.0,
                        help=prefix + "softmax temperature (default 1.0)")
    parser.add_argument("--top-k", type=int_at_least(0), default=0,
                        help=prefix + "sample among the k likeliest tokens (default 0: all)")
    parser.add_argument("--top-p", type=float_in(0.0, 1.0, low_open=True), default=None,
                        help=prefix + "nucleus sampling: the smallest set with probability >= p (default: off)")
    parser.add_argument("--seed", type=seed_value, default=None, help=prefix + "a seed makes the output reproducible")


def decoding_options(args: argparse.Namespace, draft: Any = None) -> dict[str, Any]:
    """translate()'s options from the decoding flags: model.generate's (with the --draft copy from draft_model,
    when one is given), and workers."""
    options: dict[str, Any] = {"beam_size": 1 if args.greedy else args.beam, "length_penalty": args.length_penalty}
    if draft is not None:
        options["draft"] = draft
    if args.workers > 1:
        options["workers"] = args.workers
    if getattr(args, "compile", False):
        options["compile"] = True
    if args.sample:
        options.update(do_sample=True, temperature=args.temperature, top_k=args.top_k or None,
                       top_p=args.top_p if args.top_p is not None and args.top_p < 1.0 else None,
                       seed=args.seed)
    return options
