"""What the translation trainer (translation.py) and the language-model trainer (lm.py) share on every rank.

Under `torchrun` every rank runs the same trainer: it joins the process group (aiayn.runtime.distributed), takes rank
0's settings, tokenizer and weights, trains its own share of every step's batches under DDP or FSDP, and
leaves logging, evaluation and files to rank 0. In one process the same code runs with every collective a
no-op. A subclass supplies its data, its loss and its evaluation; this class supplies the rest.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import torch
from tokenizers import Tokenizer
from torch import Tensor
from tqdm import tqdm

from ..io.model_folder import WEIGHTS_FILE, load_state, read_weights, save_model
from ..model.config import ModelConfig
from ..model.layers import TransformerLayer
from ..model.models import TransformerBase
from ..runtime import distributed
from ..runtime.device import resolve_device
from ..runtime.log import get_logger
from ..runtime.precision import autocast_dtype
from .best import BestKeeper, install_best, note_evaluation, save_best
from .board import Board, check_available
from .budget import UNLIMITED, BudgetPlan, format_duration
from .checkpoints import average_checkpoints, list_checkpoints, load_trainer_state, save_checkpoint
from .init_from import InitError, check_architecture, describe, load_start, named_settings
from .run_folder import read_run_tokenizer, start_run_folder, truncate_metrics
from .schedule import DecaySchedule
from .settings import RECIPES
from .validate import TrainingError

logger = get_logger("training")


# By default the checkpoints averaged at the end (average_last) are spread over this share of the planned
# steps: the paper's base model averaged 5 checkpoints of its last ~50 of 720 minutes (§6.1).
AVERAGE_SPAN = 0.05


@dataclass
class TrainResult:
    """What a run ended with."""

    run_dir: Path
    step: int
    losses: dict[int, float]  # training loss of each logged step
    interrupted: bool = False
    main: bool = True  # False on the ranks > 0 of a torchrun job (rank 0 reports)
    test_scores: Any = None
    test_step: int | None = None  # the step whose weights test_scores are of (model/'s)
    stop_signal: int | None = None  # signal.SIGINT or signal.SIGTERM when interrupted
    best: str | None = None  # model/ holds the best evaluation's weights: e.g. "dev_bleu 12.3 at step 500"
    stopped_early: bool = False  # --patience evaluations without a better score ended the run


class LossOnHost:
    """A step's loss on its way to the host: from a GPU it is copied without stopping the CPU (so the next step
    is queued meanwhile), and value() waits only if the copy has not landed; on a CPU it is there already."""

    def __init__(self, loss: Tensor) -> None:
        """Start the copy of the 0-d tensor `loss`."""
        self.deferred = loss.device.type == "cuda"
        self._ready: torch.cuda.Event | None = None
        if self.deferred:
            self._host = torch.empty((), dtype=loss.dtype, pin_memory=True)
            self._host.copy_(loss, non_blocking=True)
            self._ready = torch.cuda.Event()
            self._ready.record()
        else:
            self._host = loss

    def value(self) -> float:
        """The loss as a float (waits for the GPU copy when it is still on its way)."""
        if self._ready is not None:
            self._ready.synchronize()
        return float(self._host)


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


def check_run_folder(run_dir: Path, checkpoints: list[Path], resume: bool) -> None:
    """Refuse to start over a run that has checkpoints (without --resume), or to resume one that has none."""
    if checkpoints and not resume:
        raise TrainingError(f"{run_dir} already holds checkpoints: pass --resume to continue that run, "
                            f"or choose another --out")
    if resume and not checkpoints:
        raise TrainingError(f"nothing to resume: {run_dir} has no checkpoints/step_N folder")


class RankTrainer:
    """A trainer as every rank of a torchrun job runs it (one process: the same, every collective a no-op).

    __init__ sets a run up in the one order every task follows and calls the task's hooks where tasks differ:
    check_settings, read_data, learn_tokenizer, encode_data, build_model, build_optimizer, start_data,
    restore_data and ready. A task also defines train_step (drawing its batches, then _optimizer_step, its
    forward under autocast(self.device, self.autocast_dtype)), trainer_state, evaluate, _announce and _final.
    Its cfg has out, device, precision, dist_timeout, fsdp, threads, seed, accumulate, clip_norm, steps,
    time_budget, log_every, eval_every, save_every, keep_last, init_from, keep_best, patience and tensorboard,
    lr_schedule() and to_dict().
    """

    task = "translate"  # the kind of model it trains (aiayn.model.registry's task)
    # keep_best choice -> (evaluation record field, higher is better)
    best_metrics: dict[str, tuple[str, bool]] = {"loss": ("dev_loss", False)}
    # settings that name a ModelConfig field (setting -> field), checked against an --init-from model
    architecture_settings: dict[str, str] = {}
    board: Board | None = None

    token_prefix = ""  # metric names: "tok_per_s", "tokens_seen"; the translator counts target tokens: "tgt_"
    result_type: type[TrainResult] = TrainResult
    cfg: Any
    run_dir: Path
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    schedule: Callable[[int], float]
    write: Callable[[dict[str, Any]], None]
    step: int = 0
    tokens_seen: int = 0  # tokens trained on, over all ranks
    train_seconds: float = 0.0
    autocast_dtype: torch.dtype | None = None  # torch.bfloat16 to autocast the forward to; None: fp32
    plan: BudgetPlan
    average_steps: list[int]  # steps saved for averaging at the end (cfg.average_last), oldest first
    _clock: tuple[float, float] | None = None  # in the loop: (perf_counter at budget second 0, this step's start)

    # --- setting up
    def __init__(self, cfg: Any, resume: bool = False, log: Callable[[str], None] | None = None) -> None:
        """Set up (or resume) a run: the same steps for every task, the task's hooks where they differ.

        Everything that can fail (settings, data, tokenizer, model) comes before anything is written, so a
        bad input leaves no run folder.
        """
        self.cfg = cfg = self._join(cfg, log)
        self._choose_precision()
        self.check_settings()
        self._check_extras()
        self.best = BestKeeper.for_run(cfg.keep_best, self.best_metrics, cfg.patience, self.keep_tie())
        self.run_dir = Path(cfg.out)
        checkpoints = self._run_folder(self.run_dir, resume)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.read_data()
        self._start: TransformerBase | None = None  # rank 0 of an --init-from run: the model it starts from
        self.tokenizer, model_cfg = self._from_rank_0(
            lambda: read_run_tokenizer(self.run_dir) if resume else
            self._initial() if cfg.init_from else self.learn_tokenizer())
        self.model_cfg = model_cfg
        self.encode_data()
        model = self.build_model(model_cfg)
        if self._start is not None:  # the other ranks receive rank 0's weights (DDP, or FSDP in _place)
            model.load_state_dict(self._start.state_dict())
            self._start = None
        self._place(model)
        self.schedule = cfg.lr_schedule(model_cfg.d_model)
        self.optimizer = self.build_optimizer()
        self.step, self.tokens_seen, self.train_seconds = 0, 0, 0.0
        self.average_steps = []
        self.start_data()
        self._plan()  # the steps to take (cfg.steps, cfg.time_budget); a resumed run continues its own plan
        if resume:
            self._restore(checkpoints[-1])
        settings = cfg.to_dict()
        if cfg.init_from:  # where the run started, whatever the working folder of a later resume
            settings["init_from"] = str(Path(cfg.init_from).resolve())
        self.write = start_run_folder(self.run_dir, self.model, self.tokenizer, settings, not resume) \
            if self.dist.is_main else (lambda record: None)
        if cfg.tensorboard and self.dist.is_main:
            self.board = Board(self.run_dir, self.step + 1)
            self.write = self._also_to_board(self.write, self.board)
        self._wrap()
        self.ready()

    def _check_extras(self) -> None:
        """keep_best names one of this task's metrics (or none), patience has something to count, and the
        tensorboard package is there when asked for; a TrainingError naming the setting otherwise."""
        cfg = self.cfg
        choices = (*self.best_metrics, "none")
        if cfg.keep_best not in choices:
            raise TrainingError(f"keep_best must be one of {choices} for --task {self.task}, got {cfg.keep_best!r}")
        if cfg.patience and cfg.keep_best == "none":
            raise TrainingError(f"patience {cfg.patience} counts evaluations without a better --keep-best score: "
                                f"give --keep-best {'|'.join(self.best_metrics)}, or drop --patience")
        if cfg.patience and not cfg.eval_every:
            raise TrainingError(f"patience {cfg.patience} counts evaluations, but eval_every is 0 (only the final "
                                f"one): give --eval-every N")
        if cfg.tensorboard:
            try:
                check_available()
            except ImportError as error:
                raise TrainingError(str(error)) from None

    def _initial(self) -> tuple[Tokenizer, ModelConfig]:
        """Rank 0 of an --init-from run: that model's tokenizer and settings (its dropout replaced by a named one);
        its weights wait in self._start for build_model's model."""
        folder = self.cfg.init_from
        try:
            model, tokenizer = load_start(folder, self.task)
            recipe = getattr(self.cfg, "recipe", None)
            check_architecture(named_settings(self.cfg), self.architecture_settings, model, folder,
                               (recipe, RECIPES[recipe]) if recipe in RECIPES else None)
            model_cfg = self.check_start(model)
        except InitError as error:
            raise TrainingError(str(error)) from None
        self.log(describe(model, tokenizer, folder))
        self._start = model
        return tokenizer, model_cfg

    @staticmethod
    def _also_to_board(write: Callable[[dict[str, Any]], None], board: Board) -> Callable[[dict[str, Any]], None]:
        """A metrics writer that also sends each record to TensorBoard."""
        def both(record: dict[str, Any]) -> None:
            write(record)
            board.add(record)

        return both

    # --- the task's hooks, in the order __init__ calls them
    def check_settings(self) -> None:
        """Refuse settings only this task checks (TrainingError), before anything is read."""

    def keep_tie(self) -> float:
        """The tie band of the keep-best metric, in its units (BestKeeper.tie); 0: only a better score is kept."""
        return 0.0

    def check_start(self, model: TransformerBase) -> ModelConfig:
        """The settings of the run's model from an --init-from model's (InitError for a setting it cannot meet)."""
        return model.cfg

    def read_data(self) -> None:
        """Read the corpus or text (every rank), raising TrainingError for an unusable one."""
        raise NotImplementedError

    def learn_tokenizer(self) -> tuple[Tokenizer, ModelConfig]:
        """Rank 0 of a fresh run: the tokenizer learned on the training data, and the model's settings."""
        raise NotImplementedError

    def encode_data(self) -> None:
        """Encode the data with self.tokenizer, raising TrainingError if too little is left to train on."""
        raise NotImplementedError

    def build_model(self, model_cfg: ModelConfig) -> TransformerBase:
        """The task's model, freshly initialised."""
        raise NotImplementedError

    def build_optimizer(self) -> torch.optim.Optimizer:
        """The optimizer over self.model's parameters at lr 0 (each step sets its own: _set_lr), fused when
        _fused_optimizer() says so."""
        raise NotImplementedError

    def start_data(self) -> None:
        """The data position of a fresh run (a resumed one then restores it in restore_data)."""

    def restore_data(self, state: dict[str, Any]) -> str:
        """The data position and token count from a checkpoint's trainer state; returns words for the log."""
        raise NotImplementedError

    def ready(self) -> None:
        """The last setup step, after the model is wrapped for DDP / FSDP."""

    def _restore(self, checkpoint: Path) -> None:
        """Model, optimizer, step, data position and RNG from a checkpoint folder (read by rank 0, sent to all)."""
        state = self._load(checkpoint)
        where = self.restore_data(state)
        self._restore_rngs(state)
        if self.dist.is_main:
            truncate_metrics(self.run_dir, self.step)
        self.log(f"resuming {self.run_dir} from {checkpoint.name}{where}")

    def _join(self, cfg: Any, log: Callable[[str], None] | None) -> Any:
        """Join torchrun's process group (if any) on this rank's device; returns rank 0's settings.

        Rank 0 alone logs; its settings (which on --resume come from its run folder) are every rank's.
        """
        self.log = log or logger.info
        self.dist = distributed.init(resolve_device(cfg.device), cfg.dist_timeout)
        self.device = self.dist.device
        if not self.dist.is_main:
            self.log = lambda message: None
        return self.dist.broadcast(cfg)

    def _choose_precision(self) -> None:
        """self.autocast_dtype for cfg.precision on this rank's device; a bad name is a TrainingError naming both."""
        try:
            self.autocast_dtype = autocast_dtype(self.cfg.precision, self.device)
        except ValueError as error:  # "precision must be one of (...), got ..."
            raise TrainingError(f"{type(self.cfg).__name__}.{error}") from None

    @property
    def precision_name(self) -> str:
        """What the forward runs in, for the announce line: "bf16 autocast" or "fp32"."""
        return "bf16 autocast" if self.autocast_dtype is not None else "fp32"

    def _fused_optimizer(self) -> bool:
        """Whether Adam / AdamW run fused: on a CPU, and on a GPU unless FSDP shards the model (call after _place).

        The fused Adam (one kernel for all parameters, on a CPU too) gives the loop's update up to float
        rounding, in one pass over the weights instead of several. FSDP's shards take it
        on a CPU (tested, gloo), so one process and FSDP round alike; on a GPU they were not tested with it.
        """
        return self.device.type == "cpu" or (self.device.type == "cuda" and not self.sharded)

    def _run_folder(self, run_dir: Path, resume: bool) -> list[Path]:
        """Rank 0's checkpoints of run_dir, checked against --resume (only rank 0 needs the folder)."""
        checkpoints = self.dist.broadcast(list_checkpoints(run_dir))
        check_run_folder(run_dir, checkpoints, resume)
        return checkpoints

    def _from_rank_0(self, make: Callable[[], tuple[Tokenizer, ModelConfig]]) -> tuple[Tokenizer, ModelConfig]:
        """Rank 0 makes (learns or loads) the tokenizer and model settings and sends them to the other ranks."""
        if not self.dist.is_main:  # no shared folder needed
            tokenizer_json, model_cfg = self.dist.broadcast(None)
            return Tokenizer.from_str(tokenizer_json), model_cfg
        tokenizer, model_cfg = make()
        if self.dist.enabled:
            self.dist.broadcast((tokenizer.to_str(), model_cfg))
        return tokenizer, model_cfg

    def _place(self, model: TransformerBase) -> None:
        """self.model on this rank's device; under --fsdp rank 0's initial weights, sharded; own dropout masks."""
        self._model_class = type(model)
        self.model = model.to(self.device)
        self.sharded = self.cfg.fsdp and self.dist.enabled
        if self.cfg.fsdp and not self.dist.enabled:
            self.log("--fsdp has no effect in a single process (start the run with torchrun)")
        if self.sharded:  # rank 0's initial weights everywhere, then each rank keeps its shard
            distributed.broadcast_weights(self.model)
            distributed.shard(self.model, (TransformerLayer,))
        if self.dist.enabled and not self.dist.is_main:  # the same weights (DDP copies rank 0's), other dropout
            torch.manual_seed(self.cfg.seed * 65_537 + self.dist.rank)

    def _wrap(self) -> None:
        """self.net, the module that trains: the model itself (also when sharded), or DDP around it, which
        copies rank 0's weights to every rank now and all-reduces the gradients in backward."""
        self.net: torch.nn.Module = self.model
        if self.dist.enabled and not self.sharded:
            self.net = distributed.wrap_ddp(self.model, self.device)

    def _plan(self, state: dict[str, Any] | None = None) -> None:
        """self.plan from cfg.steps and cfg.time_budget, continuing a resumed run's plan (its saved `state`)."""
        self.plan = BudgetPlan.from_state((state or {}).get("plan"), self.cfg.steps or UNLIMITED, self.cfg.time_budget)
        self._replan(self.plan.replan(self.step, self.cfg.eval_every))

    def _length(self) -> str:
        """What ends the run, for the announce line."""
        steps = f"{self.cfg.steps:,} steps" if self.cfg.steps else ""
        budget = f"time budget {format_duration(self.plan.budget_s)}" if self.plan.budget_s is not None else ""
        return " or ".join(part for part in (steps, budget) if part) + (", whichever ends first"
                                                                       if steps and budget else "")

    def _replan(self, planned: int) -> None:
        """Tell the plan's step count to a schedule that decays to its last step."""
        self.plan.planned = planned
        if isinstance(self.schedule, DecaySchedule) and planned != UNLIMITED:
            self.schedule.end_at(planned)

    # --- checkpoints
    def _load(self, checkpoint: Path) -> dict[str, Any]:
        """Weights and optimizer state from a checkpoint folder (read by rank 0, sent to all); its trainer state."""
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
        self.step = state["step"]
        self.train_seconds = state.get("train_seconds", 0.0)
        self.average_steps = list(state.get("average_steps", []))
        if self.dist.is_main:  # best/ (rank 0's) may hold the final evaluation, made after this checkpoint
            self.best.resume(state.get("best"), self.run_dir, self.step)
        else:
            self.best.load(state.get("best"))
        self._plan(state)
        return state

    def _restore_rngs(self, state: dict[str, Any]) -> None:
        """Dropout streams: with as many ranks as saved each rank continues its own; else fresh per-rank ones."""
        torch_rng, cuda_rng = state["torch_rng"], state.get("cuda_rng")
        rank_rngs = state.get("rank_rngs") or []
        if len(rank_rngs) == self.dist.world_size:
            torch_rng, cuda_rng = rank_rngs[self.dist.rank]
        elif self.dist.rank > 0:  # distinct per rank and step
            torch.manual_seed(self.cfg.seed * 65_537 + self.dist.rank + self.step * 1_000_003)
            torch_rng, cuda_rng = torch.get_rng_state(), None
        torch.set_rng_state(torch_rng)
        if self.device.type == "cuda" and cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, self.device)

    def _rank_state(self) -> dict[str, Any]:
        """The whole optimizer state and the RNG states (every rank's under torchrun); every rank must call it."""
        cuda_rng = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        optimizer = (distributed.full_optimizer_state(self.model, self.optimizer) if self.sharded
                     else self.optimizer.state_dict())
        state = {"optimizer": optimizer, "step": self.step, "train_seconds": self.train_seconds,
                 "torch_rng": torch.get_rng_state(), "cuda_rng": cuda_rng, "plan": self.plan.state(),
                 "average_steps": list(self.average_steps), "best": self.best.state()}
        if self.dist.enabled:  # every rank's dropout stream, so a resume with as many ranks is exact
            state["rank_rngs"] = self.dist.gather((torch.get_rng_state(), cuda_rng))
        return state

    def trainer_state(self) -> dict[str, Any]:
        """Everything besides the weights that an exact resume needs (under torchrun: call on every rank)."""
        raise NotImplementedError

    def save(self) -> Path:
        """Write checkpoints/step_N/ (atomically; rank 0) and prune to keep_last; every rank waits for it."""
        state = self.trainer_state()
        path = self.run_dir / "checkpoints" / f"step_{self.step}"
        with self._full_model():
            if self.dist.is_main:
                last = self.cfg.average_last
                averaged = frozenset(self.average_steps[-last:]) if last else frozenset()
                path = save_checkpoint(self.run_dir, self.step, self.model, self.tokenizer, state, self.cfg.keep_last,
                                       keep_steps=averaged)  # keep_last does not prune what the end averages
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
            self.model = self._model_class(sharded.cfg).to(self.device)
            self.model.load_state_dict(weights)
        try:
            yield
        finally:
            self.model = sharded

    # --- training
    def train_step(self) -> LossOnHost:
        """One optimizer step; returns the loss per scored token over all ranks (on its way to the host)."""
        raise NotImplementedError

    def _optimizer_step(self, batches: list[Any], loss_sum: Callable[[Any], Tensor],
                        n_scored: int) -> tuple[LossOnHost, int]:
        """One optimizer step over this rank's `batches`, whose n_scored tokens loss_sum(batch) sums the loss of;
        the gradients are exchanged after the last. Returns (loss per scored token, scored tokens), all ranks'.

        On a CPU the loss is checked before the weights change. On a GPU nothing here waits for the GPU: the
        loss comes back while the next step is queued, and the loop checks it then (a non-finite loss still
        stops the run before any checkpoint is written from the weights it reached).
        """
        world = self.dist.world_size
        n_tokens = int(self.dist.sum([n_scored])[0]) if world > 1 else n_scored  # the step's, on all ranks
        if n_tokens == 0:  # e.g. a masked-LM step that chose no token: 0 / 0 would be a NaN loss
            return self._empty_step(), 0
        self.optimizer.zero_grad(set_to_none=True)
        total: Tensor | None = None
        for i, batch in enumerate(batches):
            with distributed.gradient_sync(self.net, world == 1 or i == len(batches) - 1), \
                    self.model.ids_from_own_tokenizer():
                loss = loss_sum(batch) / n_tokens
                # Each rank's loss is its tokens' sum / the step's token count on ALL ranks. DDP (and FSDP)
                # average the gradients over the W ranks; times W, that average is their sum: the gradient of
                # one process training on all W ranks' batches (exactly, for W a power of two).
                (loss * world if world > 1 else loss).backward()
            total = loss.detach() if total is None else total + loss.detach()
        assert total is not None
        if world > 1:
            total = torch.tensor(self.dist.sum([total.item()])[0])
        reported = LossOnHost(total)
        if not reported.deferred:
            self._checked(reported.value(), self.step + 1)
        if self.cfg.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_norm)
        self.step += 1
        self._set_lr()
        self.optimizer.step()
        return reported, n_tokens

    def _set_lr(self) -> None:
        """The learning rate of step self.step, set before its update; under a time budget whose steps are not
        measured yet, the plan is first estimated from the seconds of the steps so far (this one's included), so
        a schedule that follows the plan (a warmup share) warms up from step 1."""
        plan = self.plan
        if plan.budget_s is not None and not plan.recent and self._clock is not None:
            clock_zero, mark = self._clock
            now = time.perf_counter() - clock_zero
            step_s = (self.train_seconds + now - mark) / self.step  # the steps so far, this one up to now
            self._replan(self._agree(plan.estimate(self.step, now, step_s)))
        for group in self.optimizer.param_groups:
            group["lr"] = self.schedule(self.step)

    def _empty_step(self) -> LossOnHost:
        """A step whose batches score no token (on any rank): it counts, moves the schedule on and changes no
        weight (a zero gradient would still move them through Adam's momentum); its loss is reported as 0."""
        self.step += 1
        self._set_lr()
        self.log(f"step {self.step} scored no token (a masked-LM batch in which no token was chosen): the weights "
                 f"are left as they were")
        return LossOnHost(torch.zeros((), device=self.device))

    def run(self) -> TrainResult:
        """Train to cfg.steps, evaluating and checkpointing on schedule; Ctrl-C saves and stops every rank cleanly."""
        self._announce()
        if self.dist.enabled:
            self.log(f"data parallel ({'FSDP' if self.sharded else 'DDP'}): {self.dist.world_size} ranks "
                     f"({torch.distributed.get_backend()}), {self.cfg.accumulate} batch(es) per rank per step")
        try:
            losses, stop_signal = self._train_loop()
            checkpoint = self.save()
            if stop_signal is not None:
                self.log(f"interrupted at step {self.step}: saved {checkpoint}; continue with --resume")
                return self.result_type(self.run_dir, self.step, losses, interrupted=True, stop_signal=stop_signal)
            with self._full_model():
                if not self.dist.is_main:
                    return self.result_type(self.run_dir, self.step, losses, main=False)
                if self.cfg.average_last:
                    self._average_into_model()
                save_model(self.model, self.run_dir / "model", self.tokenizer)
                result = self._final(losses)
            result.stopped_early = self.best.out_of_patience
            if self.best.step is not None:
                if self.cfg.average_last:  # model/ stays the average that was asked for (§6.1)
                    self.log(f"best/ holds the best evaluation: {self.best.describe()}; model/ is the average")
                else:
                    if self.best.step != self.step:
                        install_best(self.run_dir, self.run_dir / "model")
                    result.best = self.best.describe()
                    if self.best.step != self.step:
                        self.log(f"model/ holds the best evaluation: {result.best} (the last step is {self.step}; "
                                 f"its checkpoint is in checkpoints/)")
            return result
        finally:
            if self.board is not None:
                self.board.close()

    def _average_into_model(self) -> None:
        """Rank 0, at the end: the model becomes the mean of the last average_last checkpoints saved for it
        (§6.1 averaged the last 5 of the base model's, written at 10-minute intervals)."""
        if not self.average_steps or self.average_steps[-1] != self.step:
            self.average_steps.append(self.step)  # the final checkpoint, just saved, always takes part
        folders = self.run_dir / "checkpoints"
        chosen = [folders / f"step_{s}" for s in self.average_steps[-self.cfg.average_last:]]
        missing = [folder.name for folder in chosen if not folder.is_dir()]
        if missing:
            raise TrainingError(f"{', '.join(missing)} in {folders}, saved for the average of the last "
                                f"{self.cfg.average_last} checkpoints, is gone (deleted?): average the ones left with "
                                f"`aiayn average {self.run_dir} --last N --out DIR`")
        load_state(self.model, average_checkpoints(chosen), folders)
        steps = ", ".join(folder.name.removeprefix("step_") for folder in chosen)
        self.log(f"model/: the average of {len(chosen)} checkpoint(s), steps {steps} (§6.1)")

    def _checked(self, loss: float, step: int) -> float:
        """The loss of `step`, or a TrainingError naming the step and the last good checkpoint if not finite."""
        if not math.isfinite(loss):
            kept = list_checkpoints(self.run_dir)
            raise TrainingError(f"the loss became {loss} at step {step}; stopped. The last good "
                                f"checkpoint is {kept[-1] if kept else 'none'}: resume from it with a lower "
                                f"--peak-lr / longer --warmup, or set --clip-norm")
        return loss

    def _train_loop(self) -> tuple[dict[int, float], int | None]:
        """Steps until the plan is done (cfg.steps, cfg.time_budget) or a stop request; returns (loss of each
        step, the stop signal or None)."""
        cfg, plan = self.cfg, self.plan
        losses: dict[int, float] = {}
        pending: list[tuple[int, LossOnHost]] = []  # steps whose loss a GPU has not reported yet

        def settle(keep_newest: bool) -> None:
            """Read back (and check) the pending losses; keep_newest leaves the step just queued in flight."""
            while len(pending) > keep_newest:
                step, loss = pending.pop(0)
                losses[step] = self._checked(loss.value(), step)

        bar = tqdm(total=plan.planned if plan.planned != UNLIMITED else None, initial=self.step,
                   desc=self.bar_label, unit="step", dynamic_ncols=True,
                   disable=not (sys.stderr.isatty() and self.dist.is_main))
        stop_signal = None
        clock_zero = time.perf_counter() - plan.elapsed_s  # the budget's clock continues a resumed run's
        mark = plan.elapsed_s  # budget seconds when the last step's time started counting
        with _StopFlag((signal.SIGINT,) if self.dist.enabled else (signal.SIGINT, signal.SIGTERM)) as stop:
            while not plan.done(self.step):
                self._clock = (clock_zero, mark)  # for the first steps' estimate of the plan (_set_lr)
                pending.append((self.step + 1, self.train_step()))
                # before a log line, an evaluation or a checkpoint every loss so far is read and checked
                due = self._evaluation_due() or self._save_due()
                settle(keep_newest=not (due or self.step % cfg.log_every == 0))
                now = time.perf_counter() - clock_zero  # waiting for the GPU included
                self.train_seconds += now - mark
                self._replan(self._agree(plan.update(self.step, now, cfg.eval_every)))
                last = plan.done(self.step)
                if last:
                    settle(keep_newest=False)
                if plan.planned != UNLIMITED and bar.total != plan.planned:
                    bar.total = plan.planned
                bar.update(1)
                if self.step % cfg.log_every == 0 or last:
                    self._log_step(losses[self.step], bar)
                mark = now
                if due and not last:  # evaluations and checkpoints count in the budget, not in the step rate
                    evaluated = self._evaluation_due()
                    self._on_schedule()
                    mark = time.perf_counter() - clock_zero
                    plan.spent(mark - now, evaluated)
                    if evaluated and self.dist.any(self.best.out_of_patience):  # rank 0 evaluates, all stop
                        self.log(f"stopping early at step {self.step}: {self.best.since} evaluations without a "
                                 f"better {self.best.key} than {self.best.describe()} (--patience "
                                 f"{self.best.patience})")
                        break
                if self.dist.any(stop.requested):  # all ranks stop after the same step
                    stop_signal = stop.signal or signal.SIGINT
                    break
            settle(keep_newest=False)
        bar.close()
        return losses, stop_signal

    def _agree(self, planned: int) -> int:
        """Rank 0's planned step count on every rank (its clock decides; a collective only under a budget)."""
        if not self.dist.enabled or self.plan.budget_s is None:
            return planned
        return int(self.dist.sum([float(planned) if self.dist.is_main else 0.0])[0])

    @property
    def bar_label(self) -> str:
        """The progress bar's description."""
        return "train"

    def _log_step(self, loss: float, bar: tqdm) -> None:
        """A training record in metrics.jsonl, and the loss on the bar (or a log line when there is none)."""
        lr = self.optimizer.param_groups[0]["lr"]
        speed = self.tokens_seen / self.train_seconds if self.train_seconds else 0.0
        prefix = self.token_prefix
        self.write({"step": self.step, "loss": round(loss, 5), "lr": lr, f"{prefix}tok_per_s": round(speed),
                    f"{prefix}tokens_seen": self.tokens_seen, "train_s": round(self.train_seconds, 2)})
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{speed:.0f}")
        if bar.disable:
            self.log(f"step {self.step}/{self.plan.planned} loss {loss:.4f} lr {lr:.2e} {speed:.0f} "
                     f"{prefix.replace('_', ' ')}tok/s")

    def _on_schedule(self) -> None:
        """Between steps: evaluate (rank 0, on the whole model) and checkpoint when their turn has come."""
        if self._evaluation_due():
            with self._full_model():
                if self.dist.is_main:  # the other ranks wait in the next collective
                    self.evaluate()
        if self._averaging_due():
            self.average_steps.append(self.step)
        if self._save_due():
            self.save()

    def _evaluation_due(self) -> bool:
        """True every eval_every steps."""
        return bool(self.cfg.eval_every) and self.step % self.cfg.eval_every == 0

    def _save_due(self) -> bool:
        """True every save_every steps, and at the steps saved for averaging at the end."""
        return bool(self.cfg.save_every) and self.step % self.cfg.save_every == 0 or self._averaging_due()

    def average_every(self) -> int:
        """Steps between the checkpoints averaged at the end: cfg.average_every, or by default spread over the
        last AVERAGE_SPAN of the planned steps."""
        if self.cfg.average_every:
            return self.cfg.average_every
        planned = self.plan.planned if self.plan.planned != UNLIMITED else self.step
        return max(1, round(planned * AVERAGE_SPAN / self.cfg.average_last))

    def _averaging_due(self) -> bool:
        """True at the steps before the planned last one whose checkpoints the end averages (cfg.average_last)."""
        if not self.cfg.average_last or self.plan.planned == UNLIMITED:
            return False
        every, before_end = self.average_every(), self.plan.planned - self.step
        return 0 < before_end < self.cfg.average_last * every and before_end % every == 0

    def evaluate(self) -> dict[str, Any]:
        """Validation metrics of the current model, logged (rank 0)."""
        raise NotImplementedError

    def _report(self, record: dict[str, Any], started: float, parts: list[str]) -> None:
        """An evaluation's record, with the tokens and seconds so far, into metrics.jsonl; `parts` as a log line."""
        record.update({f"{self.token_prefix}tokens_seen": self.tokens_seen, "train_s": round(self.train_seconds, 1),
                       "eval_s": round(time.perf_counter() - started, 1)})
        self.write(record)
        self.log(f"step {self.step}: " + ", ".join(parts) + f" [{record['eval_s']}s]")
        if self.best.update(record):
            save_best(self.run_dir, self.model, self.tokenizer, self.best)
        elif self.best.key is not None:
            note_evaluation(self.run_dir, self.best)

    def _announce(self) -> None:
        """Log what is about to train."""
        raise NotImplementedError

    def _final(self, losses: dict[int, float]) -> TrainResult:
        """Rank 0, after saving model/: the final evaluation and the run's result."""
        raise NotImplementedError


def train_on_every_rank(start: Callable[[], RankTrainer], timeout_s: float) -> TrainResult:
    """start().run() on this rank; a collective that times out becomes one TrainingError naming dist_timeout."""
    try:
        return start().run()
    except RuntimeError as error:  # torch.distributed's errors are RuntimeErrors
        if not distributed.is_timeout(error):
            raise
        rank, cause = distributed.from_env()[0], str(error).strip().splitlines()[-1].split("] ", 1)[-1]
        raise TrainingError(f"rank {rank}: the other ranks did not answer within dist_timeout={timeout_s:g}s "
                            f"({cause[:160]}); one of them failed or is stuck (see "
                            f"its error), or rank 0 evaluates for longer than that: raise --dist-timeout") from None
    finally:
        distributed.shutdown()
