"""Greedy search drafted by another model and checked by the model (generate(draft=...),
inference/speculative.py): the output is the model's own greedy search whatever the draft proposes."""

from pathlib import Path

import pytest
import torch

import aiayn
from aiayn.cli import main
from aiayn.data.tokenizer import train_bpe
from aiayn.inference.decoding import _EagerSteps, _Source, _StepThreads
from aiayn.inference.speculative import drafted_greedy

from .helpers_translation import EN, ES

VOCAB = 40


def _model(seed: int, eos_bias: float = 0.0) -> aiayn.Transformer:
    """A tiny translator with random weights; eos_bias raises EOS's logit so that rows end at different steps."""
    torch.manual_seed(seed)
    cfg = aiayn.ModelConfig.preset("tiny", dropout=0.0, norm="pre", vocab_size=VOCAB, final_logits_bias=True)
    model = aiayn.Transformer(cfg).eval()
    with torch.no_grad():
        model.final_logits_bias[cfg.eos_id] = eos_bias
    return model


def _sources() -> torch.Tensor:
    """Five sources of different lengths (padded at the end), so rows have different length limits."""
    torch.manual_seed(7)
    src = torch.randint(3, VOCAB, (5, 9))
    for row, length in enumerate((9, 4, 7, 2, 6)):
        src[row, length:] = 0
    return src


def _eos_bias_ending_some_rows(model_seed: int) -> float:
    """An EOS bias at which the model's plain greedy search ends some rows early and runs others to the limit."""
    for bias in (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0):
        lengths = [len(row) for row in _model(model_seed, bias).generate(_sources(), beam_size=1)]
        limits = [n + 50 for n in (9, 4, 7, 2, 6)]
        if any(n < limit for n, limit in zip(lengths, limits)) and len(set(lengths)) > 2:
            return bias
    raise AssertionError("no EOS bias ends some rows early")


def test_an_unrelated_draft_gives_the_models_greedy_tokens_and_scores() -> None:
    """A draft with other weights proposes tokens the model rarely keeps: the output is still the model's greedy
    search, row by row (rows ending at EOS and at their limits at different steps), with its log-probabilities."""
    bias = _eos_bias_ending_some_rows(0)
    model, other = _model(0, bias), _model(1, bias)
    src = _sources()
    plain = model.generate(src, beam_size=1, return_scores=True)
    for draft_tokens in (1, 3, 8):
        drafted = model.generate(src, beam_size=1, return_scores=True, draft=other, draft_tokens=draft_tokens)
        assert [h.tokens for h in drafted] == [h.tokens for h in plain]
        assert [h.log_prob for h in drafted] == pytest.approx([h.log_prob for h in plain], abs=1e-4)
    assert model.generate(src, beam_size=1, min_length=20, draft=other) == \
        model.generate(src, beam_size=1, min_length=20)
    assert model.generate(src, beam_size=1, max_new_tokens=5, draft=other) == \
        model.generate(src, beam_size=1, max_new_tokens=5)
    assert model.generate(src, beam_size=1, max_new_tokens=0, draft=other) == [[]] * 5


def test_rounds_follow_how_much_of_the_draft_is_kept() -> None:
    """Drafted by itself the model keeps every drafted token: ceil(n / k) rounds for n tokens; drafted by an
    unrelated model it keeps fewer a round, so it runs more rounds, and still gives its own tokens."""
    model, other = _model(0), _model(1)
    src = _sources()[:1]
    source = _Source(model, src, 24)

    def rounds(draft: aiayn.Transformer, k: int) -> tuple[list[int], int]:
        threads = _StepThreads(model, 1)
        try:
            tokens, _, count = drafted_greedy(_EagerSteps(model, source, 24, every_position=True),
                                              _EagerSteps(draft, source, 24), source, 0, k, threads)
        finally:
            threads.restore()
        return tokens[0].tolist(), count

    plain = model.generate(src, beam_size=1, max_new_tokens=24)[0]
    assert len(plain) == 24  # no EOS in 24 steps (without the bias EOS is as likely as any token)
    assert rounds(model, 5) == (plain, 5)  # 5 + 5 + 5 + 5 + 4
    tokens, count = rounds(other, 5)
    assert tokens == plain and 5 < count <= 24  # at least one token a round


