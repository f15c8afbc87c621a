"""Decoding in bf16 and int8 (inference/quantize.py): logits close to fp32, the KV cache exact in each
precision, int8 made on load, and `aiayn translate --precision` / `--input`."""

from pathlib import Path

import pytest
import torch
from torch import nn

import aiayn
from aiayn.cli import main
from aiayn.inference import quantize
from aiayn.inference.quantize import Int8Linear, PrecisionError, for_decoding, resolve_precision

from .helpers_translation import write_corpus

CPU = torch.device("cpu")
# Tolerances, as a fraction of the fp32 logits' standard deviation (measured: bf16 0.028, int8 0.060 on this model)
TOLERANCE = {"bf16": 0.06, "int8": 0.12}


def _model() -> aiayn.Transformer:
    """A pre-LN translator with random weights, big enough for quantization error to show (d_model 64)."""
    cfg = aiayn.ModelConfig.preset("tiny", dropout=0.0, norm="pre", d_model=64, d_ff=256, vocab_size=200)
    return aiayn.Transformer(cfg).eval()


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Sources (3, 12), the last row padded, and decoder inputs (3, 10) starting with BOS."""
    src = torch.randint(3, 200, (3, 12))
    src[2, 8:] = 0
    tgt = torch.cat([torch.ones(3, 1, dtype=torch.long), torch.randint(3, 200, (3, 9))], 1)
    return src, tgt


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_logits_close_to_fp32(precision: str) -> None:
    model = _model()
    src, tgt = _batch()
    with torch.no_grad():
        reference = model(src, tgt)
        out = for_decoding(model, precision)(src, tgt).float()
    error = float((out - reference).abs().max()) / float(reference.std())
    assert 0 < error < TOLERANCE[precision]  # > 0: the copy really runs in the reduced precision
    assert float((out.argmax(-1) == reference.argmax(-1)).float().mean()) > 0.9


def test_int8_copy_runs_every_linear_layer_in_int8_and_leaves_the_original() -> None:
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = for_decoding(model, "int8")
    assert not any(isinstance(m, nn.Linear) for m in q.modules())
    cfg = model.cfg  # encoder layers: in_proj, out_proj, 2 FFN; decoder: + cross in_proj, out_proj; the output
    expected = 4 * cfg.n_encoder_layers + 6 * cfg.n_decoder_layers + 1
    assert sum(isinstance(m, Int8Linear) for m in q.modules()) == expected
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert next(model.parameters()).dtype == torch.float32 and type(model) is aiayn.Transformer


def test_int8_linear_matches_the_formula_with_per_row_scales() -> None:
    """y = x W^T + b within the error of 8-bit rows of W (scale max|row| / 127) and 8-bit x."""
    weight, bias, x = torch.randn(48, 32), torch.randn(48), torch.randn(5, 32)
    scales = weight.abs().amax(1, keepdim=True) / 127
    w_int8 = (weight / scales).round() * scales  # the weight fbgemm multiplies with
    expected = x @ w_int8.T + bias
    x_step = float(x.max() - x.min()) / 255  # one activation quantization step (per tensor, 8 bits)
    bound = x_step / 2 * float(w_int8.abs().sum(1).max()) + 1e-4
    got = Int8Linear(weight, bias)(x)
    assert float((got - expected).abs().max()) <= bound
    assert float((got - (x @ weight.T + bias)).abs().max()) > 0  # it is not the fp32 product


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_cached_steps_equal_the_full_decoder_in_each_precision(precision: str) -> None:
    model = for_decoding(_model(), precision)
    src, tgt = _batch()
    with torch.no_grad():
        full = model(src, tgt).float()  # (B, T, V), no cache
        memory = model.encode(src)
        caches, project = model.new_caches(tgt.shape[1]), model.step_projection()
        steps = torch.stack([project(model.decode_step(tgt[:, t:t + 1], memory, src != 0, caches, t)).float()
                             for t in range(tgt.shape[1])], 1)
    # fp32: equal up to the order of sums. bf16: torch picks other kernels for other shapes, so one rounding
    # apart. int8: the activations' 8-bit scale is one per call (per tensor, fbgemm), so a step (B, 1, d) and
    # the full (B, T, d) quantize with different scales: equal within the int8 tolerance, not exactly.
    error = float((steps - full).abs().max()) / float(full.std())
    assert error <= {"fp32": 1e-5, "bf16": TOLERANCE["bf16"], "int8": TOLERANCE["int8"]}[precision]


@pytest.mark.parametrize("precision", ["bf16", "int8", torch.bfloat16, torch.qint8])
def test_generate_dtype_option_searches_the_converted_copy(precision: object) -> None:
    model = _model()
    src, _ = _batch()
    name = {torch.bfloat16: "bf16", torch.qint8: "int8"}.get(precision, precision)
    expected = for_decoding(model, name).generate(src, beam_size=2, max_new_tokens=8)
    assert model.generate(src, beam_size=2, max_new_tokens=8, precision=precision) == expected
    assert next(model.parameters()).dtype == torch.float32


def test_int8_is_made_on_load_and_a_quantized_copy_is_not_saved(tmp_path: Path) -> None:
    model = _model()
    model.save(tmp_path / "m")
    src, tgt = _batch()
    with torch.no_grad():
        direct = for_decoding(model, "int8")(src, tgt)
        loaded = for_decoding(aiayn.load(tmp_path / "m"), "int8")(src, tgt)
    assert torch.equal(direct, loaded)  # the fp32 file quantizes to the same int8 model
    with pytest.raises(PrecisionError, match="save the fp32 model"):
        for_decoding(model, "int8").save(tmp_path / "q")
    assert not (tmp_path / "q").exists()


def test_auto_never_assumes_bf16_is_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quantize, "cpu_flags", lambda: frozenset({"avx2"}))
    monkeypatch.setattr(quantize, "bf16_is_fast", lambda device: False)
    assert resolve_precision("auto", CPU) == "fp32"  # an AVX2-only CPU: emulated bf16 is slow, no VNNI
    monkeypatch.setattr(quantize, "bf16_is_fast", lambda device: True)
    assert resolve_precision("auto", CPU) == "bf16"
    monkeypatch.setattr(quantize, "cpu_flags", lambda: frozenset({"avx512_vnni"}))
    assert resolve_precision("auto", CPU) == "int8"
    assert resolve_precision(torch.float32, CPU) == "fp32"
    with pytest.raises(PrecisionError, match="precision must be one of"):
        resolve_precision("fp16", CPU)


def test_int8_for_a_decoder_lm_is_refused() -> None:
    lm = aiayn.DecoderLM(aiayn.ModelConfig.preset("tiny", dropout=0.0)).eval()
    with pytest.raises(PrecisionError, match="int8 decoding is for translators"):
        for_decoding(lm, "int8")
    assert lm.generate([[5, 6]], max_new_tokens=4, precision="bf16") == \
        for_decoding(lm, "bf16").generate([[5, 6]], max_new_tokens=4)


# ------------------------------------------------------------------------------------------------- the CLI

@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny translator trained a few steps (its outputs only need to be deterministic)."""
    tmp = tmp_path_factory.mktemp("quantize_cli")
    corpus = write_corpus(tmp / "corpus.tsv", n=200)
    assert main(["train", "--data", str(corpus), "--out", str(tmp / "run"), "--steps", "6", "--preset", "tiny",
                 "--vocab-size", "60", "--dev-size", "20", "--test-size", "20", "--batch-tokens", "300",
                 "--eval-every", "0", "--save-every", "0", "--beam", "1", "--threads", "1"]) == 0
    return tmp / "run" / "model"


