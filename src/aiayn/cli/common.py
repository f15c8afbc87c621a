"""What the sub-commands share: the one-line user error, model loading, decoding and thread flags."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from ..data.corpus import CorpusError
from ..data.tokenizer import TokenizerError, check_fits, load_tokenizer
from ..io.atomic import WriteError
from ..io.huggingface import from_huggingface
from ..io.loading import load
from ..io.model_folder import CONFIG_FILE, TOKENIZER_FILE, CheckpointError, check_tokenizer
from ..model.models import MODEL_CLASSES
from ..runtime.device import DeviceError, resolve_device
from ..training.trainer import TrainingError


class UserError(Exception):
    """An error the user can fix; printed as one line without a traceback (exit code 1)."""


def user_errors() -> tuple[type[Exception], ...]:
    """The library's user-fixable errors, shown by the CLI as one line."""
    return CorpusError, CheckpointError, DeviceError, TokenizerError, TrainingError, WriteError


def set_threads(threads: int) -> None:
    """torch.set_num_threads when asked."""
    if threads:

        torch.set_num_threads(threads)


def load_lm(folder: str, model_type: str, device: str, command: str) -> tuple[object, object]:
    """A DecoderLM or EncoderLM and its tokenizer from a model folder; UserError if it is another kind."""


    try:
        model = load(folder, map_location=resolve_device(device))
    except user_errors() as error:
        raise UserError(str(error)) from None
    if model.model_type != model_type:
        trained_by = "--task lm" if model_type == "decoder_lm" else "--task mlm"
        names = {"decoder_lm": "a DecoderLM", "encoder_lm": "an EncoderLM", "transformer": "an encoder-decoder"}
        raise UserError(f"{folder} holds {names[model.model_type]} model; `aiayn {command}` needs {names[model_type]} "
                        f"(a folder written by `aiayn train {trained_by}`)")
    path = Path(folder) / TOKENIZER_FILE
    if not path.is_file():
        raise UserError(f"{path} is missing: the model folder needs the {TOKENIZER_FILE} it was trained with")
    tokenizer = Tokenizer.from_file(str(path))
    if tokenizer.get_vocab_size() > model.cfg.vocab_size:
        raise UserError(f"{path} has {tokenizer.get_vocab_size()} tokens but the model only "
                        f"{model.cfg.vocab_size}: use the tokenizer.json saved with this model")
    try:
        check_tokenizer(folder, tokenizer)  # the vocabulary fingerprint config.json records
    except user_errors() as error:
        raise UserError(str(error)) from None
    return model, tokenizer


def load_translator(folder: str, device: str = "auto") -> tuple[object, object]:
    """An encoder-decoder model and its tokenizer from a model folder, checked to fit each other."""
    try:
        model = load(folder, map_location=resolve_device(device))
        if model.model_type != "transformer":
            raise UserError(f"{folder} holds a {model.model_type} model; translation needs an encoder-decoder "
                            f"(a folder written by `aiayn train`)")
        tok = load_tokenizer(folder)
        check_fits(tok, model.cfg, f"{folder}/tokenizer.json")
        check_tokenizer(folder, tok)
    except user_errors() as error:
        raise UserError(str(error)) from None
    return model, tok


def load_model_and_tokenizer(folder: str | Path) -> tuple[Any, Any]:
    """An aiayn model folder (or a Hugging Face one, converted on the fly) and its tokenizer, for one sentence."""
    folder = Path(folder)
    tokenizer_path = folder / TOKENIZER_FILE
    try:
        model_type = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8")).get("model_type", "transformer")
    except (OSError, ValueError, AttributeError):
        model_type = "transformer"  # aiayn.load names the problem
    try:
        if model_type in MODEL_CLASSES:
            model = load(folder)
        else:  # a Hugging Face checkpoint (e.g. BERT): converted by the interop module
            model = from_huggingface(folder)
    except CheckpointError as error:
        raise UserError(str(error)) from None
    if not tokenizer_path.is_file():
        raise UserError(f"{tokenizer_path} is missing: the pictures need the model's tokenizer; save the model "
                        f"with model.save(folder, tokenizer=tok) or copy its tokenizer.json there")

    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
    except Exception as error:  # noqa: BLE001 (tokenizers raises a bare Exception for a bad file)
        raise UserError(f"{tokenizer_path} is not a valid tokenizers JSON file ({error}); save it again") from None
    if model_type in MODEL_CLASSES:  # an aiayn folder records its tokenizer's vocabulary fingerprint
        try:
            check_tokenizer(folder, tokenizer)
        except CheckpointError as error:
            raise UserError(str(error)) from None
    tokenizer.no_padding()  # one sentence: no padding, and no silent truncation (an over-long text is an error)
    tokenizer.no_truncation()
    return model, tokenizer


def add_decoding_flags(parser: argparse.ArgumentParser) -> None:
    """--beam/--greedy/--alpha (§6.1), sampling, threads and device: shared by translate and evaluate."""
    parser.add_argument("--beam", type=int, default=4, help="beam size (default 4, §6.1)")
    parser.add_argument("--greedy", action="store_true", help="greedy search (beam 1)")
    parser.add_argument("--alpha", type=float, default=0.6, help="length penalty alpha (default 0.6, §6.1)")
    parser.add_argument("--sample", action="store_true", help="sample instead of searching (see --top-p, --top-k)")
    parser.add_argument("--temperature", type=float, default=1.0, help="with --sample: softmax temperature")
    parser.add_argument("--top-k", type=int, default=0, help="with --sample: keep the k likeliest tokens (0: all)")
    parser.add_argument("--top-p", type=float, default=1.0, help="with --sample: nucleus mass (1.0: all)")
    parser.add_argument("--seed", type=int, default=None, help="with --sample: seed, for reproducible output")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda")


def decoding_options(args: argparse.Namespace) -> dict[str, Any]:
    """model.generate options from the decoding flags."""
    options: dict[str, Any] = {"beam_size": 1 if args.greedy else args.beam, "length_penalty": args.alpha}
    if args.sample:
        options.update(do_sample=True, temperature=args.temperature, top_k=args.top_k or None,
                       top_p=args.top_p if args.top_p < 1.0 else None, seed=args.seed)
    return options
