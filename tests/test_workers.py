"""translate(workers=N) / `--workers N` (inference/workers.py): forked processes search the same batches, so
the output is one process's on one thread, in input order; impossible settings are one clear message."""

from pathlib import Path

import pytest
import torch

from aiayn.cli import main
from aiayn.data.tokenizer import decode, encode_source, train_bpe
from aiayn.inference.evaluation import translate, translate_scored
from aiayn.inference.workers import WorkerPool, workers_problem
from aiayn.io.loading import load_with_tokenizer
from aiayn.model.config import ModelConfig
from aiayn.model.models import Transformer

from .helpers_translation import EN, ES

# lengths out of order and a blank line, so batches are sorted, split and put back
TEXTS = [" ".join(EN[i % 7:i % 7 + 2 + i % 5]) for i in range(14)] + [""]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny translator with its own tokenizer (random weights: only equality of outputs matters)."""
    tok = train_bpe([" ".join(EN[i:] + ES[:i]) for i in range(len(EN))] * 4, vocab_size=90)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("workers") / "model"
    Transformer(ModelConfig.preset("tiny", vocab_size=tok.get_vocab_size(), max_positions=100)).save(folder, tok)
    return folder


def test_workers_translate_as_one_process(model_dir: Path) -> None:
    """Two workers over several small batches: the same lines, in input order, and progress for every line."""
    model, tok = load_with_tokenizer(model_dir)
    alone = translate(model, tok, TEXTS, beam_size=2, batch_tokens=16, threads=1)
    done: list[int] = []
    assert translate(model, tok, TEXTS, beam_size=2, batch_tokens=16, workers=2, progress=done.append) == alone
    assert sum(done) == len(TEXTS) - 1 and len(done) > 2 and alone[-1] == ""  # blank lines are not searched


def test_a_worker_pool_serves_many_calls_from_the_same_processes(model_dir: Path) -> None:
    """A WorkerPool forks once: two translate() calls and a direct generate() run in the same two processes and
    give one process's output on one thread."""
    model, tok = load_with_tokenizer(model_dir)
    alone = translate(model, tok, TEXTS, beam_size=2, batch_tokens=16, threads=1)
    with WorkerPool(model, 2) as pool:
        pids = {process.pid for process in pool._pool._pool}
        assert translate(model, tok, TEXTS, beam_size=2, batch_tokens=16, workers=pool) == alone
        assert translate(model, tok, TEXTS[:5], beam_size=2, batch_tokens=16, workers=pool) == alone[:5]
        src = torch.tensor([[5, 6, 7, 2], [8, 9, 2, 0]])
        found = dict(pool.generate([src, src[:1]], beam_size=1, max_new_tokens=6))
        assert found == {0: model.generate(src, beam_size=1, max_new_tokens=6, threads=1),
                         1: model.generate(src[:1], beam_size=1, max_new_tokens=6, threads=1)}
        assert {process.pid for process in pool._pool._pool} == pids  # no process was forked again


def test_a_trimming_pool_gives_the_same_output_and_trims_after_each_batch(model_dir: Path, tmp_path: Path) -> None:
    """WorkerPool(trim=True) (aiayn serve's): the same lines; each worker calls trim_heap after every batch."""
    model, tok = load_with_tokenizer(model_dir)
    alone = translate(model, tok, TEXTS, beam_size=2, batch_tokens=16, threads=1)
    with WorkerPool(model, 2, trim=True) as pool:
        assert translate(model, tok, TEXTS, beam_size=2, batch_tokens=16, workers=pool) == alone
        assert pool._pool.map(_trims_counted, range(2)) == [1, 1]
    with WorkerPool(model, 2) as pool:  # the default: no trimming
        assert pool._pool.map(_trims_counted, range(2)) == [0, 0]


def _trims_counted(_: int) -> int:
    """In a worker: swap trim_heap for a counter, search one batch, and return how often it was called."""
    from aiayn.inference import workers

    calls = []
    workers.trim_heap = lambda: calls.append(1) or True
    workers._generate((0, torch.tensor([[5, 6, 7, 2]]), {"beam_size": 1, "max_new_tokens": 3}))
    return len(calls)


def test_translate_scored_gives_translates_line_first_and_the_n_best_with_their_scores(model_dir: Path) -> None:
    """translate_scored: the same batches, truncation and workers as translate(); each text's n best with the
    scores model.generate gives, best first; a blank text gives ("", 0.0)."""
    model, tok = load_with_tokenizer(model_dir)
    long = " ".join(EN * 12)  # over max_positions - 50 tokens: cut as translate() cuts it
    texts = [*TEXTS, long]
    warned: list[str] = []
    lines = translate(model, tok, texts, beam_size=3, batch_tokens=16, threads=1)
    found = translate_scored(model, tok, texts, n_best=2, beam_size=3, batch_tokens=16, workers=2,
                             warn=warned.append)
    assert [hyps[0][0] for hyps in found] == lines and len(warned) == 1
    assert found[-2] == [("", 0.0)]  # the blank text
    ids = encode_source(tok, TEXTS[3])
    ref = model.generate(torch.tensor([ids]), beam_size=3, n_best=2, return_scores=True, threads=1)[0]
    assert found[3] == [(decode(tok, h.tokens), float(h.score)) for h in ref]
    for hyps in found[:-2]:
        assert len(hyps) == 2 and hyps[0][1] >= hyps[1][1]
    alone = translate_scored(model, tok, TEXTS[:3], beam_size=3)  # n_best 1: one (text, score) each
    assert [len(hyps) for hyps in alone] == [1, 1, 1] and [hyps[0][0] for hyps in alone] == lines[:3]
    assert [hyps[0][1] for hyps in alone] == pytest.approx([hyps[0][1] for hyps in found[:3]], abs=1e-4)  # padding


def test_impossible_workers_are_refused_before_any_work(model_dir: Path) -> None:
    """Bad counts and a model off the CPU: one message each."""
    model, tok = load_with_tokenizer(model_dir)
    for workers in (0, 1.5, True):
        with pytest.raises(ValueError, match="workers must be a positive integer"):
            translate(model, tok, TEXTS, workers=workers)
    with pytest.raises(ValueError, match="workers must be a positive integer, got 0"):
        WorkerPool(model, 0)
    assert workers_problem(2, torch.device("cuda")) == \
        "workers > 1 runs processes sharing the CPU; the model is on cuda: use workers=1 (--workers 1) there"
    assert workers_problem(2, torch.device("cuda"), False, cli=True) == \
        "--workers > 1 runs processes sharing the CPU; the model is on cuda: use --workers 1 there"


def test_cli_workers(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`translate --input FILE --workers 2` prints what one process prints and says how it ran."""
    path = tmp_path / "in.txt"
    path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    assert main(["translate", str(model_dir), "--input", str(path), "--beam", "2", "--threads", "1"]) == 0
    alone = capsys.readouterr().out
    assert main(["translate", str(model_dir), "--input", str(path), "--beam", "2", "--workers", "2"]) == 0
    captured = capsys.readouterr()
    assert captured.out == alone and "sentences/s (fp32, 2 workers x 1 thread)" in captured.err
