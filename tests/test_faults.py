"""Fault injection: `aiayn train` killed (SIGKILL) at random moments and inside each stage of a checkpoint
write, or asked to stop (SIGTERM). The last complete checkpoint always loads, and `--resume` continues
the loss curve of an uninterrupted run exactly."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import aiayn
from aiayn.training.checkpoints import list_checkpoints, load_trainer_state
from aiayn.training.run_folder import read_metrics

from .helpers_translation import write_corpus

ROOT = Path(__file__).resolve().parents[1]
STEPS = 16
SAVE_EVERY = 2
TINY = ["--preset", "tiny", "--vocab-size", "60", "--dev-size", "20", "--test-size", "20", "--batch-tokens", "300",
        "--warmup", "5", "--peak-lr", "3e-3", "--eval-every", "0", "--log-every", "1", "--no-final-test",
        "--beam", "1", "--threads", "1", "--seed", "3", "--steps", str(STEPS)]


def _env() -> dict[str, str]:
    """The child's environment: this checkout's package, one thread (deterministic and gentle on the CPU)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    return env


def start(run: Path, corpus: Path, *extra: str, kill_at: str | None = None,
          max_file_bytes: int | None = None) -> subprocess.Popen:
    """`python -m aiayn train` (or the self-killing wrapper) as a child process; output on one pipe.

    max_file_bytes: the kernel refuses to grow any file past it (RLIMIT_FSIZE; Python ignores SIGXFSZ, so
    the write fails with EFBIG), a real I/O error in the middle of a write, as a full disk gives.
    """
    resume = bool(list_checkpoints(run))  # a run killed before its first checkpoint starts afresh
    args = ["train", "--out", str(run), "--resume"] if resume else \
        ["train", "--data", str(corpus), "--out", str(run), *TINY]
    program = ["-m", "aiayn"] if kill_at is None else [str(ROOT / "tests" / "helpers_faults.py")]
    env = _env() if kill_at is None else {**_env(), "AIAYN_KILL_AT": kill_at}

    def limit_file_size() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    return subprocess.Popen([sys.executable, *program, *args, *extra], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=None if max_file_bytes is None else limit_file_size)


def finish(proc: subprocess.Popen, timeout: float = 180) -> tuple[int, str]:
    """Wait for the child; its exit code and all its output."""
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def wait_for_step(proc: subprocess.Popen, step: int) -> tuple[int, list[str]]:
    """Read the child's log until it reports a training step >= `step`; that step and the lines read."""
    lines = []
    while True:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"the run ended before step {step}:\n" + "".join(lines))
        lines.append(line)
        if line.startswith("step ") and "/" in line.split()[1]:
            done = int(line.split()[1].split("/")[0])
            if done >= step:
                return done, lines


def check_checkpoints(run: Path) -> int:
    """Every listed checkpoint loads (weights and trainer state, at its own step); the latest step (0: none)."""
    found = list_checkpoints(run)
    for checkpoint in found:
        aiayn.load(checkpoint)
        assert load_trainer_state(checkpoint)["step"] == int(checkpoint.name.split("_")[1]), checkpoint
    return int(found[-1].name.split("_")[1]) if found else 0


def losses(run: Path) -> dict[int, float]:
    """Training loss of each step in metrics.jsonl, checking every step appears once."""
    records = [r for r in read_metrics(run) if "loss" in r]
    steps = [r["step"] for r in records]
    assert steps == sorted(set(steps)), steps
    return {r["step"]: r["loss"] for r in records}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("faults") / "corpus.tsv", n=200)


@pytest.fixture(scope="module")
def reference(corpus: Path) -> dict[int, float]:
    """The loss curve of an uninterrupted run."""
    run = corpus.parent / "reference"
    code, out = finish(start(run, corpus, "--save-every", str(SAVE_EVERY)))
    assert code == 0, out
    curve = losses(run)
    assert sorted(curve) == list(range(1, STEPS + 1))
    return curve


def test_sigkill_inside_each_stage_of_a_checkpoint_write(corpus: Path, reference: dict[int, float]) -> None:
    run = corpus.parent / "staged"
    extra = ("--save-every", str(SAVE_EVERY), "--keep-last", "2")
    # (stage, step whose checkpoint write is cut, checkpoints expected afterwards)
    plan = [("weights", 4, ["step_2"]), ("trainer", 6, ["step_2", "step_4"]),
            ("rename", 8, ["step_4", "step_6"]), ("prune", 12, ["step_10", "step_12"])]
    for stage, step, expected in plan:
        code, out = finish(start(run, corpus, *extra, kill_at=f"{stage}:{step}"))
        assert code == -signal.SIGKILL, f"{stage}: exit {code}\n{out}"
        assert f"step {step}/{STEPS}" in out  # it got as far as the step whose checkpoint it was writing
        assert [p.name for p in list_checkpoints(run)] == expected, stage
        latest = check_checkpoints(run)
        assert step - latest <= SAVE_EVERY, stage  # lost at most the steps since the last checkpoint
        leftovers = sorted(p.name for p in (run / "checkpoints").glob(".step_*"))
        assert leftovers, f"{stage}: the kill should have left a temporary folder behind"
    code, out = finish(start(run, corpus, *extra))
    assert code == 0, out
    assert not list((run / "checkpoints").glob(".step_*"))  # the next save cleared the leftovers
    assert losses(run) == reference  # the same curve, step for step


