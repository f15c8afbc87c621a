"""Training: the §5.3 schedule, the §5.4 label-smoothed loss, learning, exact resume, NaN stop, averaging."""

import math
import os
import signal
from pathlib import Path

import pytest
import torch

import aiayn
from aiayn.training import InverseSqrtSchedule, average_checkpoints, label_smoothed_loss, list_checkpoints
from aiayn.training import trainer as base
from aiayn.training.run_folder import read_metrics
from aiayn.training.translation import TrainConfig, Trainer, TrainingError, train

from .helpers_translation import write_corpus


# ---------------------------------------------------------------- schedule (§5.3)
def test_schedule_matches_the_paper_formula_by_hand() -> None:
    s = InverseSqrtSchedule(d_model=512, warmup=4000)
    # lrate = 512^-0.5 * min(step^-0.5, step * 4000^-1.5), computed by hand:
    # 512^-0.5 = 0.0441941738; 4000^-1.5 = 3.95284708e-6; 4000^-0.5 = 0.0158113883; 40000^-0.5 = 0.005
    assert s(1) == pytest.approx(0.0441941738 * 3.95284708e-6, rel=1e-8)  # 1.7469e-7
    assert s(4000) == pytest.approx(0.0441941738 * 0.0158113883, rel=1e-8)  # 6.9877e-4, the peak
    assert s(40000) == pytest.approx(0.0441941738 * 0.005, rel=1e-8)  # 2.2097e-4
    assert s(2000) == pytest.approx(s(4000) / 2, rel=1e-9)  # linear warmup
    assert s(16000) == pytest.approx(s(4000) / 2, rel=1e-9)  # inverse square root decay
    assert s.peak == s(4000) == max(s(k) for k in range(1, 10000))


def test_schedule_scale_and_peak() -> None:
    s = InverseSqrtSchedule.with_peak(d_model=256, warmup=1000, peak_lr=1e-3)
    assert s(1000) == pytest.approx(1e-3)
    assert s.scale == pytest.approx(1e-3 / (256 ** -0.5 * 1000 ** -0.5))  # 0.50596
    assert InverseSqrtSchedule(256, 1000, scale=2.0)(10) == pytest.approx(2 * 256 ** -0.5 * 10 * 1000 ** -1.5)


# ---------------------------------------------------------------- loss (§5.4)
def test_label_smoothed_loss_matches_hand_computation_and_ignores_pads() -> None:
    eps, vocab = 0.1, 4
    logits = torch.tensor([[[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 0.3, 0.4], [5.0, -5.0, 3.0, 1.0]]])
    labels = torch.tensor([[1, 3, 0]])  # the last position is padding (pad_id 0)
    expected = 0.0
    for position, label in ((0, 1), (1, 3)):
        row = logits[0, position].tolist()
        log_z = math.log(sum(math.exp(v) for v in row))
        log_p = [v - log_z for v in row]
        # q = (1 - eps) one_hot + eps / V: cross entropy -sum_k q_k log p_k
        expected += -(1 - eps) * log_p[label] - eps / vocab * sum(log_p)
    got = label_smoothed_loss(logits, labels, eps, pad_id=0)
    assert float(got) == pytest.approx(expected, rel=1e-6)
    assert float(label_smoothed_loss(logits, labels, eps, pad_id=0, reduction="mean")) == pytest.approx(expected / 2)
    changed = logits.clone()
    changed[0, 2] = torch.tensor([-9.0, 9.0, 0.0, 1.0])  # logits at the pad position do not matter
    assert float(label_smoothed_loss(changed, labels, eps, pad_id=0)) == pytest.approx(expected, rel=1e-6)
    # eps = 0 is the plain negative log-likelihood
    nll = -(logits[0, 0].log_softmax(-1)[1] + logits[0, 1].log_softmax(-1)[3])
    assert float(label_smoothed_loss(logits, labels, 0.0, pad_id=0)) == pytest.approx(float(nll), rel=1e-6)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_label_smoothed_loss_and_its_gradient_equal_torch_cross_entropy(reduction: str) -> None:
    torch.manual_seed(0)
    logits = (torch.randn(2, 40, 3000, dtype=torch.float64) * 3).requires_grad_()  # (B, T, V)
    labels = torch.randint(1, 3000, (2, 40))
    labels[:, 30:] = 0  # padding
    ours = label_smoothed_loss(logits, labels, 0.1, pad_id=0, reduction=reduction)
    (ours_grad,) = torch.autograd.grad(ours * 0.37, logits)  # an output gradient other than 1
    reference = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=0,
                                                  label_smoothing=0.1, reduction=reduction)
    (reference_grad,) = torch.autograd.grad(reference * 0.37, logits)
    assert float(ours.detach()) == pytest.approx(float(reference.detach()), rel=1e-12)  # float64: only rounding differs
    assert float((ours_grad - reference_grad).abs().max()) < 1e-15
    assert float(ours_grad[:, 30:].abs().max()) == 0.0  # padding gets no gradient
    # float32, the training dtype: within float rounding of the float64 result, closer to it than torch's
    logits32 = logits.detach().float().requires_grad_()
    ours32 = label_smoothed_loss(logits32, labels, 0.1, pad_id=0, reduction=reduction)
    (ours32_grad,) = torch.autograd.grad(ours32 * 0.37, logits32)
    (reference32_grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(
        logits32.flatten(0, 1), labels.flatten(), ignore_index=0, label_smoothing=0.1, reduction=reduction)
        * 0.37, logits32)
    assert float(ours32.detach()) == pytest.approx(float(reference.detach()), rel=1e-6)
    largest = float(reference_grad.abs().max())
    ours_error = float((ours32_grad.double() - reference_grad).abs().max())
    assert ours_error < 1e-6 * largest  # measured 2.2e-7 (sum), 1.9e-7 (mean)
    assert ours_error <= float((reference32_grad.double() - reference_grad).abs().max())  # torch's: 1.3e-6


