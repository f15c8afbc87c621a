"""The training loop: BPE, token-budget batches, Adam + warmup (§5.3), label smoothing (§5.4), checkpoints, BLEU."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import Tensor

from ..data.batching import Batch, Examples, TokenBatcher
from ..data.corpus import BUNDLED, Corpus, CorpusError
from ..data.prepare import PairSource, is_store, open_or_prepare_pairs
from ..data.store import Column, Store
from ..inference.evaluation import Scores, score, translate
from ..io.model_folder import WEIGHTS_FILE, load_state, read_weights
from ..model.config import ModelConfig
from ..model.dropout import set_dropout
from ..model.models import TransformerBase
from ..model.registry import MODEL_TYPES, of_task
from ..runtime.precision import autocast
from .best import BEST_DIR
from .init_from import InitError
from .loss import label_smoothed_loss
from .regularization import DropoutPlan
from .run_folder import drop_new_run_folder, plot_curves, write_run_config
from .schedule import DecaySchedule, InverseSqrtSchedule, make_schedule
from .settings import COMPILE_MODES, MAX_LEN, RECIPES, TRANSLATE, Settings, task_settings
from .trainer import LossOnHost, RankTrainer, TrainingError, TrainResult, train_on_every_rank

__all__ = ["ARCHITECTURES", "COMPILE_MODES", "RECIPES", "TrainConfig", "Trainer", "TrainingError", "train"]

# The translator's architecture (the `arch` setting), each with its config class: model/registry.py's types whose
# task is translate (the paper's Transformer; the recurrent encoder-decoder §4 compares it with)
ARCHITECTURES: dict[str, tuple[type[ModelConfig], type[TransformerBase]]] = {
    name: (MODEL_TYPES[name].config_class, MODEL_TYPES[name].model_class) for name in of_task("translate")}
# Settings that shape only a Transformer: refused with arch "rnn" rather than ignored
TRANSFORMER_ONLY = ("n_heads", "d_ff", "d_k", "attention_dropout", "positions", "activation")
# a time-budgeted run plans its dropout once this many steps are timed (the model trains without it until then)
PLAN_AFTER_STEPS = 10


@task_settings(TRANSLATE)
class TrainConfig(Settings):
    """Every setting of a translation run (aiayn.training.settings declares them); TOML keys and `aiayn train`
    flags set the same fields (flags win).

    The defaults are the recipe that translates best after ten minutes of training on a 2-core CPU
    (docs/results.md measures each lever); where they differ from the paper the help cites its value, and
    `recipe = "paper"` restores all of them at once.
    """

    def check(self) -> None:
        """The architecture and the model's settings, checked before any corpus is read or BPE trained."""
        if self.arch == "rnn":
            named = [name for name in TRANSFORMER_ONLY if getattr(self, name) is not None]
            if named:
                raise TrainingError(f"TrainConfig: {', '.join(named)} shape(s) a Transformer only; the RNN (arch "
                                    f"rnn) is sized by preset, d_model and the layer counts")
            if self.fsdp:
                raise TrainingError("TrainConfig: fsdp shards Transformer layers; train the RNN (arch rnn) with "
                                    "DDP (--no-fsdp)")
        try:
            model = self.model_config_class().preset(self.preset, vocab_size=self.vocab_size, **self.model_overrides())
        except (TypeError, ValueError) as error:
            raise TrainingError(f"TrainConfig: {error}") from None
        if not self.init_from:  # an --init-from model's positions are checked once it is read (encode_data)
            self.train_length(model.max_positions, f"--preset {self.preset}")

    def model_overrides(self) -> dict[str, Any]:
        """The ModelConfig fields these settings set; a fresh model whose dropout is planned starts without it."""
        overrides = super().model_overrides()
        if self.plans_dropout:
            overrides["dropout"] = 0.0  # until the run's length is planned (RankTrainer's _plan_dropout)
        return overrides

    @property
    def plans_dropout(self) -> bool:
        """True when the run chooses its dropout from its planned epochs: no --dropout, and no --init-from (whose
        model keeps its own)."""
        return self.dropout is None and not self.init_from

    def train_length(self, max_positions: int, whose: str) -> int:
        """The longest training pair (max_len, by default MAX_LEN or the model's positions where fewer); a named
        max_len beyond the model's positions is a TrainingError naming both flags and the fix."""
        if self.max_len is None:
            return min(MAX_LEN, max_positions)
        if self.max_len > max_positions:
            raise TrainingError(f"--max-len {self.max_len} is longer than the model's positions (max_positions "
                                f"{max_positions}, {whose}): give --max-len {max_positions} or less, or "
                                f"--max-positions {self.max_len}, or leave --max-len out (it follows the model)")
        return self.max_len

    def lr_schedule(self, d_model: int) -> InverseSqrtSchedule | DecaySchedule:
        """The learning-rate schedule these settings describe (a decay ends at step `steps`)."""
        return make_schedule(self.schedule, d_model, self.warmup, self.steps, self.peak_lr, self.lr_scale,
                             self.min_lr, self.warmup_share)

    def model_config_class(self) -> type[ModelConfig]:
        """ModelConfig, or RNNConfig for arch "rnn" (whose presets are sized like the Transformer's)."""
        return ARCHITECTURES[self.arch][0]