def _random_kills(corpus: Path, reference: dict[int, float], name: str, kills: int, seed: int) -> None:
    """Kill a run `kills` times at random moments (after a random step, after a random delay), then finish it."""
    rng = random.Random(seed)
    run = corpus.parent / name
    extra = ("--save-every", str(SAVE_EVERY), "--keep-last", "3")
    for _ in range(kills):
        latest = check_checkpoints(run)
        if latest >= STEPS - 1:
            break
        proc = start(run, corpus, *extra)
        try:
            seen, _ = wait_for_step(proc, rng.randint(latest + 1, STEPS - 1))
            time.sleep(rng.uniform(0.0, 0.08))  # lands anywhere: in a step, a metrics append, a checkpoint
        finally:
            proc.kill()
        finish(proc)
        assert proc.returncode == -signal.SIGKILL
        latest = check_checkpoints(run)
        assert seen - latest <= SAVE_EVERY, (seen, latest)  # step `seen` ran, so save `seen - 1` was done
        mid_write = sorted(p.name for p in (run / "checkpoints").glob(".step_*"))
        print(f"killed after step {seen}: latest checkpoint step_{latest}; mid-write leftovers {mid_write}")
    code, out = finish(start(run, corpus, *extra))
    assert code == 0, out
    assert losses(run) == reference


def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_curve(
        corpus: Path, reference: dict[int, float]) -> None:
    _random_kills(corpus, reference, "random", kills=2, seed=int(os.environ.get("AIAYN_FAULT_SEED", "10")))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_many_sigkills_at_random_moments(corpus: Path, reference: dict[int, float], seed: int) -> None:
    _random_kills(corpus, reference, f"random_{seed}", kills=6, seed=100 + seed)


def test_sigterm_saves_a_checkpoint_and_exits_0_then_resume_continues(corpus: Path,
                                                                      reference: dict[int, float]) -> None:
    run = corpus.parent / "term"
    proc = start(run, corpus, "--save-every", "0")  # no scheduled checkpoints: only the one SIGTERM writes
    try:
        seen, _ = wait_for_step(proc, 3)
        proc.send_signal(signal.SIGTERM)
        code, out = finish(proc)
    finally:
        proc.kill()
    assert code == 0, out
    assert "Traceback" not in out and "stopped by SIGTERM at step" in out
    stopped = int(out.split("stopped by SIGTERM at step ")[1].split(";")[0])
    assert seen <= stopped < STEPS
    assert [p.name for p in list_checkpoints(run)] == [f"step_{stopped}"]
    assert check_checkpoints(run) == stopped
    assert not (run / "model").exists()  # stopped early: no final model yet
    code, out = finish(start(run, corpus))
    assert code == 0, out
    assert losses(run) == reference


@pytest.mark.slow  # three more runs; tests/test_files.py hits the same kernel error in-process by default
def test_a_real_write_error_mid_checkpoint_exits_1_and_keeps_older_checkpoints(corpus: Path,
                                                                             reference: dict[int, float]) -> None:
    run = corpus.parent / "fsize"
    code, out = finish(start(run, corpus, "--save-every", str(SAVE_EVERY), "--steps", "4"))
    assert code == 0, out
    before = {p.name: (p / "model.safetensors").read_bytes() for p in list_checkpoints(run)}
    assert sorted(before) == ["step_2", "step_4"]
    weights = (run / "checkpoints" / "step_4" / "model.safetensors").stat().st_size
    # resume to 16 steps, but no file may grow past half the weights: the write of step_6 fails in the middle
    code, out = finish(start(run, corpus, "--steps", str(STEPS), max_file_bytes=weights // 2))
    assert code == 1, out
    assert "Traceback" not in out
    assert re.search(r"error: could not write \S*step_6\.tmp/model\.safetensors: File too large\. Free some disk "
                     r"space or write elsewhere, then try again", out), out
    assert {p.name: (p / "model.safetensors").read_bytes() for p in list_checkpoints(run)} == before
    assert not list((run / "checkpoints").glob(".*"))  # no half-written folder or file left
    assert check_checkpoints(run) == 4
    code, out = finish(start(run, corpus, "--steps", str(STEPS)))  # space again: resume from step 4
    assert code == 0, out
    assert losses(run) == reference
