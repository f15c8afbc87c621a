"""`aiayn evaluate`: sacreBLEU BLEU and chrF of a model on a test set."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.corpus import load_corpus, read_parallel
from ..inference import options
from ..inference.evaluation import score, translate
from ..io.atomic import WriteError, atomic_write_text
from .common import (
    UserError,
    add_decoding_flags,
    check_out_file,
    decoding_model,
    load_model,
    set_threads,
    user_errors,
    worker_pool,
)


def run(args: argparse.Namespace) -> None:
    """Translate a test set and report sacreBLEU BLEU and chrF with signatures (detokenized vs raw refs)."""
    if args.output:
        check_out_file(args.output)  # before translating everything
    set_threads(args.threads)
    model, tok = load_model(args.model, "evaluate", "transformer", args.device)
    model, precision = decoding_model(model, args)
    try:
        if (args.src is None) != (args.ref is None):
            raise UserError("give both --src and --ref (or neither, for the bundled test set)")
        pairs = read_parallel(args.src, args.ref) if args.src else load_corpus().test
    except user_errors() as error:
        raise UserError(str(error)) from None
    decoding = options.from_args(args, "evaluate")
    pool = worker_pool(model, args)
    if pool is not None:
        decoding["workers"] = pool
    try:
        hyps = translate(model, tok, [s for s, _ in pairs], **decoding)
    finally:
        if pool is not None:
            pool.close()
    if args.output:
        try:
            atomic_write_text(Path(args.output), "".join(h + "\n" for h in hyps))
        except WriteError as error:
            raise UserError(str(error)) from None
    how = "sampling" if args.do_sample else \
        f"beam {decoding.get('beam_size', 1)}, length penalty {args.length_penalty}"
    print(f"{len(pairs)} sentences, {how}, {precision}")
    print(score(hyps, [t for _, t in pairs]))


def add_parser(commands: argparse._SubParsersAction) -> None:
    """`aiayn evaluate MODEL_DIR [--src FILE --ref FILE]`."""
    parser = commands.add_parser(
        "evaluate", help="sacreBLEU + chrF of a model on a test set", description=run.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  aiayn evaluate runs/kjv-en-es/model            # the bundled test set (John)\n"
               "  aiayn evaluate MODEL_DIR --src test.en --ref test.es --output hyp.es")
    parser.add_argument("model", metavar="MODEL_DIR")
    parser.add_argument("--src", metavar="FILE", help="source sentences, one per line")
    parser.add_argument("--ref", metavar="FILE", help="reference translations, aligned with --src")
    parser.add_argument("--output", metavar="FILE", help="also write the translations here")
    add_decoding_flags(parser, "evaluate")
    parser.set_defaults(run=run)