def test_label_smoothed_loss_reads_bf16_logits_as_their_fp32_copy_would_give() -> None:
    torch.manual_seed(1)
    logits = (torch.randn(30, 500) * 4).to(torch.bfloat16).requires_grad_()  # autocast's output dtype
    labels = torch.randint(1, 500, (30,))
    labels[25:] = 0  # padding
    ours = label_smoothed_loss(logits, labels, 0.1)
    (ours_grad,) = torch.autograd.grad(ours * 0.5, logits)
    copied = logits.detach().float().requires_grad_()  # what the trainer did before: an fp32 copy first
    reference = torch.nn.functional.cross_entropy(copied, labels, ignore_index=0, label_smoothing=0.1,
                                                  reduction="sum")
    (reference_grad,) = torch.autograd.grad(reference * 0.5, copied)
    assert ours.dtype == torch.float32 and ours_grad.dtype == torch.bfloat16
    assert float(ours.detach()) == pytest.approx(float(reference.detach()), rel=1e-6)  # same fp32 arithmetic
    # the gradient differs from fp32's only by its rounding to bf16 (8 mantissa bits: relative 2^-8)
    assert torch.allclose(ours_grad.float(), reference_grad, rtol=2 ** -8, atol=1e-6)
    assert float(ours_grad[25:].abs().max()) == 0.0


def test_label_smoothed_loss_refuses_a_second_backward_through_its_reused_buffer() -> None:
    logits = torch.randn(5, 11, requires_grad=True)
    loss = label_smoothed_loss(logits, torch.tensor([1, 2, 3, 0, 4]), 0.1)
    loss.backward(retain_graph=True)  # the gradient is written over the saved log-probabilities
    with pytest.raises(RuntimeError, match="inplace"):
        loss.backward()


# ---------------------------------------------------------------- the loop
def _cfg(tmp_path: Path, out: str, **changes) -> TrainConfig:
    corpus = tmp_path / "corpus.tsv"
    if not corpus.exists():
        write_corpus(corpus, n=300)
    values = {"out": str(tmp_path / out), "data": str(corpus), "preset": "tiny", "vocab_size": 60,
              "dev_size": 20, "test_size": 20, "batch_tokens": 300, "steps": 10, "warmup": 5, "peak_lr": 3e-3,
              "log_every": 1, "eval_every": 0, "save_every": 0, "final_test": False, "beam": 1, "seed": 3}
    return TrainConfig(**{**values, **changes})


