"""GPT-style and BERT-style training end to end: loss falls, seeded generation, MLM loss, fill-mask, errors,
bf16 autocast against fp32, the fused AdamW."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import aiayn
from aiayn.cli import main
from aiayn.data.lm import IGNORE_INDEX, bundled_shakespeare
from aiayn.data.tokenizer import load_tokenizer
from aiayn.inference.text import fill_mask, generate_text
from aiayn.runtime.precision import bf16_is_fast
from aiayn.training.lm import LMTrainConfig, LMTrainer, decay_groups, train_lm
from aiayn.training.loss import fp32_cross_entropy
from aiayn.training.schedule import DecaySchedule
from aiayn.training.trainer import TrainingError

TINY = dict(n_layers=2, n_heads=2, d_model=32, d_ff=64, context=32, batch_size=8, eval_every=0, save_every=0,
            log_every=10, threads=1, dropout=0.0, peak_lr=3e-3, warmup=10)
TINY_FLAGS = ["--n-layers", "2", "--n-heads", "2", "--d-model", "32", "--d-ff", "64", "--context", "32",
              "--batch-size", "8", "--eval-every", "0", "--threads", "1", "--warmup", "10"]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 30,000 characters of the bundled Shakespeare."""
    path = tmp_path_factory.mktemp("lm") / "small.txt"
    path.write_text(bundled_shakespeare()[:30_000], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def mlm_run(text_file: Path) -> Path:
    """A tiny masked-LM run (WordPiece, [MASK] = id 4), 30 steps."""
    out = text_file.parent / "mlm"
    train_lm(LMTrainConfig(task="mlm", data=str(text_file), out=str(out), steps=30, vocab_size=300, **TINY),
             log=lambda message: None)
    return out


def test_lm_loss_falls_on_a_small_text(text_file: Path) -> None:
    cfg = LMTrainConfig(data=str(text_file), out=str(text_file.parent / "lm-falls"), steps=150, **TINY)
    trainer = LMTrainer(cfg, log=lambda message: None)
    vocab = trainer.tokenizer.get_vocab_size()
    before = trainer.validate()["val_loss"]
    # Untrained, the logits z carry no information about the next character: the loss is what logits of their
    # spread cost, E[logsumexp(z) - mean(z)] (>= ln V by Jensen; measured 4.71 here against ln 68 = 4.22)
    with torch.no_grad():
        logits = trainer.model.eval()(torch.from_numpy(trainer.val_ids[:50 * 32].astype("int64")).view(50, 32))
    spread_cost = float((torch.logsumexp(logits, -1) - logits.mean(-1)).mean())
    assert spread_cost > math.log(vocab) and before == pytest.approx(spread_cost, abs=0.15)
    result = trainer.run()
    after = result.final["val_loss"]
    assert after < before - 1.2  # ~4.4 -> ~2.8 nats per character in 150 steps
    losses = result.losses
    assert sum(list(losses.values())[-10:]) / 10 < sum(list(losses.values())[:10]) / 10 - 1.0
    assert (Path(cfg.out) / "curves.png").is_file() and (Path(cfg.out) / "model" / "tokenizer.json").is_file()


def test_generation_is_reproducible_with_a_seed(text_file: Path, capsys: pytest.CaptureFixture) -> None:
    out = text_file.parent / "lm-generate"
    assert main(["train", "--task", "lm", "--data", str(text_file), "--out", str(out), "--steps", "40",
                 *TINY_FLAGS]) == 0
    assert "nats per character" in capsys.readouterr().out
    runs = []
    for seed in ("1", "1", "2"):
        assert main(["generate", str(out / "model"), "ROMEO:", "--max-new-tokens", "80", "--seed", seed,
                     "--top-k", "10"]) == 0
        runs.append(capsys.readouterr().out)
    assert runs[0] == runs[1] != runs[2]
    assert runs[0].startswith("ROMEO:")
    # 80 new characters from a 32-character context: generation goes on past the model's window
    model, tok = aiayn.load(out / "model"), load_tokenizer(out / "model")
    text = generate_text(model, tok, "ROMEO:", max_new_tokens=80, do_sample=True, top_k=10, seed=1)
    assert len(text) == 80 and runs[0] == "ROMEO:" + text + "\n"
    # --beam: beam search from the same table of options (no sampling, so no seed needed)
    assert main(["generate", str(out / "model"), "ROMEO:", "--max-new-tokens", "20", "--beam", "3"]) == 0
    beam = generate_text(model, tok, "ROMEO:", max_new_tokens=20, beam_size=3)
    assert capsys.readouterr().out == "ROMEO:" + beam + "\n"


def test_mlm_loss_ignores_unchosen_positions() -> None:
    logits = torch.randn(2, 6, 11, requires_grad=True)
    labels = torch.full((2, 6), IGNORE_INDEX)
    labels[0, 1], labels[1, 4], labels[1, 5] = 3, 7, 10
    loss = fp32_cross_entropy(logits, labels, IGNORE_INDEX)  # the masked LM's loss, mean over the chosen
    chosen = [(0, 1, 3), (1, 4, 7), (1, 5, 10)]
    by_hand = -sum(float(torch.log_softmax(logits.detach()[b, t], -1)[y]) for b, t, y in chosen) / len(chosen)
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)
    loss.backward()
    unchosen = labels == IGNORE_INDEX
    assert torch.count_nonzero(logits.grad[unchosen]) == 0 and torch.count_nonzero(logits.grad[~unchosen]) > 0
    changed = logits.detach().clone()
    changed[unchosen] = torch.randn(int(unchosen.sum()), 11) * 100
    assert fp32_cross_entropy(changed, labels, IGNORE_INDEX).item() == pytest.approx(loss.item(), rel=1e-6)


