"""`aiayn train` options around a run: --init-from (aiayn and Hugging Face folders), --keep-best / --patience,
--tensorboard, and the library's logging."""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

import aiayn
from aiayn.cli import main
from aiayn.data.batching import TokenBatcher
from aiayn.data.corpus import load_corpus
from aiayn.data.lm import bundled_shakespeare
from aiayn.data.tokenizer import EOS_ID, encode_batch, train_bpe
from aiayn.io.model_folder import read_weights
from aiayn.training.lm import LMTrainConfig, LMTrainer, train_lm
from aiayn.training.run_folder import read_metrics
from aiayn.training.translation import TrainConfig, train

from .helpers_translation import write_corpus

LM = dict(context=32, batch_size=4, eval_every=0, save_every=0, log_every=1, threads=1, precision="fp32",
          warmup=2, peak_lr=1e-3, min_lr=1e-4)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 20,000 characters of the bundled Shakespeare."""
    path = tmp_path_factory.mktemp("text") / "small.txt"
    path.write_text(bundled_shakespeare()[:20_000], encoding="utf-8")
    return path


def _gpt2_folder(folder: Path, text: str, vocab_delta: int = 0) -> Path:
    """A tiny GPT-2 (random weights, no dropout) with a byte-level BPE tokenizer saved by transformers."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([text], trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                        show_progress=False))
    hf_tok = transformers.GPT2TokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                            bos_token="<|endoftext|>", unk_token="<|endoftext|>")
    hf_tok.save_pretrained(folder)
    eos = tok.token_to_id("<|endoftext|>")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=tok.get_vocab_size() + vocab_delta, n_embd=32, n_layer=2, n_head=4,
                                     n_positions=64, bos_token_id=eos, eos_token_id=eos, resid_pdrop=0.0,
                                     embd_pdrop=0.0, attn_pdrop=0.0)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def gpt2_folder(text_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _gpt2_folder(tmp_path_factory.mktemp("gpt2"), text_file.read_text(encoding="utf-8"))


def _lm(text_file: Path, out: Path, **changes) -> LMTrainConfig:
    return LMTrainConfig(data=str(text_file), out=str(out), **{**LM, **changes})


# --- --init-from --------------------------------------------------------------------------------------------


def test_first_step_loss_of_a_gpt2_folder_is_the_hf_models_loss(gpt2_folder: Path, text_file: Path,
                                                               tmp_path: Path) -> None:
    result = train_lm(_lm(text_file, tmp_path / "run", init_from=str(gpt2_folder), steps=1), log=lambda _: None)
    # the same batch by hand: the first batch_size windows of the run's data stream (seed 1) over the training
    # 90% of the text, encoded by transformers' tokenizer, scored by transformers' GPT-2
    text = text_file.read_text(encoding="utf-8")
    ids = torch.tensor(transformers.AutoTokenizer.from_pretrained(gpt2_folder)(text[:int(len(text) * 0.9)])
                       ["input_ids"])
    starts = torch.randint(0, ids.numel() - 32, (4,), generator=torch.Generator().manual_seed(1))
    windows = ids[starts[:, None] + torch.arange(33)]  # (B, T + 1)
    theirs = transformers.GPT2LMHeadModel.from_pretrained(gpt2_folder).eval()
    with torch.no_grad():
        logits = theirs(windows[:, :-1]).logits
    expected = float(F.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten()))
    assert result.losses[1] == pytest.approx(expected, rel=1e-5)
    settings = json.loads((tmp_path / "run" / "train.json").read_text())
    assert settings["init_from"] == str(gpt2_folder.resolve())  # where the run started
    assert aiayn.load(tmp_path / "run" / "model").cfg.extra["huggingface"]["model_type"] == "gpt2"


def test_fine_tuning_a_gpt2_folder_lowers_its_validation_loss(gpt2_folder: Path, text_file: Path,
                                                              tmp_path: Path) -> None:
    cfg = _lm(text_file, tmp_path / "run", init_from=str(gpt2_folder), steps=25, log_every=25, peak_lr=3e-3)
    trainer = LMTrainer(cfg, log=lambda _: None)
    before = trainer.validate()["val_loss"]
    result = trainer.run()
    assert result.final["val_loss"] < before - 0.3, (before, result.final)
    assert math.isclose(before, math.log(trainer.model.cfg.vocab_size), rel_tol=0.1)  # a random model: ~uniform


def _bert_folder(folder: Path, text: str) -> Path:
    """A tiny BERT for masked LM with BERT's vocabulary layout ([PAD], [unused], [UNK] [CLS] [SEP] [MASK])."""
    folder.mkdir()
    words = sorted({w for w in transformers.BasicTokenizer(do_lower_case=True).tokenize(text)})
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    transformers.BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}).save_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    transformers.BertForMaskedLM(config).save_pretrained(folder)
    return folder


def test_a_bert_folder_fine_tunes_as_a_masked_lm(text_file: Path, tmp_path: Path, capsys) -> None:
    folder = _bert_folder(tmp_path / "bert", text_file.read_text(encoding="utf-8"))
    cfg = _lm(text_file, tmp_path / "run", task="mlm", init_from=str(folder), steps=30, log_every=30,
              peak_lr=3e-3, dropout=0.0)
    trainer = LMTrainer(cfg, log=lambda _: None)
    assert trainer.mask_id == 103 and trainer.special_ids == [0, 100, 101, 102, 103]  # BERT's, from tokenizer.json
    before = trainer.validate()["val_loss"]
    result = trainer.run()
    assert result.final["val_loss"] < before - 0.5, (before, result.final)
    # the CLI: the same run, and the model it writes fills masks with the BERT tokenizer
    code = main(["train", "--task", "mlm", "--init-from", str(folder), "--data", str(text_file), "--out",
                 str(tmp_path / "cli"), "--steps", "2", "--context", "32", "--eval-every", "0", "--threads", "1"])
    assert code == 0
    assert "starting from" in capsys.readouterr().err
    assert main(["fill-mask", str(tmp_path / "cli" / "model"), "the [MASK] of it", "--top-k", "2"]) == 0


def test_first_step_loss_of_an_aiayn_translator_is_its_label_smoothed_loss(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "pairs.tsv", n=200)
    pairs = [line.split("\t")[:2] for line in corpus.read_text(encoding="utf-8").splitlines()]
    tok = train_bpe((t for pair in pairs for t in pair), 200)
    start = aiayn.Transformer(aiayn.ModelConfig.preset("tiny", vocab_size=tok.get_vocab_size(), dropout=0.0))
    start.save(tmp_path / "start", tokenizer=tok)
    cfg = TrainConfig(data=str(corpus), out=str(tmp_path / "run"), init_from=str(tmp_path / "start"), steps=1,
                      dev_size=20, test_size=20, batch_tokens=300, threads=1, precision="fp32", eval_every=0,
                      final_test=False, keep_best="none")
    trainer_result = train(cfg, log=lambda _: None)
    # by hand: the run's first batch (its corpus split, its batcher) scored with torch's label-smoothed loss
    split = load_corpus(str(corpus), None, None, None, None, None, 20, 20, 1)
    src = encode_batch(tok, [s for s, _ in split.train])
    tgt = encode_batch(tok, [t for _, t in split.train])
    examples = [(s + [EOS_ID], t) for s, t in zip(src, tgt)]
    batcher = TokenBatcher(examples, 300, 1)
    batch = batcher.batch(batcher.epoch(0)[0])
    with torch.no_grad():
        logits = start(batch.src, batch.tgt_in)
    expected = float(F.cross_entropy(logits.flatten(0, 1), batch.labels.flatten(), ignore_index=0,
                                     label_smoothing=0.1))
    assert trainer_result.losses[1] == pytest.approx(expected, rel=1e-5)


