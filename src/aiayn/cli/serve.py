"""`aiayn serve`: a model behind HTTP (LibreTranslate's POST /translate, a native API, a page), on uvicorn."""

from __future__ import annotations

import argparse
import inspect
import ipaddress
import json
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from ..data.corpus import BUNDLED
from ..inference.options import add_flags, for_command
from ..inference.workers import workers_problem
from ..io.model_folder import CONFIG_FILE, WEIGHTS_FILE
from ..model.registry import of_model
from ..serving import SERVER_FLAGS, missing_extra
from ..serving.ctranslate2_lm import CTranslate2LMEngine
from ..serving.engines import ENGINES, AiaynEngine, CTranslate2Engine, EngineError, cache_root
from .common import UserError, float_in, int_at_least, load_model, set_threads

BUNDLED_PAIR = ("en", "es")  # the bundled corpus translates English (KJV) into Spanish (RV1909)


def run(args: argparse.Namespace) -> None:
    """Serve a model over HTTP: LibreTranslate's POST /translate (so its clients work unchanged), a native
    POST /v1/translate with the decoding options (beam, length penalty, n-best with scores, sampling), GET
    /health and /info, POST /generate for language models (streamed, on either engine), a page at / (translate,
    click a sentence for its cross-attention), and the OpenAPI description at /openapi.json. Concurrent
    requests are batched by tokens. SIGTERM (or Ctrl-C) stops taking new requests and finishes the ones in
    flight."""
    problem = missing_extra()
    if problem is not None:
        raise UserError(problem)
    api_key = args.api_key if args.api_key is not None else os.environ.get("AIAYN_API_KEY") or None
    if not _loopback(args.host) and api_key is None:
        # refused rather than warned: a server on a public address without a key lets anyone use its CPUs
        raise UserError(f"--host {args.host} is reachable from other machines: give --api-key KEY (or set "
                        f"AIAYN_API_KEY), or bind 127.0.0.1 behind a proxy that checks who calls")
    folder = _model_folder(Path(args.model))
    cache = Path(args.cache) if args.cache else cache_root()
    if _inside(cache, folder):
        raise UserError(f"--cache {cache} is inside the model folder {folder}: serve never writes there; choose "
                        f"another folder")
    pair = _pair(args.pair, folder)
    set_threads(args.threads)
    device = "cpu" if args.engine == "ctranslate2" else args.device
    model, tokenizer = load_model(str(folder), "serve", None, device)
    entry = of_model(model)
    if not (entry.translator or entry.causal_lm):
        raise UserError(f"{folder} holds {entry.described}: `aiayn serve` serves translators and DecoderLMs "
                        f"(`aiayn fill-mask` uses an EncoderLM)")
    engine = _engine(args, model, tokenizer, folder, cache)
    import uvicorn

    from ..serving.app import Settings, create_app  # the serve extra: checked above

    settings = Settings(model=str(folder), pair=pair if entry.translator else None,
                        api_key=api_key, max_chars=args.max_chars, max_sentences=args.max_sentences,
                        max_batch_tokens=args.max_batch_tokens, batch_wait_ms=args.batch_wait_ms,
                        queue_size=args.queue_size)
    app = create_app(engine, settings)
    print(f"serving {folder} ({model.model_type}, {engine.name} {engine.precision}, {args.workers} worker"
          f"{'s' if args.workers != 1 else ''}) on http://{args.host}:{args.port}/", flush=True)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                            timeout_graceful_shutdown=None)  # SIGTERM: finish every request in flight
    # uvicorn finishes the requests in flight, then raises the SIGTERM it caught again with the handler that
    # was there before: this one ends the command normally (exit 0), so the worker processes are stopped too
    main_thread = threading.current_thread() is threading.main_thread()  # signals are set there only
    previous = signal.signal(signal.SIGTERM, _stopped) if main_thread else None
    try:
        uvicorn.Server(config).run()
    except _Stopped:
        print("aiayn serve: stopped (SIGTERM) after the requests in flight", file=sys.stderr)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        engine.close()


class _Stopped(Exception):
    """SIGTERM, after uvicorn's graceful shutdown."""


def _stopped(signum: int, frame: Any) -> None:
    """The SIGTERM handler uvicorn restores and re-raises once it has shut down."""
    raise _Stopped


def _engine(args: argparse.Namespace, model: Any, tokenizer: Any, folder: Path, cache: Path) -> Any:
    """The engine the flags ask for, with errors as one line."""
    try:
        if args.engine == "ctranslate2":  # a translator: CTranslate2's Translator; a DecoderLM: its Generator
            kind = CTranslate2LMEngine if of_model(model).causal_lm else CTranslate2Engine
            return kind(model, tokenizer, folder, args.precision, args.workers, threads=args.threads or 1,
                        cache=cache)
        problem = workers_problem(args.workers, next(model.parameters()).device, False, cli=True)
        if problem is not None:
            raise UserError(problem)
        return AiaynEngine(model, tokenizer, args.precision, args.workers)
    except (EngineError, ValueError) as error:
        raise UserError(str(error)) from None


