"""`aiayn translate`: sentences from arguments, a file or stdin, one output line per input line."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ..inference import options
from ..inference.evaluation import translate
from .common import UserError, add_decoding_flags, decoding_model, load_model, set_threads, worker_pool


def run(args: argparse.Namespace) -> None:
    """Translate sentences with a trained model (beam 4, length penalty 0.6 by default, §6.1)."""
    set_threads(args.threads)
    model, tok = load_model(args.model, "translate", "transformer", args.device)
    model, precision = decoding_model(model, args)
    decoding = options.from_args(args, "translate")
    texts = list(args.text)
    if args.input:
        path = Path(args.input)
        if not path.is_file():
            raise UserError(f"--input {path} does not exist or is not a file; give a text file, one sentence "
                            f"per line")
        try:
            data = path.read_bytes()
        except OSError as error:
            raise UserError(f"cannot read --input {path}: {error.strerror}") from None
        texts += _text_lines(data, str(path))
    elif not texts:
        if sys.stdin.isatty():
            raise UserError("nothing to translate: give sentences as arguments, --input FILE, or lines on stdin")
        texts = _text_lines(sys.stdin.buffer.read(), "stdin")
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")  # a terminal that is not UTF-8: "?" instead of a crash
    bar = None
    if args.input and sys.stderr.isatty():  # a progress bar for files, on a terminal only

        bar = tqdm(total=len(texts), unit="line", desc="translating", file=sys.stderr)
    start = time.perf_counter()
    pool = worker_pool(model, args)
    if pool is not None:
        decoding["workers"] = pool
    try:
        lines = translate(model, tok, texts, progress=bar.update if bar else None, **decoding)
    finally:
        if pool is not None:
            pool.close()
    seconds = time.perf_counter() - start
    if bar:
        bar.close()
    if args.input:  # sentences sorted by length and batched by tokens; output in input order
        threads = torch.get_num_threads()
        how = f"{args.workers} workers x 1 thread" if args.workers > 1 else \
            f"{threads} thread{'s' if threads != 1 else ''}"
        print(f"translated {len(texts)} sentences in {seconds:.2f} s: {len(texts) / max(seconds, 1e-9):.1f} "
              f"sentences/s ({precision}, {how})", file=sys.stderr)
    for line in lines:
        print(" ".join(line.splitlines()), flush=True)  # exactly one output line per input line


def _text_lines(data: bytes, name: str) -> list[str]:
    """Lines of raw input, split on "\\n" only (a stray \\r, \\f or U+2028 stays inside its line); bytes that
    are not UTF-8 become U+FFFD, with a warning naming the lines. Empty input gives no lines."""
    chunks = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")  # a UTF-8 byte-order mark is not text
    if chunks[-1] == b"":
        chunks.pop()  # the newline that ends the last line does not start another
    lines, bad = [], []
    for number, chunk in enumerate(chunks, 1):
        chunk = chunk.removesuffix(b"\r")
        try:
            lines.append(chunk.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(chunk.decode("utf-8", errors="replace"))
            bad.append(number)
    if bad:
        print(f"warning: {name} line(s) {', '.join(map(str, bad[:5]))}{' ...' if len(bad) > 5 else ''} are not "
              f"valid UTF-8; their undecodable bytes were replaced by U+FFFD", file=sys.stderr)
    return lines


def add_parser(commands: argparse._SubParsersAction) -> None:
    """`aiayn translate MODEL_DIR [TEXT ...] [--input FILE] [--beam 4 | --greedy]`."""
    parser = commands.add_parser(
        "translate", help="translate sentences with a trained model", description=run.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='example:\n  aiayn translate runs/kjv-en-es/model "In the beginning God created the heaven '
               'and the earth."')
    parser.add_argument("model", metavar="MODEL_DIR", help="a model folder (config.json, model.safetensors, "
                                                           "tokenizer.json)")
    parser.add_argument("text", nargs="*", help="sentences to translate (else --input or stdin)")
    parser.add_argument("--input", metavar="FILE", help="a text file, one sentence per line")
    add_decoding_flags(parser, "translate")
    parser.set_defaults(run=run)
