"""The time budget: durations, the step planner on a fake clock, the decaying schedules, a budgeted run."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from aiayn.cli.train import CONFIGS
from aiayn.training import trainer as base
from aiayn.training.budget import UNLIMITED, BudgetPlan, parse_duration
from aiayn.training.run_folder import read_metrics
from aiayn.training.schedule import DecaySchedule, InverseSqrtSchedule, make_schedule
from aiayn.training.settings import resolve
from aiayn.training.translation import TrainConfig, TrainingError, train
from tests.test_data import write_corpus


@pytest.mark.parametrize("text, seconds", [("10m", 600), ("90s", 90), ("1h30m", 5400), ("1.5h", 5400),
                                           ("600", 600), (" 2m 30s ", 150), (45, 45)])
def test_durations_parse(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "10x", "m10", "0", "-5m", "10m5"])
def test_bad_durations_are_refused_naming_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="time budget"):
        parse_duration(text)


def run_on_fake_clock(plan: BudgetPlan, durations, start: int = 0, every: int = 0, eval_s: float = 0.0,
                      stop_at: int | None = None) -> tuple[int, list[int]]:
    """Step until the plan is done; durations(step) is each step's seconds. Returns (last step, plans seen)."""
    step, plans, clock = start, [], plan.elapsed_s
    while not plan.done(step) and step != stop_at:
        step += 1
        clock += durations(step)
        plans.append(plan.update(step, clock, every))
        if every and step % every == 0 and not plan.done(step):
            clock += eval_s
            plan.spent(eval_s, evaluation=True)
    return step, plans


def test_the_plan_ends_within_one_step_of_the_budget() -> None:
    plan = BudgetPlan(UNLIMITED, budget_s=100.0)
    step, plans = run_on_fake_clock(plan, lambda s: 0.5)
    assert abs(plan.elapsed_s - 100.0) <= 0.5
    assert step == 200 and plans[-1] == 200
    assert plans[0] == UNLIMITED and plans[5] == 200  # nothing measured in the first `skip` steps


def test_the_plan_shrinks_when_steps_slow_down_and_still_ends_on_time() -> None:
    plan = BudgetPlan(UNLIMITED, budget_s=100.0)
    step, plans = run_on_fake_clock(plan, lambda s: 0.5 if s <= 40 else 1.0)
    assert plans[39] == 200  # planned at the first speed
    assert abs(plan.elapsed_s - 100.0) <= 1.0
    assert step == 40 + 80 and plans[-1] == step  # 20 s at 0.5 s, then 80 s at 1.0 s


def test_the_plan_keeps_room_for_the_evaluations_to_come() -> None:
    plan = BudgetPlan(UNLIMITED, budget_s=100.0)
    step, _ = run_on_fake_clock(plan, lambda s: 0.5, every=20, eval_s=5.0)
    assert abs(plan.elapsed_s - 100.0) <= 0.5 + 5.0  # at most one step or one evaluation off
    assert step == 140  # 140 steps of 0.5 s and 6 evaluations of 5 s (the one at step 140 is the final one)


def test_a_step_limit_ends_first_when_it_comes_first() -> None:
    plan = BudgetPlan(50, budget_s=100.0)
    step, plans = run_on_fake_clock(plan, lambda s: 0.5)
    assert step == 50 and max(plans) == 50
    assert "--steps 50 ended it first" in plan.summary(step, 25.0)


def test_a_resumed_plan_continues_where_it_stopped() -> None:
    durations = lambda s: 0.4 + 0.001 * s  # noqa: E731  a run that slows down
    straight = BudgetPlan(UNLIMITED, budget_s=60.0)
    end, plans = run_on_fake_clock(straight, durations)
    first = BudgetPlan(UNLIMITED, budget_s=60.0)
    stopped, _ = run_on_fake_clock(first, durations, stop_at=37)
    resumed = BudgetPlan.from_state(first.state(), UNLIMITED, 60.0)
    assert resumed.replan(stopped) == plans[36]  # the plan the uninterrupted run had after that step
    end_resumed, plans_resumed = run_on_fake_clock(resumed, durations, start=stopped)
    assert end_resumed == end and plans_resumed == plans[37:]
    assert resumed.elapsed_s == pytest.approx(straight.elapsed_s)


