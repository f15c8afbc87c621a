"""benchmarks/compile_decode.py: its static-shape greedy step (uncompiled) against aiayn's eager generate()."""

import importlib.util
from pathlib import Path

import torch

from aiayn.model.config import ModelConfig
from aiayn.model.models import Transformer

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compile_decode.py"


def _script():
    """The benchmark module, loaded from its file."""
    spec = importlib.util.spec_from_file_location("bench_compile_decode", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_static_step_matches_eager_generate_with_padding():
    """Full-length cache under a position mask, padded sources: the same greedy ids as generate(min_length=...)."""
    bench = _script()
    torch.manual_seed(0)
    model = Transformer(ModelConfig.preset("tiny", dropout=0.0, norm="pre")).eval()
    src = torch.randint(3, model.cfg.vocab_size, (3, 9), generator=torch.Generator().manual_seed(1))
    src[1, 6:] = model.cfg.pad_id  # a padded row: cross-attention must hide its padding
    new = 12
    expected = model.generate(src, beam_size=1, max_new_tokens=new, min_length=new)
    got = bench.StaticStep(model, new, compile_mode=None).generate(src, new)
    assert got == expected
    assert all(len(row) == new for row in got)


@torch.inference_mode()
def test_static_step_logits_match_decode_step():
    """Teacher-forced steps: the static step's logits equal Transformer.decode_step's on the growing cache."""
    bench = _script()
    torch.manual_seed(0)
    model = Transformer(ModelConfig.preset("tiny", dropout=0.0, norm="pre")).eval()
    cfg = model.cfg
    src = torch.randint(3, cfg.vocab_size, (2, 7), generator=torch.Generator().manual_seed(2))
    src[0, 4:] = cfg.pad_id
    tgt = torch.randint(3, cfg.vocab_size, (2, 6), generator=torch.Generator().manual_seed(3))
    static = bench.StaticStep(model, 10, compile_mode=None)
    kv, cross, keep = static.start(src)
    memory, caches, project = model.encode(src, src != cfg.pad_id), model.new_caches(10), model.step_projection()
    for step in range(tgt.shape[1]):
        token = tgt[:, step:step + 1]
        expected = project(model.decode_step(token, memory, src != cfg.pad_id, caches, step))  # (2, V)
        got = static.logits(token, torch.tensor([step]), kv, cross, keep)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
