"""The `aiayn` command line: one sub-command per job; exit 0 done, 1 user error, 2 bad usage."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any


class UserError(Exception):
    """An error the user can fix; printed as one line without a traceback (exit code 1)."""


def cmd_demo(args: argparse.Namespace) -> None:
    """Build the paper's base model, compare its size with the paper's, translate with random weights."""
    import torch

    from .config import ModelConfig
    from .models import Transformer

    torch.manual_seed(args.seed)
    cfg = ModelConfig.preset("paper-base", vocab_size=37000)
    model = Transformer(cfg).eval()
    n = model.num_parameters()
    print(f"paper-base: {n:,} parameters ({n / 1e6:.1f}M; the paper's Table 3 gives 65M)")
    src = torch.randint(3, cfg.vocab_size, (3, 12))
    hyp = model.generate(src, beam_size=1, max_new_tokens=10)
    for row, out in zip(src.tolist(), hyp):
        print(f"  {row[:6]}... -> {out} (random weights: noise until trained)")


def cmd_attention(args: argparse.Namespace) -> None:
    """Draw a model's attention for one sentence: PNG heatmaps (and an HTML explorer with --html)."""
    from .viz import attention_command

    attention_command(args)


def add_attention_parser(commands: argparse._SubParsersAction) -> None:
    """`aiayn attention MODEL_DIR "text" [--target "..."] [--html FILE] [--out DIR]`."""
    parser = commands.add_parser(
        "attention", help="draw attention heatmaps (PNG) and an HTML explorer for one sentence",
        description=cmd_attention.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               '  aiayn attention runs/kjv-en-es/model "And God saw the light, that it was good." '
               '--html explorer.html\n'
               '  aiayn attention runs/kjv-en-es/model "In the beginning God created the heaven and the earth." '
               '--kind cross --layer -1 --head mean\n'
               '  aiayn attention MINILM_DIR "The animal didn\'t cross the street because it was too tired" '
               "--focus it")
    parser.add_argument("model_dir", metavar="MODEL_DIR",
                        help="an aiayn model folder (config.json, model.safetensors, tokenizer.json)")
    parser.add_argument("text", metavar="TEXT", help="the source sentence (EncoderLM/DecoderLM: the text)")
    parser.add_argument("--target", default=None,
                        help="the target sentence (encoder-decoder only); default: the model's own translation")
    parser.add_argument("--out", default="attention", metavar="DIR",
                        help="folder for the PNGs (default: ./attention)")
    parser.add_argument("--html", default=None, metavar="FILE", help="also write the HTML attention explorer")
    parser.add_argument("--focus", default=None, metavar="TOKEN",
                        help="also draw where this token (a word or a position) attends in every layer")
    parser.add_argument("--kind", choices=("encoder_self", "decoder_self", "cross"), default=None,
                        help="draw only this kind of attention (default: every kind the model has)")
    parser.add_argument("--layer", type=int, default=None,
                        help="draw only this layer (0 is the first, -1 the last; default: every layer)")
    parser.add_argument("--head", default=None, metavar="H|mean",
                        help="draw only head H, or 'mean' for the mean over heads (default: a grid of all)")
    parser.add_argument("--beam", type=int, default=4,
                        help="beam size for the model's own translation (default 4, as in §6.1)")
    parser.set_defaults(run=cmd_attention)
def cmd_import_hf(args: argparse.Namespace) -> None:
    """Convert a local Hugging Face checkpoint (BERT, GPT-2, Marian, BART) into an aiayn model folder."""
    from pathlib import Path

    from .interop import ConversionError, from_huggingface

    try:
        model = from_huggingface(args.folder)
    except ConversionError as error:
        raise UserError(str(error)) from None
    tokenizer = Path(args.folder) / "tokenizer.json"
    out = model.save(args.out, tokenizer=tokenizer if tokenizer.is_file() else None)
    info = model.cfg.extra["huggingface"]
    print(f"{info['model_type']} -> {model.model_type}: {model.num_parameters():,} parameters, "
          f"written to {out}")
    if info["dropped"]:
        print(f"  left out (no place in aiayn): {', '.join(info['dropped'])}")
    if info["untrained"]:
        print(f"  not in the checkpoint, randomly initialised: {', '.join(info['untrained'])}")
    if not tokenizer.is_file():
        print(f"  {args.folder} has no tokenizer.json: put one in {out} before using the model on text")


