"""Issue #31's measurements: dropout 0 / 0.1 / 0.3 on corpora of several sizes and kinds, and which checkpoint
each keep-best rule keeps, at a fixed step count (what ten minutes hold at 2 threads on the 2-core machine).

    python benchmarks/recipe_corpora.py build      # data/recipe/: the corpora (needs data/gettext-en-{es,de})
    python benchmarks/recipe_corpora.py run        # runs/recipe/CORPUS-dDROPOUT, two at a time, one thread each
    python benchmarks/recipe_corpora.py report     # test BLEU of the checkpoints each rule keeps; a markdown table
    python benchmarks/recipe_corpora.py run --seed 2 --corpora bible-15k --dropouts 0,0.1   # CORPUS-dD-s2

Build the gettext corpora first: `python scripts/build_gettext_corpus.py` and `... --lang de`. Every run is
`aiayn train --steps 2400 --threads 1 --dropout D --eval-every 200 --save-every 200 --keep-last 0` (quality at
equal steps; one thread each, so two runs share the cores without changing each other's numerics). The report
scores, with beam 4 (alpha 0.6) on the test split, the checkpoint each rule keeps:
  bleu  the best dev BLEU (greedy) so far: --keep-best bleu --bleu-tie 0
  tie   the latest evaluation within 0.5 dev BLEU of the best so far: --keep-best bleu (--bleu-tie 0.5)
  band  the best dev BLEU among evaluations whose dev loss is within 2% of the lowest so far (measured, not kept)
  loss  the lowest dev loss: --keep-best loss
  last  the last step: --keep-best none
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "recipe"
RUNS = REPO / "runs" / "recipe"
DROPOUTS = ("0", "0.1", "0.3")
CORPORA = ("bible", "bible-15k", "bible-5k", "gettext", "gettext-15k", "gettext-5k", "gettext-de")
RULES = ("bleu", "tie", "band", "loss", "last")


def build() -> None:
    """The corpora: the bundled Bible's splits, the gettext corpora, and 5k / 15k-pair samples (seed 1) of both."""
    from aiayn.data.corpus import load_corpus, read_tsv

    def write(folder: Path, train: list, dev: list, test: list) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, pairs in (("train", train), ("dev", dev), ("test", test)):
            (folder / f"{name}.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
        print(f"{folder}: train {len(train)}, dev {len(dev)}, test {len(test)}")

    bible = load_corpus()
    sources = {"bible": (bible.train, bible.dev, bible.test)}
    for lang, name in (("es", "gettext"), ("de", "gettext-de")):
        folder = REPO / "data" / f"gettext-en-{lang}"
        if not (folder / "train.tsv").exists():
            sys.exit(f"{folder} missing: run python scripts/build_gettext_corpus.py --lang {lang}")
        sources[name] = tuple([tuple(row[-2:]) for row in read_tsv(folder / f"{split}.tsv")]
                              for split in ("train", "dev", "test"))
    for name, (train, dev, test) in sources.items():
        write(DATA / name, train, dev, test)
        if name != "gettext-de":
            for size in (5000, 15000):
                write(DATA / f"{name}-{size // 1000}k", random.Random(1).sample(list(train), size), dev, test)


def run_name(corpus: str, dropout: str, seed: int) -> str:
    """CORPUS-dDROPOUT, with -sSEED for a seed other than the default 1."""
    return f"{corpus}-d{dropout}" + (f"-s{seed}" if seed != 1 else "")


def run(corpora: list[str], dropouts: list[str], steps: int, parallel: int, seed: int) -> None:
    """Train every corpus x dropout not yet done, `parallel` at a time, one thread each."""
    waiting = [(c, d) for c in corpora for d in dropouts if not (RUNS / run_name(c, d, seed) / "DONE").exists()]
    running: list[tuple[subprocess.Popen, Path]] = []
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    while waiting or running:
        while waiting and len(running) < parallel:
            corpus, dropout = waiting.pop(0)
            out, data = RUNS / run_name(corpus, dropout, seed), DATA / corpus
            out.parent.mkdir(parents=True, exist_ok=True)
            command = [sys.executable, "-m", "aiayn", "train", "--data", str(data / "train.tsv"), "--dev",
                       str(data / "dev.tsv"), "--test", str(data / "test.tsv"), "--steps", str(steps),
                       "--time-budget", "none", "--threads", "1", "--dropout", dropout, "--eval-every", "200",
                       "--save-every", "200", "--keep-last", "0", "--seed", str(seed), "--out", str(out)]
            log = (RUNS / f"{out.name}.log").open("w")
            print(f"{time.strftime('%H:%M:%S')} start {out.name}", flush=True)
            running.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), out))
        time.sleep(5)
        for process, out in list(running):
            if process.poll() is not None:
                running.remove((process, out))
                if process.returncode == 0:
                    (out / "DONE").touch()
                print(f"{time.strftime('%H:%M:%S')} {out.name} exited {process.returncode}", flush=True)


def kept_steps(evaluations: list[dict]) -> dict[str, int]:
    """The step each rule keeps, from a run's evaluation records (in step order)."""
    from aiayn.training.best import BestKeeper

    metrics = {"bleu": ("dev_bleu", True), "loss": ("dev_loss", False)}
    keepers = {"bleu": BestKeeper.for_run("bleu", metrics, 0), "tie": BestKeeper.for_run("bleu", metrics, 0, tie=0.5),
               "loss": BestKeeper.for_run("loss", metrics, 0)}
    lowest = band_score = band_step = band_loss = None
    for record in evaluations:
        for keeper in keepers.values():
            keeper.update(record)
        loss = record["dev_loss"]
        lowest = loss if lowest is None else min(lowest, loss)
        limit = lowest * 1.02
        if loss <= limit and (band_score is None or band_loss > limit or record["dev_bleu"] > band_score):
            band_score, band_step, band_loss = record["dev_bleu"], record["step"], loss
    steps = {name: keeper.step for name, keeper in keepers.items()}
    return {**steps, "band": band_step, "last": evaluations[-1]["step"]}


