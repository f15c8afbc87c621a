"""Every training setting, declared once; a run's settings resolve as defaults < train.json < TOML < flags.

SETTINGS below is the one declaration. Each Setting names a field, its type, its default (and the language
models' default where that differs), a one-line help, the tasks it applies to and its allowed values. From
it come the fields of TrainConfig (`--task translate`) and LMTrainConfig (`--task lm|mlm`), the flags of
`aiayn train` and their --help, the TOML keys, train.json (to_dict / from_dict) and the check of every value.

Adding a setting is a one-place change: add one `Setting(...)` line to SETTINGS, in its group, and read it as
`cfg.name` in the trainer. Its flag is `--name-with-dashes` (a bool gets `--name` / `--no-name`), its TOML
and train.json key is `name`; a run folder written before it existed resumes with its default (or with
`old_runs`, the value such runs had). A ModelConfig field is a Setting with `model=("field",)`: it reaches
the model through model_overrides(). A new ModelConfig field needs such a line or an entry in
MODEL_FIELDS_NOT_SET; tests/test_settings.py fails until it has one.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..data.corpus import BUNDLED
from ..inference.options import OPTIONS as DECODING
from ..model.config import ACTIVATIONS, NORM_PLACEMENTS, POSITION_KINDS, PRESETS, SINUSOID_LAYOUTS, ModelConfig
from ..model.registry import of_task
from ..runtime.distributed import DEFAULT_TIMEOUT_S
from ..runtime.precision import PRECISIONS
from .run_folder import TRAIN_FILE
from .schedule import SCHEDULES
from .validate import OFF, TrainingError, check_averaging, check_length, parse_budget

TASKS = ("translate", "lm", "mlm")
TRANSLATE = frozenset({"translate"})
LM = frozenset({"lm", "mlm"})
EVERY = frozenset(TASKS)
BUNDLED_TEXT = "shakespeare"  # the name that selects the bundled complete works (aiayn.data.lm)
TOKENIZERS = ("char", "bpe", "wordpiece")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's
_SAME = object()  # Setting.lm: the language models take the translator's default
MAX_LEN = 256  # the translator's max_len unless named (or the model has fewer positions)

# ModelConfig fields no setting sets, and why (every other field has a Setting with model=(field,)).
MODEL_FIELDS_NOT_SET = {
    "vocab_size": "the tokenizer's size; the vocab_size setting is the size the tokenizer is asked to learn",
    "pad_id": "fixed by the tokenizer's special tokens", "bos_id": "fixed by the tokenizer's special tokens",
    "eos_id": "fixed by the tokenizer's special tokens", "extra": "free-form notes, not a setting",
}

# The paper's own training recipe (§3.1 post-LN, §5.1 batches, §5.2 steps, §5.3 Adam and schedule, §5.4
# regularisation, §6.1 decoding), laid under a run's own settings by `recipe = "paper"`. The model's size
# (`preset`) and the vocabulary stay separate choices: `--recipe paper --preset paper-base` is the base model.
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {"norm": "post", "batch_tokens": 25_000, "steps": 100_000, "time_budget": None,
              "schedule": "inverse-sqrt", "warmup": 4000, "peak_lr": 0.0, "lr_scale": 1.0, "adam_beta1": 0.9,
              "adam_beta2": 0.98, "adam_eps": 1e-9, "dropout": 0.1, "label_smoothing": 0.1, "clip_norm": 0.0,
              "beam": DECODING["beam_size"].default, "length_penalty": DECODING["length_penalty"].default,  # §6.1
              "average_last": 5},
}


@dataclass(frozen=True)
class Setting:
    """One training setting: its field, flag and TOML key, default(s), help, tasks and allowed values."""

    name: str
    kind: Any  # int, float, str, bool or list (a list of integers)
    default: Any  # the translator's default (and the language models', unless `lm` names theirs)
    help: str
    tasks: frozenset[str] = EVERY
    lm: Any = _SAME  # the default of --task lm|mlm where it differs
    none: str = ""  # what None means, where None is allowed ("the preset's")
    lm_none: str = ""  # what None means for --task lm|mlm, where that differs
    choices: tuple[Any, ...] | None = None
    bounds: str | None = ">= 0"  # numbers: ">= 1", "> 0", "[0, 1)", "(0, 1)"; None: any
    model: tuple[str, ...] = ()  # the ModelConfig field(s) this setting sets
    metavar: str = ""
    old_runs: Any = _SAME  # the value a train.json without this key meant (a run from before the setting)
    convert: Callable[[Any], Any] | None = None  # parses the value itself (ValueError naming it); e.g. a duration
    words: str = ""  # with `convert`: the values allowed, in words

    @property
    def flag(self) -> str:
        """The command-line flag: --name-with-dashes."""
        return "--" + self.name.replace("_", "-")

    def default_for(self, task: str) -> Any:
        """This setting's default for a task."""
        return self.default if task == "translate" or self.lm is _SAME else self.lm

    def check(self, value: Any) -> Any:
        """The value, checked (ints taken as floats where a float is asked for); ValueError names what is allowed."""
        if value is None:
            if self.none or self.lm_none:
                return None
            raise ValueError(f"must be {self.allowed()}, got None")
        if self.convert is not None:
            return self.convert(value)
        if self.kind is list:
            if not isinstance(value, list) or not all(_is_int(v) and v >= 1 for v in value):
                raise ValueError(f"must be a list of step numbers >= 1, got {value!r}")
            return list(value)
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"must be true or false, got {value!r}")
            return value
        if self.kind is int and not _is_int(value) or self.kind is float and not (
                _is_int(value) or isinstance(value, float)) or self.kind is str and not isinstance(value, str):
            raise ValueError(f"must be {self.allowed()}, got {value!r}")
        value = float(value) if self.kind is float else value
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"must be one of {self.choices}, got {value!r}")
        if self.kind in (int, float) and self.bounds and not _within(value, self.bounds):
            raise ValueError(f"must be {self.allowed()}, got {value!r}")
        return value

    def parse(self, text: str) -> Any:
        """A flag's text as this setting's value; ValueError (argparse's one-line error) if it is not allowed."""
        try:
            if self.convert is not None:
                value: Any = text
            elif self.kind is list:
                value = [int(part) for part in text.split(",") if part.strip()]
            elif self.kind in (int, float):
                value = self.kind(text)
            else:
                value = text
        except ValueError:
            raise ValueError(f"expected {self.allowed()}, got {text!r}") from None
        return self.check(value)

    def allowed(self) -> str:
        """The values allowed, in words."""
        if self.words:
            return self.words
        if self.choices is not None:
            return f"one of {self.choices}"
        noun = {int: "an integer", float: "a number", str: "a text", bool: "true or false",
                list: "a list of step numbers"}[self.kind]
        if self.kind in (int, float) and self.bounds:
            noun += f" in {self.bounds}" if self.bounds[0] in "[(" else f" {self.bounds}"
        return noun

    def default_text(self, tasks: frozenset[str]) -> str:
        """The default(s) as --help shows them, for the tasks that have this setting."""
        texts = {task: self._shown(self.default_for(task), task) for task in TASKS if task in tasks}
        if len(set(texts.values())) == 1:
            return "default " + next(iter(texts.values()))
        by_model = {"translate": texts.pop("translate", None), "lm, mlm": texts.get("lm", texts.get("mlm"))}
        return "default " + "; ".join(f"{tasks_}: {text}" for tasks_, text in by_model.items() if text is not None)

    def _shown(self, value: Any, task: str) -> str:
        """One default as --help shows it."""
        if value is None:
            return self.lm_none if self.lm_none and task != "translate" else self.none or "none"
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, list):
            return ",".join(map(str, value)) or "none"
        return str(value)


