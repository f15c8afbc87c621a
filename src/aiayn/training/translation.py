"""The training loop: BPE, token-budget batches, Adam + warmup (§5.3), label smoothing (§5.4), checkpoints, BLEU."""

from __future__ import annotations

import dataclasses
import math
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import Tensor

from ..data.batching import Batch, TokenBatcher
from ..data.corpus import BUNDLED, Corpus, load_corpus
from ..data.tokenizer import EOS_ID, encode_batch, train_bpe
from ..inference.evaluation import Scores, score, translate
from ..model.config import ModelConfig
from ..model.models import Transformer, TransformerBase
from ..runtime import distributed
from ..runtime.precision import autocast
from .init_from import InitError
from .loss import label_smoothed_loss
from .run_folder import (
    plot_curves,
)
from .schedule import SCHEDULES, DecaySchedule, InverseSqrtSchedule, make_schedule
from .trainer import (
    LossOnHost, RankTrainer, TrainingError, TrainResult, check_averaging, check_length, train_on_every_rank,
)

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's


# The paper's own training recipe (§3.1 post-LN, §5.1 batches, §5.2 steps, §5.3 Adam and schedule, §5.4
# regularisation, §6.1 decoding), laid under a run's own settings by `recipe = "paper"`. The model's size
# (`preset`) and the vocabulary stay separate choices: `--recipe paper --preset paper-base` is the base model.
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {"norm": "post", "batch_tokens": 25_000, "steps": 100_000, "time_budget": None,
              "schedule": "inverse-sqrt", "warmup": 4000, "peak_lr": 0.0, "lr_scale": 1.0, "adam_beta1": 0.9,
              "adam_beta2": 0.98, "adam_eps": 1e-9, "dropout": 0.1, "label_smoothing": 0.1, "clip_norm": 0.0,
              "beam": 4, "length_penalty": 0.6, "average_last": 5},
}


