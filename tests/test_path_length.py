"""benchmarks/path_length.py: attention by distance and gradient influence, against hand loops and autograd."""

import importlib.util
from pathlib import Path

import pytest
import torch

from aiayn.model.config import ModelConfig, RNNConfig
from aiayn.model.models import Transformer
from aiayn.model.recurrent import RecurrentSeq2Seq

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    """The benchmark module (it imports its neighbours common.py and teacher_forcing.py)."""
    pytest.importorskip("matplotlib")
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("bench_path_length", BENCHMARKS / "path_length.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _transformer() -> Transformer:
    torch.manual_seed(0)
    return Transformer(ModelConfig.preset("tiny", dropout=0.0)).eval()


def _sources() -> list[list[int]]:
    torch.manual_seed(1)
    return [torch.randint(3, 64, (n,)).tolist() + [2] for n in (6, 11)]


def test_uniform_attention_gives_the_closed_form(bench):
    """With W^Q = 0 every score is equal: each key gets 1/n, and the mass beyond r is #{j: |i-j| > r} / n."""
    model = _transformer()
    inner = model.encoder.layers[0].self_attn.inner
    with torch.no_grad():
        for layer in model.encoder.layers:
            layer.self_attn.in_proj.weight[:inner] = 0
            layer.self_attn.in_proj.bias[:inner] = 0
    sources = _sources()  # lengths 7 and 12
    got = bench.attention_by_distance(model, sources, 15, radii=(2, 5))
    for d in range(16):
        pairs = [(n, sum(1 for i in range(n) for j in range(n) if abs(i - j) == d)) for n in (7, 12)]
        total = sum(c for _, c in pairs)
        assert got["pairs"][d] == total
        expected = sum(c / n for n, c in pairs) / total if total else 0.0
        assert torch.allclose(got["weight"][:, d], torch.tensor(expected, dtype=torch.float64)), d
    for r, radius in enumerate((2, 5)):
        far = sum(sum(1 for j in range(n) if abs(i - j) > radius) / n for n in (7, 12) for i in range(n)) / 19
        assert got["beyond"][:, r].tolist() == pytest.approx([far] * 2)
        assert float(got["uniform_beyond"][r]) == pytest.approx(far)


def test_attention_by_distance_matches_a_loop_over_forward_weights(bench):
    """A trained-like (random) model: per-pair means from forward(return_attention=True), by plain loops."""
    model = _transformer()
    sources = _sources()
    got = bench.attention_by_distance(model, sources, 8, radii=(3,))
    sums, counts, beyond, queries = {}, {}, [0.0, 0.0], 0
    for ids in sources:
        src = torch.tensor([ids])
        with torch.no_grad():
            layers = model(src, torch.ones(1, 1, dtype=torch.long), return_attention=True).attentions["encoder_self"]
        n = len(ids)
        for layer, w in enumerate(layers):
            a = w[0].double().mean(0)
            for i in range(n):
                for j in range(n):
                    d = abs(i - j)
                    sums[layer, d] = sums.get((layer, d), 0.0) + float(a[i, j])
                    counts[layer, d] = counts.get((layer, d), 0) + 1
                    beyond[layer] += float(a[i, j]) if d > 3 else 0.0
        queries += n
    for (layer, d), total in sums.items():
        if d <= 8:
            assert float(got["weight"][layer, d]) == pytest.approx(total / counts[layer, d], rel=1e-9)
    assert got["beyond"][:, 0].tolist() == pytest.approx([b / queries for b in beyond], rel=1e-9)


@pytest.mark.parametrize("arch", ["transformer", "rnn"])
def test_exact_influence_is_the_jacobian_norm(bench, arch):
    """probes=0 gives ||dh_i/de_j||_F exactly: against torch's full Jacobian of the encoder stack on e."""
    if arch == "transformer":
        model = _transformer()
        embed = lambda src: model.src_positions(model.token_embedding(src))  # noqa: E731
        stack = lambda e: model.encoder(e)[0]  # noqa: E731
    else:
        torch.manual_seed(0)
        model = RecurrentSeq2Seq(RNNConfig.preset("tiny", dropout=0.0, n_encoder_layers=2)).eval()
        embed = model.token_embedding
        stack = lambda e: model.encoder(e)[0]  # noqa: E731
    ids = _sources()[0]
    e = embed(torch.tensor([ids])).detach()  # (1, n, d)
    jacobian = torch.autograd.functional.jacobian(stack, e)[0, :, :, 0]  # (n, d, n, d)
    expected = jacobian.pow(2).sum((1, 3)).sqrt()  # (n_i, n_j)
    got = bench.influence_matrix(model, ids, probes=0)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-6)
    # many Gaussian probes estimate the same norms
    estimate = bench.influence_matrix(model, ids, probes=400, generator=torch.Generator().manual_seed(0))
    assert (estimate / expected).mean().item() == pytest.approx(1.0, abs=0.05)
    if arch == "rnn":  # a bidirectional LSTM: every input reaches every output, ever weaker with distance
        assert (expected > 0).all()
        assert expected[0, 1] > expected[0, len(ids) - 1]