def test_an_int8_draft_gives_the_fp32_greedy_tokens() -> None:
    """The use it is for: draft="int8" (fbgemm's kernels) searches as fp32 does."""
    torch.manual_seed(3)
    cfg = aiayn.ModelConfig.preset("tiny", dropout=0.0, norm="pre", d_model=64, d_ff=256, vocab_size=200)
    model = aiayn.Transformer(cfg).eval()
    src = torch.randint(3, 200, (4, 12))
    expected = model.generate(src, beam_size=1, max_new_tokens=30)
    assert model.generate(src, beam_size=1, max_new_tokens=30, draft="int8") == expected
    assert model.generate(src, beam_size=1, max_new_tokens=30, draft=aiayn.for_decoding(model, "int8")) == expected


def test_a_compiled_draft_gives_the_models_greedy_tokens() -> None:
    """With compile the draft runs on the fixed-shape step (traced by the "eager" backend here, so the test
    compiles nothing; its caches are rolled back by position) and the model still decides every token."""
    bias = _eos_bias_ending_some_rows(0)
    model, other = _model(0, bias), _model(1, bias)
    src = _sources()
    expected = model.generate(src, beam_size=1)
    assert model.generate(src, beam_size=1, draft=other, compile="eager") == expected
    assert model.generate(src, beam_size=1, draft="bf16", compile="eager", draft_tokens=3) == expected


def test_every_position_projection_is_the_models_logits() -> None:
    """step_projection(every_position=True) gives output_logits at every position (fp32 table and int8 copy)."""
    model = _model(0, 1.0)
    hidden = torch.randn(3, 5, model.cfg.d_model)
    with torch.no_grad():
        torch.testing.assert_close(model.step_projection(every_position=True)(hidden), model.output_logits(hidden))
        torch.testing.assert_close(model.step_projection()(hidden), model.output_logits(hidden)[:, -1])
        int8 = aiayn.for_decoding(model, "int8")
        torch.testing.assert_close(int8.step_projection(every_position=True)(hidden), int8.output_logits(hidden))


def test_impossible_drafts_are_refused_before_any_work() -> None:
    """Beam search, sampling, a bad draft length, a length without a draft, another vocabulary."""
    model = _model(0)
    src = _sources()
    cases = [({"beam_size": 4, "draft": "int8"}, "draft= drafts greedy search"),
             ({"beam_size": 1, "draft": "int8", "do_sample": True}, "draft= drafts greedy search"),
             ({"beam_size": 1, "draft": "int8", "draft_tokens": 0}, "draft_tokens must be a positive integer"),
             ({"beam_size": 1, "draft_tokens": 4}, "give draft= too"),
             ({"beam_size": 1, "draft": "fp8"}, "precision must be one of")]
    for options, message in cases:
        with pytest.raises(ValueError, match=message):
            model.generate(src, **options)
    rnn = aiayn.RecurrentSeq2Seq(aiayn.RNNConfig.preset("tiny", dropout=0.0, vocab_size=VOCAB)).eval()
    with pytest.raises(ValueError, match="draft= is for Transformer translators; this is a RecurrentSeq2Seq"):
        rnn.generate(src, beam_size=1, draft="int8")
    wider = aiayn.Transformer(aiayn.ModelConfig.preset("tiny", dropout=0.0, vocab_size=VOCAB + 1)).eval()
    with pytest.raises(ValueError, match="the draft model's vocab_size is 41, the model's 40"):
        model.generate(src, beam_size=1, draft=wider)


def test_cli_draft(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`translate --greedy --draft int8` prints what `--greedy` prints; impossible combinations are one line."""
    tok = train_bpe([" ".join(EN[i:] + ES[:i]) for i in range(len(EN))] * 4, vocab_size=90)
    torch.manual_seed(0)
    cfg = aiayn.ModelConfig.preset("tiny", vocab_size=tok.get_vocab_size(), max_positions=100, d_model=64, d_ff=256)
    aiayn.Transformer(cfg).save(tmp_path / "model", tok)
    texts = [" ".join(EN[:4]), " ".join(EN[2:9])]
    folder = str(tmp_path / "model")
    assert main(["translate", folder, *texts, "--greedy"]) == 0
    plain = capsys.readouterr().out
    assert main(["translate", folder, *texts, "--greedy", "--draft", "int8"]) == 0
    assert capsys.readouterr().out == plain
    for flags, message in ((["--draft", "int8"], "--draft drafts greedy search: add --greedy"),
                           (["--greedy", "--draft", "int8", "--precision", "int8"],
                            "--draft int8 drafts in the precision the search checks (int8)"),
                           (["--greedy", "--draft", "int8", "--workers", "2"], "leave out --workers")):
        assert main(["translate", folder, *texts, *flags]) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