def _is_int(value: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _within(value: float, bounds: str) -> bool:
    """value within ">= 1", "> 0", "[0, 1)", "(0, 1]"-style bounds."""
    if bounds[0] in "[(":
        low, high = (float(x) for x in bounds[1:-1].split(","))
        return (value >= low if bounds[0] == "[" else value > low) and \
            (value <= high if bounds[-1] == "]" else value < high)
    op, number = bounds.split()
    return value >= float(number) if op == ">=" else value > float(number)


def _model(name: str, help: str, **kw: Any) -> Setting:
    """A setting of the ModelConfig field `name`, of that field's type; None (the default): the task's model's."""
    kind = typing.get_type_hints(ModelConfig)[name]
    kind = next((arg for arg in typing.get_args(kind) if arg is not type(None)), kind)  # int | None -> int
    default = {f.name: f.default for f in dataclasses.fields(ModelConfig)}[name]
    kw.setdefault("none", "the preset's")
    kw.setdefault("lm_none", _show(default))
    return Setting(name, kind, kw.pop("default", None), help, model=(name,), **kw)


def _show(value: Any) -> str:
    """A ModelConfig default as help text shows it."""
    return ("on" if value else "off") if isinstance(value, bool) else str(value)


SETTINGS: tuple[Setting, ...] = (
    # --- the run
    Setting("out", str, "runs/kjv-en-es", "the run folder: checkpoints, metrics, train.json and the model",
            lm="runs/shakespeare-char", metavar="DIR"),
    Setting("task", str, "lm", "lm: GPT-style DecoderLM, next token; mlm: BERT-style EncoderLM, masked tokens",
            tasks=LM, choices=("lm", "mlm")),
    Setting("recipe", str, None, "paper: every setting the run does not name takes the paper's value (§5)",
            tasks=TRANSLATE, none="none: the defaults here, sized for a short CPU run", choices=tuple(RECIPES)),
    # --- data
    Setting("data", str, BUNDLED, "a TSV of pairs or a source text file (translate); a text file or a folder of "
            f".txt files (lm, mlm); {BUNDLED} / {BUNDLED_TEXT}: the bundled corpus; or a store made by `aiayn "
            "prepare` (else the run prepares one in RUN/data)", lm=BUNDLED_TEXT, metavar="PATH"),
    Setting("bpe_sample", int, 1_000_000, "the BPE / WordPiece vocabulary is learned on at most this many sentences "
            "(lm, mlm: lines) of the training split, a seeded sample, as SentencePiece's input_sentence_size",
            bounds=">= 1"),
    Setting("skip_bad_lines", bool, False, "skip (and count) corpus lines with the wrong number of fields or bytes "
            "that are not UTF-8, instead of stopping at the first with its line number", tasks=TRANSLATE),
    Setting("target", str, None, "with --data a source text file: the aligned target text file", tasks=TRANSLATE,
            none="none: --data is a TSV", metavar="PATH"),
    Setting("dev", str, None, "a dev TSV or source file", tasks=TRANSLATE, none="drawn from --data",
            metavar="PATH"),
    Setting("dev_target", str, None, "with --dev a source file: its target file", tasks=TRANSLATE, none="none",
            metavar="PATH"),
    Setting("test", str, None, "a test TSV or source file", tasks=TRANSLATE, none="drawn from --data",
            metavar="PATH"),
    Setting("test_target", str, None, "with --test a source file: its target file", tasks=TRANSLATE, none="none",
            metavar="PATH"),
    Setting("dev_size", int, 500, "dev pairs drawn from a user corpus (with --split-seed) when no --dev is given "
            "(the evaluations during and after training need them)", tasks=TRANSLATE, bounds=">= 1"),
    Setting("test_size", int, 1000, "test pairs drawn from a user corpus when no --test is given", tasks=TRANSLATE),
    Setting("split_seed", int, 1, "seed of the dev / test draw", tasks=TRANSLATE, bounds=None),
    Setting("max_len", int, None, "training pairs with more BPE tokens on either side are skipped; at most the "
            "model's --max-positions", tasks=TRANSLATE, bounds=">= 1",
            none=f"{MAX_LEN}, or the model's max_positions where that is fewer"),
    Setting("train_fraction", float, 0.9, "the first share of the text trains, the rest validates (as nanoGPT)",
            tasks=LM, bounds="(0, 1)"),
    Setting("tokenizer", str, None, "char, BPE or WordPiece (BERT's) tokens", tasks=LM,
            none="char for lm, wordpiece for mlm", choices=TOKENIZERS),
    Setting("vocab_size", int, 8000, "tokens the BPE / WordPiece tokenizer learns (§5.1: 37,000 shared); char: "
            "the text's characters", bounds=">= 1"),
    # --- the model (ModelConfig; Table 3 varies N layers, d_model, d_ff, h)
    Setting("arch", str, "transformer", "the translator: transformer (the paper's), or rnn, the recurrent "
            "encoder-decoder §4 compares it with (bidirectional LSTM, Luong attention; --preset sizes it to that "
            "Transformer's parameter count)", tasks=TRANSLATE, choices=of_task("translate")),
    Setting("preset", str, "shallow", "the model's sizes (shallow: 1+1 layers, d_model 256, 4 heads, d_ff 1024, "
            "the most BLEU in ten and in thirty minutes on a CPU; small: the same at 3+3 layers; paper-base: "
            "Table 3's base)", tasks=TRANSLATE, choices=tuple(PRESETS)),
    _model("dropout", "residual and embedding dropout (§5.4: 0.1)", default=None, lm=None, bounds="[0, 1)",
           none="planned from the epochs the run makes (docs/results.md): 0 under 5, 0.1 under 14, else 0.3"),
    _model("norm", "post: LayerNorm(x + Sublayer(x)) (§3.1); pre: LayerNorm inside the residual (learns faster "
           "at first)", default="pre", lm=None, choices=NORM_PLACEMENTS),
    _model("d_model", "model width d_model (§3.1)", lm=128, bounds=">= 1"),
    _model("n_heads", "attention heads h (§3.2.2); d_model must divide by it", lm=4, bounds=">= 1"),
    _model("d_ff", "inner width of the feed-forward layers (§3.3)", lm=512, bounds=">= 1"),
    _model("d_k", "width of a head's queries, keys and values (§3.2.2: d_model / h; Table 3 (B) shrinks it)",
           bounds=">= 1", none="d_model / n_heads", lm_none="d_model / n_heads"),
    Setting("encoder_layers", int, None, "encoder layers N (§3.1)", tasks=TRANSLATE, none="the preset's",
            bounds=">= 1", model=("n_encoder_layers",)),
    Setting("decoder_layers", int, None, "decoder layers N (§3.1)", tasks=TRANSLATE, none="the preset's",
            bounds=">= 1", model=("n_decoder_layers",)),
    Setting("n_layers", int, 4, "layers of the one stack: the decoder (lm) or the encoder (mlm)", tasks=LM,
            bounds=">= 1", model=("n_encoder_layers", "n_decoder_layers")),
    _model("attention_dropout", "dropout on the attention weights (not in the paper)", bounds="[0, 1)"),
    _model("max_positions", "the longest sequence the positions cover", bounds=">= 1",
           lm_none="--context"),
    _model("positions", "sinusoidal (§3.5), learned (Table 3 (E)) or rotary (RoFormer) positions", lm="sinusoidal",
           choices=POSITION_KINDS),
    _model("activation", "the feed-forward activation (§3.3: relu)", lm="relu", choices=ACTIVATIONS),
    _model("tie_embeddings", "one matrix for source, target and pre-softmax weights (§3.4)"),
    _model("scale_embeddings", "multiply token embeddings by sqrt(d_model) (§3.4)", lm=True),
    _model("layer_norm_eps", "LayerNorm's epsilon (the paper gives none)", bounds="> 0"),
    _model("type_vocab_size", ">0: learned segment (token-type) embeddings, as in BERT"),
    _model("embedding_norm", "LayerNorm on the summed embeddings, as in BERT and BART"),
    _model("position_offset", "position p reads row p + offset of the position table (BART's learned: 2)"),
    _model("sinusoid_layout", "interleaved sin, cos (§3.5); halves: sines then cosines (Marian)",
           choices=SINUSOID_LAYOUTS),
    _model("final_logits_bias", "a fixed bias on the output logits (Marian, BART)"),
    # --- batches
    Setting("batch_tokens", int, 1024, "about this many source and as many target tokens per batch (§5.1: "
            "~25,000)", tasks=TRANSLATE, bounds=">= 1"),
    Setting("context", int, 64, "tokens per window", tasks=LM, bounds=">= 1"),
    Setting("batch_size", int, 12, "windows per batch", tasks=LM, bounds=">= 1"),
    Setting("accumulate", int, 1, "an optimizer step every N batches (a larger effective batch; under torchrun "
            "ranks x N)", bounds=">= 1"),
    Setting("mask_prob", float, 0.15, "share of tokens chosen (BERT); of those 80% [MASK], 10% random, 10% "
            "kept", tasks=frozenset({"mlm"}), bounds="(0, 1)"),
    # --- optimizer and schedule (§5.3: Adam(0.9, 0.98, 1e-9), lrate = scale * d^-0.5 * min(s^-0.5, s w^-1.5))
    Setting("steps", int, 0, "optimizer steps (§5.2: 100,000); 0: as many as --time-budget holds; naming only "
            "--steps drops the time budget (a resumed run's too)", lm=2000),
    Setting("time_budget", float, "10m", "a wall-clock limit for the whole loop (10m, 1h30m, or seconds: 600; "
            f"{OFF}: no limit); with --steps, whichever ends first (not in the paper)", lm=None, none=OFF,
            metavar="DURATION", convert=parse_budget, words=f"a duration (10m, 90s, 1h30m, 600) or {OFF}",
            old_runs=None),
    Setting("warmup", int, None, "warmup steps (§5.3: 4000)", lm=100, bounds=">= 1",
            none="--warmup-share of the planned steps"),
    Setting("warmup_share", float, 0.6, "without --warmup, a linear / cosine schedule warms up over this share of "
            "the planned steps, following a time budget's plan (not in the paper)", bounds="(0, 1)"),
    Setting("lr_scale", float, 1.0, "the factor of §5.3's rate, used when --peak-lr is 0", tasks=TRANSLATE,
            bounds="> 0"),
    Setting("peak_lr", float, 2e-3, "the rate at step --warmup (translate: 0 uses --lr-scale)", lm=1e-3),
    Setting("schedule", str, "linear", "inverse-sqrt (§5.3); linear and cosine decay to --min-lr at the last "
            "step (not in the paper)", lm="cosine", choices=SCHEDULES, old_runs="inverse-sqrt"),
    Setting("min_lr", float, 0.0, "linear / cosine: the rate at the last step", lm=1e-4),
    Setting("adam_beta1", float, 0.9, "Adam's beta1 (§5.3)", bounds="[0, 1)"),
    Setting("adam_beta2", float, 0.98, "Adam's beta2 (§5.3; nanoGPT: 0.99)", bounds="[0, 1)"),
    Setting("adam_eps", float, 1e-9, "Adam's epsilon (§5.3; PyTorch: 1e-8)"),
    Setting("weight_decay", float, 0.0, "AdamW's decoupled decay on matrices and embeddings (0: the paper's Adam)",
            tasks=LM),
    Setting("label_smoothing", float, 0.1, "label smoothing epsilon (§5.4)", tasks=TRANSLATE, bounds="[0, 1)"),
    Setting("clip_norm", float, 0.0, "clip the gradient norm to this (0: no clipping, as the paper)"),
    Setting("seed", int, 1, "seed of the weights, batches and dropout", bounds="[0, 4294967295]"),  # torch's range,
    # with room for the per-rank seeds derived from it (RankTrainer._place)
    # --- hardware
    Setting("threads", int, 0, "torch threads (0: torch's default)"),
    Setting("device", str, "auto", "auto (CUDA if available, else CPU), cpu, cuda, cuda:1, ...", metavar="NAME"),
    Setting("precision", str, "auto", "auto: bf16 autocast where bf16 is fast, else fp32; fp32; bf16 (the paper: "
            "fp32)", choices=PRECISIONS, old_runs="fp32"),
    Setting("compile", bool, False, "torch.compile the model's forward", tasks=TRANSLATE),
    Setting("compile_mode", str, "default", "torch.compile's mode (other than default implies --compile)",
            tasks=TRANSLATE, choices=COMPILE_MODES),
    Setting("dist_timeout", float, DEFAULT_TIMEOUT_S, "under torchrun: seconds a rank waits for the others",
            bounds="> 0", metavar="SECONDS"),
    Setting("fsdp", bool, False, "under torchrun: shard weights, gradients and Adam state (FSDP) instead of DDP"),
    # --- logging, evaluation, checkpoints
    Setting("log_every", int, 25, "log the training loss every N steps", bounds=">= 1"),
    Setting("eval_every", int, 250, "evaluate every N steps (0: only at the end)"),
    Setting("eval_windows", int, 500, "validation windows of every evaluation, the last included: the same fixed "
            "sample spread evenly over the split, so keep-best compares like with like (0: the whole split)",
            tasks=LM),
    Setting("save_every", int, 500, "checkpoint every N steps (0: only at the end)"),
    Setting("keep_last", int, 5, "checkpoints kept (0: all)", lm=2),
    Setting("average_last", int, 0, "model/ is the mean of the last N checkpoints, saved --average-every steps "
            "apart before the last step (§6.1 averaged 5; 0: the last step's weights)"),
    Setting("average_every", int, 0, "steps between the checkpoints averaged at the end (0: spread over the "
            "last 5% of the planned steps)"),
    # --- not in the paper: where a run starts, which model it keeps, when it stops, TensorBoard
    Setting("init_from", str, None, "start from this model folder (aiayn's, or a local Hugging Face one: Marian, "
            "BART, GPT-2, OPT, BERT): its tokenizer, architecture and weights, a fresh optimizer and schedule",
            none="a new model", metavar="PATH"),
    Setting("keep_best", str, "bleu", "best/ and, at the end, model/ hold the step of the best dev BLEU (bleu), "
            "the lowest validation loss (loss), or the last step (none)", lm="loss",
            choices=("bleu", "loss", "none"), old_runs="none"),
    Setting("bleu_tie", float, 0.5, "--keep-best bleu: a later evaluation whose dev BLEU is within this many points "
            "of the best so far is kept instead (it trained longer; 0: only a higher BLEU; docs/results.md)",
            tasks=TRANSLATE, old_runs=0.0),
    Setting("patience", int, 0, "stop after N evaluations without a better --keep-best score (0: never)"),
    Setting("tensorboard", bool, False, "write metrics.jsonl's numbers to RUN/tensorboard/ too (pip install "
            "'aiayn[tensorboard]')"),
    Setting("dev_beam", int, 1, "beam of the dev BLEU during training (1: greedy)", tasks=TRANSLATE, bounds=">= 1"),
    Setting("test_bleu_at", list, [], "steps at which to score the test set too", tasks=TRANSLATE,
            metavar="N,N,..."),
    Setting("final_test", bool, True, "score the test set with beam search at the end", tasks=TRANSLATE),
    # the test BLEU's search: default and bounds from the decoding options' table (inference/options.py)
    Setting("beam", int, DECODING["beam_size"].default, "beam size of the test BLEU (§6.1)", tasks=TRANSLATE,
            bounds=DECODING["beam_size"].bounds),
    Setting("length_penalty", float, DECODING["length_penalty"].default, "length penalty alpha of the test beam "
            "search (§6.1)", tasks=TRANSLATE, bounds=DECODING["length_penalty"].bounds, metavar="ALPHA"),
)
BY_NAME = {s.name: s for s in SETTINGS}


class Settings:
    """What TrainConfig and LMTrainConfig share: checks, dict / TOML / JSON forms and the model's overrides."""

    TASKS: ClassVar[frozenset[str]]

    @classmethod
    def settings(cls) -> tuple[Setting, ...]:
        """The settings that are fields of this class."""
        return tuple(s for s in SETTINGS if s.tasks & cls.TASKS)

    def __post_init__(self) -> None:
        """Check every value against its declaration, then what depends on several."""
        for s in self.settings():
            try:
                setattr(self, s.name, s.check(getattr(self, s.name)))
            except ValueError as error:
                raise TrainingError(f"{type(self).__name__}.{s.name} {error}") from None
        check_length(self.steps, self.time_budget)  # type: ignore[attr-defined]
        check_averaging(self.average_last, self.average_every, self.fsdp)  # type: ignore[attr-defined]
        if self.warmup is None and (self.schedule == "inverse-sqrt" or not self.peak_lr):  # type: ignore[attr-defined]
            raise TrainingError("a warmup as a share of the planned steps needs --schedule linear or cosine and "
                                "--peak-lr > 0; the paper's inverse-sqrt schedule takes --warmup steps")
        self.check()

    def check(self) -> None:
        """Checks across settings (the task's own)."""

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "settings") -> Any:
        """Build from a dict; unknown keys or a task of another class raise TrainingError naming them."""
        values = dict(values)
        task = values.get("task", min(cls.TASKS))
        if task not in cls.TASKS:
            raise TrainingError(f"{source}: task = {task!r} is not a {_kind(cls.TASKS)} run: train it with "
                                f"`aiayn train --task {task}`")
        if "task" not in BY_NAME or not BY_NAME["task"].tasks & cls.TASKS:
            values.pop("task", None)
        check_keys(values, cls.TASKS, source)
        if "steps" in values and "time_budget" not in values:  # a step count asked for replaces the default budget
            values["time_budget"] = None
        recipe = values.get("recipe")
        if recipe is not None:
            if recipe not in RECIPES:
                raise TrainingError(f"{source}: unknown recipe {recipe!r}: use one of {sorted(RECIPES)} (or none "
                                    f"for the defaults)")
            values = {**RECIPES[recipe], **values}
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> Any:
        """Settings from a TOML file (top-level keys = field names), then `overrides` on top."""
        return cls.from_dict({**read_toml(path), **overrides}, str(path))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable settings (train.json)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def model_overrides(self) -> dict[str, Any]:
        """The ModelConfig fields these settings set (those not None), by their ModelConfig names."""
        return {s.model[0]: getattr(self, s.name) for s in self.settings()
                if len(s.model) == 1 and getattr(self, s.name) is not None}