def add_import_hf_parser(commands: argparse._SubParsersAction) -> None:
    """The `aiayn import-hf` sub-command."""
    parser = commands.add_parser(
        "import-hf", help="convert a local Hugging Face checkpoint to an aiayn model",
        description=cmd_import_hf.__doc__,
        epilog="example: aiayn import-hf ~/models/all-MiniLM-L6-v2 --out models/minilm")
    parser.add_argument("folder", help="Hugging Face folder: config.json + model.safetensors or .bin")
    parser.add_argument("--out", required=True, help="aiayn model folder to write")
    parser.set_defaults(run=cmd_import_hf)


def cmd_export(args: argparse.Namespace) -> None:
    """Export a model to the runtimes people deploy with: a Hugging Face folder (transformers' Auto classes,
    a tokenizer and a model card) or a CTranslate2 model (translators and DecoderLMs, optionally int8)."""
    from .export import ExportError, export_model

    try:
        conversions = export_model(args.model_dir, args.to, args.out, quantization=args.quantization,
                                   force=args.force)
    except (ExportError, *_user_errors()) as error:
        raise UserError(str(error)) from None
    print(f"exported {args.model_dir} to {args.to}: {args.out}")
    for conversion in conversions:
        print(f"  {conversion}")


def add_export_parser(commands: argparse._SubParsersAction) -> None:
    """`aiayn export MODEL_DIR --to hf|ctranslate2 --out DIR [--quantization int8] [--force]`."""
    from .export import QUANTIZATIONS, TARGETS

    parser = commands.add_parser(
        "export", help="export a model to Hugging Face transformers or CTranslate2", description=cmd_export.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  aiayn export runs/kjv-en-es --to hf --out exported/kjv-en-es-hf\n"
               "  aiayn export runs/kjv-en-es/model --to ctranslate2 --quantization int8 --out exported/kjv-ct2")
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="a model folder (config.json, model.safetensors, "
                                                               "tokenizer.json) or a run folder")
    parser.add_argument("--to", required=True, choices=TARGETS, help="hf: a transformers folder; ctranslate2: "
                                                                     "a CTranslate2 model (pip install 'aiayn[ct2]')")
    parser.add_argument("--out", required=True, metavar="DIR", help="the folder to write (new or empty)")
    parser.add_argument("--quantization", choices=QUANTIZATIONS, default=None,
                        help="ctranslate2 only: weight type (default: float32 as trained)")
    parser.add_argument("--force", action="store_true", help="replace the contents of a non-empty --out")
    parser.set_defaults(run=cmd_export)


def _user_errors() -> tuple[type[Exception], ...]:
    """The library's user-fixable errors, shown by the CLI as one line."""
    from .data.corpus import CorpusError
    from .saving import CheckpointError, WriteError
    from .tokenizer import TokenizerError
    from .training.base import TrainingError

    return CorpusError, CheckpointError, TokenizerError, TrainingError, WriteError


def _train_flag_types(config_cls: type | None = None) -> dict[str, tuple[Callable[[str], object], str]]:
    """TrainConfig (or config_cls) field -> (parser of a flag's text, metavar), from the type hints."""
    import dataclasses
    import typing

    from .training.loop import TrainConfig

    config_cls = config_cls or TrainConfig
    hints = typing.get_type_hints(config_cls)
    kinds: dict[str, tuple[Callable[[str], object], str]] = {}
    for f in dataclasses.fields(config_cls):
        hint = str(hints[f.name])
        if "list" in hint:
            kinds[f.name] = (lambda text: [int(x) for x in text.split(",") if x.strip()], "N,N,...")
        elif "bool" in hint:
            kinds[f.name] = (bool, "")
        elif "int" in hint and "float" not in hint:
            kinds[f.name] = (int, "N")
        elif "float" in hint:
            kinds[f.name] = (float, "X")
        else:
            paths = ("out", "data", "target", "dev", "dev_target", "test", "test_target")
            kinds[f.name] = (str, "DURATION" if f.name == "time_budget" else "PATH" if f.name in paths else "NAME")
    return kinds


