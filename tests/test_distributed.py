"""Data-parallel training under torchrun on the CPU (gloo, 2 processes started from the test).

Two ranks with one batch each per step must train exactly like one process with two batches per step over
the same global batches (the translator, and the GPT- and BERT-style language models); checkpoints move
between 1 and 2 ranks; a failing or stuck rank ends the job with a non-zero exit and its error instead of a
hang.
"""

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import aiayn
from aiayn.data.lm import IGNORE_INDEX, MASK_TOKEN, bundled_shakespeare
from aiayn.io.model_folder import WEIGHTS_FILE, read_weights
from aiayn.runtime.distributed import Dist
from aiayn.training.lm import LMTrainConfig, LMTrainer, train_lm
from aiayn.training.run_folder import read_metrics
from aiayn.training.translation import TrainConfig, train

from .helpers_translation import write_corpus

SRC = Path(__file__).resolve().parents[1] / "src"
JOB_TIMEOUT_S = 120  # a hung job fails the test instead of hanging it

SETTINGS = {"preset": "tiny", "vocab_size": 60, "dev_size": 20, "test_size": 20, "batch_tokens": 300,
            "warmup": 5, "peak_lr": 3e-3, "log_every": 1, "eval_every": 0, "save_every": 0,
            "final_test": False, "beam": 1, "seed": 3, "dropout": 0.0, "threads": 1}


def _flags(values: dict) -> list[str]:
    """`aiayn train` flags for these TrainConfig values."""
    flags = []
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        else:
            flags += [flag, str(value)]
    return flags