def _kind(tasks: frozenset[str]) -> str:
    """'translation' or 'language-model', for messages."""
    return "translation" if tasks == TRANSLATE else "language-model"


def task_settings(tasks: frozenset[str]) -> Callable[[type], type]:
    """A class decorator: the dataclass whose fields are the SETTINGS of `tasks`, with those tasks' defaults."""
    def build(cls: type) -> type:
        task = min(tasks)  # "lm" for LM, "translate" for TRANSLATE: the defaults of lm and mlm agree
        annotations: dict[str, Any] = {}
        for s in SETTINGS:
            if s.tasks & tasks:
                annotations[s.name] = s.kind | None if s.none or s.lm_none else s.kind
                default = s.default_for(task)
                setattr(cls, s.name, field(default_factory=lambda d=default: list(d)) if isinstance(default, list)
                        else default)
        cls.__annotations__ = annotations
        cls.TASKS = tasks  # type: ignore[attr-defined]
        return dataclass(cls)

    return build


def check_keys(values: dict[str, Any], tasks: frozenset[str], source: str) -> None:
    """Refuse keys that are no setting (naming the nearest) or no setting of these tasks (naming the tasks)."""
    unknown = sorted(set(values) - set(BY_NAME) - {"task"})
    if unknown:
        raise TrainingError(f"{source}: unknown setting {_near(unknown[0])}" +
                            (f" (and {', '.join(map(repr, unknown[1:]))})" if unknown[1:] else ""))
    wrong = [name for name in values if name != "task" and not BY_NAME[name].tasks & tasks]
    if wrong:
        raise TrainingError(f"{source}: {not_for_task(wrong, tasks, key=True)}")