def cmd_train(args: argparse.Namespace) -> None:
    """Train a translator (default), a GPT-style LM (--task lm) or a BERT-style masked LM (--task mlm)."""
    import json
    from pathlib import Path

    from .training.loop import TRAIN_FILE, TrainConfig, train

    _tune_allocator(args)
    if _train_task(args) != "translate":
        return cmd_train_lm(args)
    flags = _task_flags(args, TrainConfig, "translate")
    try:
        values: dict[str, object] = {}
        if args.config:  # only the settings the file names: defaults must not hide the run's own on --resume
            TrainConfig.from_toml(args.config)  # checked now, naming the file
            values = _lm_config_class().read_toml(args.config)
        out = Path(str(flags.get("out", values.get("out", TrainConfig.out))))
        if args.resume and (out / TRAIN_FILE).is_file():  # the run's own settings, then the file, then flags
            values = {**json.loads((out / TRAIN_FILE).read_text(encoding="utf-8")), **values}
        cfg = TrainConfig.from_dict({**values, **flags})
        result = train(cfg, resume=args.resume)
    except _user_errors() as error:
        raise UserError(str(error)) from None
    if _stopped(result) or not result.main:  # under torchrun, rank 0 reports
        return
    if result.test_scores is not None:
        print(f"test set ({cfg.data if cfg.test is None else cfg.test}), step {result.step}, beam {cfg.beam}:")
        print(result.test_scores)
    print(f"model: {result.run_dir / 'model'}")


def _tune_allocator(args: argparse.Namespace) -> None:
    """Tune glibc malloc for the training loop (aiayn.runtime) unless --no-tune-allocator, only when this command
    is the whole process (`aiayn train`, `python -m aiayn train`; not `main([...])` called from Python)."""
    if not args.tune_allocator or not getattr(args, "owns_process", False):
        return
    from .runtime import tune_cpu_allocator

    line = tune_cpu_allocator()
    if line and os.environ.get("RANK", "0") == "0":  # under torchrun every rank tunes itself, rank 0 says so
        print(line, file=sys.stderr, flush=True)


def _stopped(result: object) -> bool:
    """True if a training run stopped early: SIGTERM (a scheduler, `kill`) is a clean stop (exit 0) after its
    checkpoint; Ctrl-C (SIGINT) is an interruption (exit 130)."""
    import signal

    if not getattr(result, "interrupted", False):
        return False
    if getattr(result, "stop_signal", None) == signal.SIGTERM:
        print(f"aiayn train: stopped by SIGTERM at step {getattr(result, 'step', '?')}; checkpoint saved, continue "
              f"with --resume",
              file=sys.stderr)
        return True
    raise KeyboardInterrupt