def test_scores(run_dir: Path, step: int, cache: dict) -> dict:
    """Test BLEU / chrF (beam 4, alpha 0.6) of checkpoint `step`, cached in run_dir/rule_scores.json."""
    if str(step) not in cache:
        import torch

        from aiayn.inference.evaluation import score, translate
        from aiayn.io.loading import load_with_tokenizer

        torch.set_num_threads(1)
        settings = json.loads((run_dir / "train.json").read_text())
        rows = [line.split("\t") for line in Path(settings["test"]).read_text(encoding="utf-8").splitlines()]
        model, tokenizer = load_with_tokenizer(run_dir / "checkpoints" / f"step_{step}")
        scores = score(translate(model, tokenizer, [r[0] for r in rows]), [r[1] for r in rows])
        cache[str(step)] = {"bleu": round(scores.bleu, 2), "chrf": round(scores.chrf, 1)}
        (run_dir / "rule_scores.json").write_text(json.dumps(cache, indent=1))
    return cache[str(step)]


def report(corpora: list[str], dropouts: list[str], seed: int) -> None:
    """Per run: planned epochs, the lowest dev loss, and each rule's kept step, test BLEU and dev loss over the
    lowest; then the table of docs/results.md."""
    from aiayn.training.regularization import dropout_for

    table: dict[tuple[str, str], dict] = {}
    for corpus in corpora:
        for dropout in dropouts:
            run_dir = RUNS / run_name(corpus, dropout, seed)
            if not (run_dir / "DONE").exists():
                continue
            records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
            evaluations = [r for r in records if "dev_bleu" in r and "dev_loss" in r]
            log = (RUNS / f"{run_dir.name}.log").read_text()
            per_epoch = int(log.split(" batches of <=")[0].rsplit(" ", 1)[1])
            steps = kept_steps(evaluations)
            cache_file = run_dir / "rule_scores.json"
            cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
            lowest = min(r["dev_loss"] for r in evaluations)
            loss_at = {r["step"]: r["dev_loss"] for r in evaluations}
            row = {"epochs": evaluations[-1]["step"] / per_epoch, "lowest": lowest}
            for rule, step in steps.items():
                row[rule] = {"step": step, **test_scores(run_dir, step, cache), "over": loss_at[step] / lowest - 1}
            table[corpus, dropout] = row
            print(f"{run_dir.name}: {row['epochs']:.1f} epochs, lowest dev loss {lowest:.3f}; " + "; ".join(
                f"{rule} step {row[rule]['step']} BLEU {row[rule]['bleu']} ({row[rule]['over']:+.1%})"
                for rule in RULES), flush=True)
    if table:
        print(f"\nkeep-best rules over {len(table)} runs: test BLEU against the best rule of each run")
        for rule in RULES:
            gaps = [row[rule]["bleu"] - max(row[r]["bleu"] for r in RULES) for row in table.values()]
            over = sorted(row[rule]["over"] for row in table.values())
            print(f"  {rule:5s} mean {sum(gaps) / len(gaps):+.2f}, worst {min(gaps):+.2f}, best in "
                  f"{sum(g == 0 for g in gaps)}; dev loss over the run's lowest: median {over[len(over) // 2]:+.1%}, "
                  f"max {over[-1]:+.1%}")
    print("\n| corpus | epochs | " + " | ".join(f"dropout {d}" for d in dropouts) + " | the rule's dropout |")
    print("|---|---:|" + "---:|" * len(dropouts) + "---:|")
    for corpus in corpora:
        rows = {d: table.get((corpus, d)) for d in dropouts}
        known = [row for row in rows.values() if row]
        if not known:
            continue
        cells = [f"{row['tie']['bleu']:.2f} / {row['tie']['chrf']:.1f}" if row else "" for row in rows.values()]
        print(f"| {corpus} | {known[0]['epochs']:.1f} | " + " | ".join(cells) +
              f" | {dropout_for(known[0]['epochs']):g} |")


def main() -> None:
    """Parse the command line and do it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("build", "run", "report"))
    parser.add_argument("--corpora", default=",".join(CORPORA), help="comma-separated (default: all)")
    parser.add_argument("--dropouts", default=",".join(DROPOUTS), help="comma-separated (default: 0,0.1,0.3)")
    parser.add_argument("--steps", type=int, default=2400, help="steps of every run (default 2400)")
    parser.add_argument("--parallel", type=int, default=2, help="runs at once, one thread each (default 2)")
    parser.add_argument("--runs", type=Path, default=None, help="where the runs and their logs go (runs/recipe)")
    parser.add_argument("--seed", type=int, default=1, help="the runs' --seed (default 1; others add -sSEED)")
    args = parser.parse_args()
    global RUNS
    RUNS = args.runs or RUNS
    corpora, dropouts = args.corpora.split(","), args.dropouts.split(",")
    if args.what == "build":
        build()
    elif args.what == "run":
        run(corpora, dropouts, args.steps, args.parallel, args.seed)
    else:
        report(corpora, dropouts, args.seed)


if __name__ == "__main__":
    main()
