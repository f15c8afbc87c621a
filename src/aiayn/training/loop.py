"""The training loop: BPE, token-budget batches, Adam + warmup (§5.3), label smoothing (§5.4), checkpoints, BLEU."""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import torch
from tokenizers import Tokenizer
from tqdm import tqdm

from .. import distributed
from ..config import ModelConfig
from ..data.batching import Batch, TokenBatcher
from ..data.corpus import BUNDLED, Corpus, load_corpus
from ..layers import TransformerLayer
from ..models import Transformer
from ..precision import autocast, autocast_dtype
from ..saving import (
    CONFIG_FILE,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    as_write_error,
    atomic_write_text,
    load_state,
    read_config,
    read_weights,
    save_model,
    save_tokenizer,
)
from ..tokenizer import EOS_ID, check_fits, encode_batch, load_tokenizer, train_bpe
from .checkpoints import list_checkpoints, load_trainer_state, save_checkpoint
from .loss import label_smoothed_loss
from .schedule import InverseSqrtSchedule

TRAIN_FILE = "train.json"
METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"


class TrainingError(ValueError):
    """A training run that cannot start or continue; the message names the cause and the fix."""


@dataclass
class TrainConfig:
    """Every training setting; a TOML file and `aiayn train` flags set the same fields (flags win).

    Paper values where the paper gives one; the CPU-budget deviations are named and cited below.
    """

    out: str = "runs/kjv-en-es"  # the run folder
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
    dropout: float | None = None  # None: the preset's (0.1, §5.4)
    norm: str | None = None  # None: the preset's ("post", §3.1)
    # --- batches (§5.1: ~25,000 source + 25,000 target tokens; the default fits `aiayn train` into about
    # 12 minutes on 2 CPU cores: a step of 2,048 tokens takes ~0.7 s with the small preset, bf16 autocast)
    batch_tokens: int = 2048
    accumulate: int = 1  # optimizer step every `accumulate` batches (a larger effective batch)
    # (under torchrun, a step takes ranks x accumulate batches: 8 ranks x 3,125 tokens ~ the paper's 25,000)
    # --- optimizer and schedule (§5.3): Adam(0.9, 0.98, 1e-9), lrate = scale * d^-0.5 * min(s^-0.5, s w^-1.5)
    steps: int = 1000  # the paper: 100,000 for the base model (§5.2)
    warmup: int = 400  # the paper: 4000 (§5.3); a short CPU run needs a shorter warmup
    lr_scale: float = 1.0  # the paper: 1.0
    peak_lr: float = 1e-3  # > 0: lr_scale is chosen so the lr at step = warmup is peak_lr; 0: use lr_scale
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_eps: float = 1e-9
    label_smoothing: float = 0.1  # §5.4
    clip_norm: float = 0.0  # 0: no gradient clipping (the paper uses none)
    seed: int = 1
    threads: int = 0  # torch.set_num_threads; 0 keeps torch's default
    device: str = "auto"  # "auto" (CUDA if available, else CPU), "cpu", "cuda", "cuda:1", ...
    # Not in the paper (fp32): "auto" runs forward and loss under bf16 autocast where the hardware multiplies
    # bf16 fast (GPUs with bf16, CPUs with AVX-512 BF16 or AMX), else fp32; "fp32"; "bf16". See precision.py.
    precision: str = "auto"
    # Not in the paper: torch.compile the model's forward (fuses the elementwise work around the matmuls).
    # benchmarks/train.py, paper-base: 1.43x eager on an H200 (bf16, B=256); 0.96x on the 2-core CPU. The
    # first steps compile (tens of seconds to minutes), for dynamic shapes: new batch shapes need no recompiling.
    compile: bool = False
    # --- several processes (`torchrun --nproc_per_node N -m aiayn train ...`): see aiayn.distributed
    dist_timeout: float = distributed.DEFAULT_TIMEOUT_S  # seconds a rank waits for the others before failing
    fsdp: bool = False  # shard weights, gradients and Adam state over the ranks (FSDP) instead of copying (DDP)
    # --- logging, evaluation, checkpoints
    log_every: int = 25
    eval_every: int = 500  # validation loss and dev BLEU every K steps (0: only at the end)
    dev_beam: int = 1  # dev BLEU during training is greedy by default (fast); the test uses `beam`
    save_every: int = 500
    keep_last: int = 5
    test_bleu_at: list[int] = field(default_factory=list)  # steps at which to also score the test set
    final_test: bool = True  # score the test set with beam search at the end
    beam: int = 4  # §6.1
    length_penalty: float = 0.6  # §6.1

    def __post_init__(self) -> None:
        """Check the values a user is most likely to get wrong."""
        for name in ("steps", "warmup", "batch_tokens", "accumulate", "vocab_size", "beam", "max_len"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise TrainingError(f"TrainConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise TrainingError(f"TrainConfig.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.dist_timeout <= 0:
            raise TrainingError(f"TrainConfig.dist_timeout must be > 0 seconds, got {self.dist_timeout}")
        if self.peak_lr < 0 or self.lr_scale <= 0:
            raise TrainingError(f"TrainConfig.peak_lr must be >= 0 (0: use lr_scale) and lr_scale > 0, got "
                                f"{self.peak_lr} and {self.lr_scale}")

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "settings") -> TrainConfig:
        """Build from a dict; unknown keys raise TrainingError naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TrainingError(f"{source}: unknown training setting(s) {unknown}; known: {sorted(known)}")
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

    def schedule(self, d_model: int) -> InverseSqrtSchedule:
        """The learning-rate schedule these settings describe."""
        if self.peak_lr > 0:
            return InverseSqrtSchedule.with_peak(d_model, self.warmup, self.peak_lr)
        return InverseSqrtSchedule(d_model, self.warmup, self.lr_scale)



def check_run_folder(run_dir: Path, checkpoints: list[Path], resume: bool) -> None:
    """Refuse to start over a run that has checkpoints (without --resume), or to resume one that has none."""
    if checkpoints and not resume:
        raise TrainingError(f"{run_dir} already holds checkpoints: pass --resume to continue that run, "
                            f"or choose another --out")
    if resume and not checkpoints:
        raise TrainingError(f"nothing to resume: {run_dir} has no checkpoints/step_N folder")

@dataclass
class TrainResult:
    """What a run ended with."""

    run_dir: Path
    step: int
    losses: dict[int, float]  # training loss of each logged step
    interrupted: bool = False
    main: bool = True  # False on the ranks > 0 of a torchrun job (rank 0 reports)
    test_scores: Any = None
    stop_signal: int | None = None  # signal.SIGINT or signal.SIGTERM when interrupted


class _StopFlag:
    """Ctrl-C / SIGTERM set a flag checked after each step; a second Ctrl-C stops at once.

    Under torchrun only Ctrl-C (SIGINT, which the terminal sends to every rank) is caught: torchrun sends
    SIGTERM to the surviving ranks when one fails, and they must then end at once, not wait for a step.
    """

    def __init__(self, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
        """Not yet requested."""
        self.requested = False
        self._signals = signals
        self.signal: int | None = None  # the first signal received
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Self:
        """Install the handlers (main thread only)."""
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in self._signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested, self.signal = True, signum

    def __exit__(self, *exc: object) -> None:
        """Restore the previous handlers."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _log_writer(run_dir: Path) -> Callable[[dict[str, Any]], None]:
    """Append one JSON line per record to metrics.jsonl."""
    path = run_dir / METRICS_FILE

    def write(record: dict[str, Any]) -> None:
        try:
            with path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        except OSError as error:  # e.g. a full disk
            raise as_write_error(path, error) from None

    return write


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """All records of a run's metrics.jsonl."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line torn by a run killed mid-write; resume rewrites the file
            continue
    return [r for r in records if isinstance(r, dict)]


def _truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop records after `step` (written after the checkpoint a resumed run starts from)."""
    kept = [r for r in read_metrics(run_dir) if r.get("step", 0) <= step]
    atomic_write_text(run_dir / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in kept))


