"""What the sub-commands share: the one-line user error, model loading, decoding and thread flags."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..data.corpus import CorpusError
from ..data.tokenizer import TokenizerError
from ..inference import options
from ..inference.quantize import PrecisionError, copy_in, resolve_precision
from ..inference.workers import WorkerPool
from ..io.atomic import WriteError
from ..io.loading import load_with_tokenizer
from ..io.model_folder import CheckpointError
from ..runtime.device import DeviceError, resolve_device
from ..training.trainer import TrainingError
from .errors import UserError


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


def decoding_model(model: Any, args: argparse.Namespace) -> tuple[Any, str]:
    """The model to search with in --precision, resolved here once, and the precision chosen; errors as one line."""
    try:
        chosen = resolve_precision(args.precision, next(model.parameters()).device)
        return copy_in(model, chosen), chosen
    except (PrecisionError, ValueError) as error:
        raise UserError(str(error)) from None


def worker_pool(model: Any, args: argparse.Namespace) -> WorkerPool | None:
    """The --workers processes (forked now, with the model to search), or None for one; the one check of
    --workers, as one line."""
    if args.workers == 1:
        return None
    try:
        return WorkerPool(model, args.workers)
    except ValueError as error:
        raise UserError(f"--workers {args.workers}: {error}") from None


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


def add_decoding_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """`command`'s decoding flags (inference/options.py's table: §6.1's beam 4 and alpha 0.6 by default),
    threads and device."""
    options.add_flags(parser, command)
    add_device_flags(parser)
