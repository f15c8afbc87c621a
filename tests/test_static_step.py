"""generate(compile=...) on the fixed-shape step of inference.static_step against the eager search.

The fast tests trace the step with torch.compile's "eager" backend (the graph is captured whole, as
fullgraph=True demands, but not compiled) or run it uncompiled; one slow test compiles with inductor.
"""

import copy
from pathlib import Path

import pytest
import torch

from aiayn.cli import main
from aiayn.data.tokenizer import train_bpe
from aiayn.inference import decoding, static_step
from aiayn.inference.evaluation import translate
from aiayn.inference.quantize import Int8Linear, Int8WeightOnlyLinear, for_decoding
from aiayn.io.loading import load_with_tokenizer
from aiayn.model.config import ModelConfig
from aiayn.model.models import Transformer

from .helpers_translation import EN, ES

CONFIGS = {
    "post-LN tied sinusoids": dict(norm="post"),
    "pre-LN tied sinusoids": dict(norm="pre"),
    "pre-LN untied learned": dict(norm="pre", tie_embeddings=False, positions="learned"),
    "post-LN untied learned": dict(norm="post", tie_embeddings=False, positions="learned"),
    "rotary": dict(norm="pre", positions="rotary"),
}


def _model(seed: int = 0, **overrides) -> Transformer:
    """A tiny random translator in eval mode."""
    torch.manual_seed(seed)
    return Transformer(ModelConfig.preset("tiny", dropout=0.0, **overrides)).eval()


def _source(model: Transformer, rows: int = 3, length: int = 9) -> torch.Tensor:
    """Random ids (rows, length) with rows of different lengths (padding at the end)."""
    src = torch.randint(3, model.cfg.vocab_size, (rows, length), generator=torch.Generator().manual_seed(1))
    src[1, 5:] = model.cfg.pad_id
    if rows > 3:
        src[3, 2:] = model.cfg.pad_id
    return src


@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_static_step_gives_the_eager_search_tokens(name: str, beam: int) -> None:
    """fp32 greedy and beam ids with compile (the graph traced whole) equal compile=False's, and so do their
    log-probabilities (to rounding): a random model often repeats one token, the scores see every step."""
    model = _model(**CONFIGS[name])
    src = _source(model)
    expected = model.generate(src, beam_size=beam, max_new_tokens=12, return_scores=True)
    got = model.generate(src, beam_size=beam, max_new_tokens=12, return_scores=True, compile="eager")
    assert [h.tokens for h in got] == [h.tokens for h in expected]
    torch.testing.assert_close([h.log_prob for h in got], [h.log_prob for h in expected], rtol=1e-5, atol=1e-4)


def _eos_prone(bias: float) -> Transformer:
    """A model whose EOS logit is raised by `bias` (final_logits_bias), so rows end at different steps."""
    model = _model(norm="pre", final_logits_bias=True)
    model.final_logits_bias[model.cfg.eos_id] = bias
    return model


@pytest.mark.parametrize(("beam", "bias"), [(1, 3.0), (3, 1.0)])
def test_rows_of_different_lengths_that_end_early(beam: int, bias: float) -> None:
    """Padded sources of different lengths, rows ending at different steps (and at the limit): eager's ids.

    Finished rows stay in the fixed-shape batch and keep being computed; their outputs must not leak.
    """
    model = _eos_prone(bias)
    src = _source(model, rows=5, length=11)
    expected = model.generate(src, beam_size=beam, max_new_tokens=20)
    lengths = {len(row) for row in expected}
    assert len(lengths) > 1 and min(lengths) < 20  # rows really end at different steps, before the limit
    assert model.generate(src, beam_size=beam, max_new_tokens=20, compile="eager") == expected


def test_sampling_draws_as_the_eager_search() -> None:
    """With a seed, sampling on the static step draws the eager search's tokens (only live rows draw)."""
    model = _eos_prone(3.0)
    src = _source(model, rows=5, length=11)
    expected = model.generate(src, beam_size=1, do_sample=True, seed=3, max_new_tokens=20)
    assert len({len(row) for row in expected}) > 1
    assert model.generate(src, beam_size=1, do_sample=True, seed=3, max_new_tokens=20, compile="eager") == expected