@pytest.mark.parametrize("shape", ["linear", "cosine"])
def test_decay_schedules_at_their_end_points(shape: str) -> None:
    lr = DecaySchedule(peak=2e-3, warmup=100, total=1000, min_lr=1e-5, shape=shape)
    assert lr(1) == pytest.approx(2e-3 / 100)
    assert lr(100) == pytest.approx(2e-3)  # the peak at the end of the warmup
    assert lr(550) == pytest.approx((2e-3 + 1e-5) / 2)  # halfway down: both shapes cross the mean there
    assert lr(1000) == pytest.approx(1e-5) and lr(5000) == pytest.approx(1e-5)
    assert lr(300) > lr(301) > lr(999)


def test_linear_decay_is_a_straight_line_and_cosine_is_not() -> None:
    linear = DecaySchedule(1.0, 0, 100, 0.0, "linear")
    cosine = DecaySchedule(1.0, 0, 100, 0.0, "cosine")
    assert linear(25) == pytest.approx(0.75) and linear(75) == pytest.approx(0.25)
    assert cosine(25) == pytest.approx(0.5 * (1 + 2 ** -0.5))  # (1 + cos(pi/4)) / 2


def test_make_schedule_gives_the_paper_formula_for_inverse_sqrt() -> None:
    paper = make_schedule("inverse-sqrt", 512, 4000, 0, peak_lr=0.0, lr_scale=1.0)
    assert isinstance(paper, InverseSqrtSchedule)
    assert paper(4000) == pytest.approx(512 ** -0.5 * 4000 ** -0.5)
    with pytest.raises(ValueError, match="schedule must be one of"):
        make_schedule("step", 512, 4000, 10, 1e-3)


# ---------------------------------------------------------------- a budgeted run, on a fake clock
class FakeClock:
    """time.perf_counter for the trainer's loop: each reading advances `tick` seconds."""

    def __init__(self, tick: float) -> None:
        """Start at 0."""
        self.now, self.tick = 0.0, tick

    def perf_counter(self) -> float:
        """The next reading."""
        self.now += self.tick
        return self.now


def _cfg(tmp_path: Path, out: str, **changes) -> TrainConfig:
    corpus = tmp_path / "corpus.tsv"
    if not corpus.exists():
        write_corpus(corpus, n=300)
    values = {"out": str(tmp_path / out), "data": str(corpus), "preset": "tiny", "vocab_size": 60,
              "dev_size": 20, "test_size": 20, "batch_tokens": 300, "steps": 0, "time_budget": "30s",
              "schedule": "linear", "warmup": 3, "peak_lr": 3e-3, "log_every": 1, "eval_every": 0,
              "save_every": 0, "final_test": False, "beam": 1, "seed": 3}
    return TrainConfig(**{**values, **changes})


def test_a_budgeted_run_stops_on_time_with_its_rate_at_the_end(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "time", FakeClock(tick=0.5))  # each step reads the clock a fixed number of times
    lines: list[str] = []
    result = train(_cfg(tmp_path, "budget"), log=lines.append)
    records = [r for r in read_metrics(tmp_path / "budget") if "loss" in r]
    assert result.step == records[-1]["step"] and 10 <= result.step <= 60
    assert records[-1]["lr"] == pytest.approx(0.0)  # the linear decay ends with the budget
    assert max(r["lr"] for r in records) == pytest.approx(3e-3)
    assert any("time budget 30s" in line and "the budget ended it" in line for line in lines)


def test_a_budgeted_run_resumes_its_plan_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "time", FakeClock(tick=0.5))
    straight = train(_cfg(tmp_path, "straight"), log=lambda _: None)

    def interrupt_at_step_6(message: str) -> None:
        if message.startswith("step 6/"):
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: the loop finishes the step, saves, stops

    monkeypatch.setattr(base, "time", FakeClock(tick=0.5))
    first = train(_cfg(tmp_path, "stopped"), log=interrupt_at_step_6)
    assert first.interrupted and first.step == 6
    monkeypatch.setattr(base, "time", FakeClock(tick=0.5))
    resumed = train(_cfg(tmp_path, "stopped"), resume=True, log=lambda _: None)
    assert resumed.step == straight.step
    for step in range(7, straight.step + 1):
        assert resumed.losses[step] == straight.losses[step], step  # same plan, same rates, same data


