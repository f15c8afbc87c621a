"""Language-model training: GPT-style causal LM (`--task lm`) and BERT-style masked LM (`--task mlm`).

A sibling of translation.py (the translator's loop) that shares its run folder, checkpoints, resume, metrics,
curves, progress bar, Ctrl-C handling and, under torchrun, data parallelism (base.RankTrainer). Batches are
random windows of a long text, as in nanoGPT.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor

from ..data.corpus import CorpusError
from ..data.lm import (
    IGNORE_INDEX,
    MASK_TOKEN,
    mask_tokens,
    random_windows,
    train_char_tokenizer,
    train_wordpiece_tokenizer,
)
from ..data.prepare import TextSource, is_store, open_or_prepare_text
from ..data.store import Store
from ..data.tokenizer import train_bpe
from ..model.config import ModelConfig
from ..model.models import DecoderLM, EncoderLM, TransformerBase
from ..runtime.precision import autocast
from .init_from import InitError
from .loss import fp32_cross_entropy
from .run_folder import drop_new_run_folder, plot_curves
from .schedule import make_schedule
from .settings import BUNDLED_TEXT, LM, TOKENIZERS, Settings, read_toml, task_settings
from .trainer import LossOnHost, RankTrainer, TrainingError, TrainResult, train_on_every_rank

TASKS = ("lm", "mlm")
MASK_ID = 4  # [MASK] follows <pad> <s> </s> <unk> in the char and wordpiece tokenizers of a masked-LM run

__all__ = ["BUNDLED_TEXT", "LMTrainConfig", "LMTrainResult", "LMTrainer", "TASKS", "TOKENIZERS", "train_lm"]


@dataclass
class LMTrainResult(TrainResult):
    """What a language-model run ended with; `final` is the last validation record (eval_windows' sample)."""

    final: dict[str, Any] | None = None


@task_settings(LM)
class LMTrainConfig(Settings):
    """Settings of a language-model run (aiayn.training.settings declares them); TOML keys and
    `aiayn train --task lm|mlm` flags set the same fields (flags win).

    Architecture defaults are the paper's (post-LN §3.1, sinusoids §3.5, ReLU §3.3, embeddings x sqrt(d)
    §3.4, dropout 0.1 §5.4); sizes, batches and the cosine schedule are nanoGPT's shakespeare_char CPU
    run (the paper trains no language model). configs/lm-shakespeare-char.toml is that run in full.
    """

    def check(self) -> None:
        """The rates, and the model's settings before any text is read."""
        if self.peak_lr <= 0 or not 0 <= self.min_lr <= self.peak_lr:
            raise TrainingError(f"need peak_lr > 0 and 0 <= min_lr <= peak_lr, got {self.peak_lr} and {self.min_lr}")
        if self.max_positions is not None and self.context > self.max_positions:  # a window needs a position each
            raise TrainingError(f"--context {self.context} is longer than --max-positions {self.max_positions}: give "
                                f"--context {self.max_positions} or less, or --max-positions {self.context} or more")
        self.model_config(max(self.vocab_size, MASK_ID + 1))

    @property
    def tokenizer_kind(self) -> str:
        """The tokenizer this run uses: the one asked for, else char (lm) or wordpiece (mlm)."""
        return self.tokenizer or ("char" if self.task == "lm" else "wordpiece")

    @staticmethod
    def read_toml(path: str | Path) -> dict[str, Any]:
        """The settings of a TOML file as a dict (checked when the config is built)."""
        return read_toml(path)

    def lr_schedule(self, d_model: int) -> Callable[[int], float]:
        """step -> learning rate: a decay to min_lr at the last step, or the paper's inverse square root (peak_lr)."""
        return make_schedule(self.schedule, d_model, self.warmup, self.steps, self.peak_lr, min_lr=self.min_lr,
                             warmup_share=self.warmup_share)

    def model_config(self, vocab_size: int) -> ModelConfig:
        """The ModelConfig of this run's DecoderLM (lm) or EncoderLM (mlm): the model settings, one stack of
        n_layers, positions up to the context unless max_positions is set."""
        layers = {"n_encoder_layers": 0, "n_decoder_layers": self.n_layers} if self.task == "lm" else \
            {"n_encoder_layers": self.n_layers, "n_decoder_layers": 0}
        overrides = {**self.model_overrides(), "max_positions": self.max_positions or self.context, **layers}
        try:
            return ModelConfig(vocab_size=vocab_size, **overrides)
        except ValueError as error:
            raise TrainingError(str(error)) from None


def make_tokenizer(kind: str, text: str, vocab_size: int, task: str) -> Any:
    """A char, BPE (aiayn.data.tokenizer.train_bpe) or WordPiece tokenizer learned on text; mlm adds [MASK]."""
    if kind == "char":
        return train_char_tokenizer(text, [MASK_TOKEN] if task == "mlm" else None)
    if kind == "wordpiece":
        return train_wordpiece_tokenizer(text, vocab_size)
    if task == "mlm":
        raise TrainingError("--tokenizer bpe is for --task lm; masked-LM needs [MASK] at id 4: use --tokenizer "
                            "wordpiece (the default, BERT's) or char")
    lines = text.splitlines(keepends=True)  # chunks that keep the newlines, so "\n" is in the vocabulary
    return train_bpe(("".join(lines[i:i + 200]) for i in range(0, len(lines), 200)), vocab_size)


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: weight decay on matrices and embedding tables, none on biases and LayerNorms."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


class LMTrainer(RankTrainer):
    """One language-model run in one folder: set up (or resume), step, validate, checkpoint (on every rank)."""

    result_type = LMTrainResult
    _learned = ""  # rank 0 of a fresh run: how long learning the tokenizer took
    best_metrics = {"loss": ("val_loss", False)}

    cfg: LMTrainConfig

    def check_settings(self) -> None:
        """The task this trainer trains (for --init-from's model kind)."""
        self.task = self.cfg.task

    @property
    def architecture_settings(self) -> dict[str, str]:  # type: ignore[override]
        """The settings that name a ModelConfig field, checked against an --init-from model."""
        layers = "n_decoder_layers" if self.cfg.task == "lm" else "n_encoder_layers"
        return {"vocab_size": "vocab_size", "n_layers": layers, "n_heads": "n_heads", "d_model": "d_model",
                "d_ff": "d_ff", "norm": "norm", "positions": "positions", "activation": "activation",
                "scale_embeddings": "scale_embeddings"}

    def check_start(self, model: TransformerBase) -> ModelConfig:
        """The --init-from model's settings (a named --dropout replacing its own); its tokenizer is the run's,
        and its positions must hold a --context window."""
        cfg = self.cfg
        if cfg.tokenizer is not None:
            raise InitError(f"--tokenizer {cfg.tokenizer} contradicts --init-from {cfg.init_from}: the run uses that "
                            f"model's tokenizer.json; drop --tokenizer")
        if cfg.context > model.cfg.max_positions:
            raise InitError(f"--context {cfg.context} is longer than the --init-from model {cfg.init_from} reads "
                            f"(max_positions {model.cfg.max_positions}): give --context {model.cfg.max_positions} "
                            f"or less")
        return model.cfg if cfg.dropout is None else model.cfg.replace(dropout=cfg.dropout)

    def read_data(self) -> None:
        """Where the text's token store is (a prepared one given as --data, else RUN/data), the input checked."""
        cfg = self.cfg
        self.source = TextSource(None if cfg.data == BUNDLED_TEXT else cfg.data, cfg.train_fraction)
        self.prepared = cfg.data != BUNDLED_TEXT and is_store(cfg.data)  # `aiayn prepare`'s store, as it is
        self.store_path = Path(cfg.data) if self.prepared else self.run_dir / "data"
        self._fresh_folder = not self.run_dir.exists()  # removed again if the data turns out unusable
        self._notes: list[str] = []  # prepare's log lines, logged once the data passed its checks
        try:
            if not self.prepared:
                self.source.files()
        except CorpusError as error:
            raise TrainingError(str(error)) from None

    def learn_tokenizer(self) -> tuple[Any, ModelConfig]:
        """Rank 0 of a fresh run: the store prepared, its char, BPE or WordPiece tokenizer learned on (a sample of)
        the training text; and the model's settings."""
        tokenizer = self._open_store(None).tokenizer()
        return tokenizer, self.cfg.model_config(tokenizer.get_vocab_size())

    def _store_shape(self) -> dict[str, Any]:
        """The settings that shape the run's text store."""
        cfg = self.cfg
        return {"data": cfg.data, "train_fraction": cfg.train_fraction, "tokenizer": cfg.tokenizer_kind,
                "vocab_size": cfg.vocab_size, "bpe_sample": cfg.bpe_sample, "task": cfg.task}

    def _open_store(self, tokenizer: Any) -> Store:
        """Rank 0: the run's text store (reused if made from these files, settings and tokenizer; else prepared;
        a given store must have this tokenizer). A failed prepare leaves no run folder it created."""
        cfg = self.cfg

        def learn(sample: str, chars: str) -> Any:
            started = time.perf_counter()
            made = make_tokenizer(cfg.tokenizer_kind, chars if cfg.tokenizer_kind == "char" else sample,
                                  cfg.vocab_size, cfg.task)
            self._learned = f"; {cfg.tokenizer_kind} tokenizer of {made.get_vocab_size():,} tokens learned in " \
                            f"{time.perf_counter() - started:.1f}s"  # logged once the text passed its checks
            return made

        try:
            if self.prepared:
                store = Store(self.store_path)
                if store.kind != "text":
                    raise CorpusError(f"{self.store_path} is a store of sentence pairs (--task translate), not text")
                if tokenizer is not None and store.tokenizer().to_str() != tokenizer.to_str():
                    raise CorpusError(f"the store {self.store_path} was prepared with another tokenizer than this "
                                      f"run's: prepare the text again for this run")
                return store
            try:
                return open_or_prepare_text(self.source, self.store_path, learn, tokenizer, cfg.bpe_sample,
                                            self._store_shape(), self._notes.append)
            except BaseException:
                drop_new_run_folder(self.run_dir, self._fresh_folder)
                raise
        except CorpusError as error:
            raise TrainingError(str(error)) from None

    def encode_data(self) -> None:
        """Both parts' ids, memory-mapped from the store (rank 0 prepares it if needed, the other ranks wait and
        open the same files), each at least one context window long."""
        cfg = self.cfg
        if cfg.task == "mlm":
            self.mask_id, self.special_ids = self._mask_ids()
        if self.dist.is_main:
            self._open_store(self.tokenizer)
        self.dist.barrier()
        store = Store(self.store_path)
        self.train_ids, self.val_ids = store.stream("train"), store.stream("val")  # (N,) uint16 / uint32 memmaps
        source = "the bundled Shakespeare" if cfg.data == BUNDLED_TEXT else cfg.data
        for split, ids in (("training", self.train_ids), ("validation", self.val_ids)):
            if len(ids) < cfg.context + 1:
                drop_new_run_folder(self.run_dir, self._fresh_folder)
                raise TrainingError(f"the {split} split of {source} has {len(ids):,} tokens, fewer than one "
                                    f"context window of {cfg.context} + 1: give more text or a smaller --context")
        for note in self._notes:
            self.log(note)
        self.log(f"text {source}: {store.meta['counts']['characters']:,} characters; train {len(self.train_ids):,} "
                 f"and validation {len(self.val_ids):,} tokens" + self._learned)

    def build_model(self, model_cfg: ModelConfig) -> DecoderLM | EncoderLM:
        """A DecoderLM (--task lm) or an EncoderLM (--task mlm)."""
        return (DecoderLM if self.cfg.task == "lm" else EncoderLM)(model_cfg)

    def build_optimizer(self) -> torch.optim.Optimizer:
        """AdamW with weight decay on the matrices only."""
        cfg = self.cfg
        return torch.optim.AdamW(decay_groups(self.model, cfg.weight_decay), lr=0.0,
                                 betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps,
                                 fused=self._fused_optimizer() or None)

    def start_data(self) -> None:
        """The stream the windows (and mlm's masking seeds) of every rank come from, the same on all ranks;
        restored on resume, so a run continues exactly with any ranks and accumulate of the same product."""
        self.generator = torch.Generator().manual_seed(self.cfg.seed)

    def restore_data(self, state: dict[str, Any]) -> str:
        """The window generator's state and the tokens seen."""
        self.tokens_seen = state["tokens_seen"]
        self.generator.set_state(state["data_rng"])
        return ""

    def trainer_state(self) -> dict[str, Any]:
        """Everything besides the weights that an exact resume needs (under torchrun: call on every rank)."""
        return {**self._rank_state(), "tokens_seen": self.tokens_seen, "data_rng": self.generator.get_state()}

    def _mask_ids(self) -> tuple[int, list[int]]:
        """The tokenizer's [MASK] id and its special tokens' ids (never chosen, never drawn as random tokens):
        <pad> <s> </s> <unk> [MASK] = 0-4 in aiayn's char and wordpiece tokenizers; e.g. [PAD] [UNK] [CLS] [SEP]
        [MASK] = 0, 100-103 in BERT's."""
        mask_id = self.tokenizer.token_to_id(MASK_TOKEN)
        if mask_id is None:
            raise TrainingError(f"the tokenizer has no {MASK_TOKEN} token: a masked-LM run needs one (aiayn's char "
                                f"and wordpiece tokenizers, BERT's)")
        added = self.tokenizer.get_added_tokens_decoder()
        specials = {i for i, token in added.items() if token.special} | {mask_id}
        return mask_id, sorted(specials | {self.model_cfg.pad_id, self.model_cfg.bos_id, self.model_cfg.eos_id})

    def _mask(self, x: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """BERT's masking of windows x (B, T): (inputs, labels), labels IGNORE_INDEX where not chosen."""
        return mask_tokens(x, self.mask_id, self.model.cfg.vocab_size, self.special_ids, generator,
                           select_prob=self.cfg.mask_prob, first_regular_id=max(self.special_ids) + 1)

    def _inputs_and_labels(self, x: Tensor, y: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """lm: the windows (B, T) and their next tokens; mlm: the masked windows and the chosen tokens' labels."""
        return (x, y) if self.cfg.task == "lm" else self._mask(x, generator)

    def _scored_logits(self, module: torch.nn.Module, inputs: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(logits, labels) of `module` (the model, or DDP around it) for windows (B, T), under the run's autocast
        (bf16 logits with bf16 autocast): lm, every position (B*T, V); mlm, only the chosen ones (N, V), picked
        by flat indices found on the host, so the MLM head and vocabulary projection skip the other 85%."""
        inputs = inputs.to(self.device)
        with autocast(self.device, self.autocast_dtype):
            if self.cfg.task == "lm":  # causal: next token
                return module(inputs).flatten(0, 1), labels.to(self.device).flatten()
            chosen = (labels != IGNORE_INDEX).flatten().nonzero().squeeze(1)  # (N,), on the host
            logits = module(inputs, torch.ones_like(inputs, dtype=torch.bool),  # no padding in windows
                            positions=chosen.to(self.device))
            return logits, labels.flatten()[chosen].to(self.device)

    def _loss_sum(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        """Cross entropy of a training batch's scored tokens (all for lm, the chosen ones for mlm), summed."""
        logits, labels = self._scored_logits(self.net, *batch)  # (N, V), (N,)
        return fp32_cross_entropy(logits, labels, IGNORE_INDEX, reduction="sum")

    def _rank_batches(self) -> list[tuple[Tensor, Tensor]]:
        """This rank's `accumulate` batches of the step's ranks x accumulate (inputs, labels) batches.

        Every rank draws the windows of all of them from the shared stream, so the stream is the same
        everywhere; rank r keeps batches r, r + W, r + 2W, ... With mlm each batch also draws a seed from the
        stream and masks its windows with a generator of that seed: the masks depend on the batch, not on
        which rank masks it, and a rank masks only its own batches.
        """
        cfg, world = self.cfg, self.dist.world_size
        batches = []
        for index in range(world * cfg.accumulate):
            x, y = random_windows(self.train_ids, cfg.batch_size, cfg.context, self.generator)
            seed = int(torch.randint(2**62, (1,), generator=self.generator)) if cfg.task == "mlm" else 0
            if index % world == self.dist.rank:
                batches.append(self._inputs_and_labels(x, y, torch.Generator().manual_seed(seed)))
        return batches

    def train_step(self) -> LossOnHost:
        """One optimizer step on this rank's batches; returns the loss (nats per scored token, over all ranks)."""
        self.net.train()
        batches = self._rank_batches()
        loss, _ = self._optimizer_step(batches, self._loss_sum,
                                       sum(int((labels != IGNORE_INDEX).sum()) for _, labels in batches))
        self.tokens_seen += len(batches) * self.dist.world_size * batches[0][0].numel()  # input tokens, all ranks
        return loss

    @torch.no_grad()
    def validate(self, max_windows: int | None = None) -> dict[str, float]:
        """Loss on non-overlapping validation windows (all, or max_windows spread evenly); mlm: accuracy too.

        lm: val_loss is nats per token (per character with the char tokenizer), as nanoGPT reports.
        mlm: the same fixed masking every time (seed 0), val_acc = share of chosen tokens predicted exactly.
        """
        cfg, ids = self.cfg, self.val_ids
        self.model.eval()
        starts = torch.arange(0, len(ids) - cfg.context, cfg.context)  # (N,)
        if max_windows is not None and starts.numel() > max_windows:
            starts = starts[torch.linspace(0, starts.numel() - 1, max_windows).long()]
        generator = torch.Generator().manual_seed(0)
        total, scored, correct = 0.0, 0, 0
        for batch in starts.split(256):
            offsets = (batch[:, None] + torch.arange(cfg.context)).numpy()  # (B, T)
            inputs, labels = self._inputs_and_labels(_ids(ids[offsets]), _ids(ids[offsets + 1]), generator)
            logits, labels = self._scored_logits(self.model, inputs, labels)  # (N, V), (N,): the scored positions
            total += float(fp32_cross_entropy(logits, labels, IGNORE_INDEX, reduction="sum"))
            scored += labels.numel()
            if cfg.task == "mlm":
                correct += int((logits.argmax(-1) == labels).sum())
        self.model.train()
        record = {"val_loss": total / max(scored, 1), "val_windows": starts.numel()}
        if cfg.task == "mlm":
            record["val_acc"] = correct / max(scored, 1)
        return record

    def evaluate(self) -> dict[str, Any]:
        """Validation metrics logged to metrics.jsonl, curves redrawn. Every evaluation, the last included, scores
        the same windows (eval_windows of them, or the whole split for 0), so keep-best compares like with like."""
        started = time.perf_counter()
        record: dict[str, Any] = {"step": self.step, **self.validate(self.cfg.eval_windows or None)}
        parts = [f"val loss {record['val_loss']:.4f} ({record['val_windows']} windows)"]
        if "val_acc" in record:
            parts.append(f"masked-token accuracy {record['val_acc']:.3f}")
        self._report(record, started, parts)
        scores = (("val_acc", "masked-token accuracy"),) if self.cfg.task == "mlm" else ()
        plot_curves(self.run_dir, (("loss", "train loss"), ("val_loss", "validation loss")), scores, "accuracy")
        return record

    @property
    def bar_label(self) -> str:
        """The progress bar's description."""
        return f"train {self.cfg.task}"

    def _announce(self) -> None:
        """Log the model, the batches and the schedule about to train."""
        cfg = self.cfg
        self.log(f"{self.model.model_type}: {self.model.num_parameters():,} parameters; batches of "
                 f"{cfg.batch_size} x {cfg.context} tokens; {cfg.schedule} schedule, peak lr {cfg.peak_lr:g}; "
                 f"{self._length()}; torch threads {torch.get_num_threads()}; {self.precision_name}")

    def _final(self, losses: dict[int, float]) -> LMTrainResult:
        """The final validation (on the windows of every evaluation) and the run's result."""
        record = self.evaluate()
        self.log(f"done: {self.step} steps, {self.tokens_seen:,} tokens; "
                 f"{self.plan.summary(self.step, self.train_seconds)}; model in {self.run_dir / 'model'}")
        return LMTrainResult(self.run_dir, self.step, losses, final=record)


def train_lm(cfg: LMTrainConfig, resume: bool = False, log: Callable[[str], None] | None = None) -> LMTrainResult:
    """Set up (or resume) a language-model run in cfg.out and train it to cfg.steps (under torchrun: every rank)."""
    return cast(LMTrainResult, train_on_every_rank(lambda: LMTrainer(cfg, resume=resume, log=log), cfg.dist_timeout))


def _ids(array: np.ndarray) -> Tensor:
    """Token ids read from a store (uint16 / uint32) as a LongTensor."""
    return torch.from_numpy(array.astype(np.int64))