@pytest.mark.parametrize("beam", [1, 4])
def test_bf16_equals_the_eager_bf16_search(beam: int) -> None:
    """dtype="bf16" with compile: the ids of the eager bf16 search (the same bf16 copy's weights)."""
    model = _model(norm="pre")
    src = _source(model)
    expected = model.generate(src, beam_size=beam, max_new_tokens=12, dtype="bf16")
    assert model.generate(src, beam_size=beam, max_new_tokens=12, dtype="bf16", compile="eager") == expected


@torch.inference_mode()
def test_step_logits_match_decode_step() -> None:
    """Teacher-forced steps: the static step's logits equal Transformer.decode_step's on the growing cache."""
    model = _model(norm="pre")
    cfg = model.cfg
    src = _source(model, rows=2, length=7)
    keep = src != cfg.pad_id
    tgt = torch.randint(3, cfg.vocab_size, (2, 6), generator=torch.Generator().manual_seed(3))
    search = static_step.StaticSearch(model, src, keep, beams=1, capacity=10, backend=None)
    assert search.kv.shape[4] == static_step.CAPACITY_MULTIPLE and search.cross.shape[4] == 32  # rounded up
    memory, caches, project = model.encode(src, keep), model.new_caches(10), model.step_projection()
    for step in range(tgt.shape[1]):
        token = tgt[:, step:step + 1]
        expected = project(model.decode_step(token, memory, keep, caches, step))  # (2, V)
        torch.testing.assert_close(search.logits(token, step), expected, rtol=1e-5, atol=1e-5)


def test_steps_are_kept_per_shape_and_not_copied() -> None:
    """A second search of the same rounded shapes reuses the kept step; a copy of the model keeps none."""
    model = _model(norm="pre")
    src = _source(model)
    model.generate(src, beam_size=1, max_new_tokens=12, compile="eager")
    steps = dict(static_step._kept(model).steps)
    assert len(steps) == 1
    (key, step), = steps.items()
    assert key[1:] == (4, 4, 32, 64, "eager")  # rows, sources (3 -> 4), source length, capacity
    model.generate(src[:, :7], beam_size=1, max_new_tokens=20, compile="eager")  # same rounded shapes
    assert static_step._kept(model).steps == steps and static_step._kept(model).steps[key] is step
    assert not static_step._kept(copy.deepcopy(model)).steps
    static_step.forget(model)
    assert not static_step._kept(model).steps


@pytest.mark.parametrize("beam", [1, 4])
def test_int8_runs_weight_only_and_equals_its_eager_search(beam: int) -> None:
    """dtype="int8" with compile: the ids of the eager search on the same weight-only int8 copy, whose every
    linear layer (and the output projection) holds int8 weights."""
    model = _model(norm="pre")
    src = _source(model)
    copy_ = static_step.decoding_copy(model, "int8")
    assert not any(isinstance(m, (torch.nn.Linear, Int8Linear)) for m in copy_.modules())
    assert sum(isinstance(m, Int8WeightOnlyLinear) for m in copy_.modules()) > 0
    expected = copy_.generate(src, beam_size=beam, max_new_tokens=12)
    assert model.generate(src, beam_size=beam, max_new_tokens=12, dtype="int8", compile="eager") == expected
    assert static_step.decoding_copy(model, "int8") is copy_  # made once, kept with its steps


def test_refusals_are_one_clear_message() -> None:
    """An fbgemm int8 copy and a bad compile value are refused before any work."""
    model = _model(norm="pre")
    src = _source(model)
    refused = r"compile=True cannot run this int8 copy: .* give the fp32 model and ask for int8 \(dtype='int8'"
    with pytest.raises(ValueError, match=refused):
        for_decoding(model, "int8").generate(src, beam_size=1, compile=True)
    with pytest.raises(ValueError, match="compile must be True, False or a torch.compile backend"):
        model.generate(src, compile=3)
    assert not static_step._kept(model).steps