def test_the_default_warmup_share_ramps_from_step_1_under_a_budget(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The default path (no --warmup: a share of the planned steps) of a budgeted run: lr by the formula."""
    monkeypatch.setattr(base, "time", FakeClock(tick=0.5))
    lines: list[str] = []
    result = train(_cfg(tmp_path, "share", warmup=None, warmup_share=0.6), log=lines.append)
    lr = {r["step"]: r["lr"] for r in read_metrics(tmp_path / "share") if "loss" in r}
    planned = {int(m.group(1)): int(m.group(2)) for line in lines if (m := re.match(r"step (\d+)/(\d+) ", line))}
    peak, last = 3e-3, result.step
    assert 15 <= last <= 60 and planned[last] == last and UNLIMITED not in planned.values()

    def formula(step: int, total: int) -> float:
        """The linear schedule's rate at `step` of `total` planned steps, warming up over 60% of them."""
        warmup = round(0.6 * total)
        return peak * step / warmup if step <= warmup else peak * max(0, total - step) / (total - warmup)

    for step in (1, 2):  # before any step is measured: the plan estimated within the step, before its update
        assert lr[step] == pytest.approx(formula(step, planned[step]))
    assert 0 < lr[1] < lr[2] < lr[3] < peak / 2  # a ramp from step 1, never the peak or 0 at the start
    for step in range(4, last + 1):  # measured: each step's rate follows the plan the step before it made
        assert lr[step] == pytest.approx(formula(step, planned[step - 1])), step
    assert max(lr.values()) == pytest.approx(peak) and lr[last] == 0.0
    assert any("peak lr 3.00e-03 after 60% of the steps the time budget holds" in line for line in lines)


def test_the_first_plan_is_estimated_from_the_unmeasured_steps() -> None:
    plan = BudgetPlan(UNLIMITED, budget_s=100.0)
    assert plan.estimate(1, 2.0, 2.0) == 1 + 49  # 98 s left at 2 s a step
    assert plan.update(1, 2.0) == 50  # nothing measured yet: the estimate stands
    assert plan.estimate(2, 3.0, 1.5) == 2 + 64
    run_on_fake_clock(plan, lambda s: 1.0, start=2)  # steps measured from step 3 on: estimates no longer apply
    assert plan.estimate(plan.planned, 0.0, 0.001) == plan.planned
    assert BudgetPlan(10, budget_s=100.0).estimate(1, 1.0, 0.01) == 10  # a step limit caps it
    assert BudgetPlan(10).estimate(1, 1.0, 0.01) == 10  # no budget: nothing to estimate


def test_naming_steps_on_resume_drops_the_stored_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--resume --steps N after a run its budget ended: the stored budget goes, as on a fresh run; N steps."""
    monkeypatch.setattr(base, "time", FakeClock(tick=0.5))
    ended = train(_cfg(tmp_path, "ended"), log=lambda _: None)
    out = str(tmp_path / "ended")
    assert resolve("translate", {"out": out}, resume=True, classes=CONFIGS).time_budget == 30.0  # kept
    cfg = resolve("translate", {"out": out, "steps": ended.step + 4}, resume=True, classes=CONFIGS)
    assert cfg.time_budget is None and cfg.steps == ended.step + 4
    both = resolve("translate", {"out": out, "steps": 99, "time_budget": 60.0}, resume=True, classes=CONFIGS)
    assert both.time_budget == 60.0  # both named: both kept
    resumed = train(cfg, resume=True, log=lambda _: None)
    assert resumed.step == ended.step + 4 and sorted(resumed.losses) == list(range(ended.step + 1, ended.step + 5))


def test_the_time_budget_has_one_spelling_for_off_and_takes_seconds(tmp_path: Path) -> None:
    """none is "off"; a TOML number is seconds, as documented; 0 and '' are refused, naming none."""
    toml = tmp_path / "run.toml"
    toml.write_text("time_budget = 600\n", encoding="utf-8")
    assert resolve("translate", {}, str(toml), classes=CONFIGS).time_budget == 600.0
    toml.write_text('time_budget = "none"\nsteps = 5\n', encoding="utf-8")
    assert resolve("translate", {}, str(toml), classes=CONFIGS).time_budget is None
    for off in (0, "0", "", "off"):
        with pytest.raises(TrainingError, match="or none for no budget"):
            TrainConfig.from_dict({"time_budget": off, "steps": 5})


def test_a_run_needs_steps_or_a_budget(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="--steps N or --time-budget"):
        _cfg(tmp_path, "none", steps=0, time_budget=None)
    with pytest.raises(TrainingError, match="not a duration"):
        _cfg(tmp_path, "bad", time_budget="soon")


def test_the_paper_recipe_sets_every_setting_the_run_does_not_name() -> None:
    cfg = TrainConfig.from_dict({"recipe": "paper", "beam": 8})
    assert (cfg.norm, cfg.warmup, cfg.batch_tokens, cfg.steps, cfg.time_budget) == ("post", 4000, 25_000, 100_000,
                                                                                      None)
    assert cfg.schedule == "inverse-sqrt" and cfg.peak_lr == 0.0 and cfg.lr_scale == 1.0  # §5.3 as written
    assert (cfg.dropout, cfg.label_smoothing, cfg.length_penalty) == (0.1, 0.1, 0.6)
    assert cfg.average_last == 5  # §6.1: the base model is the mean of the last 5 checkpoints
    assert cfg.beam == 8  # a named setting wins
    lr = cfg.lr_schedule(512)
    assert lr(4000) == pytest.approx(512 ** -0.5 * 4000 ** -0.5)
    with pytest.raises(TrainingError, match="unknown recipe 'fast'"):
        TrainConfig.from_dict({"recipe": "fast"})


def test_a_resumed_plan_takes_a_new_step_limit() -> None:
    plan = BudgetPlan(4, budget_s=600.0)
    run_on_fake_clock(plan, lambda s: 0.5)
    assert plan.planned == 4
    resumed = BudgetPlan.from_state(plan.state(), 6, 600.0)
    assert resumed.replan(4) == 6  # --resume --steps 6 continues to step 6: the budget still holds it


def test_a_named_step_count_replaces_the_default_budget_and_both_named_keep_both() -> None:
    assert TrainConfig.from_dict({"steps": 3000}).time_budget is None
    both = TrainConfig.from_dict({"steps": 3000, "time_budget": "5m"})
    assert (both.steps, both.time_budget) == (3000, 300.0)  # parsed once, into seconds


def test_a_warmup_share_follows_the_plan_and_is_refused_without_a_planned_end() -> None:
    schedule = make_schedule("linear", 256, warmup=None, total=0, peak_lr=2e-3, warmup_share=0.5)
    schedule.end_at(800)  # the budget's first plan
    assert schedule.warmup == 400 and schedule(400) == pytest.approx(2e-3) and schedule(800) == 0.0
    schedule.end_at(600)  # slower steps: fewer planned, the warmup shrinks with them
    assert schedule.warmup == 300 and schedule(150) == pytest.approx(1e-3) and schedule(450) == pytest.approx(1e-3)
    fixed = make_schedule("linear", 256, warmup=300, total=800, peak_lr=2e-3, warmup_share=0.5)
    fixed.end_at(600)
    assert fixed.warmup == 300  # named warmup steps stay
    assert TrainConfig().warmup is None and TrainConfig().lr_schedule(256).warmup == 1  # set by the plan
    with pytest.raises(TrainingError, match="inverse-sqrt schedule takes --warmup steps"):
        TrainConfig.from_dict({"schedule": "inverse-sqrt"})
    assert TrainConfig.from_dict({"schedule": "inverse-sqrt", "warmup": 400}).warmup == 400