def test_fill_mask_returns_k_candidates_sorted_by_probability(mlm_run: Path, capsys: pytest.CaptureFixture) -> None:
    model, tok = aiayn.load(mlm_run / "model"), load_tokenizer(mlm_run / "model")
    assert isinstance(model, aiayn.EncoderLM) and tok.token_to_id("[MASK]") == 4
    [candidates] = fill_mask(model, tok, "To be or not to [MASK].", top_k=7)
    probs = [c.probability for c in candidates]
    assert len(candidates) == 7 and probs == sorted(probs, reverse=True)
    # the same numbers from the model's logits at the [MASK] position, computed here
    ids = tok.encode("To be or not to [MASK].").ids
    with torch.no_grad():
        expected = model.eval()(torch.tensor([ids]))[0, ids.index(4)].softmax(-1)
    for c in candidates:
        assert c.probability == pytest.approx(float(expected[c.id]), rel=1e-5) and tok.id_to_token(c.id) == c.token
    assert float(expected.topk(7).values[-1]) == pytest.approx(probs[-1], rel=1e-5)
    assert main(["fill-mask", str(mlm_run / "model"), "To be or not to [MASK].", "--top-k", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    printed = [float(line.split()[0]) for line in lines]
    assert len(lines) == 5 and printed == sorted(printed, reverse=True)
    assert main(["fill-mask", str(mlm_run / "model"), "no mask here"]) == 1
    assert "no [MASK]" in capsys.readouterr().err


def test_mlm_run_reports_masked_token_accuracy(mlm_run: Path, text_file: Path) -> None:
    """The final val_acc is the share of chosen validation tokens the saved model predicts, recomputed here from
    full logits (B, T, V) rather than the trainer's selected positions."""
    from aiayn.data.lm import encode_text, mask_tokens, split_text

    record = [r for r in aiayn.training.run_folder.read_metrics(mlm_run) if "val_acc" in r][-1]
    model, tok = aiayn.load(mlm_run / "model").eval(), load_tokenizer(mlm_run / "model")
    ids = encode_text(tok, split_text(text_file.read_text(encoding="utf-8"))[1])
    context, generator = TINY["context"], torch.Generator().manual_seed(0)  # validation's fixed masking
    windows = ids[torch.arange(0, ids.numel() - context, context)[:, None] + torch.arange(context)]
    right = chosen = near_ties = 0
    for batch in windows.split(256):
        inputs, labels = mask_tokens(batch, 4, tok.get_vocab_size(), list(range(5)), generator, first_regular_id=5)
        with torch.no_grad():
            logits = model(inputs)  # (B, T, V) in fp32
        top2 = logits.topk(2, dim=-1).values  # (B, T, 2)
        scored = labels != IGNORE_INDEX
        right += int((logits.argmax(-1)[scored] == labels[scored]).sum())
        # the run validated under its autocast (bf16 on CPUs where it is native), on the chosen positions only:
        # where fp32's two best logits are within bf16's rounding, either of them may have been its answer
        near_ties += int(((top2[..., 0] - top2[..., 1]) < 0.05)[scored].sum())
        chosen += int(scored.sum())
    assert chosen > 100 and record["val_windows"] == windows.shape[0] and right > 0  # measured: 6-10 of 236
    assert abs(record["val_acc"] * chosen - right) <= near_ties


def test_a_masked_lm_step_that_chose_no_token_counts_and_changes_nothing(text_file: Path) -> None:
    """One window of 8 characters at mask_prob 0.05 chooses no token in ~66% of the steps: never a NaN."""
    cfg = LMTrainConfig(task="mlm", tokenizer="char", data=str(text_file), out=str(text_file.parent / "none-chosen"),
                        steps=12, mask_prob=0.05, **{**TINY, "batch_size": 1, "context": 8, "log_every": 1})
    messages: list[str] = []
    trainer = LMTrainer(cfg, log=messages.append)
    start = trainer.generator.get_state()
    chosen = [int((labels != IGNORE_INDEX).sum()) for _, labels in
              (trainer._rank_batches()[0] for _ in range(cfg.steps))]
    trainer.generator.set_state(start)
    assert any(chosen) and 0 in chosen[chosen.index(next(filter(None, chosen))):]  # an empty step after a real one
    empty = chosen.index(0, chosen.index(next(filter(None, chosen)))) + 1
    for step in range(1, empty):
        assert math.isfinite(trainer.train_step().value()), step
    weights = [p.detach().clone() for p in trainer.model.parameters()]
    assert trainer.train_step().value() == 0.0 and trainer.step == empty  # counted, no loss over no tokens
    # no update at all: a zero gradient would still move the weights through Adam's momentum
    assert all(torch.equal(p, q) for p, q in zip(trainer.model.parameters(), weights))
    assert any(f"step {empty} scored no token" in m for m in messages)
    result = trainer.run()
    assert result.step == cfg.steps and all(math.isfinite(v) for v in result.losses.values())


def test_text_shorter_than_one_context_window_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    short = tmp_path / "short.txt"
    short.write_text("To be, or not to be, that is the question.\n" * 2, encoding="utf-8")
    out = tmp_path / "run"
    assert main(["train", "--task", "lm", "--data", str(short), "--out", str(out), "--context", "64"]) == 1
    err = capsys.readouterr().err.strip()
    assert "fewer than one context window of 64" in err and "smaller --context" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()  # nothing written
    assert main(["train", "--task", "lm", "--data", str(short), "--out", str(out), "--batch-tokens", "9"]) == 1
    assert "--batch-tokens does not apply to --task lm" in capsys.readouterr().err
    assert main(["train", "--task", "mlm", "--data", str(short), "--out", str(out), "--tokenizer", "bpe"]) == 1
    assert "use --tokenizer wordpiece" in capsys.readouterr().err


def test_cosine_schedule_is_nanogpts() -> None:
    lr = DecaySchedule(peak=1e-3, warmup=100, total=2000, min_lr=1e-4, shape="cosine")
    assert lr(50) == pytest.approx(5e-4) and lr(100) == pytest.approx(1e-3)
    assert lr(1050) == pytest.approx(1e-4 + 0.5 * 9e-4)  # halfway through the decay: cos(pi/2) = 0
    assert lr(1525) == pytest.approx(1e-4 + 0.5 * (1 + math.cos(0.75 * math.pi)) * 9e-4)
    assert lr(2000) == pytest.approx(1e-4) and lr(5000) == pytest.approx(1e-4)


def test_an_lm_toml_with_the_inverse_sqrt_schedule_gets_the_papers_rates(text_file: Path, tmp_path: Path) -> None:
    toml = tmp_path / "lm.toml"
    toml.write_text(f'task = "lm"\ndata = "{text_file}"\nschedule = "inverse-sqrt"\npeak_lr = 2e-3\nwarmup = 10\n'
                    f'steps = 40\nlog_every = 1\n', encoding="utf-8")
    out = tmp_path / "inverse-sqrt"
    assert main(["train", "--config", str(toml), "--out", str(out), *TINY_FLAGS[:-2]]) == 0
    lr = {r["step"]: r["lr"] for r in aiayn.training.run_folder.read_metrics(out) if "lr" in r}
    # §5.3: linear warmup to the peak at step `warmup`, then proportional to step^-0.5
    assert lr[5] == pytest.approx(1e-3) and lr[10] == pytest.approx(2e-3) and lr[40] == pytest.approx(1e-3)
    assert lr[20] == pytest.approx(2e-3 * (10 / 20) ** 0.5)


def test_weight_decay_only_on_matrices_and_tables() -> None:
    model = aiayn.DecoderLM(aiayn.ModelConfig.preset("tiny", n_encoder_layers=0, positions="learned"))
    decayed, plain = decay_groups(model, 0.1)
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in plain["params"]} == {n for n, p in model.named_parameters() if p.dim() == 1}
    assert any("token_embedding" in names[id(p)] for p in decayed["params"])
    assert all("norm" not in names[id(p)] and not names[id(p)].endswith("bias") for p in decayed["params"])


def test_resume_continues_exactly(text_file: Path) -> None:
    settings = dict(data=str(text_file), steps=6, **{**TINY, "save_every": 3})
    straight = train_lm(LMTrainConfig(out=str(text_file.parent / "straight"), **settings), log=lambda m: None)
    first = LMTrainConfig(out=str(text_file.parent / "halves"), **{**settings, "steps": 3})
    train_lm(first, log=lambda m: None)
    resumed = train_lm(LMTrainConfig(out=first.out, **settings), resume=True, log=lambda m: None)
    assert resumed.step == 6
    a, b = aiayn.load(straight.run_dir / "model"), aiayn.load(resumed.run_dir / "model")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name


def test_a_run_from_before_the_precision_setting_resumes_in_fp32(text_file: Path, capsys: pytest.CaptureFixture,
                                                                  tmp_path: Path) -> None:
    import json

    out = tmp_path / "old-run"
    assert main(["train", "--task", "lm", "--data", str(text_file), "--out", str(out), "--steps", "2",
                 "--precision", "fp32", *TINY_FLAGS]) == 0
    settings = json.loads((out / "train.json").read_text(encoding="utf-8"))
    del settings["precision"]  # as the runs written before --precision existed (they trained in fp32)
    (out / "train.json").write_text(json.dumps(settings), encoding="utf-8")
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--steps", "3"]) == 0
    logged = capsys.readouterr()
    assert "; fp32" in logged.out + logged.err and "bf16 autocast" not in logged.out + logged.err


def test_bpe_language_model(text_file: Path, capsys: pytest.CaptureFixture) -> None:
    out = text_file.parent / "lm-bpe"
    assert main(["train", "--task", "lm", "--tokenizer", "bpe", "--vocab-size", "400", "--data", str(text_file),
                 "--out", str(out), "--steps", "5", *TINY_FLAGS]) == 0
    assert "nats per token" in capsys.readouterr().out
    tok = load_tokenizer(out / "model")
    assert 100 < tok.get_vocab_size() <= 400
    line = "KING HENRY:\nO God!"
    assert tok.decode(tok.encode(line, add_special_tokens=False).ids) == line  # newlines survive BPE
    assert main(["generate", str(out / "model"), "KING", "--max-new-tokens", "5", "--greedy"]) == 0
    assert capsys.readouterr().out.startswith("KING")


# --- precision (bf16 autocast where the hardware multiplies bf16 fast) and the fused AdamW

def _precision_run(text_file: Path, name: str, task: str, **changes) -> LMTrainer:
    """A trainer for 8 steps of the tiny model with weight decay (both AdamW groups in use), not yet run."""
    cfg = LMTrainConfig(task=task, tokenizer="char", data=str(text_file), out=str(text_file.parent / name),
                        steps=8, weight_decay=0.1, **{**TINY, "warmup": 3, **changes})
    return LMTrainer(cfg, log=lambda message: None)


def _step_losses(trainer: LMTrainer) -> list[float]:
    result = trainer.run()
    return [result.losses[step] for step in sorted(result.losses)]


def test_fp32_cross_entropy_is_torchs_bit_for_bit_and_softmaxes_bf16_logits_in_fp32() -> None:
    logits = torch.randn(3, 5, 40, requires_grad=True)
    labels = torch.randint(40, (3, 5))
    labels[0, :2] = IGNORE_INDEX
    ours, theirs = fp32_cross_entropy(logits, labels, IGNORE_INDEX, "sum"), torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
    assert torch.equal(ours, theirs)
    assert torch.equal(*(torch.autograd.grad(loss, logits)[0] for loss in (ours, theirs)))
    half = logits.detach().bfloat16().requires_grad_()
    loss = fp32_cross_entropy(half, labels, IGNORE_INDEX, "sum")
    wide = fp32_cross_entropy(half.detach().float(), labels, IGNORE_INDEX, "sum")
    assert loss.dtype == torch.float32 and torch.equal(loss, wide)  # the bf16 logits' exact values, in fp32
    loss.backward()
    assert half.grad.dtype == torch.bfloat16


@pytest.mark.parametrize("task", ["lm", "mlm"])
def test_fp32_with_the_fused_adamw_trains_like_the_unfused_adamw(text_file: Path, task: str) -> None:
    fused = _precision_run(text_file, f"fused-{task}", task, precision="fp32")
    assert fused.autocast_dtype is None and fused.optimizer.defaults["fused"] is True
    groups = fused.optimizer.param_groups
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0] and all(g["fused"] for g in groups)
    # the loop as it was before the fused AdamW: the same two groups, stepped parameter by parameter
    plain = _precision_run(text_file, f"plain-{task}", task, precision="fp32")
    plain.optimizer = torch.optim.AdamW(decay_groups(plain.model, 0.1), lr=plain.schedule(1), betas=(0.9, 0.98),
                                        eps=1e-9, foreach=False)
    a, b = _step_losses(fused), _step_losses(plain)
    assert a[0] == b[0]  # the same forward and loss before any update
    assert a == pytest.approx(b, rel=1e-6, abs=0)  # then the same updates up to float rounding
    # Weights too, but for the key biases: attention is shift-invariant along the keys, their true gradient is
    # 0, and Adam turns the rounding noise in its place into steps of +-lr (in_proj rows are W^Q; W^K; W^V).
    d = fused.model.cfg.d_model
    for (name, p), q in zip(fused.model.named_parameters(), plain.model.parameters()):
        if name.endswith("attn.in_proj.bias"):
            p, q = torch.cat([p[:d], p[2 * d:]]), torch.cat([q[:d], q[2 * d:]])
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-7), name