def test_translate_input_keeps_order_and_reports_speed(trained: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    sentences = ["the king and the son of the man of the land", "water", "god of the land", "the light of the city",
                 "", "man"]  # lengths out of order, and a blank line
    alone = []
    for sentence in sentences:
        assert main(["translate", str(trained), sentence, "--greedy"]) == 0
        alone.append(capsys.readouterr().out.rstrip("\n"))
    path = tmp_path / "in.txt"
    path.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    assert main(["translate", str(trained), "--input", str(path), "--greedy"]) == 0  # sorted, batched, put back
    captured = capsys.readouterr()
    assert captured.out.split("\n")[:-1] == alone
    assert "translated 6 sentences in" in captured.err and "sentences/s (fp32, " in captured.err
    # int8's activation scale is per batch, so its lines may differ from fp32's; there are as many, in order
    assert main(["translate", str(trained), "--input", str(path), "--greedy", "--precision", "int8"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.split("\n")[:-1]) == 6 and captured.out.split("\n")[4] == ""
    assert "sentences/s (int8, " in captured.err


def test_precision_int8_where_it_cannot_run_is_one_line(trained: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(quantize, "quantized_engines", lambda: {"qnnpack"})  # an ARM build: no fbgemm kernels
    assert main(["translate", str(trained), "the king", "--precision", "int8"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("aiayn translate: error: --precision int8 needs torch's x86 int8 kernels (fbgemm), which "
                            "this PyTorch build or CPU lacks: use --precision bf16 or fp32\n")