def _near(name: str) -> str:
    """'stepz' (did you mean 'steps'?)."""
    close = difflib.get_close_matches(name, list(BY_NAME), n=1)
    return f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else "; see `aiayn train --help`")


def not_for_task(names: list[str], tasks: frozenset[str], key: bool = False) -> str:
    """'--beam does not apply to --task lm (only to --task translate)', for flags or (key) TOML keys."""
    shown = [name if key else BY_NAME[name].flag for name in names]
    own = sorted(set().union(*(BY_NAME[name].tasks for name in names)), key=TASKS.index)
    task = "|".join(sorted(tasks, key=TASKS.index))
    verb = "does" if len(names) == 1 else "do"
    return f"{', '.join(shown)} {verb} not apply to --task {task} (only to --task {'|'.join(own)})"


def read_toml(path: str | Path) -> dict[str, Any]:
    """The settings of a TOML file as a dict; a missing or invalid file is a TrainingError naming it."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"config file {path} does not exist")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise TrainingError(f"{path} is not valid TOML: {error}") from None


def read_run_settings(out: Path) -> dict[str, Any]:
    """The settings in a run folder's train.json ({} if none), with the values older runs had for newer keys."""
    path = out / TRAIN_FILE
    if not path.is_file():
        return {}
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as error:  # JSONDecodeError, UnicodeDecodeError are ValueErrors
        raise TrainingError(f"{path} is not readable JSON ({error}): restore it from a copy, or start a new run "
                            f"in another --out") from None
    if not isinstance(saved, dict):
        raise TrainingError(f"{path} holds no settings (a JSON object expected): restore it from a copy, or start "
                            f"a new run in another --out")
    for s in SETTINGS:
        if s.old_runs is not _SAME and s.tasks & _tasks_of(str(saved.get("task", "translate")), path):
            saved.setdefault(s.name, s.old_runs)  # e.g. a run from before --precision trained in fp32
    return saved


