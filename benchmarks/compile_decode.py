"""Does torch.compile (inductor's CPU backend, fused C++ kernels) of the per-token decode step pay on the CPU?

aiayn's eager step grows its shapes by one key per step and drops finished rows, so compiled as it is it would
recompile every step. generate(compile=True) runs the searches on aiayn.inference.static_step instead: a step
with fixed shapes (the self-attention keys/values in one (L, 2, R, H, T_max, d_k) block written at a position
tensor, attention over all T_max keys under the mask `key <= position`, cross-attention keys/values projected
once per source), one graph (fullgraph=True, dynamic=False) for every step of a search.

Builds the "small" preset (pre-LN, random weights, as benchmarks/decode.py does) and times greedy decoding of
64 new tokens (source 64, EOS suppressed) at batch 1 and 16: eager generate() in fp32 and bf16 against
generate(compile=True) in fp32 and bf16, in interleaved rounds (every contender once per round), medians and
per-round ratios. Checks the compiled tokens against eager's first and prints each compile's time.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/compile_decode.py --threads 2 --rounds 7

--mode and --no-freeze change the library's compile settings (static_step.COMPILE_MODE, FREEZE) for this
process, to compare them.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable

import torch

import aiayn
from aiayn.inference import static_step

SOURCE_LENGTH = 64
NEW_TOKENS = 64


def greedy(model: aiayn.Transformer, src: torch.Tensor, compile: bool = False) -> list[list[int]]:
    """aiayn's greedy generate() with EOS suppressed for NEW_TOKENS steps, eager or on the compiled step."""
    return model.generate(src, beam_size=1, max_new_tokens=NEW_TOKENS, min_length=NEW_TOKENS, compile=compile)


def timed(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    """Token checks, compile times, then interleaved rounds per batch size."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--mode", default=static_step.COMPILE_MODE,
                        help=f"inductor's mode (default {static_step.COMPILE_MODE}, the library's)")
    parser.add_argument("--no-freeze", action="store_true",
                        help="without inductor's freezing (weights as constants, prepacked for its GEMM kernels)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    static_step.COMPILE_MODE = args.mode
    static_step.FREEZE = not args.no_freeze
    print(f"torch {torch.__version__}, torch.get_num_threads()={torch.get_num_threads()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, cpus={os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.2f}, compile mode {args.mode}, freezing {static_step.FREEZE}")
    torch.manual_seed(0)
    cfg = aiayn.ModelConfig.preset("small", dropout=0.0, norm="pre")
    fp32 = aiayn.Transformer(cfg).eval()
    models = {"fp32": fp32, "bf16": aiayn.for_decoding(fp32, "bf16")}
    generator = torch.Generator().manual_seed(1)
    batches = [int(b) for b in args.batches.split(",")]
    sources = {b: torch.randint(3, cfg.vocab_size, (b, SOURCE_LENGTH), generator=generator) for b in batches}

    contenders: dict[int, dict[str, Callable[[], object]]] = {b: {} for b in batches}
    for precision, model in models.items():
        for b in batches:
            contenders[b][f"eager {precision}"] = functools.partial(greedy, model, sources[b])
            run = functools.partial(greedy, model, sources[b], compile=True)
            seconds = timed(run)  # the first call compiles (one graph per batch size)
            compile_seconds = static_step.kept_steps(model)[-1].compile_seconds
            reference = greedy(model, sources[b])
            ours = run()
            same = sum(a == r for a, r in zip(ours, reference))
            tokens = sum(x == y for a, r in zip(ours, reference) for x, y in zip(a, r))
            print(f"{precision} batch {b}: first call {seconds:.1f} s (compile {compile_seconds:.1f} s); compiled "
                  f"greedy rows equal eager generate()'s: {same}/{b}, tokens {tokens}/{b * NEW_TOKENS}", flush=True)
            contenders[b][f"compiled {precision}"] = run

    print(f"\nnew tokens/s, median of {args.rounds} interleaved rounds (source {SOURCE_LENGTH}, {NEW_TOKENS} new "
          f"tokens, EOS suppressed, greedy)")
    for b in batches:
        for fn in contenders[b].values():
            fn()  # warm-up
        tps: dict[str, list[float]] = {name: [] for name in contenders[b]}
        for _ in range(args.rounds):
            for name, fn in contenders[b].items():
                tps[name].append(b * NEW_TOKENS / timed(fn))
        cells = ", ".join(f"{n} {statistics.median(v):.0f}" for n, v in tps.items())
        print(f"batch {b}: {cells}")
        for precision in models:
            ratios = [c / e for c, e in zip(tps[f"compiled {precision}"], tps[f"eager {precision}"])]
            print(f"  compiled {precision} / eager {precision}: {statistics.median(ratios):.2f}x "
                  f"(rounds: {' '.join(f'{r:.2f}' for r in ratios)})")
        best = max(tps, key=lambda n: statistics.median(tps[n]))
        ratios = [c / e for c, e in zip(tps[best], tps["eager fp32"])]
        print(f"  best ({best}) / eager fp32: {statistics.median(ratios):.2f}x", flush=True)
    print(f"# load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