@pytest.mark.parametrize("task", ["lm", "mlm"])
def test_bf16_runs_the_matmuls_in_bf16_and_keeps_the_loss_near_fp32s(text_file: Path, task: str) -> None:
    trainer = _precision_run(text_file, f"bf16-{task}", task, precision="bf16")
    assert trainer.autocast_dtype == torch.bfloat16 and trainer.precision_name == "bf16 autocast"
    outputs: list[torch.dtype] = []
    for module in trainer.model.modules():
        if isinstance(module, torch.nn.Linear):
            module.register_forward_hook(lambda mod, inputs, out: outputs.append(out.dtype))
    start = trainer.generator.get_state()
    batch = trainer._rank_batches()[0]
    trainer.generator.set_state(start)  # the run below draws the same batches as the fp32 run
    assert trainer._loss_sum(batch).dtype == torch.float32  # cross entropy on fp32 log-probabilities
    assert outputs and set(outputs) == {torch.bfloat16}  # every Linear (logits included) multiplied in bf16
    bf16 = _step_losses(trainer)
    fp32 = _step_losses(_precision_run(text_file, f"fp32-{task}", task, precision="fp32"))
    # measured: within 1.1e-3 (lm) and 6.1e-3 (mlm) nats of fp32's over the 8 steps; the weights stay fp32
    assert bf16 == pytest.approx(fp32, abs=0.02) and bf16 != fp32
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