def _tasks_of(task: str, source: Any) -> frozenset[str]:
    """The tasks of the class that trains `task`; an unknown task is a TrainingError naming its source."""
    if task not in TASKS:
        raise TrainingError(f"{source}: task must be one of {TASKS}, got {task!r}")
    return TRANSLATE if task == "translate" else LM


def choose_task(task: str | None, config: str | None, out: str | None, resume: bool) -> str:
    """--task, else the resumed run's task (its train.json), else the --config file's, else translate."""
    if task:
        return task
    values = read_toml(config) if config else {}
    if not resume and "task" in values:
        _tasks_of(str(values["task"]), config)
        return str(values["task"])
    folder = out or values.get("out")
    if resume and folder is not None:
        return str(read_run_settings(Path(str(folder))).get("task", "translate"))
    return "translate"


def resolve(task: str, flags: dict[str, Any], config: str | None = None, resume: bool = False,
            classes: dict[str, type] | None = None) -> Any:
    """A run's settings: defaults < its train.json (resume) < the TOML file < flags, each checked.

    `flags` holds the flags given (name -> value); `classes` maps a task to its config class (TrainConfig,
    LMTrainConfig). Keys or flags that are no setting of `task` are a TrainingError naming them and the task.
    """
    assert classes is not None
    cls = classes[task]
    wrong = [name for name in flags if not BY_NAME[name].tasks & {task}]
    if wrong:
        raise TrainingError(not_for_task(wrong, frozenset({task})) + "; see `aiayn train --help`")
    toml = read_toml(config) if config else {}
    if toml:
        toml.pop("task", None)  # chose the task (choose_task) unless --task or a resumed run did
        check_keys(toml, frozenset({task}), str(config))
        for name, value in toml.items():
            try:
                BY_NAME[name].check(value)
            except ValueError as error:
                raise TrainingError(f"{config}: {name} {error}") from None
    out = Path(str(flags.get("out", toml.get("out", cls.out))))  # type: ignore[attr-defined]
    saved = read_run_settings(out) if resume else {}
    if saved and saved.get("task", "translate") != task:
        raise TrainingError(f"{out} is a --task {saved.get('task', 'translate')} run, not --task {task}: resume it "
                            f"without --task, or choose another --out")
    named = {**toml, **flags}
    if saved and "steps" in named and "time_budget" not in named:  # as on a fresh run: naming only a step count
        saved = {**saved, "time_budget": None}                      # drops the budget (the run's stored one)
    values = {**saved, **named}
    if cls.TASKS != TRANSLATE:  # type: ignore[attr-defined]
        values["task"] = task
    return cls.from_dict(values, "settings")

