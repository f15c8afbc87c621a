"""`aiayn prepare`: tokenize a corpus once into a memory-mapped token store that `aiayn train --data STORE` reads."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from ..data.prepare import PairSource, TextSource, open_or_prepare_pairs, open_or_prepare_text
from ..data.tokenizer import read_tokenizer
from ..runtime.log import get_logger
from ..training.lm import make_tokenizer
from ..training.settings import BUNDLED_TEXT, BY_NAME
from .common import UserError, user_errors
from .train import _add_flag

PAIR_SETTINGS = ("data", "target", "dev", "dev_target", "test", "test_target", "dev_size", "test_size", "split_seed",
                 "vocab_size", "bpe_sample", "skip_bad_lines")
TEXT_SETTINGS = ("train_fraction", "tokenizer")

logger = get_logger("data")


def run(args: argparse.Namespace) -> None:
    """Tokenize a corpus once (streamed, on every core) into a memory-mapped token store; a store already made from
    the same files and settings is kept as it is."""
    task = args.task
    other = [BY_NAME[name].flag for name in PAIR_SETTINGS + TEXT_SETTINGS
             if getattr(args, name, None) is not None and task not in BY_NAME[name].tasks]
    if other:
        raise UserError(f"{', '.join(other)} {'does' if len(other) == 1 else 'do'} not apply to --task {task}")
    values = {name: getattr(args, name) if getattr(args, name, None) is not None else BY_NAME[name].default_for(task)
              for name in PAIR_SETTINGS + TEXT_SETTINGS if task in BY_NAME[name].tasks}
    started = time.perf_counter()
    try:
        tokenizer = read_tokenizer(Path(args.tokenizer_file)) if args.tokenizer_file else None
        store = _prepare_pairs(values, args.out, tokenizer) if task == "translate" else \
            _prepare_text(task, values, args.out, tokenizer)
    except user_errors() as error:
        raise UserError(str(error)) from None
    counts = ", ".join(f"{name} {value:,}" for name, value in store.meta["counts"].items())
    print(f"store {store.path} ({store.kind}, {store.dtype.name} ids): {counts} "
          f"[{time.perf_counter() - started:.1f}s]; train with: aiayn train"
          f"{'' if task == 'translate' else ' --task ' + task} --data {store.path} --out RUN_DIR")


def _prepare_pairs(values: dict[str, Any], out: str, tokenizer: Tokenizer | None) -> Any:
    """A translation store."""
    source = PairSource(**{name: values[name] for name in PAIR_SETTINGS})
    return open_or_prepare_pairs(source, out, tokenizer, logger.info)


def _prepare_text(task: str, values: dict[str, Any], out: str, tokenizer: Tokenizer | None) -> Any:
    """A language model's store, its tokenizer as `aiayn train --task lm|mlm` learns it."""
    kind = values["tokenizer"] or ("char" if task == "lm" else "wordpiece")
    data = values["data"]
    source = TextSource(None if data == BUNDLED_TEXT else data, values["train_fraction"])

    def learn(sample: str, chars: str) -> Tokenizer:
        return make_tokenizer(kind, chars if kind == "char" else sample, values["vocab_size"], task)

    shape = {"data": data, "train_fraction": values["train_fraction"], "tokenizer": kind,
             "vocab_size": values["vocab_size"], "bpe_sample": values["bpe_sample"], "task": task}
    return open_or_prepare_text(source, out, learn, tokenizer, values["bpe_sample"], shape, logger.info)


def add_parser(commands: argparse._SubParsersAction) -> None:
    """`aiayn prepare --data FILE [--target FILE] --out STORE`."""
    parser = commands.add_parser(
        "prepare", help="tokenize a corpus once into a memory-mapped token store (for corpora of any size)",
        description=run.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  aiayn prepare --data pairs.tsv --out data/pairs            # then: aiayn train --data "
               "data/pairs\n  aiayn prepare --data train.en --target train.de --dev dev.en --dev-target dev.de "
               "--out data/ende\n  aiayn prepare --task lm --tokenizer bpe --data texts/ --out data/texts")
    parser.add_argument("--out", required=True, metavar="STORE", help="the store's folder (a new or empty one, or "
                                                                      "an older store, replaced once the new one is "
                                                                      "complete)")
    parser.add_argument("--task", choices=("translate", "lm", "mlm"), default="translate",
                        help="translate (default): sentence pairs; lm, mlm: text, as `aiayn train --task` reads it")
    parser.add_argument("--tokenizer-file", metavar="FILE", help="encode with this tokenizer.json (e.g. a model's, "
                                                                 "for --init-from) instead of learning one")
    for name in PAIR_SETTINGS + TEXT_SETTINGS:
        _add_flag(parser, BY_NAME[name])
    parser.set_defaults(run=run)