@dataclass
class TrainConfig:
    """Every training setting; a TOML file and `aiayn train` flags set the same fields (flags win).

    The defaults are the recipe that translates best after ten minutes of training on a 2-core CPU
    (docs/results.md measures each lever); where they differ from the paper the comment cites its value, and
    `recipe = "paper"` restores all of them at once.
    """

    out: str = "runs/kjv-en-es"  # the run folder
    # "paper": every setting below that the run does not name takes the paper's value (RECIPES); None: the
    # defaults below, which are sized for a short run on a CPU and cite the paper where they differ
    recipe: str | None = None
    # --- data: the bundled KJV / Reina-Valera 1909 Bible, or a TSV, or two aligned text files
    data: str = BUNDLED
    target: str | None = None  # with `data` a source text file: the aligned target text file
    dev: str | None = None
    dev_target: str | None = None
    test: str | None = None
    test_target: str | None = None
    dev_size: int = 500  # drawn from a user corpus with split_seed when no dev file is given
    test_size: int = 1000
    split_seed: int = 1
    max_len: int = 256  # training pairs with more BPE tokens on either side are skipped
    # --- model and vocabulary
    preset: str = "small"  # 3+3 layers, d_model 256, 4 heads, d_ff 1024 (paper-base is 6+6, 512)
    vocab_size: int = 8000  # joint BPE (the paper: 37,000 shared for En-De, §5.1)
    dropout: float | None = 0.0  # the paper: 0.1 (§5.4), which slows a ten-minute run down; None: the preset's
    norm: str | None = "pre"  # the paper: "post" (§3.1), which learns slower at first; None: the preset's
    # the model's shape; None: the preset's (Table 3 varies these: N layers, d_model, d_ff, h)
    d_model: int | None = None
    n_heads: int | None = None
    d_ff: int | None = None
    encoder_layers: int | None = None
    decoder_layers: int | None = None
    # --- batches: about this many source and as many target tokens (§5.1: ~25,000 each; a CPU budget of
    # minutes needs many small steps)
    batch_tokens: int = 2048
    accumulate: int = 1  # optimizer step every `accumulate` batches (a larger effective batch)
    # (under torchrun, a step takes ranks x accumulate batches: 8 ranks x 3,125 tokens ~ the paper's 25,000)
    # --- optimizer and schedule (§5.3): Adam(0.9, 0.98, 1e-9), lrate = scale * d^-0.5 * min(s^-0.5, s w^-1.5)
    steps: int = 0  # the paper: 100,000 for the base model (§5.2); 0: as many as time_budget holds
    # Not in the paper: a wall-clock limit ("10m", "1h30m", seconds) for the training loop, evaluations and
    # checkpoints included; with `steps` too, whichever ends first (naming only --steps drops the default
    # budget). A decaying schedule ends with it.
    time_budget: str | None = "10m"
    warmup: int = 300  # the paper: 4000 (§5.3), more steps than a ten-minute run takes
    lr_scale: float = 1.0  # the paper: 1.0
    peak_lr: float = 2e-3  # > 0: lr_scale is chosen so the lr at step = warmup is peak_lr; 0: use lr_scale
    # "inverse-sqrt" is the paper's (§5.3); "linear" and "cosine" decay from the peak to min_lr at the last
    # step (of --steps, or of the steps --time-budget holds): not in the paper, for runs of known length
    schedule: str = "linear"
    min_lr: float = 0.0  # linear / cosine: the rate at the last step
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_eps: float = 1e-9
    label_smoothing: float = 0.1  # §5.4
    clip_norm: float = 0.0  # 0: no gradient clipping (the paper uses none)
    seed: int = 1
    threads: int = 0  # torch.set_num_threads; 0 keeps torch's default
    device: str = "auto"  # "auto" (CUDA if available, else CPU), "cpu", "cuda", "cuda:1", ...
    # Not in the paper (fp32): "auto" runs forward and loss under bf16 autocast where the hardware multiplies
    # bf16 fast (GPUs with bf16, CPUs with AVX-512 BF16 or AMX), else fp32; "fp32"; "bf16". See aiayn.runtime.precision.
    precision: str = "auto"
    # Not in the paper: torch.compile the model's forward (fuses the elementwise work around the matmuls; a
    # gain on GPUs, none on small CPUs: docs/benchmarks.md). The first steps compile, for dynamic shapes: new
    # batch shapes need no recompiling.
    compile: bool = False
    # torch.compile's mode: "default", "reduce-overhead" (CUDA graphs: fewer launches, but a graph per batch
    # shape), "max-autotune" (tries matmul kernels; long compiles), "max-autotune-no-cudagraphs". A mode other
    # than "default" implies compile.
    compile_mode: str = "default"
    # --- several processes (`torchrun --nproc_per_node N -m aiayn train ...`): see aiayn.runtime.distributed
    dist_timeout: float = distributed.DEFAULT_TIMEOUT_S  # seconds a rank waits for the others before failing
    fsdp: bool = False  # shard weights, gradients and Adam state over the ranks (FSDP) instead of copying (DDP)
    # --- logging, evaluation, checkpoints
    log_every: int = 25
    eval_every: int = 250  # validation loss and dev BLEU every K steps (0: only at the end)
    dev_beam: int = 1  # dev BLEU during training is greedy by default (fast); the test uses `beam`
    save_every: int = 500
    keep_last: int = 5
    # §6.1: model/ is the mean of the last N checkpoints (the paper: 5 for base, 20 for big models), saved
    # average_every steps apart before the planned last step (0: spread over its last 5%); 0: the last step's
    average_last: int = 0
    average_every: int = 0
    test_bleu_at: list[int] = field(default_factory=list)  # steps at which to also score the test set
    final_test: bool = True  # score the test set with beam search at the end
    beam: int = 4  # §6.1
    length_penalty: float = 0.6  # §6.1
    # --- not in the paper: where a run starts, which model it keeps, when it stops, TensorBoard
    # an aiayn model folder or a local Hugging Face one (Marian, BART): its tokenizer, architecture and weights
    init_from: str | None = None
    keep_best: str = "bleu"  # best/ and, at the end, model/ hold the best dev BLEU's step; "loss": dev loss; "none"
    patience: int = 0  # stop after this many evaluations without a better keep_best score (0: never)
    tensorboard: bool = False  # metrics.jsonl's numbers in run/tensorboard/ too (pip install 'aiayn[tensorboard]')

    def __post_init__(self) -> None:
        """Check the values a user is most likely to get wrong."""
        check_length(self.steps, self.time_budget)
        check_averaging(self.average_last, self.average_every, self.fsdp)
        for name in ("warmup", "batch_tokens", "accumulate", "vocab_size", "beam", "max_len"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise TrainingError(f"TrainConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise TrainingError(f"TrainConfig.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.dist_timeout <= 0:
            raise TrainingError(f"TrainConfig.dist_timeout must be > 0 seconds, got {self.dist_timeout}")
        if self.schedule not in SCHEDULES:
            raise TrainingError(f"TrainConfig.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        for name in ("d_model", "n_heads", "d_ff", "encoder_layers", "decoder_layers"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise TrainingError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        if self.peak_lr < 0 or self.lr_scale <= 0:
            raise TrainingError(f"TrainConfig.peak_lr must be >= 0 (0: use lr_scale) and lr_scale > 0, got "
                                f"{self.peak_lr} and {self.lr_scale}")
        try:  # the model's settings, checked before any corpus is read or BPE trained
            ModelConfig.preset(self.preset, vocab_size=self.vocab_size, **self.model_overrides())
        except (TypeError, ValueError) as error:
            raise TrainingError(f"TrainConfig: {error}") from None

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "settings") -> TrainConfig:
        """Build from a dict; unknown keys raise TrainingError naming them. `task` may name this task only."""
        values = dict(values)
        task = values.pop("task", "translate")  # `aiayn train` reads it to choose the trainer
        if task != "translate":
            raise TrainingError(f"{source}: task = {task!r} is not a translation run: train it with "
                                f"`aiayn train --task {task}` (aiayn.training.lm.LMTrainConfig)")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TrainingError(f"{source}: unknown training setting(s) {unknown}; known: {sorted(known)}")
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
    def from_toml(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Settings from a TOML file (top-level keys = field names), then `overrides` on top."""
        path = Path(path)
        if not path.is_file():
            raise TrainingError(f"config file {path} does not exist")
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as error:
            raise TrainingError(f"{path} is not valid TOML: {error}") from None
        return cls.from_dict({**values, **overrides}, str(path))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable settings."""
        return dataclasses.asdict(self)

    def lr_schedule(self, d_model: int) -> InverseSqrtSchedule | DecaySchedule:
        """The learning-rate schedule these settings describe (a decay ends at step `steps`)."""
        return make_schedule(self.schedule, d_model, self.warmup, self.steps, self.peak_lr, self.lr_scale,
                             self.min_lr)

    def model_overrides(self) -> dict[str, Any]:
        """The ModelConfig fields these settings change from the preset's."""
        named = {"dropout": self.dropout, "norm": self.norm, "d_model": self.d_model, "n_heads": self.n_heads,
                 "d_ff": self.d_ff, "n_encoder_layers": self.encoder_layers, "n_decoder_layers": self.decoder_layers}
        return {key: value for key, value in named.items() if value is not None}


def _encode_pairs(tok: Any, pairs: list[tuple[str, str]], max_len: int | None) -> list[tuple[list[int], list[int]]]:
    """(source ids + EOS, target ids) for each pair, skipping pairs longer than max_len tokens."""
    src = encode_batch(tok, [s for s, _ in pairs])
    tgt = encode_batch(tok, [t for _, t in pairs])
    examples = [(s + [EOS_ID], t) for s, t in zip(src, tgt)]
    if max_len is not None:
        examples = [(s, t) for s, t in examples if len(s) <= max_len and len(t) + 1 <= max_len and len(t) > 0]
    return examples


class Trainer(RankTrainer):
    """One training run in one folder: set up (or resume), step, evaluate, checkpoint (on every rank)."""

    token_prefix = "tgt_"  # the translator counts target tokens
    best_metrics = {"bleu": ("dev_bleu", True), "loss": ("dev_loss", False)}
    architecture_settings = {"vocab_size": "vocab_size", "d_model": "d_model", "n_heads": "n_heads", "d_ff": "d_ff",
                             "encoder_layers": "n_encoder_layers", "decoder_layers": "n_decoder_layers",
                             "norm": "norm"}

    cfg: TrainConfig

    def check_start(self, model: TransformerBase) -> ModelConfig:
        """The --init-from model's settings, with a named --dropout; a named --preset must have its shape."""
        cfg = self.cfg
        if cfg.preset != TrainConfig.preset:
            preset = ModelConfig.preset(cfg.preset, vocab_size=model.cfg.vocab_size)
            for name in ("d_model", "n_heads", "d_ff", "n_encoder_layers", "n_decoder_layers"):
                if getattr(preset, name) != getattr(model.cfg, name):
                    raise InitError(f"--preset {cfg.preset} ({name} {getattr(preset, name)}) contradicts the "
                                    f"--init-from model {cfg.init_from}, whose {name} is {getattr(model.cfg, name)}: "
                                    f"the run takes that model's architecture; drop --preset")
        return model.cfg if cfg.dropout in (None, TrainConfig.dropout) else model.cfg.replace(dropout=cfg.dropout)

    def check_settings(self) -> None:
        """A torch.compile mode torch knows."""
        if self.cfg.compile_mode not in COMPILE_MODES:
            raise TrainingError(f"compile_mode {self.cfg.compile_mode!r} is not a torch.compile mode: use one of "
                                f"{', '.join(COMPILE_MODES)}")

    def read_data(self) -> None:
        """The parallel corpus and its train / dev / test split."""
        cfg = self.cfg
        self.corpus: Corpus = load_corpus(cfg.data, cfg.target, cfg.dev, cfg.dev_target, cfg.test, cfg.test_target,
                                          cfg.dev_size, cfg.test_size, cfg.split_seed)
        if not self.corpus.train:
            raise TrainingError(f"the training split of {self.corpus.name} is empty")
        self.log(f"corpus {self.corpus.name}: " + ", ".join(f"{k} {v:,}" for k, v in self.corpus.counts().items())
                 + " pairs")

    def learn_tokenizer(self) -> tuple[Tokenizer, ModelConfig]:
        """A joint BPE learned on the training split (§5.1), and the preset with this run's overrides."""
        cfg = self.cfg
        started = time.perf_counter()
        tokenizer = train_bpe((text for pair in self.corpus.train for text in pair), cfg.vocab_size)
        self.log(f"joint BPE: {tokenizer.get_vocab_size():,} tokens learned on the training split in "
                 f"{time.perf_counter() - started:.1f}s")
        overrides: dict[str, Any] = {**cfg.model_overrides(), "vocab_size": tokenizer.get_vocab_size()}
        try:
            return tokenizer, ModelConfig.preset(cfg.preset, **overrides)
        except ValueError as error:
            raise TrainingError(str(error)) from None

    def encode_data(self) -> None:
        """Training pairs as ids (those within max_len), the dev pairs, and the token-budget batcher (§5.1)."""
        cfg = self.cfg
        # pairs longer than the model's positions cannot train (an --init-from model may have fewer than max_len)
        max_len = min(cfg.max_len, self.model_cfg.max_positions) if cfg.init_from else cfg.max_len
        self.examples = _encode_pairs(self.tokenizer, self.corpus.train, max_len)
        if not self.examples:
            raise TrainingError(f"no training pair fits max_len={cfg.max_len} tokens; raise --max-len")
        self.dev_examples = _encode_pairs(self.tokenizer, self.corpus.dev, None)
        self.batcher = TokenBatcher(self.examples, cfg.batch_tokens, cfg.seed)

    def build_model(self, model_cfg: ModelConfig) -> Transformer:
        """The encoder-decoder."""
        return Transformer(model_cfg)

    def build_optimizer(self) -> torch.optim.Optimizer:
        """Adam(beta1, beta2, eps), §5.3."""
        cfg = self.cfg
        return torch.optim.Adam(self.model.parameters(), lr=self.schedule(1), betas=(cfg.adam_beta1, cfg.adam_beta2),
                                eps=cfg.adam_eps, fused=self._fused_optimizer() or None)

    def start_data(self) -> None:
        """Epoch 0, batch 0."""
        self.epoch, self.position = 0, 0

    def restore_data(self, state: dict[str, Any]) -> str:
        """The epoch and batch reached, and the target tokens seen."""
        self.epoch, self.position = state["epoch"], state["position"]
        self.tokens_seen = state.get("tgt_tokens_seen", 0)
        return f" (epoch {self.epoch}, batch {self.position})"

    def ready(self) -> None:
        """This epoch's batches; torch.compile when asked."""
        self._batches = self.batcher.epoch(self.epoch)
        if self.cfg.compile or self.cfg.compile_mode != "default":
            # batches differ in shape: dynamic shapes spare a recompilation per new (B, T)
            self.net = torch.compile(self.net, dynamic=True, mode=self.cfg.compile_mode)

    def trainer_state(self) -> dict[str, Any]:
        """Everything besides the weights that an exact resume needs (under torchrun: call on every rank)."""
        return {**self._rank_state(), "epoch": self.epoch, "position": self.position,
                "tgt_tokens_seen": self.tokens_seen}
    def _next_batch(self) -> Batch:
        """This rank's next batch of the epoch's shuffled buckets, moving to the next epoch when one ends.

        With W ranks, each micro-step takes the next W batches of the epoch, batch position + rank on rank
        `rank`: disjoint shares, as many on every rank; an epoch's last (< W) batches are skipped. `position`
        counts batches of the whole epoch, so a checkpoint resumes with any number of ranks.
        """
        world = self.dist.world_size
        if self.position + world > len(self._batches):
            self.epoch, self.position = self.epoch + 1, 0
            self._batches = self.batcher.epoch(self.epoch)
            if len(self._batches) < world:
                raise TrainingError(f"an epoch of the training data makes only {len(self._batches)} batches of <= "
                                    f"{self.cfg.batch_tokens} tokens, fewer than the {world} ranks: lower "
                                    f"--batch-tokens or start fewer ranks")
        indices = self._batches[self.position + self.dist.rank]
        self.position += world
        batch = self.batcher.batch(indices, self.model.cfg.pad_id, self.model.cfg.bos_id, self.model.cfg.eos_id)
        return batch.to(self.device)

    def train_step(self) -> LossOnHost:
        """One optimizer step over `accumulate` batches (on each rank); returns the smoothed loss per target token."""
        self.net.train()
        batches = [self._next_batch() for _ in range(self.cfg.accumulate)]
        loss, n_tokens = self._optimizer_step(batches, self._loss_sum, sum(b.n_tokens for b in batches))
        self.tokens_seen += n_tokens
        return loss

    def _loss_sum(self, batch: Batch) -> Tensor:
        """The label-smoothed loss of a batch's target tokens, summed (§5.4)."""
        with autocast(self.device, self.autocast_dtype):
            # (N, V): teacher forcing, logits only at the N non-pad labels (indices found on the host: no sync)
            logits = self.net(batch.src, batch.tgt_in, positions=batch.scored)
        return label_smoothed_loss(logits, batch.scored_labels, self.cfg.label_smoothing, self.model.cfg.pad_id)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Dev loss (label-smoothed, as trained) and per-token negative log-likelihood / perplexity."""
        model = self.model
        model.eval()
        batcher = TokenBatcher(self.dev_examples, self.cfg.batch_tokens, 0)
        smoothed = nll = 0.0
        tokens = 0
        for indices in batcher.epoch(0):
            batch = batcher.batch(indices).to(self.device)
            with autocast(self.device, self.autocast_dtype):
                logits = model(batch.src, batch.tgt_in)
            smoothed += float(label_smoothed_loss(logits, batch.labels, self.cfg.label_smoothing, model.cfg.pad_id))
            nll += float(label_smoothed_loss(logits, batch.labels, 0.0, model.cfg.pad_id))
            tokens += batch.n_tokens
        model.train()
        return {"dev_loss": smoothed / tokens, "dev_nll": nll / tokens, "dev_ppl": math.exp(min(nll / tokens, 50))}

    def bleu(self, split: str, beam: int) -> Any:
        """Scores of the current model on the dev or test split (beam search when beam > 1)."""
        pairs = self.corpus.dev if split == "dev" else self.corpus.test
        hyps = translate(self.model, self.tokenizer, [s for s, _ in pairs], beam_size=beam,
                         length_penalty=self.cfg.length_penalty)
        return score(hyps, [t for _, t in pairs])

    def evaluate(self, test: bool | None = None) -> dict[str, Any]:
        """Dev loss and dev BLEU (and test BLEU/chrF with beam search if asked; None: at test_bleu_at), logged."""
        started = time.perf_counter()
        test = self.step in self.cfg.test_bleu_at if test is None else test
        record: dict[str, Any] = {"step": self.step, **self.validate()}
        if self.corpus.dev:
            record["dev_bleu"] = self.bleu("dev", self.cfg.dev_beam).bleu
        if test and self.corpus.test:
            scores = self.bleu("test", self.cfg.beam)
            record.update(test_bleu=scores.bleu, test_chrf=scores.chrf, bleu_signature=scores.bleu_signature,
                          chrf_signature=scores.chrf_signature,
                          test_beam=self.cfg.beam)
        parts = [f"dev loss {record['dev_loss']:.3f} ppl {record['dev_ppl']:.1f}"]
        if "dev_bleu" in record:
            parts.append(f"dev BLEU {record['dev_bleu']:.2f}")
        if "test_bleu" in record:
            parts.append(f"test BLEU {record['test_bleu']:.2f} chrF {record['test_chrf']:.1f} "
                         f"(beam {record['test_beam']})")
        self._report(record, started, parts)
        plot_curves(self.run_dir)
        return record

    def _announce(self) -> None:
        """Log the model, the data and the schedule about to train."""
        self.log(f"model: {self.model.num_parameters():,} parameters; {len(self.examples):,} training pairs; "
                 f"{len(self._batches)} batches of <= {self.cfg.batch_tokens} tokens per epoch; "
                 f"{self.cfg.schedule} schedule, peak lr {self.schedule.peak:.2e} at step {self.cfg.warmup}; "
                 f"{self._length()}; torch threads {torch.get_num_threads()}; {self.precision_name}")

    def _evaluation_due(self) -> bool:
        """Every eval_every steps, and at the test_bleu_at steps."""
        return super()._evaluation_due() or self.step in self.cfg.test_bleu_at

    def _final(self, losses: dict[int, float]) -> TrainResult:
        """The final evaluation (test BLEU with beam search unless final_test is off) and the run's result."""
        record = self.evaluate(test=self.cfg.final_test or self.step in self.cfg.test_bleu_at)
        self.log(f"done: {self.step} steps, {self.tokens_seen:,} target tokens; "
                 f"{self.plan.summary(self.step, self.train_seconds)}; model in {self.run_dir / 'model'}")
        scores = None
        if "test_bleu" in record:
            scores = Scores(record["test_bleu"], record["test_chrf"], record["bleu_signature"],
                            record["chrf_signature"])
        return TrainResult(self.run_dir, self.step, losses, test_scores=scores)


def train(cfg: TrainConfig, resume: bool = False, log: Callable[[str], None] | None = None) -> TrainResult:
    """Set up (or resume) a run in cfg.out and train it to cfg.steps (under torchrun: on every rank)."""
    return train_on_every_rank(lambda: Trainer(cfg, resume=resume, log=log), cfg.dist_timeout)
