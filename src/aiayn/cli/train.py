"""`aiayn train`: a translator (default), a GPT-style LM (--task lm) or a BERT-style masked LM (--task mlm)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import typing
from collections.abc import Callable

from ..runtime.allocator import tune_cpu_allocator
from ..training.lm import LMTrainConfig, train_lm
from ..training.settings import EVERY, SETTINGS, TASKS, Setting, choose_task, resolve
from ..training.translation import TrainConfig, train
from .common import UserError, check_out_folder, user_errors

CONFIGS: dict[str, type] = {"translate": TrainConfig, "lm": LMTrainConfig, "mlm": LMTrainConfig}


def run(args: argparse.Namespace) -> None:
    """Train a translator (default), a GPT-style LM (--task lm) or a BERT-style masked LM (--task mlm)."""
    task, cfg = settings(args)  # every setting checked before the allocator is tuned or anything is read or written
    check_out_folder(cfg.out)  # a file there would fail only once the data is read (#32)
    _tune_allocator(args)
    try:
        result = train(cfg, resume=args.resume) if task == "translate" else train_lm(cfg, resume=args.resume)
    except user_errors() as error:
        raise UserError(str(error)) from None
    if _stopped(result) or not result.main:  # under torchrun, rank 0 reports
        return
    if task == "translate":
        if result.test_scores is not None:
            test_set = cfg.data if cfg.test is None else cfg.test
            print(f"test set ({test_set}), step {result.test_step or result.step}, beam {cfg.beam}:")
            print(result.test_scores)
    else:
        final = result.final or {}
        unit = "nats per character" if cfg.tokenizer_kind == "char" and not cfg.init_from else "nats per token"
        line = f"validation loss {final.get('val_loss', float('nan')):.4f} {unit}"
        if "val_acc" in final:
            line += f", masked-token accuracy {final['val_acc']:.3f}"
        print(f"{line} (step {result.step}, {final.get('train_s', 0):.0f}s training)")
    print(_model_line(result))


def settings(args: argparse.Namespace) -> tuple[str, TrainConfig | LMTrainConfig]:
    """The task and its settings from `aiayn train`'s arguments: defaults < train.json (--resume) < --config <
    the flags given; a setting that is unknown, bad or not for the task is a UserError naming it."""
    try:
        task = choose_task(args.task, args.config, args.out, args.resume)
        flags = {s.name: getattr(args, s.name) for s in SETTINGS
                 if s.name != "task" and getattr(args, s.name, None) is not None}  # --task chose the task
        return task, resolve(task, flags, args.config, args.resume, CONFIGS)
    except user_errors() as error:
        raise UserError(str(error)) from None


def _model_line(result: typing.Any) -> str:
    """The final line: where the model is, and which step it is when --keep-best chose it."""
    line = f"model: {result.run_dir / 'model'}"
    if result.best is not None:
        line += f" (the best evaluation: {result.best}{'; stopped early (--patience)' if result.stopped_early else ''})"
    return line


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


def add_parser(commands: argparse._SubParsersAction) -> None:
    """`aiayn train`: every setting of aiayn.training.settings is a flag (--batch-tokens etc.); flags win over
    --config, which wins over a resumed run's train.json."""
    parser = commands.add_parser(
        "train", help="train a translator (default: English->Spanish on the bundled Bible)",
        description=run.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  aiayn train                                   # bundled KJV -> Reina-Valera 1909\n"
               "  aiayn train --data pairs.tsv --out runs/mine --steps 3000\n"
               "  aiayn train --data train.en --target train.es --out runs/mine\n"
               "  aiayn train --out runs/mine --resume --steps 6000   # continue to step 6000 (drops a time budget)\n"
               "  aiayn train --config run.toml                 # TOML keys = the flags' names with _\n"
               "  aiayn train --task lm --out runs/shakespeare   # character-level GPT on bundled Shakespeare\n"
               "  aiayn train --task lm --config configs/lm-shakespeare-char.toml   # nanoGPT's CPU run\n"
               "  aiayn train --task mlm --out runs/shakespeare-mlm --data my_texts/")
    parser.add_argument("--config", metavar="TOML", help="a TOML file of training settings (flags win)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--task", choices=TASKS, default=None,
                        help="translate (default): encoder-decoder; lm: GPT-style DecoderLM; mlm: BERT-style "
                             "EncoderLM (a resumed run keeps its task)")
    parser.add_argument("--tune-allocator", action=argparse.BooleanOptionalAction, default=True,
                        help="on Linux with glibc, keep freed blocks up to 1 GiB in malloc's heap for reuse instead "
                             "of unmapping them (no page faults each step, more memory resident); "
                             "--no-tune-allocator keeps glibc's defaults. MALLOC_*_ variables in the environment "
                             "win (default: on)")
    for s in SETTINGS:
        if s.name != "task":  # --task above chooses the task
            _add_flag(parser, s)
    parser.set_defaults(run=run)


def _add_flag(parser: argparse.ArgumentParser, setting: Setting) -> None:
    """The flag of one setting: its help, default(s) and tasks from the declaration; a bad value is argparse's
    one-line error. The flag's own default is None, so only the flags given override train.json and TOML."""
    only = "" if setting.tasks == EVERY else f" [--task {'|'.join(t for t in TASKS if t in setting.tasks)} only]"
    text = f"{setting.help} ({setting.default_text(setting.tasks)}){only}".replace("%", "%%")
    if setting.kind is bool:
        parser.add_argument(setting.flag, dest=setting.name, action=argparse.BooleanOptionalAction, default=None,
                            help=text)
        return
    metavar = setting.metavar or ("{" + ",".join(map(str, setting.choices)) + "}" if setting.choices else
                                  {int: "N", float: "X", str: "NAME"}[setting.kind])
    parser.add_argument(setting.flag, dest=setting.name, type=_parser(setting), metavar=metavar, default=None,
                        help=text)


def _parser(setting: Setting) -> Callable[[str], object]:
    """A flag's text -> its value, or argparse.ArgumentTypeError with what is allowed (exit 2, one line)."""
    def parse(text: str) -> object:
        try:
            return setting.parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse
