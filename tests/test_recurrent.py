"""The recurrent baseline (--arch rnn): cached decoding, padding, beam search, size, exact resume, the CLI."""

from pathlib import Path

import pytest
import torch
from torch import nn

import aiayn
from aiayn.cli import main
from aiayn.inference.decoding import _beam_search, _Seq2SeqSteps, _Source
from aiayn.io.export import ExportError, export_model
from aiayn.model.config import RNNConfig
from aiayn.model.recurrent import RecurrentSeq2Seq
from aiayn.training.run_folder import read_metrics
from aiayn.training.translation import TrainConfig, TrainingError, train

from .helpers_translation import write_corpus


def _model(**changes) -> RecurrentSeq2Seq:
    values = {"dropout": 0.0, "n_encoder_layers": 2, "n_decoder_layers": 2, **changes}
    return RecurrentSeq2Seq(RNNConfig.preset("tiny", **values)).eval()


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Three sources, two of them padded at the end, and decoder inputs starting with BOS."""
    src = torch.randint(3, 64, (3, 7))
    src[1, 5:], src[2, 3:] = 0, 0
    tgt = torch.randint(3, 64, (3, 6))
    tgt[:, 0] = 1
    return src, tgt


@pytest.mark.parametrize("input_feeding", [True, False])
@pytest.mark.parametrize("attention", ["general", "dot"])
def test_cached_decoding_gives_the_teacher_forced_logits(input_feeding: bool, attention: str) -> None:
    model = _model(input_feeding=input_feeding, attention=attention)
    src, tgt = _batch()
    full = model(src, tgt)  # (B, T, V): one pass (without input feeding, one LSTM call over all positions)
    beams = 3  # the beam search's layout: K rows per source share its memory (B, S, d)
    tokens = tgt.repeat_interleave(beams, 0)  # (B*K, T)
    memory, caches, project = model.encode(src), model.new_caches(), model.step_projection()
    steps = [project(model.decode_step(tokens[:, t:t + 1], memory, src != 0, caches, t)) for t in range(6)]
    incremental = torch.stack(steps, 1).view(3, beams, 6, -1)  # (B, K, T, V)
    for k in range(beams):
        torch.testing.assert_close(incremental[:, k], full, rtol=1e-5, atol=1e-6)


def test_padding_never_enters_the_encoder_or_the_logits() -> None:
    model = _model()
    src, tgt = _batch()
    memory, full = model.encode(src), model(src, tgt)
    for row, length in ((1, 5), (2, 3)):
        alone = src[row:row + 1, :length]
        # torch's own LSTM on the unpadded sentence, no packing: what the padded row must give
        expected, _ = model.encoder(model.token_embedding(alone))
        torch.testing.assert_close(memory[row:row + 1, :length], expected, rtol=1e-5, atol=1e-6)
        assert memory[row, length:].abs().max() == 0
        torch.testing.assert_close(model(alone, tgt[row:row + 1]), full[row:row + 1], rtol=1e-5, atol=1e-6)


def test_beam_one_is_greedy_and_greedy_is_the_argmax_of_the_full_recomputation() -> None:
    model = _model()
    src, _ = _batch()
    greedy = model.generate(src, beam_size=1, max_new_tokens=8)
    source = _Source(model, src, 8)
    beam_one = _beam_search(model.cfg, _Seq2SeqSteps(model, source, 8), source.limits, src.device, 1, 0.6, "gnmt", 0,
                            1)  # the beam code, K = 1
    assert [row[0].tokens for row in beam_one] == greedy
    for row, keep in enumerate(src != 0):  # by hand: recompute every prefix from scratch, take the argmax
        prefix = torch.tensor([[1]])
        for _ in range(8):
            token = int(model(src[row:row + 1, :int(keep.sum())], prefix)[0, -1].argmax())
            if token == 2:
                break
            prefix = torch.cat([prefix, torch.tensor([[token]])], 1)
        assert prefix[0, 1:].tolist() == greedy[row]


def test_a_beam_searched_sentence_is_the_same_alone_and_in_a_batch() -> None:
    model = _model(vocab_size=12)  # a small vocabulary: EOS comes early, beams finish at different steps
    src = torch.randint(3, 12, (4, 6))
    src[0, 4:], src[3, 2:] = 0, 0
    together = model.generate(src, beam_size=4, n_best=2, return_scores=True, max_new_tokens=10)
    for row in range(4):
        length = int((src[row] != 0).sum())
        alone = model.generate(src[row:row + 1, :length], beam_size=4, n_best=2, return_scores=True,
                               max_new_tokens=10)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in together[row]]
        assert [h.score for h in alone] == pytest.approx([h.score for h in together[row]], abs=1e-5)


def test_the_default_size_matches_the_small_transformer_and_the_lstm_formula() -> None:
    cfg = RNNConfig.preset("small")
    rnn = RecurrentSeq2Seq(cfg).num_parameters()
    transformer = aiayn.Transformer(aiayn.ModelConfig.preset("small")).num_parameters()
    assert abs(rnn - transformer) / transformer < 0.10  # 7,557,840 against 7,577,600
    shallow_rnn = RecurrentSeq2Seq(RNNConfig.preset("shallow")).num_parameters()
    shallow = aiayn.Transformer(aiayn.ModelConfig.preset("shallow")).num_parameters()
    assert abs(shallow_rnn - shallow) / shallow < 0.01  # 3,890,332 against 3,891,200
    # By hand, torch.nn.LSTM's documented weights: per layer and direction 4h(in + h) + 8h (two bias vectors)
    d, vocab, h = cfg.d_model, cfg.vocab_size, cfg.d_model // 2
    encoder = 2 * (4 * h * (d + h) + 8 * h) + 2 * (4 * h * (2 * h + h) + 8 * h)  # two bidirectional layers
    decoder = (4 * d * (2 * d + d) + 8 * d) + (4 * d * (d + d) + 8 * d)  # input feeding: the first takes 2d
    attention = d * d + 2 * d * d  # W_a and W_c
    bridge = h * 2 * d + 2 * d
    assert rnn == vocab * d + encoder + bridge + decoder + attention == 7_557_840


def _cfg(tmp_path: Path, out: str, **changes) -> TrainConfig:
    corpus = tmp_path / "corpus.tsv"
    if not corpus.exists():
        write_corpus(corpus, n=300)
    values = {"out": str(tmp_path / out), "data": str(corpus), "arch": "rnn", "preset": "tiny", "vocab_size": 60,
              "dev_size": 20, "test_size": 20, "batch_tokens": 300, "steps": 8, "warmup": 5, "peak_lr": 3e-3,
              "log_every": 1, "eval_every": 0, "save_every": 0, "final_test": False, "beam": 1, "seed": 3,
              "dropout": 0.1}
    return TrainConfig(**{**values, **changes})


def test_resume_gives_the_same_losses_step_for_step(tmp_path: Path) -> None:
    straight = train(_cfg(tmp_path, "straight"), log=lambda _: None)
    first = train(_cfg(tmp_path, "stopped", steps=4, save_every=4), log=lambda _: None)
    assert first.step == 4
    resumed = train(_cfg(tmp_path, "stopped", steps=8), resume=True, log=lambda _: None)
    assert resumed.step == 8
    for step in range(5, 9):
        assert resumed.losses[step] == straight.losses[step], step  # bit-identical: model, Adam, dropout, data


def test_transformer_only_settings_are_refused_for_the_rnn(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="n_heads shape"):
        _cfg(tmp_path, "x", n_heads=2)
    with pytest.raises(TrainingError, match="arch must be one of"):
        _cfg(tmp_path, "x", arch="gru")
    with pytest.raises(ValueError, match="RNNConfig.attention must be one of"):
        RNNConfig.preset("tiny", attention="additive")


def test_the_cli_trains_translates_and_refuses_to_export_the_rnn(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    corpus = write_corpus(tmp_path / "corpus.tsv", n=200)
    run = tmp_path / "run"
    assert main(["train", "--arch", "rnn", "--data", str(corpus), "--out", str(run), "--steps", "40", "--preset",
                 "tiny", "--vocab-size", "60", "--dev-size", "20", "--test-size", "20", "--batch-tokens", "300",
                 "--warmup", "5", "--peak-lr", "1e-2", "--eval-every", "0", "--save-every", "0", "--beam", "2",
                 "--log-every", "1", "--threads", "1"]) == 0
    losses = [r["loss"] for r in read_metrics(run) if "loss" in r]
    assert losses[-1] < 0.9 * losses[0]  # it learns (from ln 60 = 4.09 at the start)
    model = aiayn.load(run / "model")
    assert isinstance(model, RecurrentSeq2Seq) and model.cfg == RNNConfig.from_dict(model.cfg.to_dict())
    capsys.readouterr()
    assert main(["translate", str(run / "model"), "the king", "god of the land", "--beam", "3"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    with pytest.raises(ExportError, match="recurrent encoder-decoder .*no model of its kind"):
        export_model(run / "model", "hf", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    capsys.readouterr()
    assert main(["export", str(run / "model"), "--to", "ctranslate2", "--out", str(tmp_path / "ct2")]) == 1
    assert "no model of its kind" in capsys.readouterr().err


def test_an_lstm_layer_is_torch_s_own() -> None:
    model = _model()
    assert isinstance(model.encoder, nn.LSTM) and model.encoder.bidirectional
    assert isinstance(model.decoder, nn.LSTM) and model.decoder.input_size == 2 * model.cfg.d_model