def test_a_recipe_value_that_contradicts_the_init_from_model_is_named_as_the_recipes(tmp_path: Path, capsys) -> None:
    """--recipe paper sets norm post; a pre-LN --init-from model: the message names the recipe and the flag that
    overrides it, not a --norm the user never gave."""
    corpus = write_corpus(tmp_path / "pairs.tsv", n=60)
    tok = train_bpe((line for line in corpus.read_text(encoding="utf-8").splitlines()), 100)
    aiayn.Transformer(aiayn.ModelConfig.preset("tiny", vocab_size=tok.get_vocab_size(), norm="pre")).save(
        tmp_path / "pre", tokenizer=tok)
    out = tmp_path / "run"
    argv = ["train", "--recipe", "paper", "--init-from", str(tmp_path / "pre"), "--data", str(corpus), "--out",
            str(out), "--dev-size", "10", "--test-size", "10"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--recipe paper sets norm post, which contradicts the --init-from model" in err
    assert "whose norm is pre: give --norm pre (a flag wins over the recipe), or drop --recipe" in err
    assert not out.exists()
    assert main([*argv, "--d-model", "64"]) == 1  # a value the recipe does not set: the flag is named
    assert "--d-model 64 contradicts the --init-from model" in capsys.readouterr().err


def test_init_from_errors_are_one_line_and_write_nothing(gpt2_folder: Path, text_file: Path, tmp_path: Path,
                                                         capsys) -> None:
    def run(*flags: str) -> str:
        out = tmp_path / "run"
        code = main(["train", "--task", "lm", "--data", str(text_file), "--out", str(out), "--steps", "1",
                     "--context", "32", *flags])
        err = capsys.readouterr().err
        assert code == 1 and not out.exists(), err
        assert len(err.strip().splitlines()) == 1, err
        return err

    (tmp_path / "empty").mkdir()
    assert "config.json is missing" in run("--init-from", str(tmp_path / "empty"))
    assert "does not exist" in run("--init-from", str(tmp_path / "nowhere"))
    assert "--d-model 512 contradicts" in run("--init-from", str(gpt2_folder), "--d-model", "512")
    assert "whose d_model is 32" in run("--init-from", str(gpt2_folder), "--d-model", "512")
    small = _gpt2_folder(tmp_path / "small", text_file.read_text(encoding="utf-8"), vocab_delta=-10)
    capsys.readouterr()  # transformers' saving progress
    err = run("--init-from", str(small))
    assert "tokens but the model only" in err and "tokenizer.json" in err
    assert "needs an EncoderLM" in run("--init-from", str(gpt2_folder), "--task", "mlm")
    assert "max_positions 64" in run("--init-from", str(gpt2_folder), "--context", "128")


# --- --keep-best and --patience -----------------------------------------------------------------------------


def test_a_run_whose_dev_loss_rises_stops_early_and_keeps_the_best_step(tmp_path: Path, capsys) -> None:
    text = tmp_path / "shift.txt"  # trains on "ab", validates on "cd" (unknown characters): the loss rises
    text.write_text("ab" * 2000 + "cd" * 300, encoding="utf-8")
    out = tmp_path / "run"
    code = main(["train", "--task", "lm", "--data", str(text), "--out", str(out), "--steps", "200",
                 "--eval-every", "2", "--eval-windows", "4", "--patience", "3", "--context", "16", "--n-layers",
                 "1", "--d-model", "16", "--d-ff", "32", "--n-heads", "2", "--batch-size", "4", "--threads", "1",
                 "--peak-lr", "1e-2", "--warmup", "1", "--save-every", "4"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "stopping early" in captured.err
    evaluations = [r for r in read_metrics(out) if "val_loss" in r and r["step"] < 200]
    assert max(r["step"] for r in evaluations) < 200
    lowest = min(evaluations, key=lambda r: r["val_loss"])
    best = json.loads((out / "best" / "best.json").read_text())
    assert best["step"] == lowest["step"] and best["score"] == pytest.approx(lowest["val_loss"])
    assert f"at step {lowest['step']}" in captured.out.splitlines()[-1]
    weights, best_weights = read_weights(out / "model" / "model.safetensors"), read_weights(
        out / "best" / "model.safetensors")
    assert all(torch.equal(weights[k], best_weights[k]) for k in weights)  # model/ is the best step
    assert (out / "checkpoints").is_dir()


def test_resume_keeps_the_best_score_and_the_patience_count(text_file: Path, tmp_path: Path) -> None:
    cfg = _lm(text_file, tmp_path / "run", steps=8, eval_every=2, eval_windows=8, save_every=8, patience=50,
              n_layers=1, d_model=16, d_ff=32, n_heads=2, peak_lr=3e-2)
    train_lm(cfg, log=lambda _: None)
    # the checkpoint at step 8 was written before the final evaluation; best/ and the resume count it too
    losses = [r["val_loss"] for r in read_metrics(tmp_path / "run") if "val_loss" in r]
    assert len(losses) == 4  # steps 2, 4, 6 and the final one at 8
    best = min(range(len(losses)), key=losses.__getitem__)
    on_disk = json.loads((tmp_path / "run" / "best" / "best.json").read_text())
    assert (on_disk["step"], on_disk["score"]) == (2 * (best + 1), pytest.approx(losses[best]))
    resumed = LMTrainer(LMTrainConfig.from_dict({**cfg.to_dict(), "steps": 12}), resume=True, log=lambda _: None)
    assert (resumed.best.step, resumed.best.score) == (on_disk["step"], pytest.approx(on_disk["score"]))
    assert resumed.best.since == len(losses) - 1 - best and resumed.best.patience == 50


def test_resume_reads_a_final_best_that_only_best_folder_holds(text_file: Path, tmp_path: Path) -> None:
    """The final evaluation (after the last checkpoint) was the best: the resume knows it, from best/."""
    cfg = _lm(text_file, tmp_path / "run", steps=8, eval_every=2, eval_windows=8, save_every=8, n_layers=1,
              d_model=16, d_ff=32, n_heads=2, peak_lr=3e-2)
    train_lm(cfg, log=lambda _: None)
    best_json = tmp_path / "run" / "best" / "best.json"
    on_disk = json.loads(best_json.read_text())
    best_json.write_text(json.dumps({**on_disk, "step": 8, "score": -1.0, "since": 0, "evaluated": 8}))
    resumed = LMTrainer(LMTrainConfig.from_dict({**cfg.to_dict(), "steps": 12}), resume=True, log=lambda _: None)
    assert (resumed.best.step, resumed.best.score, resumed.best.since) == (8, -1.0, 0)
    best_json.write_text(json.dumps({"step": 8, "metric": "val_loss", "score": -2.0}))  # a best.json of older runs
    resumed = LMTrainer(LMTrainConfig.from_dict({**cfg.to_dict(), "steps": 12}), resume=True, log=lambda _: None)
    assert (resumed.best.step, resumed.best.score, resumed.best.since) == (8, -2.0, 0)


def test_keep_best_and_patience_are_checked(text_file: Path, tmp_path: Path, capsys) -> None:
    base = ["train", "--task", "lm", "--data", str(text_file), "--out", str(tmp_path / "r"), "--steps", "1"]
    assert main([*base, "--keep-best", "bleu"]) == 1
    assert "keep_best must be one of ('loss', 'none')" in capsys.readouterr().err
    assert main([*base, "--keep-best", "none", "--patience", "2"]) == 1
    assert "patience 2" in capsys.readouterr().err and not (tmp_path / "r").exists()


# --- --tensorboard ------------------------------------------------------------------------------------------


def test_tensorboard_holds_the_numbers_of_metrics_jsonl(text_file: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    train_lm(_lm(text_file, out, steps=4, eval_every=2, eval_windows=4, tensorboard=True, n_layers=1, d_model=16,
                 d_ff=32, n_heads=2), log=lambda _: None)
    board = EventAccumulator(str(out / "tensorboard"))
    board.Reload()
    expected: dict[str, list[tuple[int, float]]] = {}
    for record in read_metrics(out):
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                expected.setdefault(key, []).append((record["step"], float(value)))
    assert {"loss", "lr", "tok_per_s", "val_loss"} <= set(expected)
    assert sorted(board.Tags()["scalars"]) == sorted(expected)
    for tag, points in expected.items():
        got = [(e.step, e.value) for e in board.Scalars(tag)]
        assert [s for s, _ in got] == [s for s, _ in points]
        assert [v for _, v in got] == pytest.approx([v for _, v in points], rel=1e-6)


def test_tensorboard_missing_is_a_one_line_error_before_training(text_file: Path, tmp_path: Path, capsys,
                                                                 monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed: find_spec returns None
    code = main(["train", "--task", "lm", "--data", str(text_file), "--out", str(tmp_path / "r"), "--steps", "1",
                 "--tensorboard"])
    err = capsys.readouterr().err
    assert code == 1 and "pip install 'aiayn[tensorboard]'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


# --- logging ------------------------------------------------------------------------------------------------


def test_the_aiayn_logger_carries_and_silences_progress_lines(text_file: Path, tmp_path: Path, caplog,
                                                              capsys) -> None:
    tiny = dict(steps=2, n_layers=1, d_model=16, d_ff=32, n_heads=2)
    with caplog.at_level(logging.INFO, logger="aiayn"):
        train_lm(_lm(text_file, tmp_path / "loud", **tiny))
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("aiayn")]
    assert any(line.startswith("step 1/2 loss") for line in lines)
    caplog.clear()
    capsys.readouterr()
    aiayn_logger = logging.getLogger("aiayn")
    level = aiayn_logger.level
    aiayn_logger.setLevel(logging.ERROR)
    try:
        train_lm(_lm(text_file, tmp_path / "quiet", **tiny))
    finally:
        aiayn_logger.setLevel(level)
    assert not [r for r in caplog.records if r.name.startswith("aiayn")]
    assert "step 1/2" not in capsys.readouterr().err
    # the command line prints the same lines on stderr, as plain lines
    assert main(["train", "--task", "lm", "--data", str(text_file), "--out", str(tmp_path / "cli"), "--steps", "2",
                 "--log-every", "1", "--n-layers", "1", "--d-model", "16", "--d-ff", "32", "--n-heads", "2",
                 "--context", "32", "--threads", "1"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("step 1/2 loss") for line in err) and any(line.startswith("done:") for line in err)
