"""MFU of recorded benchmarks/train.py runs, recomputed from their step times with the FLOPs each contender does.

Runs recorded before train.py reported two figures counted the output projection at all B*T target
positions for every contender, though aiayn's step projects only at the N scored (non-pad) positions.
This reads a results file (its "preset ..." line: B, S, T and N; its matmul-peak line; its rows of
s/step) and prints, per run, each contender's FLOPs done, its MFU on them and the useful MFU, by
train.step_flops (the formula in train.py's docstring); nothing is rerun.

    python benchmarks/mfu_from_results.py benchmarks/results/train-paper-base-cpu-quiet.txt
"""

from __future__ import annotations

import argparse
import re
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from train import config_for, projects_scored_only, step_flops  # noqa: E402

SHAPE = re.compile(r"preset (?P<preset>\S+): B=(?P<B>\d+) S=(?P<S>\d+) T=(?P<T>\d+), vocab \d+, (?P<all>\d+) target "
                   r"tokens/step \((?P<scored>\d+) not padding\), (?P<gflop>[\d.]+) GFLOP/step")
PEAK = re.compile(r"matmul peak \(\d+\^3\): (?P<before>[\d.]+) (?P<unit>[GT])FLOP/s before, (?P<after>[\d.]+) after")
ROW = re.compile(r"^(?P<name>\S.*?)\s+(?P<seconds>\d+\.\d+)\s+\d+\s+(?P<mfu>[\d.]+)%")


def recompute(text: str) -> list[str]:
    """Corrected lines for every run in a results file's text."""
    lines: list[str] = []
    shape = peak = None
    for line in text.splitlines():
        if match := SHAPE.search(line):
            shape = match
            cfg = config_for(shape["preset"])
            b, s, t, scored = int(shape["B"]), int(shape["S"]), int(shape["T"]), int(shape["scored"])
            every, useful = step_flops(cfg, b, s, t), step_flops(cfg, b, s, t, projected=scored)
            if abs(every / 1e9 - float(shape["gflop"])) > 0.1:
                raise SystemExit(f"the recorded {shape['gflop']} GFLOP/step is not the formula's {every / 1e9:.1f}")
            lines.append(f"{shape['preset']} B={b} S={s} T={t}: useful {useful / 1e9:.1f} GFLOP/step (projection at "
                         f"the {scored} scored positions), {every / 1e9:.1f} with it at all {b * t}")
        elif match := PEAK.search(line):
            peak = max(float(match["before"]), float(match["after"])) * (1e12 if match["unit"] == "T" else 1e9)
        elif shape is not None and peak is not None and (match := ROW.match(line)) and match["name"] != "model":
            seconds, name = float(match["seconds"]), match["name"]
            done = useful if projects_scored_only(name) else every
            lines.append(f"  {name:16} {seconds:8.4f} s/step  done {done / 1e9:7.1f} GFLOP  "
                         f"MFU {done / seconds / peak:6.1%}  useful MFU {useful / seconds / peak:6.1%}  "
                         f"(recorded MFU {match['mfu']}%)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", help="benchmarks/results/train-*.txt or gpu-h200.txt")
    for path in parser.parse_args().files:
        print(f"# {path}")
        with open(path, encoding="utf-8") as handle:
            print("\n".join(recompute(handle.read())))


if __name__ == "__main__":
    main()