TRANSLATION_LOSSES = (("loss", "train loss (smoothed)"), ("dev_loss", "dev loss (smoothed)"))
TRANSLATION_SCORES = (("dev_bleu", "dev BLEU"), ("test_bleu", "test BLEU"))


def plot_curves(run_dir: str | Path, losses: tuple[tuple[str, str], ...] = TRANSLATION_LOSSES,
                scores: tuple[tuple[str, str], ...] = TRANSLATION_SCORES, score_label: str = "BLEU") -> Path | None:
    """curves.png: training and dev loss, dev and test BLEU (or other `scores`) against the step (atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..saving import atomic_write

    records = read_metrics(run_dir)
    if not records:
        return None
    fig, (ax_loss, ax_bleu) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in losses:
        points = [(r["step"], r[key]) for r in records if key in r]
        if points:
            ax_loss.plot(*zip(*points), label=label, marker="." if key != "loss" or len(points) < 30 else None)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("cross entropy (nats/token)")
    ax_loss.legend()
    for key, label in scores:
        points = [(r["step"], r[key]) for r in records if key in r]
        if points:
            ax_bleu.plot(*zip(*points), label=label, marker="o")
    ax_bleu.set_xlabel("step")
    ax_bleu.set_ylabel(score_label)
    if ax_bleu.lines:
        ax_bleu.legend()
    fig.tight_layout()
    path = Path(run_dir) / CURVES_FILE
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)
    return path


def _encode_pairs(tok: Any, pairs: list[tuple[str, str]], max_len: int | None) -> list[tuple[list[int], list[int]]]:
    """(source ids + EOS, target ids) for each pair, skipping pairs longer than max_len tokens."""
    src = encode_batch(tok, [s for s, _ in pairs])
    tgt = encode_batch(tok, [t for _, t in pairs])
    examples = [(s + [EOS_ID], t) for s, t in zip(src, tgt)]
    if max_len is not None:
        examples = [(s, t) for s, t in examples if len(s) <= max_len and len(t) + 1 <= max_len and len(t) > 0]
    return examples


class Trainer:
    """One training run in one folder: set up (or resume), step, evaluate, checkpoint."""

    def __init__(self, cfg: TrainConfig, resume: bool = False, log: Callable[[str], None] | None = None) -> None:
        """Read the corpus, train or load the BPE, build or restore the model, optimizer and data position."""
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        # Under torchrun: join the process group; rank 0 alone logs, evaluates and writes files, and its
        # settings (which on --resume come from its run folder) are every rank's.
        self.dist = distributed.init(resolve_device(cfg.device), cfg.dist_timeout)
        self.device = self.dist.device
        main = self.dist.is_main
        if not main:
            self.log = lambda message: None
        self.cfg = cfg = self.dist.broadcast(cfg)
        try:
            self.autocast_dtype = autocast_dtype(cfg.precision, self.device)
        except ValueError as error:
            raise TrainingError(f"TrainConfig.{error}") from None
        self.run_dir = Path(cfg.out)
        checkpoints = self.dist.broadcast(list_checkpoints(self.run_dir))  # rank 0's view of the run folder
        check_run_folder(self.run_dir, checkpoints, resume)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        # Read everything that can fail before writing anything, so a bad input leaves no run folder.
        self.corpus: Corpus = load_corpus(cfg.data, cfg.target, cfg.dev, cfg.dev_target, cfg.test, cfg.test_target,
                                          cfg.dev_size, cfg.test_size, cfg.split_seed)
        if not self.corpus.train:
            raise TrainingError(f"the training split of {self.corpus.name} is empty")
        self.log(f"corpus {self.corpus.name}: " + ", ".join(f"{k} {v:,}" for k, v in self.corpus.counts().items())
                 + " pairs")
        if not main:  # the other ranks take rank 0's tokenizer and model settings (no shared folder needed)
            tokenizer_json, model_cfg = self.dist.broadcast(None)
            self.tokenizer = Tokenizer.from_str(tokenizer_json)
        elif resume:
            self.tokenizer = load_tokenizer(self.run_dir / TOKENIZER_FILE)
            _, model_cfg = read_config(self.run_dir)
            check_fits(self.tokenizer, model_cfg, str(self.run_dir / TOKENIZER_FILE))
        else:
            started = time.perf_counter()
            self.tokenizer = train_bpe((text for pair in self.corpus.train for text in pair), cfg.vocab_size)
            self.log(f"joint BPE: {self.tokenizer.get_vocab_size():,} tokens learned on the training split in "
                     f"{time.perf_counter() - started:.1f}s")
            overrides: dict[str, Any] = {"vocab_size": self.tokenizer.get_vocab_size()}
            if cfg.dropout is not None:
                overrides["dropout"] = cfg.dropout
            if cfg.norm is not None:
                overrides["norm"] = cfg.norm
            try:
                model_cfg = ModelConfig.preset(cfg.preset, **overrides)
            except ValueError as error:
                raise TrainingError(str(error)) from None
        if main and self.dist.enabled:
            self.dist.broadcast((self.tokenizer.to_str(), model_cfg))
        self.model = Transformer(model_cfg).to(self.device)
        self.sharded = cfg.fsdp and self.dist.enabled
        if cfg.fsdp and not self.dist.enabled:
            self.log("--fsdp has no effect in a single process (start the run with torchrun)")
        if self.sharded:  # rank 0's initial weights everywhere, then each rank keeps its shard
            distributed.broadcast_weights(self.model)
            distributed.shard(self.model, (TransformerLayer,))
        if self.dist.enabled and not main:  # the same weights (DDP copies rank 0's), other dropout masks
            torch.manual_seed(cfg.seed * 65_537 + self.dist.rank)
        self.examples = _encode_pairs(self.tokenizer, self.corpus.train, cfg.max_len)
        if not self.examples:
            raise TrainingError(f"no training pair fits max_len={cfg.max_len} tokens; raise --max-len")
        self.dev_examples = _encode_pairs(self.tokenizer, self.corpus.dev, None)
        self.batcher = TokenBatcher(self.examples, cfg.batch_tokens, cfg.seed)
        self.schedule = cfg.schedule(model_cfg.d_model)
        # The fused Adam (one kernel for all parameters, on a CPU too) gives the loop's update up to float
        # rounding, faster: 0.04 s instead of 0.30 s a paper-base step on 2 CPU cores. FSDP's shards take it
        # on a CPU (tested, gloo), so one process and FSDP round alike; on a GPU they were not tested with it.
        fused = self.device.type == "cpu" or (self.device.type == "cuda" and not self.sharded)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.schedule(1),
                                          betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps,
                                          fused=fused or None)
        self.step, self.epoch, self.position = 0, 0, 0
        self.tgt_tokens_seen = 0
        self.train_seconds = 0.0
        if resume:
            self._restore(checkpoints[-1])
        elif main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / METRICS_FILE).unlink(missing_ok=True)
            config = {"model_type": self.model.model_type, **model_cfg.to_dict()}
            atomic_write_text(self.run_dir / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True) + "\n")
            save_tokenizer(self.tokenizer, self.run_dir / TOKENIZER_FILE)
        if main:
            atomic_write_text(self.run_dir / TRAIN_FILE, json.dumps(cfg.to_dict(), indent=2) + "\n")
        self.write = _log_writer(self.run_dir) if main else (lambda record: None)
        self._batches = self.batcher.epoch(self.epoch)
        # The module that trains: the model itself (also when sharded), or DDP around it, which copies rank 0's
        # weights to every rank now and all-reduces the gradients in backward.
        self.net: torch.nn.Module = self.model
        if self.dist.enabled and not self.sharded:
            self.net = distributed.wrap_ddp(self.model, self.device)
        if cfg.compile:  # batches differ in shape: dynamic shapes spare a recompilation per new (B, T)
            self.net = torch.compile(self.net, dynamic=True)

    def _restore(self, checkpoint: Path) -> None:
        """Model, optimizer, step, data position and RNG from a checkpoint folder (read by rank 0, sent to all)."""
        state, weights = None, {}
        if self.dist.is_main:
            state = load_trainer_state(checkpoint)
            weights = read_weights(checkpoint / WEIGHTS_FILE)
            if not self.sharded:
                load_state(self.model, weights, checkpoint / WEIGHTS_FILE)
        state = self.dist.broadcast(state)  # with DDP, the weights reach the other ranks when DDP wraps the model
        if self.sharded:
            distributed.load_full_state(self.model, weights)
            distributed.load_full_optimizer_state(self.model, self.optimizer, state["optimizer"])
        else:
            self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.epoch, self.position = state["step"], state["epoch"], state["position"]
        self.tgt_tokens_seen = state.get("tgt_tokens_seen", 0)
        self.train_seconds = state.get("train_seconds", 0.0)
        torch_rng, cuda_rng = state["torch_rng"], state.get("cuda_rng")
        rank_rngs = state.get("rank_rngs") or []
        if len(rank_rngs) == self.dist.world_size:  # the same number of ranks: each continues its own stream
            torch_rng, cuda_rng = rank_rngs[self.dist.rank]
        elif self.dist.rank > 0:  # another number of ranks: fresh dropout streams, distinct per rank and step
            torch.manual_seed(self.cfg.seed * 65_537 + self.dist.rank + self.step * 1_000_003)
            torch_rng, cuda_rng = torch.get_rng_state(), None
        torch.set_rng_state(torch_rng)
        if self.device.type == "cuda" and cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, self.device)
        if self.dist.is_main:
            _truncate_metrics(self.run_dir, self.step)
        self.log(f"resuming {self.run_dir} from {checkpoint.name} (epoch {self.epoch}, batch {self.position})")

    def trainer_state(self) -> dict[str, Any]:
        """Everything besides the weights that an exact resume needs (under torchrun: call on every rank)."""
        cuda_rng = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        optimizer = (distributed.full_optimizer_state(self.model, self.optimizer) if self.sharded
                     else self.optimizer.state_dict())
        state = {"optimizer": optimizer, "step": self.step, "epoch": self.epoch,
                 "position": self.position, "torch_rng": torch.get_rng_state(), "cuda_rng": cuda_rng,
                 "tgt_tokens_seen": self.tgt_tokens_seen, "train_seconds": self.train_seconds}
        if self.dist.enabled:  # every rank's dropout stream, so a resume with as many ranks is exact
            state["rank_rngs"] = self.dist.gather((torch.get_rng_state(), cuda_rng))
        return state

    def save(self) -> Path:
        """Write checkpoints/step_N/ (atomically; rank 0) and prune to keep_last; every rank waits for it."""
        state = self.trainer_state()
        path = self.run_dir / "checkpoints" / f"step_{self.step}"
        with self._full_model():
            if self.dist.is_main:
                path = save_checkpoint(self.run_dir, self.step, self.model, self.tokenizer, state,
                                       self.cfg.keep_last)
        self.dist.barrier()
        return path

    @contextmanager
    def _full_model(self) -> Iterator[None]:
        """Under FSDP: every rank sends its shards and, inside, self.model is a whole copy on rank 0 (to save and
        evaluate); it must fit rank 0's device. Without FSDP, self.model is whole already: nothing happens."""
        if not self.sharded:
            yield
            return
        weights = distributed.full_state(self.model)  # every rank takes part
        sharded = self.model
        if self.dist.is_main:
            self.model = Transformer(sharded.cfg).to(self.device)
            self.model.load_state_dict(weights)
        try:
            yield
        finally:
            self.model = sharded

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

    def train_step(self) -> float:
        """One optimizer step over `accumulate` batches (on each rank); returns the smoothed loss per target token."""
        model, cfg, world = self.model, self.cfg, self.dist.world_size
        self.net.train()
        batches = [self._next_batch() for _ in range(cfg.accumulate)]
        n_tokens = sum(b.n_tokens for b in batches)
        if world > 1:
            n_tokens = int(self.dist.sum([n_tokens])[0])  # target tokens of the step on all ranks
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1  # the gradients are exchanged in the last backward only
            with distributed.gradient_sync(self.net, world == 1 or last):
                scored = batch.labels != model.cfg.pad_id  # (B, T): padding gets no logits at all
                with autocast(self.device, self.autocast_dtype):
                    logits = self.net(batch.src, batch.tgt_in, positions=scored)  # (N, V): teacher forcing
                loss = label_smoothed_loss(logits.float(), batch.labels[scored], cfg.label_smoothing,
                                           model.cfg.pad_id) / n_tokens
                # Each rank's loss is its tokens' sum / the step's token count on ALL ranks. DDP (and FSDP)
                # average the gradients over the W ranks; times W, that average is their sum: the gradient of
                # one process training on all W ranks' batches (exactly, for W a power of two).
                (loss * world if world > 1 else loss).backward()
            total += loss.item()
        if world > 1:
            total = self.dist.sum([total])[0]
        if not math.isfinite(total):
            kept = list_checkpoints(self.run_dir)
            raise TrainingError(f"the loss became {total} at step {self.step + 1}; stopped. The last good "
                                f"checkpoint is {kept[-1] if kept else 'none'}: resume from it with a lower "
                                f"peak_lr / longer warmup, or set clip_norm")
        if cfg.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
        self.step += 1
        lr = self.schedule(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.tgt_tokens_seen += n_tokens
        return total

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
            logits = logits.float()
            smoothed += float(label_smoothed_loss(logits, batch.labels, self.cfg.label_smoothing, model.cfg.pad_id))
            nll += float(label_smoothed_loss(logits, batch.labels, 0.0, model.cfg.pad_id))
            tokens += batch.n_tokens
        model.train()
        return {"dev_loss": smoothed / tokens, "dev_nll": nll / tokens, "dev_ppl": math.exp(min(nll / tokens, 50))}

    def bleu(self, split: str, beam: int) -> Any:
        """Scores of the current model on the dev or test split (beam search when beam > 1)."""
        from ..evaluation import score, translate

        pairs = self.corpus.dev if split == "dev" else self.corpus.test
        hyps = translate(self.model, self.tokenizer, [s for s, _ in pairs], beam_size=beam,
                         length_penalty=self.cfg.length_penalty)
        return score(hyps, [t for _, t in pairs])

    def evaluate(self, test: bool) -> dict[str, Any]:
        """Dev loss and dev BLEU (and, if asked, test BLEU/chrF with beam search), logged to metrics.jsonl."""
        started = time.perf_counter()
        record: dict[str, Any] = {"step": self.step, **self.validate()}
        if self.corpus.dev:
            record["dev_bleu"] = self.bleu("dev", self.cfg.dev_beam).bleu
        if test and self.corpus.test:
            scores = self.bleu("test", self.cfg.beam)
            record.update(test_bleu=scores.bleu, test_chrf=scores.chrf, bleu_signature=scores.bleu_signature,
                          chrf_signature=scores.chrf_signature,
                          test_beam=self.cfg.beam)
        record.update(tgt_tokens_seen=self.tgt_tokens_seen, train_s=round(self.train_seconds, 1),
                      eval_s=round(time.perf_counter() - started, 1))
        self.write(record)
        parts = [f"dev loss {record['dev_loss']:.3f} ppl {record['dev_ppl']:.1f}"]
        if "dev_bleu" in record:
            parts.append(f"dev BLEU {record['dev_bleu']:.2f}")
        if "test_bleu" in record:
            parts.append(f"test BLEU {record['test_bleu']:.2f} chrF {record['test_chrf']:.1f} "
                         f"(beam {record['test_beam']})")
        self.log(f"step {self.step}: " + ", ".join(parts) + f" [{record['eval_s']}s]")
        plot_curves(self.run_dir)
        return record

    def run(self) -> TrainResult:
        """Train to cfg.steps, evaluating and checkpointing on schedule; Ctrl-C saves and stops cleanly."""
        cfg = self.cfg
        losses: dict[int, float] = {}
        interrupted = False
        test_at = set(cfg.test_bleu_at)
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True,
                   disable=not (sys.stderr.isatty() and self.dist.is_main))
        self.log(f"model: {self.model.num_parameters():,} parameters; {len(self.examples):,} training pairs; "
                 f"{len(self._batches)} batches of <= {cfg.batch_tokens} tokens per epoch; "
                 f"peak lr {self.schedule.peak:.2e} at step {cfg.warmup}; torch threads {torch.get_num_threads()}; "
                 f"{'bf16 autocast' if self.autocast_dtype else 'fp32'}")
        if self.dist.enabled:
            self.log(f"data parallel ({'FSDP' if self.sharded else 'DDP'}): {self.dist.world_size} ranks "
                     f"({torch.distributed.get_backend()}), {cfg.accumulate} batch(es) per rank per step")
        stop_signal = None
        with _StopFlag((signal.SIGINT,) if self.dist.enabled else (signal.SIGINT, signal.SIGTERM)) as stop:
            while self.step < cfg.steps:
                started = time.perf_counter()
                loss = self.train_step()
                self.train_seconds += time.perf_counter() - started
                losses[self.step] = loss
                lr = self.optimizer.param_groups[0]["lr"]
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    speed = self._tokens_per_second()
                    self.write({"step": self.step, "loss": round(loss, 5), "lr": lr, "tgt_tok_per_s": round(speed),
                                "tgt_tokens_seen": self.tgt_tokens_seen, "train_s": round(self.train_seconds, 2)})
                    bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{speed:.0f}")
                    if bar.disable:
                        self.log(f"step {self.step}/{cfg.steps} loss {loss:.4f} lr {lr:.2e} {speed:.0f} tgt tok/s")
                evaluate = cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps
                if evaluate or self.step in test_at and self.step < cfg.steps:
                    with self._full_model():
                        if self.dist.is_main:  # the other ranks wait in the next collective
                            self.evaluate(test=self.step in test_at)
                if cfg.save_every and self.step % cfg.save_every == 0 and self.step < cfg.steps:
                    self.save()
                if self.dist.any(stop.requested):  # all ranks stop after the same step
                    interrupted, stop_signal = True, stop.signal or signal.SIGINT
                    break
        bar.close()
        checkpoint = self.save()
        if interrupted:
            self.log(f"interrupted at step {self.step}: saved {checkpoint}; continue with --resume")
            return TrainResult(self.run_dir, self.step, losses, interrupted=True, stop_signal=stop_signal)
        with self._full_model():
            if not self.dist.is_main:
                return TrainResult(self.run_dir, self.step, losses, main=False)
            save_model(self.model, self.run_dir / "model", self.tokenizer)
            record = self.evaluate(test=cfg.final_test or self.step in test_at)
        self.log(f"done: {self.step} steps, {self.tgt_tokens_seen:,} target tokens, {self.train_seconds:.0f}s "
                 f"training; model in {self.run_dir / 'model'}")
        scores = None
        if "test_bleu" in record:
            from ..evaluation import Scores

            scores = Scores(record["test_bleu"], record["test_chrf"], record["bleu_signature"],
                            record["chrf_signature"])
        return TrainResult(self.run_dir, self.step, losses, test_scores=scores)

    def _tokens_per_second(self) -> float:
        """Target tokens per second of training time so far in this process."""
        return self.tgt_tokens_seen / self.train_seconds if self.train_seconds else 0.0


def resolve_device(name: str) -> torch.device:
    """"auto" -> CUDA when available, else CPU; anything else as torch.device, checked to exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TrainingError(f"unknown device {name!r}: use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"device {name!r} asked for but CUDA is not available here; use --device cpu")
    return device


def train(cfg: TrainConfig, resume: bool = False, log: Callable[[str], None] | None = None) -> TrainResult:
    """Set up (or resume) a run in cfg.out and train it to cfg.steps (under torchrun: on every rank)."""
    try:
        return Trainer(cfg, resume=resume, log=log).run()
    except RuntimeError as error:  # torch.distributed's errors are RuntimeErrors
        if not distributed.is_timeout(error):
            raise
        rank, cause = distributed.from_env()[0], str(error).strip().splitlines()[-1].split("] ", 1)[-1]
        raise TrainingError(f"rank {rank}: the other ranks did not answer within dist_timeout={cfg.dist_timeout:g}s "
                            f"({cause[:160]}); one of them failed or is stuck (see "
                            f"its error), or rank 0 evaluates for longer than that: raise --dist-timeout") from None
    finally:
        distributed.shutdown()