def _model_folder(path: Path) -> Path:
    """The model folder of MODEL (a model folder, or a run folder's model/); a missing one is one line."""
    if not path.is_dir():
        raise UserError(f"{path} is not a folder: give a model folder (config.json, model.safetensors, "
                        f"tokenizer.json) or a run folder written by `aiayn train`")
    if not (path / WEIGHTS_FILE).is_file() and (path / "model" / CONFIG_FILE).is_file():
        return path / "model"
    return path


def _pair(flag: str | None, folder: Path) -> tuple[str, str] | None:
    """--pair SRC-TGT, else the pair a run folder's train.json implies (the bundled corpus: en-es), else None.

    A model folder records no languages (config.json holds the architecture, tokenizer.json the vocabulary).
    """
    if flag:
        parts = flag.split("-")
        if len(parts) != 2 or not all(parts):
            raise UserError(f"--pair {flag!r}: give the source and target codes as SRC-TGT, e.g. en-es")
        return parts[0], parts[1]
    for run in (folder.parent, folder.parent.parent, folder.parent.parent.parent):
        try:
            train = json.loads((run / "train.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(train, dict) and train.get("data", BUNDLED) == BUNDLED and train.get("task") != "lm":
            return BUNDLED_PAIR
        return None
    return None


def _loopback(host: str) -> bool:
    """Whether host names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
        except (OSError, ValueError):
            return False


def _inside(path: Path, folder: Path) -> bool:
    """Whether path is folder or lies under it."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def add_parser(commands: argparse._SubParsersAction) -> None:
    """`aiayn serve MODEL_DIR [--engine aiayn|ctranslate2] [--host 127.0.0.1] [--port 8000] ...`."""
    parser = commands.add_parser(
        "serve", help="serve a model over HTTP (LibreTranslate's API, a native API and a page)",
        description=inspect.cleandoc(run.__doc__ or ""), formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  aiayn serve runs/kjv-en-es/model\n"
               "  aiayn serve runs/kjv-en-es --engine ctranslate2 --precision int8 --workers 2\n"
               "  curl -s localhost:8000/translate -H 'Content-Type: application/json' "
               "-d '{\"q\": \"In the beginning\", \"source\": \"en\", \"target\": \"es\"}'\n"
               "  aiayn serve runs/shakespeare-char --engine ctranslate2   # a DecoderLM (aiayn train --task lm)\n"
               "  curl -sN localhost:8000/generate -H 'Content-Type: application/json' "
               "-d '{\"prompt\": \"ROMEO:\", \"max_new_tokens\": 100}'")
    parser.add_argument("model", metavar="MODEL_DIR", help="a model folder (config.json, model.safetensors, "
                                                           "tokenizer.json) or a run folder")
    parser.add_argument("--engine", choices=ENGINES, default="aiayn",
                        help="aiayn: aiayn's own search (--workers: forked processes of one thread each); "
                             "ctranslate2: CTranslate2 on an export of the model, made once into --cache (pip "
                             "install 'aiayn[ct2]'; --workers: its inter_threads, --precision: its compute type "
                             "of the same name). Both serve translators and DecoderLMs (/generate; a seed is "
                             "aiayn's only) (default aiayn)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="the address to bind (default 127.0.0.1: this machine only; another needs --api-key)")
    parser.add_argument("--port", type=int_at_least(0), default=8000, help="the port (default 8000)")
    # --precision and --workers, from inference/options.py; a request sets the other decoding options
    add_flags(parser, "serve", skip=[o.name for o in for_command("serve") if o.name not in SERVER_FLAGS])
    parser.add_argument("--api-key", default=None, metavar="KEY",
                        help="requests must carry this key (api_key field, X-API-Key or Authorization: Bearer); "
                             "default: $AIAYN_API_KEY, else none (loopback only)")
    parser.add_argument("--pair", default=None, metavar="SRC-TGT",
                        help="the language pair /translate checks source and target against (default: the "
                             "bundled corpus's en-es for a model trained on it, else unchecked)")
    parser.add_argument("--max-batch-tokens", type=int_at_least(1), default=4000,
                        help="a batch starts when its padded source tokens reach this (default 4000)")
    parser.add_argument("--batch-wait-ms", type=float_in(0.0), default=5.0,
                        help="... or when its first request has waited this long (default 5)")
    parser.add_argument("--max-chars", type=int_at_least(1), default=10000,
                        help="characters per request; more is refused with 413 (default 10000)")
    parser.add_argument("--max-sentences", type=int_at_least(1), default=256,
                        help="sentences (lines) per request; more is refused with 413 (default 256)")
    parser.add_argument("--queue-size", type=int_at_least(1), default=256,
                        help="requests waiting at most; more are refused with 503 and Retry-After (default 256)")
    parser.add_argument("--cache", default=None, metavar="DIR",
                        help=f"where the CTranslate2 export is kept (default $AIAYN_CACHE, else "
                             f"{cache_root()}); never inside the model folder")
    parser.add_argument("--threads", type=int_at_least(0), default=0,
                        help="intra-op threads (torch's, or CTranslate2's intra_threads; default 0: torch's, 1)")
    parser.add_argument("--device", default="cpu", help="aiayn engine: cpu or cuda (default cpu)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                        help="uvicorn's log level (default info)")
    parser.set_defaults(run=run)
