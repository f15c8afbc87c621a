"""`aiayn train`: a translator (default), a GPT-style LM (--task lm) or a BERT-style masked LM (--task mlm)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import typing
from collections.abc import Callable
from pathlib import Path

from ..runtime.allocator import tune_cpu_allocator
from ..training.lm import LMTrainConfig, train_lm
from ..training.run_folder import TRAIN_FILE
from ..training.translation import TrainConfig, train
from .common import UserError, float_in, int_at_least, user_errors


def run(args: argparse.Namespace) -> None:
    """Train a translator (default), a GPT-style LM (--task lm) or a BERT-style masked LM (--task mlm)."""
    _tune_allocator(args)
    if _train_task(args) != "translate":
        return run_lm(args)
    flags = _task_flags(args, TrainConfig, "translate")
    try:
        values: dict[str, object] = {}
        if args.config:  # only the settings the file names: defaults must not hide the run's own on --resume
            TrainConfig.from_toml(args.config)  # checked now, naming the file
            values = LMTrainConfig.read_toml(args.config)
        out = Path(str(flags.get("out", values.get("out", TrainConfig.out))))
        if args.resume and (out / TRAIN_FILE).is_file():  # the run's own settings, then the file, then flags
            values = {**json.loads((out / TRAIN_FILE).read_text(encoding="utf-8")), **values}
        cfg = TrainConfig.from_dict({**values, **flags})
        result = train(cfg, resume=args.resume)
    except user_errors() as error:
        raise UserError(str(error)) from None
    if _stopped(result) or not result.main:  # under torchrun, rank 0 reports
        return
    if result.test_scores is not None:
        print(f"test set ({cfg.data if cfg.test is None else cfg.test}), step {result.step}, beam {cfg.beam}:")
        print(result.test_scores)
    print(_model_line(result))


def run_lm(args: argparse.Namespace) -> None:
    """Train a DecoderLM (--task lm) or an EncoderLM (--task mlm) on a text; report the validation loss."""
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
    except user_errors() as error:
        raise UserError(str(error)) from None
    if _stopped(result) or not result.main:  # under torchrun, rank 0 reports
        return
    final = result.final or {}
    unit = "nats per character" if cfg.tokenizer_kind == "char" and not cfg.init_from else "nats per token"
    line = f"validation loss {final.get('val_loss', float('nan')):.4f} {unit}"
    if "val_acc" in final:
        line += f", masked-token accuracy {final['val_acc']:.3f}"
    print(f"{line} (step {result.step}, {final.get('train_s', 0):.0f}s training)")
    print(_model_line(result))


def _model_line(result: typing.Any) -> str:
    """The final line: where the model is, and which step it is when --keep-best chose it."""
    line = f"model: {result.run_dir / 'model'}"
    if result.best is not None:
        line += f" (the best evaluation: {result.best}{'; stopped early (--patience)' if result.stopped_early else ''})"
    return line


def _train_task(args: argparse.Namespace) -> str:
    """--task, else the resumed run's task (its train.json), else the --config file's, else translate."""
    if args.task:
        return args.task
    out = Path(args.out) if args.out else None
    if args.config:
        try:
            values = LMTrainConfig.read_toml(args.config)
        except user_errors() as error:
            raise UserError(str(error)) from None
        out = out or (Path(values["out"]) if "out" in values else None)
        if not args.resume and "task" in values:
            return str(values["task"])
    if args.resume and out is not None and (out / "train.json").is_file():
        return str(json.loads((out / "train.json").read_text(encoding="utf-8")).get("task", "translate"))
    return "translate"


def _task_flags(args: argparse.Namespace, config_cls: type, task: str) -> dict[str, object]:
    """The flags given on the command line that are fields of config_cls; others raise a UserError."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    every = (fields | {f.name for f in dataclasses.fields(TrainConfig)} | set(_lm_train_defaults())) - {"task"}
    given = {name: getattr(args, name) for name in every if getattr(args, name, None) is not None}
    wrong = sorted(set(given) - fields)
    if wrong:
        flags = ", ".join("--" + name.replace("_", "-") for name in wrong)
        raise UserError(f"{flags} do(es) not apply to --task {task}; see `aiayn train --help`")
    return given


def _tune_allocator(args: argparse.Namespace) -> None:
    """Tune glibc malloc for the training loop (aiayn.runtime.allocator) unless --no-tune-allocator, only when
    this command is the whole process (`aiayn train`, `python -m aiayn train`; not `main([...])` called from Python)."""
    if not args.tune_allocator or not getattr(args, "owns_process", False):
        return

    line = tune_cpu_allocator()
    if line and os.environ.get("RANK", "0") == "0":  # under torchrun every rank tunes itself, rank 0 says so
        print(line, file=sys.stderr, flush=True)


def _stopped(result: object) -> bool:
    """True if a training run stopped early: SIGTERM (a scheduler, `kill`) is a clean stop (exit 0) after its
    checkpoint; Ctrl-C (SIGINT) is an interruption (exit 130)."""
    if not getattr(result, "interrupted", False):
        return False
    if getattr(result, "stop_signal", None) == signal.SIGTERM:
        print(f"aiayn train: stopped by SIGTERM at step {getattr(result, 'step', '?')}; checkpoint saved, continue "
              f"with --resume",
              file=sys.stderr)
        return True
    raise KeyboardInterrupt


def _train_flag_types(config_cls: type | None = None) -> dict[str, tuple[Callable[[str], object], str]]:
    """TrainConfig (or config_cls) field -> (parser of a flag's text, metavar), from the type hints."""
    config_cls = config_cls or TrainConfig
    hints = typing.get_type_hints(config_cls)
    kinds: dict[str, tuple[Callable[[str], object], str]] = {}
    for f in dataclasses.fields(config_cls):
        hint = str(hints[f.name])
        if "list" in hint:
            kinds[f.name] = (lambda text: [int(x) for x in text.split(",") if x.strip()], "N,N,...")
        elif "bool" in hint:
            kinds[f.name] = (bool, "")
        elif "int" in hint and "float" not in hint:  # counts and sizes; a seed may be any integer
            kinds[f.name] = (int if "seed" in f.name else int_at_least(0), "N")
        elif "float" in hint:  # rates, probabilities, betas, seconds: none is negative
            kinds[f.name] = (float_in(0.0), "X")
        else:
            paths = ("out", "data", "target", "dev", "dev_target", "test", "test_target", "init_from")
            kinds[f.name] = (str, "DURATION" if f.name == "time_budget" else "PATH" if f.name in paths else "NAME")
    return kinds


def _lm_train_defaults() -> dict[str, object]:
    """LMTrainConfig field -> default."""
    return {f.name: f.default for f in dataclasses.fields(LMTrainConfig)}


def add_parser(commands: argparse._SubParsersAction) -> None:
    """`aiayn train`: every TrainConfig field is a flag (--batch-tokens etc.); flags win over --config."""
    parser = commands.add_parser(
        "train", help="train a translator (default: English->Spanish on the bundled Bible)",
        description=run.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
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
                             "of unmapping them (no page faults each step, more memory resident); "
                             "--no-tune-allocator keeps glibc's defaults. MALLOC_*_ variables in the environment "
                             "win (default: on)")
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore
                for f in dataclasses.fields(TrainConfig)}
    lm_defaults = _lm_train_defaults()
    kinds = {**_train_flag_types(), **{name: kind for name, kind in _train_flag_types(LMTrainConfig).items()
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
    parser.set_defaults(run=run)