def test_tiny_model_cuts_its_training_loss_by_80_percent(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "learn", steps=250, warmup=40, peak_lr=1e-2, label_smoothing=0.0, dropout=0.0,
               log_every=10, batch_tokens=400)
    result = train(cfg, log=lambda _: None)
    first = result.losses[1]
    last = sum(result.losses[s] for s in range(241, 251)) / 10
    assert first > 3.5  # about ln(vocab): an untrained model
    assert last < 0.2 * first, (first, last)


def test_resume_after_ctrl_c_gives_the_same_losses(tmp_path: Path) -> None:
    straight = train(_cfg(tmp_path, "straight"), log=lambda _: None)

    def interrupt_at_step_4(message: str) -> None:
        if message.startswith("step 4/"):
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: the loop finishes the step, saves, stops

    first = train(_cfg(tmp_path, "stopped"), log=interrupt_at_step_4)
    assert first.interrupted and first.step == 4
    assert [p.name for p in list_checkpoints(tmp_path / "stopped")] == ["step_4"]
    resumed = train(_cfg(tmp_path, "stopped"), resume=True, log=lambda _: None)
    assert resumed.step == 10
    for step in range(5, 11):
        assert resumed.losses[step] == straight.losses[step], step  # bit-identical: model, Adam, RNG, data
    assert [r["step"] for r in read_metrics(tmp_path / "stopped") if "loss" in r] == list(range(1, 11))


def test_max_len_follows_the_model_and_long_dev_pairs_do_not_crash_the_evaluation(tmp_path: Path) -> None:
    """--preset tiny (128 positions) with max_len left out trains on pairs within 128 tokens; a dev pair longer
    than the positions is left out of the dev loss instead of crashing the run mid-way."""
    dev = tmp_path / "dev.tsv"
    long_pair = " ".join(["the god man land king"] * 40) + "\t" + " ".join(["el dios hombre tierra rey"] * 40)
    dev.write_text(long_pair + "\nthe king\tel rey\n", encoding="utf-8")
    cfg = _cfg(tmp_path, "run", steps=2, dev=str(dev), eval_every=1)
    assert cfg.max_len is None  # the model's positions decide
    result = train(cfg, log=lambda _: None)
    assert [r["step"] for r in read_metrics(result.run_dir) if "dev_loss" in r] == [1, 2]
    with pytest.raises(TrainingError, match="--max-len 256 is longer than the model's positions"):
        _cfg(tmp_path, "refused", max_len=256)


def test_the_trainer_steps_the_fused_adam_on_a_cpu(tmp_path: Path) -> None:
    trainer = Trainer(_cfg(tmp_path, "fused", steps=1, device="cpu"))
    assert trainer.optimizer.defaults["fused"] is True  # one kernel for all parameters, on a CPU too


def test_a_second_run_into_the_same_folder_needs_resume(tmp_path: Path) -> None:
    train(_cfg(tmp_path, "run", steps=2), log=lambda _: None)
    with pytest.raises(TrainingError, match="--resume"):
        Trainer(_cfg(tmp_path, "run", steps=2))


class _ReadLater(base.LossOnHost):
    """A CPU loss handled as a GPU's is: read back by the loop after the next step was queued."""

    def __init__(self, loss: torch.Tensor) -> None:
        super().__init__(loss)
        self.deferred = True


def poison_loss_at_call(monkeypatch: pytest.MonkeyPatch, poisoned_call: int) -> dict[str, int]:
    """Make the trainer's loss NaN at its poisoned_call-th call; returns the call counter {"n": ...}."""
    from aiayn.training import translation as loop

    real_loss, calls = loop.label_smoothed_loss, {"n": 0}

    def poisoned(logits, labels, *args, **kwargs):
        calls["n"] += 1
        loss = real_loss(logits, labels, *args, **kwargs)
        return loss * float("nan") if calls["n"] == poisoned_call else loss

    monkeypatch.setattr(loop, "label_smoothed_loss", poisoned)
    return calls


