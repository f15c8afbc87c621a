"""`aiayn sweep`: a grid of tiny training runs, its results table, resuming after a kill, refusing bad files."""

import csv
import re
import shutil
from pathlib import Path

import pytest

from aiayn.cli import main
from aiayn.cli import sweep as sweep_command
from aiayn.training import sweep
from aiayn.training.run_folder import read_metrics

from .helpers_translation import write_corpus

BASE = """\
seeds = [1]
[base]
data = "{corpus}"
preset = "tiny"
vocab_size = 60
dev_size = 20
test_size = 20
batch_tokens = 300
warmup = 5
peak_lr = 3e-3
eval_every = 0
save_every = 3
beam = 1
steps = 6
final_test = false
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A two-variant, one-seed sweep of six-step runs, run through the CLI: (sweep file, out folder).

    The runs train in this process (the launcher torchrun uses) rather than in child processes, each of which
    would import torch again; test_a_sweep_runs_each_run_in_a_child_process covers those.
    """
    tmp = tmp_path_factory.mktemp("sweep")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sweep_command, "subprocess_launcher", sweep_command._in_process)
        return _sweep(tmp)


def _sweep(tmp: Path) -> tuple[Path, Path]:
    """Write the corpus and the two-variant sweep file into tmp and run it into tmp/out."""
    corpus = write_corpus(tmp / "corpus.tsv")
    path = tmp / "grid.toml"
    path.write_text(BASE.format(corpus=corpus) + '[variants.base]\n[variants.rotary]\npositions = "rotary"\n'
                    'tie_embeddings = false\nnote = "(G) and (H)"\n')
    assert main(["sweep", str(path), "--out", str(tmp / "out"), "--threads", "1"]) == 0
    return path, tmp / "out"


def test_a_two_variant_sweep_writes_one_row_per_variant(finished: tuple[Path, Path]) -> None:
    _, out = finished
    with open(out / "results.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["variant"] for r in rows] == ["base", "rotary"]
    assert rows[1]["changes"] == 'positions="rotary" tie_embeddings=false' and rows[1]["note"] == "(G) and (H)"
    for row in rows:
        run = out / "runs" / f"{row['variant']}-seed1"
        final = [r for r in read_metrics(run) if "dev_ppl" in r][-1]  # the run's own final evaluation
        assert final["step"] == 6 and int(row["steps"]) == 6 and int(row["seeds"]) == 1
        assert float(row["dev_ppl_mean"]) == pytest.approx(final["dev_ppl"], rel=1e-3)
        assert float(row["dev_bleu_mean"]) == pytest.approx(final["dev_bleu"], abs=1e-3)
        assert float(row["dev_ppl_std"]) == 0.0
    # tiny: V 60 x d 32 tied; untied adds a source table and an output table (2 x 60 x 32 = 3,840)
    assert int(rows[1]["params"]) - int(rows[0]["params"]) == 2 * 60 * 32
    assert (out / "results.png").stat().st_size > 1000 and "| rotary |" in (out / "results.md").read_text()


def test_a_killed_sweep_resumes_without_redoing_finished_runs(finished: tuple[Path, Path], tmp_path: Path,
                                                              capfd: pytest.CaptureFixture) -> None:
    path, done = finished
    out = tmp_path / "out"
    shutil.copytree(done, out)
    killed = out / "runs" / "rotary-seed1"  # as if killed after its step-3 checkpoint: no final model
    for name in ("model", "checkpoints/step_6", sweep.RESULT_FILE):
        target = killed / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    launched = []

    def launch(run: sweep.Run, argv: list[str], threads: int) -> int:
        launched.append((run.name, argv))
        return sweep_command._in_process(run, argv, threads)

    plan = sweep.plan_sweep(path, out)
    assert [sweep.run_state(r) for r in plan.runs] == ["done", "resume"]
    sweep.execute(plan, threads=1, launch=launch, log=lambda line: None)
    assert [name for name, _ in launched] == ["rotary-seed1"] and "--resume" in launched[0][1]
    assert f"resuming {killed} from step_3" in capfd.readouterr().err
    assert sweep.run_state(plan.runs[1]) == "done" and (killed / "model" / "config.json").is_file()
    assert [r["step"] for r in read_metrics(killed) if "dev_ppl" in r] == [6]


@pytest.mark.parametrize("variants, message", [
    ("[variants.a]\nd_model = 30\n", r"\[variants.a\].*d_model must be divisible by n_heads"),
    ("[variants.a]\n[variants.b]\nd_modle = 64\n", r"\[variants.b\].*unknown (training )?setting.*d_modle"),
    ("[variants.a]\nseed = 3\n", r"\[variants.a\] sets 'seed'"),
    ("[variants.a]\nseeds = []\n", r"\[variants.a\] seeds must be a non-empty list"),
    ("[variants.a\n", "not valid TOML"),
    ("", "no \\[variants.NAME\\] table"),
])
def test_a_bad_sweep_file_is_refused_before_any_run(tmp_path: Path, capsys: pytest.CaptureFixture, variants: str,
                                                    message: str) -> None:
    path = tmp_path / "grid.toml"
    path.write_text(BASE.format(corpus=tmp_path / "corpus.tsv") + variants)
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_sweep_runs_each_run_in_a_child_process(tmp_path: Path) -> None:
    """`python -m aiayn train` per run, its output in logs/NAME-seedS.log; the same table as in-process."""
    _, out = _sweep(tmp_path)
    assert "model:" in (out / "logs" / "base-seed1.log").read_text()
    with open(out / "results.csv", encoding="utf-8") as handle:
        assert [r["variant"] for r in csv.DictReader(handle)] == ["base", "rotary"]
