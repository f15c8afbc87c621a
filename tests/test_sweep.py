"""`aiayn sweep`: a grid of tiny training runs, its results table, resuming after a kill, refusing bad files."""

import csv
import json
import math
import re
import shutil
from pathlib import Path

import pytest

from aiayn import ModelConfig, Transformer
from aiayn.cli import main
from aiayn.cli import sweep as sweep_command
from aiayn.training import sweep
from aiayn.training.run_folder import read_metrics

from .helpers_translation import write_corpus
from .test_distributed import _torchrun

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


@pytest.mark.parametrize("edit, message", [
    (lambda text: text + "[variants.a]\npaper = 5.29\n", r"\[variants.a\] paper must be a table.*paper = \{ ppl"),
    (lambda text: text + "[variants.a]\npaper = { ppl = 5.29, bleu_dev = 24.9 }\n",
     r"\[variants.a\] paper has unknown key\(s\) \['bleu_dev'\]"),
    (lambda text: text + '[variants.a]\npaper = { ppl = "5.29" }\n', r"\[variants.a\] paper: ppl must be a number"),
    (lambda text: text.replace("[base]\n", "[base]\npaper = { ppl = 4.92 }\n") + "[variants.base]\n",
     r"\[base\] sets 'paper'.*\[variants.base\]"),
    (lambda text: 'reference_variant = "bse"\n' + text + "[variants.base]\n[variants.a]\n",
     r"reference_variant = 'bse' is not a variant: name one of \['base', 'a'\]"),
])
def test_a_bad_paper_figure_or_reference_is_refused_before_any_run(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                   edit: object, message: str) -> None:
    path = tmp_path / "grid.toml"
    path.write_text(edit(BASE.format(corpus=tmp_path / "corpus.tsv")))
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err
    assert not (tmp_path / "out").exists()


# Fake finished runs (variant: dev perplexity and dev BLEU per seed) and the paper's figures per variant.
FAKE = {"base": ([10, 11, 12], [20, 21, 22]), "rep": ([14, 16], [17, 19]), "opp": ([15, 17], [24, 26]),
        "noisy": ([11, 13], [21, 23]), "single": ([14], [19])}
PAPER = {"base": "{ ppl = 4.92, bleu = 25.8 }", "rep": "{ ppl = 5.29, bleu = 24.9 }",
         "opp": "{ ppl = 4.88, bleu = 25.8 }", "noisy": "{ ppl = 5.00 }", "single": "{ ppl = 6.0 }"}


def _fake_sweep(tmp: Path) -> Path:
    """A sweep file of FAKE's variants and a folder of their finished runs, written by hand (nothing trained)."""
    path = tmp / "grid.toml"
    text = BASE.format(corpus=tmp / "corpus.tsv").replace("seeds = [1]", "seeds = [1, 2]")
    for name, (ppl, _) in FAKE.items():
        text += f"[variants.{name}]\nseeds = {list(range(1, len(ppl) + 1))}\npaper = {PAPER[name]}\n"
    text += '[variants.unrun]\ndropout = 0.2\npaper = { ppl = 1.0 }\n'  # no finished run: no row
    path.write_text(text)
    model = Transformer(ModelConfig.preset("tiny", vocab_size=60)).save(tmp / "model")
    for name, (ppl, bleu) in FAKE.items():
        for seed, (p, b) in enumerate(zip(ppl, bleu), start=1):
            run = tmp / "out" / "runs" / f"{name}-seed{seed}"
            shutil.copytree(model, run / "model")
            (run / sweep.RESULT_FILE).write_text(json.dumps({"step": 6, "dev_ppl": p, "dev_bleu": b}))
    return path


def _no_training(*args: object) -> int:
    raise AssertionError("--report must not train")