def add_train_parser(commands: argparse._SubParsersAction) -> None:
    """`aiayn train`: every TrainConfig field is a flag (--batch-tokens etc.); flags win over --config."""
    import dataclasses

    from .training.loop import TrainConfig

    parser = commands.add_parser(
        "train", help="train a translator (default: English->Spanish on the bundled Bible)",
        description=cmd_train.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  aiayn train                                   # bundled KJV -> Reina-Valera 1909\n"
               "  aiayn train --data pairs.tsv --out runs/mine --steps 3000\n"
               "  aiayn train --data train.en --target train.es --out runs/mine\n"
               "  aiayn train --out runs/mine --resume --steps 6000   # continue a run exactly\n"
               "  aiayn train --config run.toml                 # TOML keys = the flags' names with _\n"
               "  aiayn train --task lm --out runs/shakespeare   # character-level GPT on bundled Shakespeare\n"
               "  aiayn train --task lm --config configs/lm-shakespeare-char.toml   # nanoGPT's CPU run\n"
               "  aiayn train --task mlm --out runs/shakespeare-mlm --data my_texts/")
    parser.add_argument("--config", metavar="TOML", help="a TOML file of training settings (flags win)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--task", choices=("translate", "lm", "mlm"), default=None,
                        help="translate (default): encoder-decoder; lm: GPT-style DecoderLM; mlm: BERT-style "
                             "EncoderLM (a resumed run keeps its task)")
    parser.add_argument("--tune-allocator", action=argparse.BooleanOptionalAction, default=True,
                        help="on Linux with glibc, keep freed blocks up to 1 GiB in malloc's heap for reuse instead "
                             "of unmapping them (no page faults each step: paper-base step ~1.08x, ~350 MB more "
                             "resident); --no-tune-allocator keeps glibc's defaults. MALLOC_*_ variables in the "
                             "environment win (default: on)")
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore
                for f in dataclasses.fields(TrainConfig)}
    lm_defaults = _lm_train_defaults()
    kinds = {**_train_flag_types(), **{name: kind for name, kind in _train_flag_types(_lm_config_class()).items()
                                       if name not in defaults and name != "task"}}
    for name, (kind, metavar) in kinds.items():
        flag = "--" + name.replace("_", "-")
        if name not in defaults:
            text = f"default {lm_defaults[name]} (--task lm|mlm only)"
        elif name in lm_defaults and lm_defaults[name] != defaults[name]:
            text = f"default {defaults[name]}; --task lm|mlm: {lm_defaults[name]}"
        else:
            text = f"default {defaults[name]}" + ("" if name in lm_defaults else " (--task translate only)")
        if kind is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            parser.add_argument(flag, dest=name, type=kind, metavar=metavar, default=None, help=text)
    parser.set_defaults(run=cmd_train)


def _lm_config_class() -> type:
    """LMTrainConfig (imported late: the CLI starts fast)."""
    from .training.lm_loop import LMTrainConfig

    return LMTrainConfig


def _lm_train_defaults() -> dict[str, object]:
    """LMTrainConfig field -> default."""
    import dataclasses

    return {f.name: f.default for f in dataclasses.fields(_lm_config_class())}


def _train_task(args: argparse.Namespace) -> str:
    """--task, else the resumed run's task (its train.json), else the --config file's, else translate."""
    import json
    from pathlib import Path

    if args.task:
        return args.task
    out = Path(args.out) if args.out else None
    if args.config:
        try:
            values = _lm_config_class().read_toml(args.config)
        except _user_errors() as error:
            raise UserError(str(error)) from None
        out = out or (Path(values["out"]) if "out" in values else None)
        if not args.resume and "task" in values:
            return str(values["task"])
    if args.resume and out is not None and (out / "train.json").is_file():
        return str(json.loads((out / "train.json").read_text(encoding="utf-8")).get("task", "translate"))
    return "translate"


def _task_flags(args: argparse.Namespace, config_cls: type, task: str) -> dict[str, object]:
    """The flags given on the command line that are fields of config_cls; others raise a UserError."""
    import dataclasses

    from .training.loop import TrainConfig

    fields = {f.name for f in dataclasses.fields(config_cls)}
    every = (fields | {f.name for f in dataclasses.fields(TrainConfig)} | set(_lm_train_defaults())) - {"task"}
    given = {name: getattr(args, name) for name in every if getattr(args, name, None) is not None}
    wrong = sorted(set(given) - fields)
    if wrong:
        flags = ", ".join("--" + name.replace("_", "-") for name in wrong)
        raise UserError(f"{flags} do(es) not apply to --task {task}; see `aiayn train --help`")
    return given