@pytest.mark.parametrize("read_later", [False, True], ids=["read-at-once", "read-later-as-on-a-gpu"])
def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         read_later: bool) -> None:
    if read_later:  # the loop, not the step, finds the NaN: still before the step-6 checkpoint is written
        monkeypatch.setattr(base, "LossOnHost", _ReadLater)
    calls = poison_loss_at_call(monkeypatch, 5)
    with pytest.raises(TrainingError, match=r"nan at step 5.*step_4"):
        train(_cfg(tmp_path, "nan", save_every=2, log_every=10), log=lambda _: None)
    assert calls["n"] == (6 if read_later else 5)  # read later: step 6 ran before step 5's loss was read
    assert [p.name for p in list_checkpoints(tmp_path / "nan")] == ["step_2", "step_4"]
    model = aiayn.load(tmp_path / "nan" / "checkpoints" / "step_4")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_clip_norm_clips_the_gradient_of_every_step(tmp_path: Path) -> None:
    def gradient_norm(trainer: Trainer) -> float:
        trainer.train_step()  # the gradients stay on the parameters until the next step
        return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in trainer.model.parameters()
                                                            if p.grad is not None])))

    free = gradient_norm(Trainer(_cfg(tmp_path, "free", steps=2), log=lambda _: None))
    clipped = gradient_norm(Trainer(_cfg(tmp_path, "clipped", steps=2, clip_norm=0.05), log=lambda _: None))
    assert free > 0.5 and clipped == pytest.approx(0.05, rel=1e-4)


def test_dev_beam_sets_the_beam_of_dev_bleu_during_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import aiayn.inference.evaluation
    import aiayn.training.translation

    beams: list[int] = []
    real = aiayn.inference.evaluation.translate

    def spy(model, tok, texts, beam_size=4, **options):
        beams.append(beam_size)
        return real(model, tok, texts, beam_size=beam_size, **options)

    monkeypatch.setattr(aiayn.training.translation, "translate", spy)  # the name the trainer calls
    trainer = Trainer(_cfg(tmp_path, "dev-beam", steps=4, dev_beam=3, beam=2, eval_every=2, final_test=True),
                      log=lambda _: None)
    trainer.run()
    assert beams == [3, 3, 2]  # dev BLEU at step 2 and at the end with dev_beam; the final test with beam
    record = [r for r in read_metrics(tmp_path / "dev-beam") if "dev_bleu" in r][-1]
    hyps = real(trainer.model, trainer.tokenizer, [s for s, _ in trainer.corpus.dev], beam_size=3)
    assert record["dev_bleu"] == aiayn.inference.evaluation.score(hyps, [t for _, t in trainer.corpus.dev]).bleu


def test_a_bad_compile_mode_is_refused_naming_the_modes(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="compile_mode must be one of .*'reduce-overhead', 'max-autotune'.*"
                                            "got 'fastest'"):
        Trainer(_cfg(tmp_path, "mode", compile_mode="fastest"))
    assert not (tmp_path / "mode").exists()  # refused before anything was written


def test_checkpoints_keep_the_last_m_and_load(tmp_path: Path) -> None:
    result = train(_cfg(tmp_path, "keep", steps=8, save_every=2, keep_last=2), log=lambda _: None)
    run = result.run_dir
    assert [p.name for p in list_checkpoints(run)] == ["step_6", "step_8"]
    for name in ("config.json", "train.json", "tokenizer.json", "metrics.jsonl", "curves.png"):
        assert (run / name).is_file(), name
    final = aiayn.load(run / "model")
    last = aiayn.load(run / "checkpoints" / "step_8")
    for a, b in zip(final.state_dict().values(), last.state_dict().values()):
        assert torch.equal(a, b)
    assert not list((run / "checkpoints").glob(".*"))  # no temporary folders left


def test_averaging_three_checkpoints_gives_every_tensor_their_mean(tmp_path: Path) -> None:
    models = [aiayn.Transformer(aiayn.ModelConfig.preset("tiny")) for _ in range(3)]  # three different inits
    for name, model in zip("abc", models):
        model.save(tmp_path / name)
    averaged = average_checkpoints([tmp_path / n for n in "abc"])
    states = [m.state_dict() for m in models]
    assert sorted(averaged) == sorted(states[0])
    for name in states[0]:
        mean = (states[0][name] + states[1][name] + states[2][name]) / 3
        assert torch.allclose(averaged[name], mean, atol=1e-7), name
    differs = [n for n in states[0] if not torch.equal(states[0][n], states[1][n])]
    assert len(differs) > 20  # the inits differ, so the mean is not any one of them


