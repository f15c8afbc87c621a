"""The fixed-shape decoder step compiled ahead of time (AOTInductor) against torch.compile's, step only.

An experiment toward docs/benchmarks.md's "What would close it": at batch 1 the compiled graph is about as
fast as CTranslate2's whole step, and torch.compile's call path around it costs a third more. This compiles
the library's StaticStep for one shape (small preset, random weights, weight-only int8, batch 1, source
64, 64 positions) both ways, compile="aoti" (torch.export + AOTInductor, called without dynamo) and
compile=True (torch.compile, inductor), and times 64 calls of each, interleaved,
on one intra-op thread (what generate uses for batch 1). The search loop around the step is not timed.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/aoti_step.py --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import aiayn
from aiayn.inference import static_step

POSITIONS = 64


def main() -> None:
    """Compile both ways, check the logits agree, and time interleaved rounds of 64 steps."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--precision", default="int8", choices=["fp32", "bf16", "int8"])
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg = aiayn.ModelConfig.preset("small", dropout=0.0, norm="pre")
    model = static_step.decoding_copy(aiayn.Transformer(cfg).eval(), args.precision)
    src = torch.randint(3, cfg.vocab_size, (1, 64), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        search = static_step.StaticSearch(model, src, torch.ones_like(src, dtype=torch.bool), 1, POSITIONS, None)
    position = torch.tensor([0])
    buffers = (search.token, position, search.kv, search.cross, search.memory, search.memory_keep)
    torch.set_num_threads(1)
    ahead = static_step.StaticStep(model, 1, 1, 64, POSITIONS, static_step.AHEAD_OF_TIME)
    jit = static_step.StaticStep(model, 1, 1, 64, POSITIONS, "inductor")
    with torch.inference_mode():
        reference = static_step.step_logits(model, *buffers).float()
        for name, step in (("AOTInductor", ahead), ("torch.compile", jit)):
            error = float((step(*buffers).float() - reference).abs().max() / reference.std())  # compiles first
            print(f"{name}: compiled in {step.compile_seconds:.1f} s; logits against the uncompiled step: max "
                  f"|difference| {error:.4f} standard deviations")

        def steps(step: object) -> float:
            """Milliseconds per call over POSITIONS calls."""
            begin = time.perf_counter()
            for t in range(POSITIONS):
                position.fill_(t)
                step(*buffers)  # type: ignore[operator]
            return (time.perf_counter() - begin) / POSITIONS * 1000

        steps(ahead), steps(jit)
        ms: dict[str, list[float]] = {"AOTInductor": [], "torch.compile": []}
        for _ in range(args.rounds):
            ms["AOTInductor"].append(steps(ahead))
            ms["torch.compile"].append(steps(jit))
    print(f"{args.precision}, batch 1, one thread, median of {args.rounds} interleaved rounds of {POSITIONS} steps:")
    for name, values in ms.items():
        print(f"  {name}: {statistics.median(values):.3f} ms a step")


if __name__ == "__main__":
    main()