def _fitting(src: Column, tgt: Column, max_len: int) -> np.ndarray:
    """(N,) rows of the pairs whose source + EOS and target + BOS/EOS fit max_len tokens, with a non-empty target."""
    src_len, tgt_len = src.lengths() + 1, tgt.lengths()  # the source with its EOS
    return np.flatnonzero((src_len <= max_len) & (tgt_len + 1 <= max_len) & (tgt_len > 0))


class Trainer(RankTrainer):
    """One training run in one folder: set up (or resume), step, evaluate, checkpoint (on every rank)."""

    token_prefix = "tgt_"  # the translator counts target tokens
    best_metrics = {"bleu": ("dev_bleu", True), "loss": ("dev_loss", False)}
    architecture_settings = {"vocab_size": "vocab_size", "d_model": "d_model", "n_heads": "n_heads", "d_ff": "d_ff",
                             "encoder_layers": "n_encoder_layers", "decoder_layers": "n_decoder_layers",
                             "norm": "norm"}

    cfg: TrainConfig
    dropout_plan: DropoutPlan | None = None  # the dropout chosen from the planned epochs (no --dropout)

    def keep_tie(self) -> float:
        """--keep-best bleu's tie band (--bleu-tie); the dev loss has none."""
        return self.cfg.bleu_tie if self.cfg.keep_best == "bleu" else 0.0

    def check_start(self, model: TransformerBase) -> ModelConfig:
        """The --init-from model's settings, with a named --dropout; a named --preset must have its shape."""
        cfg = self.cfg
        if cfg.preset != TrainConfig.preset:
            preset = cfg.model_config_class().preset(cfg.preset, vocab_size=model.cfg.vocab_size)
            for name in ("d_model", "n_heads", "d_ff", "n_encoder_layers", "n_decoder_layers"):
                if getattr(preset, name) != getattr(model.cfg, name):
                    raise InitError(f"--preset {cfg.preset} ({name} {getattr(preset, name)}) contradicts the "
                                    f"--init-from model {cfg.init_from}, whose {name} is {getattr(model.cfg, name)}: "
                                    f"the run takes that model's architecture; drop --preset")
        return model.cfg if cfg.dropout in (None, TrainConfig.dropout) else model.cfg.replace(dropout=cfg.dropout)

    def read_data(self) -> None:
        """Where the corpus's token store is (a prepared one given as --data, else RUN/data), its files checked."""
        cfg = self.cfg
        self.source = PairSource(cfg.data, cfg.target, cfg.dev, cfg.dev_target, cfg.test, cfg.test_target,
                                 cfg.dev_size, cfg.test_size, cfg.split_seed, cfg.vocab_size, cfg.bpe_sample,
                                 cfg.skip_bad_lines)
        self.prepared = cfg.data != BUNDLED and is_store(cfg.data)  # `aiayn prepare`'s store, used as it is
        self.store_path = Path(cfg.data) if self.prepared else self.run_dir / "data"
        self._fresh_folder = not self.run_dir.exists()  # removed again if the data turns out unusable
        self._notes: list[str] = []  # prepare's log lines, logged once the data passed its checks
        if not self.prepared:
            self.source.check()

    def learn_tokenizer(self) -> tuple[Tokenizer, ModelConfig]:
        """Rank 0 of a fresh run: the store prepared (its joint BPE learned on a sample of the training split,
        §5.1), and the preset with this run's overrides."""
        cfg = self.cfg
        tokenizer = self._open_store(None).tokenizer()
        overrides: dict[str, Any] = {**cfg.model_overrides(), "vocab_size": tokenizer.get_vocab_size()}
        try:
            return tokenizer, cfg.model_config_class().preset(cfg.preset, **overrides)
        except ValueError as error:
            raise TrainingError(str(error)) from None

    def _open_store(self, tokenizer: Tokenizer | None) -> Store:
        """Rank 0: the run's store (reused if it was made from these files, settings and tokenizer; else prepared;
        a given store must have this tokenizer). A failed prepare leaves no run folder it created."""
        try:
            if self.prepared:
                store = Store(self.store_path)
                if store.kind != "pairs":
                    raise CorpusError(f"{self.store_path} is a store of text (--task lm|mlm), not of sentence pairs")
                if tokenizer is not None and store.tokenizer().to_str() != tokenizer.to_str():
                    model = self.cfg.init_from or self.run_dir
                    raise CorpusError(f"the store {self.store_path} was prepared with another tokenizer than this "
                                      f"run's: prepare it with `aiayn prepare ... --tokenizer {model}/tokenizer.json`")
                return store
            try:
                return open_or_prepare_pairs(self.source, self.store_path, tokenizer, self._notes.append)
            except BaseException:
                drop_new_run_folder(self.run_dir, self._fresh_folder)
                raise
        except CorpusError as error:
            raise TrainingError(str(error)) from None

    def encode_data(self) -> None:
        """The store's training pairs within max_len, the dev pairs, and the token-budget batcher (§5.1); rank 0
        prepares the store if needed, the other ranks wait and open the same files (one copy in the page cache)."""
        cfg = self.cfg
        if self.dist.is_main:
            self._open_store(self.tokenizer)
        self.dist.barrier()
        store = Store(self.store_path)
        positions = self.model_cfg.max_positions  # pairs longer than the model's positions cannot train
        whose = f"the --init-from model {cfg.init_from}" if cfg.init_from else f"the model of {cfg.out}"
        max_len = cfg.train_length(positions, whose)
        self.corpus = Corpus(train=[], dev=store.pairs("dev"), test=store.pairs("test"),
                             name=str(store.meta["shape"]["data"]))
        src, tgt = store.column("train.src"), store.column("train.tgt")
        self.examples = Examples(src, tgt, _fitting(src, tgt, max_len))
        if not len(self.examples):
            drop_new_run_folder(self.run_dir, self._fresh_folder)
            raise TrainingError(f"no training pair fits max_len={max_len} tokens; raise --max-len")
        # the dev loss scores the dev pairs the model's positions hold (dev BLEU translates all, cutting long ones)
        dev_src, dev_tgt = store.column("dev.src"), store.column("dev.tgt")
        self.dev_examples = Examples(dev_src, dev_tgt, _fitting(dev_src, dev_tgt, positions))
        if not len(self.dev_examples):
            drop_new_run_folder(self.run_dir, self._fresh_folder)
            raise TrainingError(f"no dev pair of {self.corpus.name} fits the model's {positions} positions: give "
                                f"--max-positions N above the dev pairs' BPE lengths, or a --dev file of shorter pairs")
        for note in self._notes:
            self.log(note)
        counts = store.meta["counts"]
        self.log(f"corpus {self.corpus.name}: train {counts['train']:,}, dev {counts['dev']:,}, test "
                 f"{counts['test']:,} pairs (store {self.store_path})")
        self.batcher = TokenBatcher(self.examples, cfg.batch_tokens, cfg.seed)

    def build_model(self, model_cfg: ModelConfig) -> TransformerBase:
        """The encoder-decoder of cfg.arch: the Transformer, or the recurrent baseline."""
        config_class, model_class = ARCHITECTURES[self.cfg.arch]
        if type(model_cfg) is not config_class:  # a resumed run's (or --init-from) model against --arch
            held = next((name for name, (kind, _) in ARCHITECTURES.items() if kind is type(model_cfg)), "?")
            raise TrainingError(f"the model this run continues is arch {held!r} ({type(model_cfg).__name__}), not "
                                f"{self.cfg.arch!r}: give --arch {held}")
        return model_class(model_cfg)

    def build_optimizer(self) -> torch.optim.Optimizer:
        """Adam(beta1, beta2, eps), §5.3."""
        cfg = self.cfg
        return torch.optim.Adam(self.model.parameters(), lr=0.0, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                eps=cfg.adam_eps, fused=self._fused_optimizer() or None)

    def start_data(self) -> None:
        """Epoch 0, batch 0."""
        self.epoch, self.position = 0, 0

    def restore_data(self, state: dict[str, Any]) -> str:
        """The epoch and batch reached, and the target tokens seen."""
        self.epoch, self.position = state["epoch"], state["position"]
        self.tokens_seen = state.get("tgt_tokens_seen", 0)
        if state.get("dropout_plan"):  # RUN/config.json, which the model was built from, holds its dropout
            self.dropout_plan = DropoutPlan(**state["dropout_plan"])
        return f" (epoch {self.epoch}, batch {self.position})"

    def ready(self) -> None:
        """This epoch's batches; torch.compile when asked."""
        self._batches = self.batcher.epoch(self.epoch)
        if self.cfg.compile or self.cfg.compile_mode != "default":
            # batches differ in shape: dynamic shapes spare a recompilation per new (B, T)
            self.net = torch.compile(self.net, dynamic=True, mode=self.cfg.compile_mode)

    def trainer_state(self) -> dict[str, Any]:
        """Everything besides the weights that an exact resume needs (under torchrun: call on every rank)."""
        plan = self.dropout_plan
        return {**self._rank_state(), "epoch": self.epoch, "position": self.position,
                "tgt_tokens_seen": self.tokens_seen,
                "dropout_plan": None if plan is None else {"epochs": plan.epochs, "dropout": plan.dropout}}

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
        self._plan_dropout()
        self.net.train()
        batches = [self._next_batch() for _ in range(self.cfg.accumulate)]
        loss, n_tokens = self._optimizer_step(batches, self._loss_sum, sum(b.n_tokens for b in batches))
        self.tokens_seen += n_tokens
        return loss

    def _plan_dropout(self) -> None:
        """Without --dropout: once the run's length is planned (--steps, or the budget at a measured speed), the
        dropout of its planned epochs (regularization.py), set on the model and in RUN/config.json, and logged."""
        if not self.cfg.plans_dropout or self.dropout_plan is not None:
            return
        if self.plan.budget_s is not None and len(self.plan.recent) < PLAN_AFTER_STEPS:
            return
        batches_per_step = self.cfg.accumulate * self.dist.world_size
        # every epoch cuts the same sorted lengths into as many batches: this epoch's count is any epoch's
        self.dropout_plan = plan = DropoutPlan.of(self.plan.planned, batches_per_step, len(self._batches))
        set_dropout(self.model, plan.dropout)
        if self.dist.is_main:
            write_run_config(self.run_dir, self.model)
        self.log(f"step {self.step + 1}: {plan.describe()}")

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
        if test:
            self._score_test(record)
        parts = [f"dev loss {record['dev_loss']:.3f} ppl {record['dev_ppl']:.1f}"]
        if "dev_bleu" in record:
            parts.append(f"dev BLEU {record['dev_bleu']:.2f}")
        if "test_bleu" in record:
            parts.append(f"test BLEU {record['test_bleu']:.2f} chrF {record['test_chrf']:.1f} "
                         f"(beam {record['test_beam']})")
        self._report(record, started, parts)
        plot_curves(self.run_dir)
        return record

    def _score_test(self, record: dict[str, Any]) -> None:
        """Test BLEU and chrF with beam search (§6.1) into `record`, if the corpus has a test split."""
        if self.corpus.test:
            scores = self.bleu("test", self.cfg.beam)
            record.update(test_bleu=scores.bleu, test_chrf=scores.chrf, bleu_signature=scores.bleu_signature,
                          chrf_signature=scores.chrf_signature, test_beam=self.cfg.beam)

    def _test_kept_model(self) -> dict[str, Any]:
        """Test scores of the weights model/ will hold: the best evaluation's (--keep-best), loaded from best/ when
        that is not this last step; a record of its own in metrics.jsonl, naming that step (`model_step`)."""
        started = time.perf_counter()
        kept = self.best.step if self.best.step is not None else self.step
        if kept != self.step:
            weights = self.run_dir / BEST_DIR / WEIGHTS_FILE
            load_state(self.model, read_weights(weights), weights)
        record: dict[str, Any] = {"step": self.step, "model_step": kept}
        self._score_test(record)
        if "test_bleu" in record:
            self._report(record, started, [f"test BLEU {record['test_bleu']:.2f} chrF {record['test_chrf']:.1f} "
                                           f"(beam {record['test_beam']}) of model/, step {kept}"])
        return record

    def _announce(self) -> None:
        """Log the model, the data and the schedule about to train."""
        self.log(f"model: {self.model.num_parameters():,} parameters; {len(self.examples):,} training pairs; "
                 f"{len(self._batches)} batches of <= {self.cfg.batch_tokens} tokens per epoch; "
                 f"{self.cfg.schedule} schedule, peak lr {self.schedule.peak:.2e} {self._warmup_text()}; "
                 f"{self._length()}; torch threads {torch.get_num_threads()}; {self.precision_name}")

    def _warmup_text(self) -> str:
        """Where the warmup ends: a named step, or a share of the planned steps (a budget's, planned in step 1)."""
        if self.cfg.warmup is not None:
            return f"at step {self.cfg.warmup}"
        if self.plan.budget_s is not None:
            return (f"after {self.cfg.warmup_share:.0%} of the steps the time budget holds (planned from the first "
                    f"steps' speed, re-planned as it is measured)")
        return f"at step {self.schedule.warmup} ({self.cfg.warmup_share:.0%} of the planned steps)"

    def _evaluation_due(self) -> bool:
        """Every eval_every steps, and at the test_bleu_at steps."""
        return super()._evaluation_due() or self.step in self.cfg.test_bleu_at

    def _final(self, losses: dict[int, float]) -> TrainResult:
        """The final evaluation (test BLEU with beam search unless final_test is off) and the run's result."""
        test = self.cfg.final_test or self.step in self.cfg.test_bleu_at
        # with --keep-best the last dev evaluation may still change which step model/ holds: score the test set
        # after it, on those weights (averaged or sharded weights stay as they are)
        kept_apart = self.best.key is not None and not self.cfg.average_last and not self.sharded
        record = self.evaluate(test=test and not kept_apart)
        if test and kept_apart:
            record = self._test_kept_model()
        self.log(f"done: {self.step} steps, {self.tokens_seen:,} target tokens; "
                 f"{self.plan.summary(self.step, self.train_seconds)}; model in {self.run_dir / 'model'}")
        scores = None
        if "test_bleu" in record:
            scores = Scores(record["test_bleu"], record["test_chrf"], record["bleu_signature"],
                            record["chrf_signature"])
        return TrainResult(self.run_dir, self.step, losses, test_scores=scores,
                           test_step=record.get("model_step", self.step))


def train(cfg: TrainConfig, resume: bool = False, log: Callable[[str], None] | None = None) -> TrainResult:
    """Set up (or resume) a run in cfg.out and train it to cfg.steps (under torchrun: on every rank)."""
    return train_on_every_rank(lambda: Trainer(cfg, resume=resume, log=log), cfg.dist_timeout)