def cmd_train_lm(args: argparse.Namespace) -> None:
    """Train a DecoderLM (--task lm) or an EncoderLM (--task mlm) on a text; report the validation loss."""
    import json
    from pathlib import Path

    from .training.lm_loop import LMTrainConfig, train_lm
    from .training.loop import TRAIN_FILE

    task = _train_task(args)
    flags = {**_task_flags(args, LMTrainConfig, task), "task": task}
    try:
        values: dict[str, object] = LMTrainConfig.read_toml(args.config) if args.config else {}
        out = Path(str(flags.get("out", values.get("out", LMTrainConfig.out))))
        if args.resume and (out / TRAIN_FILE).is_file():  # the run's own settings, then the file, then flags
            run = json.loads((out / TRAIN_FILE).read_text(encoding="utf-8"))
            run.setdefault("precision", "fp32")  # a run from before --precision trained in fp32: resume it so
            values = {**run, **values}
        cfg = LMTrainConfig.from_dict({**values, **flags})
        result = train_lm(cfg, resume=args.resume)
    except _user_errors() as error:
        raise UserError(str(error)) from None
    if _stopped(result) or not result.main:  # under torchrun, rank 0 reports
        return
    final = result.final or {}
    unit = "nats per character" if cfg.tokenizer_kind == "char" else "nats per token"
    line = f"validation loss {final.get('val_loss', float('nan')):.4f} {unit}"
    if "val_acc" in final:
        line += f", masked-token accuracy {final['val_acc']:.3f}"
    print(f"{line} (step {result.step}, {final.get('train_s', 0):.0f}s training)")
    print(f"model: {result.run_dir / 'model'}")


def _load_lm(folder: str, model_type: str, device: str, command: str) -> tuple[object, object]:
    """A DecoderLM or EncoderLM and its tokenizer from a model folder; UserError if it is another kind."""
    from pathlib import Path

    from tokenizers import Tokenizer

    from .saving import TOKENIZER_FILE, check_tokenizer, load
    from .training.base import resolve_device

    try:
        model = load(folder, map_location=resolve_device(device))
    except _user_errors() as error:
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
    except _user_errors() as error:
        raise UserError(str(error)) from None
    return model, tokenizer


def cmd_generate(args: argparse.Namespace) -> None:
    """Continue a prompt with a GPT-style model: sampling with temperature, top-k, top-p and a seed."""
    from .lm import generate_text

    _set_threads(args.threads)
    model, tokenizer = _load_lm(args.model, "decoder_lm", args.device, "generate")
    options = {"do_sample": not args.greedy, "temperature": args.temperature, "top_k": args.top_k or None,
               "top_p": args.top_p, "seed": args.seed}
    if args.greedy:
        options = {}
    try:
        text = generate_text(model, tokenizer, args.prompt, max_new_tokens=args.max_new_tokens, **options)
    except ValueError as error:
        raise UserError(str(error)) from None
    print(args.prompt + text)


def add_generate_parser(commands: argparse._SubParsersAction) -> None:
    """`aiayn generate MODEL_DIR ["prompt"] [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P]`."""
    parser = commands.add_parser(
        "generate", help="sample text from a GPT-style model (aiayn train --task lm)",
        description=cmd_generate.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='example:\n  aiayn generate runs/shakespeare-char/model "ROMEO:" --max-new-tokens 300 --seed 1')
    parser.add_argument("model", metavar="MODEL_DIR", help="a DecoderLM folder (config.json, model.safetensors, "
                                                           "tokenizer.json)")
    parser.add_argument("prompt", nargs="?", default="\n", help="text to continue (default: a newline)")
    parser.add_argument("--max-new-tokens", type=int, default=500, help="default 500")
    parser.add_argument("--temperature", type=float, default=1.0, help="softmax temperature (default 1.0)")
    parser.add_argument("--top-k", type=int, default=0, help="sample among the k most probable (0: all)")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus sampling: smallest set with "
                                                                   "probability >= p (default: off)")
    parser.add_argument("--seed", type=int, default=None, help="a seed makes the output reproducible")
    parser.add_argument("--greedy", action="store_true", help="always the most probable token (no sampling)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda")
    parser.set_defaults(run=cmd_generate)


def cmd_fill_mask(args: argparse.Namespace) -> None:
    """Print the most probable fillers of each [MASK] with their probabilities (BERT-style model)."""
    from .lm import fill_mask

    _set_threads(args.threads)
    model, tokenizer = _load_lm(args.model, "encoder_lm", args.device, "fill-mask")
    try:
        results = fill_mask(model, tokenizer, args.text, top_k=args.top_k)
    except ValueError as error:
        raise UserError(str(error)) from None
    for n, candidates in enumerate(results, 1):
        if len(results) > 1:
            print(f"[MASK] {n}:")
        for candidate in candidates:
            print(f"{candidate.probability:8.4f}  {candidate.token}")