def test_report_sets_our_change_from_the_base_beside_the_papers_with_a_verdict(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _fake_sweep(tmp_path)
    monkeypatch.setattr(sweep_command, "subprocess_launcher", _no_training)
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--report"]) == 0
    with open(tmp_path / "out" / "results.csv", encoding="utf-8") as handle:
        rows = {r["variant"]: r for r in csv.DictReader(handle)}
    assert list(rows) == ["base", "rep", "opp", "noisy", "single"]
    # base: ppl 11 +- 1, BLEU 21 +- 1 over 3 seeds; a 2-seed row of spread sqrt(2): noise 2 sqrt(2/2 + 1/3)
    two = 2 * math.sqrt(2 / 2 + 1 / 3)
    one = 2 * math.sqrt(1 / 1 + 1 / 3)  # the one-seed row borrows the base's spread, 1
    expected = {  # Δ ours, noise, paper Δ, verdict (ppl), then the same for BLEU
        "rep": (4, two, 5.29 - 4.92, "reproduced", -3, two, 24.9 - 25.8, "reproduced"),
        "opp": (5, two, 4.88 - 4.92, "not reproduced", 4, two, 0.0, "not reproduced"),
        "noisy": (1, two, 5.00 - 4.92, "within noise", 1, two, None, "—"),
        "single": (3, one, 6.0 - 4.92, "reproduced", -2, one, None, "—"),
    }
    columns = ("dev_ppl_delta", "ppl_noise", "paper_ppl_delta", "ppl_verdict",
               "dev_bleu_delta", "bleu_noise", "paper_bleu_delta", "bleu_verdict")
    for name, values in expected.items():
        for column, value in zip(columns, values):
            cell = rows[name][column]
            if value is None:
                assert cell == "", (name, column)
            elif isinstance(value, str):
                assert cell == value, (name, column)
            else:
                assert float(cell) == pytest.approx(value, abs=1e-4), (name, column)
    assert rows["base"]["ppl_verdict"] == rows["base"]["bleu_verdict"] == "reference"
    assert float(rows["single"]["dev_ppl_std"]) == 0.0 and rows["single"]["seeds"] == "1"
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| rep | base | 2 | 6 |" in md and "| 15.00 ± 1.41 | +4.00 (± 2.31) | +0.37 | reproduced |" in md
    assert "| 25.00 ± 1.41 | +4.00 (± 2.31) | 0 | not reproduced |" in md
    assert "(10 of 12 runs finished)" in md  # all but unrun-seed1 and unrun-seed2
    assert "sqrt(s_v²/n_v + s_r²/n_r)" in md and "unrun" not in md
    assert (tmp_path / "out" / "results.png").stat().st_size > 1000


def test_report_with_one_seed_each_side_says_so_and_names_another_reference(tmp_path: Path) -> None:
    path = _fake_sweep(tmp_path)
    path.write_text('reference_variant = "rep"\n' + path.read_text())
    for name in ("base-seed2", "base-seed3", "rep-seed2"):  # as if still running: base and rep have one seed
        (tmp_path / "out" / "runs" / name / sweep.RESULT_FILE).unlink()
    plan = sweep.plan_sweep(path, tmp_path / "out")
    rows = {r.variant: r for r in sweep.summarise(plan)}
    assert rows["rep"].ppl_verdict == "reference"
    base = rows["base"]  # 10 against rep's 14; the paper: 4.92 against 5.29
    assert base.dev_ppl_delta == -4 and base.ppl_noise is None and base.ppl_verdict == "one seed"
    assert base.paper_ppl_delta == pytest.approx(4.92 - 5.29)
    single = rows["single"]  # one seed against one seed
    assert single.dev_bleu_delta == 2 and single.bleu_verdict == "—"  # no BLEU figure for single
    noisy = rows["noisy"]  # two seeds against one: rep borrows noisy's spread, sqrt(2)
    assert noisy.ppl_noise == pytest.approx(2 * math.sqrt(2 / 2 + 2 / 1))
    assert noisy.dev_ppl_delta == -2 and noisy.ppl_verdict == "within noise"


def test_report_refuses_when_no_run_has_finished(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "grid.toml"
    path.write_text(BASE.format(corpus=tmp_path / "corpus.tsv") + "[variants.base]\n")
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--report"]) == 1
    assert "no run in" in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_sweep_runs_each_run_in_a_child_process(tmp_path: Path) -> None:
    """`python -m aiayn train` per run, its output in logs/NAME-seedS.log; the same table as in-process."""
    _, out = _sweep(tmp_path)
    assert "model:" in (out / "logs" / "base-seed1.log").read_text()
    with open(out / "results.csv", encoding="utf-8") as handle:
        assert [r["variant"] for r in csv.DictReader(handle)] == ["base", "rotary"]


def test_under_torchrun_each_run_is_data_parallel_over_the_ranks(tmp_path: Path) -> None:
    """Two ranks run the runs one after another, each trained over both ranks; rank 0 writes the table."""
    corpus = write_corpus(tmp_path / "corpus.tsv")
    path = tmp_path / "grid.toml"
    path.write_text(BASE.format(corpus=corpus) + "[variants.base]\n[variants.heads-1]\nn_heads = 1\n")
    job = _torchrun(tmp_path, ["-m", "aiayn", "sweep", str(path), "--out", str(tmp_path / "out")])
    assert job.returncode == 0, job.stderr[-3000:]
    with open(tmp_path / "out" / "results.csv", encoding="utf-8") as handle:
        assert [r["variant"] for r in csv.DictReader(handle)] == ["base", "heads-1"]
    for name in ("base-seed1", "heads-1-seed1"):
        steps = [r["step"] for r in read_metrics(tmp_path / "out" / "runs" / name) if "loss" in r]
        assert steps[-1] == 6 and len(steps) == len(set(steps))  # six steps, each logged once (by rank 0)
        assert json.loads((tmp_path / "out" / "runs" / name / "train.json").read_text())["steps"] == 6
    assert job.stdout.count("aiayn sweep: base-seed1: starting") == 1  # progress from rank 0 only
    assert (job.stdout + job.stderr).count("data parallel (DDP): 2 ranks") == 2  # both runs over both ranks


def test_after_a_failed_run_no_queued_run_starts(tmp_path: Path) -> None:
    """--workers 2: the run that fails stops the queue; the one running finishes; the error names both kinds."""
    import threading

    path = tmp_path / "grid.toml"
    path.write_text(BASE.format(corpus=tmp_path / "corpus.tsv").replace("seeds = [1]", "seeds = [1, 2]") +
                    "[variants.base]\n[variants.b]\nwarmup = 6\n")
    plan = sweep.plan_sweep(path, tmp_path / "out")
    launched, running, failing = [], threading.Event(), threading.Event()

    def launch(run: sweep.Run, argv: list[str], threads: int) -> int:
        launched.append(run.name)
        if run.name == "base-seed1":  # fails while the other worker's run is still running
            running.wait(5)
            failing.set()
            return 1
        running.set()
        failing.wait(5)
        return 0

    with pytest.raises(sweep.SweepError) as error:
        sweep.execute(plan, workers=2, threads=2, launch=launch, log=lambda line: None)
    assert sorted(launched) == ["base-seed1", "base-seed2"]  # b-seed1 and b-seed2 never started
    assert "run base-seed1 failed (exit 1)" in str(error.value)
    assert "not started after the failure: b-seed1, b-seed2" in str(error.value)


def test_a_value_outside_the_bmp_is_written_as_utf8_toml(tmp_path: Path) -> None:
    """An emoji (and quotes, backslashes, control characters) round-trip through the run's TOML file."""
    import tomllib

    path = tmp_path / "run.toml"
    note = 'tiny \U0001F600 "quoted" \\ back\tslash\x7f\x01 ñ'
    sweep.write_toml({"out": note, "steps": 3, "flags": [1, 2], "on": True}, path)
    text = path.read_text(encoding="utf-8")
    assert "\U0001F600" in text and "\\ud83d" not in text.lower()
    assert tomllib.loads(text) == {"out": note, "steps": 3, "flags": [1, 2], "on": True}


def test_a_run_file_written_as_invalid_toml_is_rewritten_not_a_traceback(tmp_path: Path) -> None:
    """A run's TOML file an older aiayn wrote with surrogate escapes: a run never started is written again."""
    path = tmp_path / "grid.toml"
    path.write_text(BASE.format(corpus=tmp_path / "corpus.tsv") + "[variants.base]\n")
    plan = sweep.plan_sweep(path, tmp_path / "out")
    run = plan.runs[0]
    run.config_file.parent.mkdir(parents=True)
    run.config_file.write_text('data = "\\ud83d\\ude00"\n', encoding="utf-8")
    run.run_dir.mkdir(parents=True)  # a run folder without a checkpoint: it failed before its first
    launched: list[str] = []
    with pytest.raises(sweep.SweepError, match="run base-seed1 failed"):
        sweep.execute(plan, threads=1, launch=lambda r, argv, threads: launched.append(r.name) or 1,
                      log=lambda line: None)
    assert launched == ["base-seed1"] and "\\ud83d" not in run.config_file.read_text(encoding="utf-8")