def test_averaging_two_checkpoints_is_their_mean(tmp_path: Path) -> None:
    first = aiayn.Transformer(aiayn.ModelConfig.preset("tiny"))
    second = aiayn.Transformer(aiayn.ModelConfig.preset("tiny"))
    first.save(tmp_path / "a")
    second.save(tmp_path / "b")
    averaged = average_checkpoints([tmp_path / "a", tmp_path / "b"])
    name = "encoder.layers.0.ffn.linear1.weight"
    expected = (first.state_dict()[name] + second.state_dict()[name]) / 2
    assert torch.allclose(averaged[name], expected, atol=1e-7)
    other = aiayn.Transformer(aiayn.ModelConfig.preset("tiny", d_ff=32))
    other.save(tmp_path / "other")
    with pytest.raises(aiayn.CheckpointError, match="differ"):
        average_checkpoints([tmp_path / "a", tmp_path / "other"])


def test_train_config_from_toml_and_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('steps = 7\nbatch_tokens = 1024\ntest_bleu_at = [2, 4]\n', encoding="utf-8")
    cfg = TrainConfig.from_toml(path, steps=9)
    assert (cfg.steps, cfg.batch_tokens, cfg.test_bleu_at, cfg.warmup) == (9, 1024, [2, 4], TrainConfig.warmup)
    assert cfg.time_budget is None  # a step count named in the file replaces the default budget
    path.write_text("stepz = 7\n", encoding="utf-8")
    with pytest.raises(TrainingError, match="stepz"):
        TrainConfig.from_toml(path)


def test_a_translation_toml_may_name_its_task(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('task = "translate"\nsteps = 7\n', encoding="utf-8")
    assert TrainConfig.from_toml(path).steps == 7
    assert TrainConfig.from_dict({"task": "translate", "steps": 8}).steps == 8
    path.write_text('task = "lm"\nsteps = 7\n', encoding="utf-8")
    with pytest.raises(TrainingError, match=r"task = 'lm' is not a translation run: .*aiayn train --task lm"):
        TrainConfig.from_toml(path)


def test_resume_with_a_toml_keeps_every_setting_the_file_does_not_name(tmp_path: Path) -> None:
    """The run's settings < the file < flags: a TOML naming one field changes that field only."""
    import json
    import shutil

    from aiayn.cli import main

    corpus = write_corpus(tmp_path / "corpus.tsv")
    first = tmp_path / "first"
    flags = ["--data", str(corpus), "--preset", "tiny", "--vocab-size", "60", "--dev-size", "20", "--test-size",
             "20", "--batch-tokens", "300", "--warmup", "5", "--peak-lr", "3e-3", "--eval-every", "0",
             "--save-every", "2", "--no-final-test", "--beam", "1", "--seed", "3", "--log-every", "1"]
    assert main(["train", "--out", str(first), "--steps", "4", *flags]) == 0
    second = tmp_path / "second"
    shutil.copytree(first, second)
    assert main(["train", "--out", str(first), "--resume", "--steps", "7"]) == 0
    toml = tmp_path / "one.toml"
    toml.write_text("keep_last = 3\n", encoding="utf-8")
    assert main(["train", "--out", str(second), "--resume", "--steps", "7", "--config", str(toml)]) == 0
    losses = [{r["step"]: r["loss"] for r in read_metrics(run) if "loss" in r} for run in (first, second)]
    assert losses[0] == losses[1] and sorted(losses[0]) == list(range(1, 8))
    settings = [json.loads((run / "train.json").read_text(encoding="utf-8")) for run in (first, second)]
    assert settings[1] == {**settings[0], "keep_last": 3, "out": str(second)}  # the file's one setting, no other
    assert (settings[1]["peak_lr"], settings[1]["batch_tokens"], settings[1]["data"]) == (3e-3, 300, str(corpus))


@pytest.mark.slow  # compiling takes ~40 s on 2 CPU cores
def test_compiled_training_gives_the_eager_losses(tmp_path: Path) -> None:
    eager = train(_cfg(tmp_path, "eager", steps=6, precision="fp32", dropout=0.0), log=lambda _: None)
    compiled = train(_cfg(tmp_path, "compiled", steps=6, precision="fp32", dropout=0.0, compile=True),
                     log=lambda _: None)
    for step in range(1, 7):
        assert compiled.losses[step] == pytest.approx(eager.losses[step], rel=1e-5), step