def add_fill_mask_parser(commands: argparse._SubParsersAction) -> None:
    """`aiayn fill-mask MODEL_DIR "text with [MASK]" [--top-k 5]`."""
    parser = commands.add_parser(
        "fill-mask", help="fill in [MASK] with a BERT-style model (aiayn train --task mlm)",
        description=cmd_fill_mask.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='example:\n  aiayn fill-mask runs/shakespeare-mlm/model "To be or not to [MASK]." --top-k 5')
    parser.add_argument("model", metavar="MODEL_DIR", help="an EncoderLM folder")
    parser.add_argument("text", help="text with one or more [MASK]")
    parser.add_argument("--top-k", type=int, default=5, help="how many candidates per [MASK] (default 5)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda")
    parser.set_defaults(run=cmd_fill_mask)


def _load_translator(folder: str, device: str = "auto") -> tuple[object, object]:
    """An encoder-decoder model and its tokenizer from a model folder, checked to fit each other."""
    from .saving import check_tokenizer, load
    from .tokenizer import check_fits, load_tokenizer
    from .training.base import resolve_device

    try:
        model = load(folder, map_location=resolve_device(device))
        if model.model_type != "transformer":
            raise UserError(f"{folder} holds a {model.model_type} model; translation needs an encoder-decoder "
                            f"(a folder written by `aiayn train`)")
        tok = load_tokenizer(folder)
        check_fits(tok, model.cfg, f"{folder}/tokenizer.json")
        check_tokenizer(folder, tok)
    except _user_errors() as error:
        raise UserError(str(error)) from None
    return model, tok


def _set_threads(threads: int) -> None:
    """torch.set_num_threads when asked."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def cmd_translate(args: argparse.Namespace) -> None:
    """Translate sentences with a trained model (beam 4, length penalty 0.6 by default, §6.1)."""
    from pathlib import Path

    from .evaluation import translate

    _set_threads(args.threads)
    model, tok = _load_translator(args.model, args.device)
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
        from tqdm import tqdm

        bar = tqdm(total=len(texts), unit="line", desc="translating", file=sys.stderr)
    lines = translate(model, tok, texts, progress=bar.update if bar else None, **_decoding_options(args))
    if bar:
        bar.close()
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


def _add_decoding_flags(parser: argparse.ArgumentParser) -> None:
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


def _decoding_options(args: argparse.Namespace) -> dict[str, Any]:
    """model.generate options from the decoding flags."""
    options: dict[str, Any] = {"beam_size": 1 if args.greedy else args.beam, "length_penalty": args.alpha}
    if args.sample:
        options.update(do_sample=True, temperature=args.temperature, top_k=args.top_k or None,
                       top_p=args.top_p if args.top_p < 1.0 else None, seed=args.seed)
    return options


def add_translate_parser(commands: argparse._SubParsersAction) -> None:
    """`aiayn translate MODEL_DIR [TEXT ...] [--input FILE] [--beam 4 | --greedy]`."""
    parser = commands.add_parser(
        "translate", help="translate sentences with a trained model", description=cmd_translate.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='example:\n  aiayn translate runs/kjv-en-es/model "In the beginning God created the heaven '
               'and the earth."')
    parser.add_argument("model", metavar="MODEL_DIR", help="a model folder (config.json, model.safetensors, "
                                                           "tokenizer.json)")
    parser.add_argument("text", nargs="*", help="sentences to translate (else --input or stdin)")
    parser.add_argument("--input", metavar="FILE", help="a text file, one sentence per line")
    _add_decoding_flags(parser)
    parser.set_defaults(run=cmd_translate)


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Translate a test set and report sacreBLEU BLEU and chrF with signatures (detokenized vs raw refs)."""
    from pathlib import Path

    from .data.corpus import load_corpus, read_parallel
    from .evaluation import score, translate
    from .saving import atomic_write_text

    _set_threads(args.threads)
    model, tok = _load_translator(args.model, args.device)
    try:
        if (args.src is None) != (args.ref is None):
            raise UserError("give both --src and --ref (or neither, for the bundled test set)")
        pairs = read_parallel(args.src, args.ref) if args.src else load_corpus().test
    except _user_errors() as error:
        raise UserError(str(error)) from None
    options = _decoding_options(args)
    hyps = translate(model, tok, [s for s, _ in pairs], **options)
    if args.output:
        atomic_write_text(Path(args.output), "".join(h + "\n" for h in hyps))
    how = "sampling" if args.sample else f"beam {options['beam_size']}, alpha {args.alpha}"
    print(f"{len(pairs)} sentences, {how}")
    print(score(hyps, [t for _, t in pairs]))