def test_auto_precision_is_bf16_where_bf16_is_fast_and_the_log_says_which(text_file: Path) -> None:
    messages: list[str] = []
    cfg = LMTrainConfig(data=str(text_file), out=str(text_file.parent / "auto"), steps=1, **TINY)
    trainer = LMTrainer(cfg, log=messages.append)
    fast = bf16_is_fast(torch.device("cpu"))
    assert trainer.autocast_dtype == (torch.bfloat16 if fast else None)
    trainer.run()
    assert any(m.endswith("bf16 autocast" if fast else "; fp32") for m in messages if "parameters" in m)


def test_a_bad_precision_is_refused_naming_the_choices(text_file: Path, capsys: pytest.CaptureFixture) -> None:
    out = text_file.parent / "fp16"
    with pytest.raises(TrainingError, match=r"LMTrainConfig\.precision must be one of \('auto', 'fp32', 'bf16'\), "
                                            r"got 'fp16'"):
        LMTrainer(LMTrainConfig(data=str(text_file), out=str(out), precision="fp16", **TINY))
    with pytest.raises(SystemExit) as stop:  # argparse's one-line error for a bad value (exit 2)
        main(["train", "--task", "lm", "--data", str(text_file), "--out", str(out), "--precision", "fp16"])
    assert stop.value.code == 2 and "precision: must be one of" in capsys.readouterr().err
    assert not out.exists()  # refused before anything was written