@pytest.mark.slow
def test_inductor_compiled_step_gives_the_eager_tokens() -> None:
    """Really compiled (inductor, freezing): greedy and beam ids equal eager's; the compile is timed."""
    model = _eos_prone(1.0)
    src = _source(model)
    for beam in (1, 3):
        expected = model.generate(src, beam_size=beam, max_new_tokens=12)
        assert model.generate(src, beam_size=beam, max_new_tokens=12, compile=True) == expected
    assert all(step.compile_seconds and step.compile_seconds > 0 for step in static_step.kept_steps(model))
    # freezing took effect: the weights are constants of the compiled code, so changing them is not seen
    compiled = model.generate(src, beam_size=1, max_new_tokens=12, compile=True)
    with torch.no_grad():
        model.decoder.layers[-1].ffn.linear2.weight.mul_(-3.0)
    assert model.generate(src, beam_size=1, max_new_tokens=12) != compiled
    assert model.generate(src, beam_size=1, max_new_tokens=12, compile=True) == compiled
    assert len(static_step.kept_steps(model)) == 2  # greedy and beam shapes; nothing recompiled


@pytest.mark.slow
def test_inductor_compiles_weight_only_int8() -> None:
    """dtype="int8" really compiled (inductor lowers torch._weight_int8pack_mm): the eager weight-only ids."""
    model = _eos_prone(1.0)
    src = _source(model)
    expected = static_step.decoding_copy(model, "int8").generate(src, beam_size=1, max_new_tokens=12)
    assert model.generate(src, beam_size=1, max_new_tokens=12, dtype="int8", compile=True) == expected


@pytest.mark.slow
def test_ahead_of_time_step_gives_the_eager_tokens() -> None:
    """compile="aoti" (torch.export + AOTInductor, called without dynamo): greedy ids equal eager's, in fp32
    and for a decoding copy made inside the search (dtype="int8": its weights are inference tensors)."""
    model = _eos_prone(1.0)
    src = _source(model)
    assert model.generate(src, beam_size=1, max_new_tokens=12, compile="aoti") == \
        model.generate(src, beam_size=1, max_new_tokens=12)
    expected = static_step.decoding_copy(model, "int8").generate(src, beam_size=1, max_new_tokens=12)
    assert model.generate(src, beam_size=1, max_new_tokens=12, dtype="int8", compile="aoti") == expected
    assert static_step.kept_steps(model) and all(step.compile_seconds for step in static_step.kept_steps(model))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny translator with its own tokenizer (random weights: only equality of outputs matters)."""
    texts = [" ".join(EN[i:] + ES[:i]) for i in range(len(EN))] * 4
    tok = train_bpe(texts, vocab_size=90)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("static") / "model"
    Transformer(ModelConfig.preset("tiny", vocab_size=tok.get_vocab_size(), max_positions=100)).save(folder, tok)
    return folder


def test_cli_compile_translates_as_without(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """`aiayn translate --compile` (the graph traced, not compiled, here) prints what the plain command does."""
    path = tmp_path / "in.txt"
    path.write_text("\n".join(" ".join(EN[i:i + 3 + i % 4]) for i in range(0, 12, 2)) + "\n")
    plain = [main(["translate", str(model_dir), "--input", str(path), "--beam", "2"]), capsys.readouterr().out]
    monkeypatch.setattr(decoding, "compile_backend", lambda value: "eager" if value else None)
    compiled = [main(["translate", str(model_dir), "--input", str(path), "--beam", "2", "--compile"]),
                capsys.readouterr().out]
    assert plain[0] == compiled[0] == 0
    assert compiled[1] == plain[1] and len(plain[1].splitlines()) == 6


def test_cli_int8_with_compile_runs_weight_only(model_dir: Path, capsys: pytest.CaptureFixture,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """--precision int8 --compile (traced, not compiled, here) translates as the weight-only int8 copy does."""
    text = " ".join(EN[:5])
    model, tok = load_with_tokenizer(model_dir, torch.device("cpu"))
    expected = translate(static_step.decoding_copy(model, "int8"), tok, [text], beam_size=2)
    monkeypatch.setattr(decoding, "compile_backend", lambda value: "eager" if value else None)
    code = main(["translate", str(model_dir), text, "--precision", "int8", "--compile", "--beam", "2"])
    out, err = capsys.readouterr()
    assert code == 0 and "Traceback" not in err
    assert out.splitlines() == expected