def add_evaluate_parser(commands: argparse._SubParsersAction) -> None:
    """`aiayn evaluate MODEL_DIR [--src FILE --ref FILE]`."""
    parser = commands.add_parser(
        "evaluate", help="sacreBLEU + chrF of a model on a test set", description=cmd_evaluate.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  aiayn evaluate runs/kjv-en-es/model            # the bundled test set (John)\n"
               "  aiayn evaluate MODEL_DIR --src test.en --ref test.es --output hyp.es")
    parser.add_argument("model", metavar="MODEL_DIR")
    parser.add_argument("--src", metavar="FILE", help="source sentences, one per line")
    parser.add_argument("--ref", metavar="FILE", help="reference translations, aligned with --src")
    parser.add_argument("--output", metavar="FILE", help="also write the translations here")
    _add_decoding_flags(parser)
    parser.set_defaults(run=cmd_evaluate)


def cmd_average(args: argparse.Namespace) -> None:
    """Average the weights of a run's last k checkpoints into one model folder (§6.1)."""
    from pathlib import Path

    from .saving import TOKENIZER_FILE, load, save_model
    from .training.checkpoints import average_checkpoints, list_checkpoints

    checkpoints = list_checkpoints(args.run_dir)
    if not checkpoints:
        raise UserError(f"{args.run_dir} has no checkpoints/step_N folders: give a run folder written by `aiayn train`")
    if args.last < 1:
        raise UserError(f"--last must be at least 1, got {args.last}")
    chosen = checkpoints[-args.last:]
    try:
        model = load(chosen[-1])
        state = average_checkpoints(chosen)
    except _user_errors() as error:
        raise UserError(str(error)) from None
    model.load_state_dict(state)
    tokenizer = chosen[-1] / TOKENIZER_FILE
    save_model(model, Path(args.out), tokenizer if tokenizer.is_file() else None)
    names = ", ".join(c.name for c in chosen)
    print(f"averaged {len(chosen)} checkpoint(s) ({names}) into {args.out}")
    if len(chosen) < args.last:
        print(f"note: asked for {args.last} but the run keeps only {len(chosen)}", file=sys.stderr)


def add_average_parser(commands: argparse._SubParsersAction) -> None:
    """`aiayn average RUN_DIR --last 5 --out MODEL_DIR`."""
    parser = commands.add_parser(
        "average", help="average the last k checkpoints of a run (§6.1)", description=cmd_average.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  aiayn average runs/kjv-en-es --last 5 --out runs/kjv-en-es/averaged")
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--last", type=int, default=5, help="how many of the last checkpoints (default 5; "
                                                            "the paper averaged the last 5 for base models)")
    parser.add_argument("--out", required=True, metavar="MODEL_DIR", help="where to write the averaged model")
    parser.set_defaults(run=cmd_average)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="aiayn", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="build paper-base and translate with random weights",
                               description=cmd_demo.__doc__)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=cmd_demo)
    add_attention_parser(commands)
    add_import_hf_parser(commands)
    add_export_parser(commands)
    add_train_parser(commands)
    add_translate_parser(commands)
    add_evaluate_parser(commands)
    add_average_parser(commands)
    add_generate_parser(commands)
    add_fill_mask_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `aiayn` and `python -m aiayn`."""
    args = build_parser().parse_args(argv)
    args.owns_process = argv is None  # the command line of this process: process-wide settings may apply
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


if __name__ == "__main__":
    sys.exit(main())
