"""The CLI: train -> translate -> evaluate -> average on a tiny corpus, and one-line errors (exit 1)."""

from pathlib import Path

import pytest
import sacrebleu

from aiayn.cli import main
from aiayn.inference.evaluation import score

from .helpers_translation import write_corpus

TINY = ["--preset", "tiny", "--vocab-size", "60", "--dev-size", "20", "--test-size", "20", "--batch-tokens", "300",
        "--warmup", "5", "--peak-lr", "3e-3", "--eval-every", "0", "--save-every", "3", "--beam", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cli")
    corpus = write_corpus(tmp / "corpus.tsv", n=200)
    assert main(["train", "--data", str(corpus), "--out", str(tmp / "run"), "--steps", "6", *TINY]) == 0
    return tmp


def test_train_writes_the_run_folder(trained: Path, capsys: pytest.CaptureFixture) -> None:
    run = trained / "run"
    for name in ("config.json", "train.json", "tokenizer.json", "metrics.jsonl", "curves.png",
                 "model/model.safetensors", "model/tokenizer.json", "checkpoints/step_6/trainer.pt"):
        assert (run / name).is_file(), name


def test_translate_and_evaluate(trained: Path, capsys: pytest.CaptureFixture) -> None:
    model = str(trained / "run" / "model")
    capsys.readouterr()
    assert main(["translate", model, "the king", "god of the land", "--greedy"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    src, ref = trained / "test.en", trained / "test.es"
    src.write_text("the king\nthe land\n", encoding="utf-8")
    ref.write_text("el rey\nla tierra\n", encoding="utf-8")
    assert main(["evaluate", model, "--src", str(src), "--ref", str(ref), "--greedy",
                 "--output", str(trained / "hyp.es")]) == 0
    out = capsys.readouterr().out
    assert "BLEU = " in out and "chrF = " in out and "tok:13a" in out
    assert len((trained / "hyp.es").read_text(encoding="utf-8").splitlines()) == 2


def test_resume_continues_and_average_writes_a_model(trained: Path, capsys: pytest.CaptureFixture) -> None:
    run = str(trained / "run")
    assert main(["train", "--out", run, "--resume", "--steps", "9"]) == 0  # settings from the run's train.json
    assert (trained / "run" / "checkpoints" / "step_9").is_dir()
    assert main(["average", run, "--last", "2", "--out", str(trained / "avg")]) == 0
    assert "step_6, step_9" in capsys.readouterr().out
    assert main(["translate", str(trained / "avg"), "the king", "--greedy"]) == 0


def test_user_errors_are_one_line_with_exit_1(tmp_path: Path, trained: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--data", str(tmp_path / "missing.tsv"), "--out", str(tmp_path / "run")]) == 1
    assert "missing.tsv does not exist" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing half-written
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\nc\n", encoding="utf-8")
    assert main(["train", "--data", str(bad), "--out", str(tmp_path / "run")]) == 1
    assert "line 2" in capsys.readouterr().err and not (tmp_path / "run").exists()
    (tmp_path / "x.en").write_text("a\nb\n", encoding="utf-8")
    (tmp_path / "x.es").write_text("a\n", encoding="utf-8")
    assert main(["train", "--data", str(tmp_path / "x.en"), "--target", str(tmp_path / "x.es"),
                 "--out", str(tmp_path / "run")]) == 1
    assert "has 2 lines but" in capsys.readouterr().err
    assert main(["translate", str(tmp_path), "hello"]) == 1
    assert "config.json is missing" in capsys.readouterr().err
    # a tokenizer that does not fit the model
    import shutil

    shutil.copytree(trained / "run" / "model", tmp_path / "mismatch")
    from aiayn.data.tokenizer import train_bpe

    train_bpe([f"w{i} x{i} y{i}" for i in range(300)], vocab_size=200).save(str(tmp_path / "mismatch" /
                                                                             "tokenizer.json"))
    assert main(["translate", str(tmp_path / "mismatch"), "hello"]) == 1
    err = capsys.readouterr().err
    assert "vocab_size" in err and "Traceback" not in err
    assert main(["average", str(tmp_path), "--out", str(tmp_path / "avg")]) == 1


def test_scores_match_sacrebleu_and_perfect_output_scores_100() -> None:
    hyps = ["el rey de la tierra", "la casa del padre"]
    refs = ["el rey de la tierra", "la casa de mi padre"]
    got = score(hyps, refs)
    assert got.bleu == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert got.chrf == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert 0 < got.bleu < 100 and got.bleu_signature.startswith("nrefs:1|case:mixed")
    assert score(refs, refs).bleu == pytest.approx(100.0) and score(refs, refs).chrf == pytest.approx(100.0)


def test_translate_keeps_input_order_across_length_sorted_batches() -> None:
    import torch

    from aiayn import ModelConfig
    from aiayn.data.tokenizer import train_bpe
    from aiayn.inference.evaluation import translate

    class Echo(torch.nn.Module):
        """A 'translator' that returns its source tokens: the output must equal the input text."""

        cfg = ModelConfig.preset("tiny", vocab_size=400)

        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))
            self.beams: list[int] = []

        def generate(self, src: torch.Tensor, beam_size: int = 4, length_penalty: float = 0.6) -> list[list[int]]:
            self.beams.append(beam_size)
            return [[t for t in row if t > 3] for row in src.tolist()]

    texts = [" ".join(["word"] * n) + f" end{n % 7}" for n in (9, 1, 30, 4, 17, 2, 25, 6)]
    tok = train_bpe(texts * 3, vocab_size=300)
    model = Echo()
    out = translate(model, tok, texts, beam_size=4, batch_tokens=120)
    assert out == texts
    assert model.beams and set(model.beams) == {4} and len(model.beams) > 1  # several batches, beam 4 (§6.1)



def test_translate_samples_reproducibly_with_a_seed(trained: Path, capsys: pytest.CaptureFixture) -> None:
    model = str(trained / "run" / "model")
    args = ["translate", model, "the king", "god of the land", "--sample", "--top-p", "0.9"]
    capsys.readouterr()
    runs = []
    for seed in ("3", "3", "4"):
        assert main([*args, "--seed", seed]) == 0
        runs.append(capsys.readouterr().out.splitlines())
    assert runs[0] == runs[1] and len(runs[0]) == 2
    assert runs[2] != runs[0]  # a barely trained model: another seed draws other tokens