def _torchrun(tmp_path: Path, target: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    """Run `torchrun --standalone --nproc_per_node nproc TARGET` (a free port on localhost) with a timeout."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *target]
    return subprocess.run(command, check=False, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=JOB_TIMEOUT_S)


def _train_2_ranks(tmp_path: Path, out: str, resume: bool = False, **changes) -> subprocess.CompletedProcess:
    """`torchrun -m aiayn train` on 2 ranks; fails the test (showing the job's output) unless it exits 0."""
    values = {**SETTINGS, "data": str(tmp_path / "corpus.tsv"), "out": str(tmp_path / out), **changes}
    job = _torchrun(tmp_path, ["-m", "aiayn", "train", *_flags(values), *(["--resume"] if resume else [])])
    assert job.returncode == 0, job.stdout + job.stderr
    return job


def _train_1_rank(tmp_path: Path, out: str, resume: bool = False, **changes):
    """The same settings in this process: one rank, no process group."""
    cfg = TrainConfig(**{**SETTINGS, "data": str(tmp_path / "corpus.tsv"), "out": str(tmp_path / out), **changes})
    return train(cfg, resume=resume, log=lambda _: None)


def _weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    return read_weights(run / "checkpoints" / f"step_{step}" / WEIGHTS_FILE)


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name, tensor in a.items():
        torch.testing.assert_close(tensor, b[name], rtol=0, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _rank(rank: int, world_size: int, port: int, cfg: TrainConfig | LMTrainConfig, resume: bool) -> None:
    """One rank of a job forked from the test (cheaper than torchrun's fresh interpreters; the same env vars)."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    (train_lm if isinstance(cfg, LMTrainConfig) else train)(cfg, resume=resume, log=lambda _: None)


def _fork_2_ranks(tmp_path: Path, out: str, resume: bool = False, **changes) -> None:
    """Train a translator on 2 ranks forked from this process (gloo on localhost); raises a rank's error."""
    cfg = TrainConfig(**{**SETTINGS, "data": str(tmp_path / "corpus.tsv"), "out": str(tmp_path / out), **changes})
    _fork_job(cfg, resume)


def _fork_job(cfg: TrainConfig | LMTrainConfig, resume: bool) -> None:
    """Train with cfg on 2 ranks forked from this process; raises the first rank's error, fails on a hang."""
    job = torch.multiprocessing.start_processes(_rank, (2, _free_port(), cfg, resume), nprocs=2, join=False,
                                                start_method="fork")
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not job.join(timeout=5):  # raises ProcessRaisedException with a failed rank's traceback
        if time.monotonic() > deadline:
            for process in job.processes:
                process.kill()
            pytest.fail(f"the 2-rank job did not finish in {JOB_TIMEOUT_S}s")


def test_two_ranks_train_like_one_process_over_the_same_batches_and_resume_either_way(tmp_path: Path) -> None:
    write_corpus(tmp_path / "corpus.tsv", n=300)
    # One process, 2 batches per step: steps 1-3, a checkpoint at 3, steps 4-5.
    single = _train_1_rank(tmp_path, "one", steps=5, accumulate=2, save_every=3)
    # Two ranks, 1 batch each per step: rank r takes global batch 2k + r, the batches `single` took at step k.
    _fork_2_ranks(tmp_path, "two", steps=3, accumulate=1)
    _assert_same_weights(_weights(tmp_path / "two", 3), _weights(tmp_path / "one", 3))
    name = "encoder.layers.0.ffn.linear1.weight"  # the comparison has teeth: step 3 differs from step 5
    assert not torch.equal(_weights(tmp_path / "two", 3)[name], _weights(tmp_path / "one", 5)[name])
    # Only rank 0 logged: one record per step, with the loss over both ranks' tokens.
    losses = {r["step"]: r["loss"] for r in read_metrics(tmp_path / "two") if "loss" in r}
    assert sorted(losses) == [1, 2, 3]
    for step in (1, 2, 3):
        assert losses[step] == pytest.approx(single.losses[step], abs=1e-5)

    # 2 ranks -> 1 rank: resume the 2-rank checkpoint in one process, to step 5.
    _train_1_rank(tmp_path, "two", resume=True, steps=5, accumulate=2)
    _assert_same_weights(_weights(tmp_path / "two", 5), _weights(tmp_path / "one", 5))

    # 1 rank -> 2 ranks, through the command line under torchrun: resume the 1-process checkpoint at step 3.
    shutil.copytree(tmp_path / "one", tmp_path / "one_then_two")
    shutil.rmtree(tmp_path / "one_then_two" / "checkpoints" / "step_5")
    job = _train_2_ranks(tmp_path, "one_then_two", resume=True, steps=5, accumulate=1)
    _assert_same_weights(_weights(tmp_path / "one_then_two", 5), _weights(tmp_path / "one", 5))
    assert job.stdout.count("model: ") == 1 and job.stderr.count("step 5/5 loss") == 1  # rank 0 reports


FAULTY = """
    import os, sys, time
    from aiayn import cli
    from aiayn.training import translation as loop

    step = loop.Trainer.train_step

    def faulty_step(self):
        if self.step == 1 and os.environ["RANK"] == "1":
            if {hang}:
                time.sleep(300)  # stuck: rank 0 waits for it in the step's all-reduce until --dist-timeout
            raise RuntimeError("rank 1 failed on purpose")
        return step(self)

    loop.Trainer.train_step = faulty_step
    sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("hang", [pytest.param(False, id="rank-1-raises"),
                                  pytest.param(True, id="rank-1-hangs", marks=pytest.mark.slow)])
def test_a_failing_or_stuck_rank_ends_the_torchrun_job_non_zero_with_its_error(tmp_path: Path, hang: bool) -> None:
    write_corpus(tmp_path / "corpus.tsv", n=300)
    script = tmp_path / "faulty.py"
    script.write_text(textwrap.dedent(FAULTY.format(hang=hang)), encoding="utf-8")
    values = {**SETTINGS, "data": str(tmp_path / "corpus.tsv"), "out": str(tmp_path / "run"), "steps": 4,
              "dist_timeout": 5}
    started = time.monotonic()
    job = _torchrun(tmp_path, [str(script), "train", *_flags(values)])  # raises TimeoutExpired if it hangs
    assert job.returncode != 0
    if hang:  # rank 0 gave up waiting after --dist-timeout; torchrun then stopped the stuck rank 1
        assert "rank 0: the other ranks did not answer within dist_timeout=5s" in job.stderr, job.stderr[-3000:]
        assert time.monotonic() - started < 60
    else:
        assert "rank 1 failed on purpose" in job.stderr, job.stderr[-3000:]


def test_fsdp_on_two_ranks_trains_like_one_process_and_its_checkpoints_resume(tmp_path: Path) -> None:
    write_corpus(tmp_path / "corpus.tsv", n=300)
    _train_1_rank(tmp_path, "one", steps=5, accumulate=2, save_every=3)
    _fork_2_ranks(tmp_path, "fsdp", steps=3, accumulate=1, fsdp=True)
    _assert_same_weights(_weights(tmp_path / "fsdp", 3), _weights(tmp_path / "one", 3))
    assert read_metrics(tmp_path / "fsdp")[-1]["step"] == 3 and "dev_loss" in read_metrics(tmp_path / "fsdp")[-1]
    # Its checkpoint (whole weights and Adam state, gathered on rank 0) resumes sharded again, to step 5.
    # keep_best none: model/ is the last step's (with dev BLEU kept, the tiny model's equal BLEU at steps 3 and 5
    # leaves step 3's, which best/ holds from the first run)
    _fork_2_ranks(tmp_path, "fsdp", resume=True, steps=5, accumulate=1, fsdp=True, keep_best="none")
    _assert_same_weights(_weights(tmp_path / "fsdp", 5), _weights(tmp_path / "one", 5))
    final = read_weights(tmp_path / "fsdp" / "model" / WEIGHTS_FILE)  # the final model folder, whole
    _assert_same_weights(final, _weights(tmp_path / "one", 5))
    assert aiayn.load(tmp_path / "fsdp" / "model").cfg == aiayn.load(tmp_path / "one" / "model").cfg


def test_accumulating_on_each_rank_matches_one_process_up_to_rounding(tmp_path: Path) -> None:
    write_corpus(tmp_path / "corpus.tsv", n=300)
    single = _weights(_train_1_rank(tmp_path, "one", steps=3, accumulate=4).run_dir, 3)
    for kind in ("ddp", "fsdp"):  # 2 ranks x 2 batches, gradients exchanged after each rank's second batch
        _fork_2_ranks(tmp_path, kind, steps=3, accumulate=2, fsdp=kind == "fsdp")
        both = _weights(tmp_path / kind, 3)
        # The sums run in another order, so the gradients differ by rounding. That is invisible except in the
        # key biases: attention is shift-invariant along the keys, their true gradient is 0, and Adam turns
        # the rounding noise left in its place into steps of +-lr. Everything else must agree.
        # in_proj rows are W^Q; W^K; W^V, so its bias keeps rows [0, d) and [2d, 3d).
        d = aiayn.load(tmp_path / "one" / "model").cfg.d_model
        not_key = torch.cat([torch.arange(0, d), torch.arange(2 * d, 3 * d)])
        biases = [name for name in both if name.endswith("attn.in_proj.bias")]
        assert len(biases) == 6  # tiny: 2 encoder self-, 2 decoder self- and 2 cross-attentions
        _assert_same_weights({n: t[not_key] if n in biases else t for n, t in both.items()},
                             {n: t[not_key] if n in biases else t for n, t in single.items()})


def test_each_rank_takes_every_second_batch_and_an_epoch_ends_with_equal_shares(tmp_path: Path) -> None:
    from aiayn.training.translation import Trainer, TrainingError

    write_corpus(tmp_path / "corpus.tsv", n=300)
    trainer = Trainer(TrainConfig(**{**SETTINGS, "data": str(tmp_path / "corpus.tsv"), "out": str(tmp_path / "r")}),
                      log=lambda _: None)
    epochs = [trainer.batcher.epoch(0), trainer.batcher.epoch(1)]
    if len(epochs[0]) % 2 == 0:
        epochs[0] = epochs[0][:-1]  # an odd count: its last batch is nobody's
    for rank in (0, 1):
        trainer.dist = Dist(rank=rank, world_size=2)  # only rank and world size matter to _next_batch
        trainer.epoch, trainer.position, trainer._batches = 0, 0, epochs[0]
        taken = [trainer._next_batch().src for _ in range(len(epochs[0]) // 2 + 1)]
        wanted = [*epochs[0][rank:len(epochs[0]) - 1:2], epochs[1][rank]]  # then epoch 1, batch 0 + rank
        assert len(taken) == len(wanted)
        for src, indices in zip(taken, wanted):
            assert torch.equal(src, trainer.batcher.batch(indices).src)
        assert (trainer.epoch, trainer.position) == (1, 2)
    trainer.dist = Dist(rank=0, world_size=max(len(trainer.batcher.epoch(e)) for e in range(3)) + 1)
    with pytest.raises(TrainingError, match="fewer than the .* ranks: lower --batch-tokens"):
        for _ in range(2):
            trainer._next_batch()


# --- GPT-style (--task lm) and BERT-style (--task mlm) language models

LM_SETTINGS = {"n_layers": 2, "n_heads": 2, "d_model": 32, "d_ff": 64, "context": 16, "batch_size": 4,
               "warmup": 5, "peak_lr": 3e-3, "log_every": 1, "eval_every": 0, "save_every": 0,
               "eval_windows": 20, "seed": 3, "dropout": 0.0, "threads": 1}


@pytest.fixture(scope="module")
def lm_text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 20,000 characters of the bundled Shakespeare."""
    path = tmp_path_factory.mktemp("lm-text") / "text.txt"
    path.write_text(bundled_shakespeare()[:20_000], encoding="utf-8")
    return path


def _lm_cfg(text: Path, out: Path, **changes) -> LMTrainConfig:
    """LM_SETTINGS on `text`, written to `out`, with `changes` on top.

    Character tokenizers for both tasks: the WordPiece trainer (mlm's default) learns a different vocabulary
    from the same text from one call to the next, so two runs would start from different models.
    """
    return LMTrainConfig(**{**LM_SETTINGS, "tokenizer": "char", "data": str(text), "out": str(out), **changes})


def _assert_equal_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name, tensor in a.items():
        assert torch.equal(tensor, b[name]), name


@pytest.mark.parametrize("task", ["lm", "mlm"])
def test_lm_on_two_ranks_trains_bit_identically_to_one_process_accumulating_two_and_resumes_either_way(
        tmp_path: Path, lm_text: Path, task: str) -> None:
    # One process, 2 batches per step: steps 1-3, a checkpoint at 3, steps 4-5.
    single = train_lm(_lm_cfg(lm_text, tmp_path / "one", task=task, steps=5, accumulate=2, save_every=3),
                      log=lambda _: None)
    # Two ranks, 1 batch each per step: the same 2 batches (windows, and with mlm masks) per step, split.
    _fork_job(_lm_cfg(lm_text, tmp_path / "two", task=task, steps=3, accumulate=1), resume=False)
    # Bit-identical, not merely close: each rank's loss is its sum / the step's tokens on both ranks, times 2;
    # scaling by 2 is exact, the all-reduce adds the same two gradients as one process accumulates (a + b is
    # b + a), and DDP's division by 2 is exact again. (With more batches per rank the sums group differently.)
    _assert_equal_weights(_weights(tmp_path / "two", 3), _weights(tmp_path / "one", 3))
    name = "token_embedding.weight"  # the comparison has teeth: step 3 differs from step 5
    assert not torch.equal(_weights(tmp_path / "two", 3)[name], _weights(tmp_path / "one", 5)[name])
    losses = {r["step"]: r["loss"] for r in read_metrics(tmp_path / "two") if "loss" in r}  # rank 0's log only
    assert losses == {step: round(single.losses[step], 5) for step in (1, 2, 3)}
    assert read_metrics(tmp_path / "two")[-1]["tokens_seen"] == 3 * 2 * 4 * 16  # steps x batches x windows x T
    # 2 ranks -> 1 rank: the 2-rank checkpoint (one shared window stream) continues in one process, to step 5.
    train_lm(_lm_cfg(lm_text, tmp_path / "two", task=task, steps=5, accumulate=2), resume=True, log=lambda _: None)
    _assert_equal_weights(_weights(tmp_path / "two", 5), _weights(tmp_path / "one", 5))


def test_lm_resumes_a_one_process_checkpoint_on_two_ranks_through_torchrun(tmp_path: Path, lm_text: Path) -> None:
    single = _lm_cfg(lm_text, tmp_path / "one", steps=5, accumulate=2, save_every=3)
    train_lm(single, log=lambda _: None)
    shutil.copytree(tmp_path / "one", tmp_path / "one_then_two")
    shutil.rmtree(tmp_path / "one_then_two" / "checkpoints" / "step_5")
    # `aiayn train --resume` without --task: the run's train.json says lm; --accumulate 1 overrides its 2.
    flags = _flags({"out": str(tmp_path / "one_then_two"), "steps": 5, "accumulate": 1})
    job = _torchrun(tmp_path, ["-m", "aiayn", "train", "--resume", *flags])
    assert job.returncode == 0, job.stdout + job.stderr
    _assert_equal_weights(_weights(tmp_path / "one_then_two", 5), _weights(tmp_path / "one", 5))
    assert job.stdout.count("validation loss") == 1 and job.stderr.count("step 5/5 loss") == 1  # rank 0 reports
    assert "data parallel (DDP): 2 ranks (gloo)" in job.stderr


@pytest.mark.parametrize("task", ["lm", "mlm"])
def test_lm_fsdp_on_two_ranks_trains_like_one_process_and_checkpoints_move_between_fsdp_and_one_process(
        tmp_path: Path, lm_text: Path, task: str) -> None:
    train_lm(_lm_cfg(lm_text, tmp_path / "one", task=task, steps=5, accumulate=2, save_every=3), log=lambda _: None)
    _fork_job(_lm_cfg(lm_text, tmp_path / "fsdp", task=task, steps=3, fsdp=True), resume=False)
    _assert_same_weights(_weights(tmp_path / "fsdp", 3), _weights(tmp_path / "one", 3))
    assert "val_loss" in read_metrics(tmp_path / "fsdp")[-1]  # rank 0 validated on the whole model
    # FSDP -> one process: AdamW's two parameter groups (decayed, not decayed) keep their numbering.
    train_lm(_lm_cfg(lm_text, tmp_path / "fsdp", task=task, steps=5, accumulate=2), resume=True, log=lambda _: None)
    _assert_same_weights(_weights(tmp_path / "fsdp", 5), _weights(tmp_path / "one", 5))
    # One process -> FSDP: the step-3 checkpoint of the single run, resumed sharded, to step 5.
    shutil.copytree(tmp_path / "one", tmp_path / "one_then_fsdp")
    shutil.rmtree(tmp_path / "one_then_fsdp" / "checkpoints" / "step_5")
    _fork_job(_lm_cfg(lm_text, tmp_path / "one_then_fsdp", task=task, steps=5, fsdp=True), resume=True)
    _assert_same_weights(_weights(tmp_path / "one_then_fsdp", 5), _weights(tmp_path / "one", 5))
    final = read_weights(tmp_path / "one_then_fsdp" / "model" / WEIGHTS_FILE)  # the final model folder, whole
    _assert_same_weights(final, _weights(tmp_path / "one", 5))


def test_each_rank_draws_every_window_and_masks_only_its_own_batches_as_one_process_would(
        tmp_path: Path, lm_text: Path) -> None:
    trainer = LMTrainer(_lm_cfg(lm_text, tmp_path / "r", task="mlm", accumulate=4), log=lambda _: None)
    assert trainer.tokenizer.token_to_id(MASK_TOKEN) == 4
    start = trainer.generator.get_state()
    single = trainer._rank_batches()  # one process, 4 batches per step
    after = trainer.generator.get_state()
    assert len(single) == 4 and not torch.equal(single[0][1], single[1][1])  # every batch masked differently
    trainer.cfg = dataclasses.replace(trainer.cfg, accumulate=2)
    for rank in (0, 1):  # 2 ranks x 2 batches: rank r masks the batches r and r + 2 of the same 4
        trainer.dist = Dist(rank=rank, world_size=2)  # only rank and world size matter to _rank_batches
        trainer.generator.set_state(start)
        mine = trainer._rank_batches()
        assert torch.equal(trainer.generator.get_state(), after)  # the shared stream moved on alike everywhere
        for (inputs, labels), (want_inputs, want_labels) in zip(mine, single[rank::2], strict=True):
            assert torch.equal(inputs, want_inputs) and torch.equal(labels, want_labels)
            assert ((inputs == 4) & (labels != IGNORE_INDEX)).any()  # [MASK] where a label is scored
