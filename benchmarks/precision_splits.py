"""Where reduced-precision greedy search leaves fp32's path, and how close fp32's own choice was there.

Translates the bundled test split (John) greedily with a trained translator in fp32 and in each reduced
precision; for every verse whose tokens differ, finds the first differing position and reads fp32's
log-probability margin between its best and second-best token there (teacher-forced on fp32's own output).
The same margin over all of fp32's positions (every 7th verse) is the baseline: a split at a margin far
below the typical one is a near-tie that rounding decided, not a change in what the model prefers.

    python benchmarks/precision_splits.py runs/NAME/model --precisions bf16 int8 --threads 1

(Its int8-weight-only contender went with the compiled searches in #34.)
"""

from __future__ import annotations

import argparse
import statistics

import torch

import aiayn
from aiayn.data.corpus import load_corpus
from aiayn.data.tokenizer import encode_source, load_tokenizer

BATCH = 32


def greedy(model: aiayn.Transformer, sources: list[list[int]]) -> list[list[int]]:
    """Greedy token ids of every source, searched in length-sorted batches of BATCH."""
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    out: list[list[int]] = [[] for _ in sources]
    for start in range(0, len(order), BATCH):
        rows = order[start:start + BATCH]
        src = torch.full((len(rows), max(len(sources[i]) for i in rows)), model.cfg.pad_id)
        for r, i in enumerate(rows):
            src[r, :len(sources[i])] = torch.tensor(sources[i])
        for r, ids in zip(rows, model.generate(src, beam_size=1)):
            out[r] = ids
    return out


@torch.inference_mode()
def margins(model: aiayn.Transformer, source: list[int], target: list[int]) -> list[float]:
    """fp32 log P(best) - log P(second best) at each position of `target` (+ EOS), teacher-forced."""
    tgt = torch.tensor([[model.cfg.bos_id, *target]])  # (1, T)
    log_probs = model(torch.tensor([source]), tgt).log_softmax(-1)[0]  # (T, V)
    top = log_probs.topk(2, dim=-1).values  # (T, 2)
    return (top[:, 0] - top[:, 1]).tolist()


def share(values: list[float], below: float) -> float:
    """Fraction of values under `below`."""
    return sum(v < below for v in values) / len(values)


def main() -> None:
    """Agreement with fp32 and fp32's margin at each first split, per precision."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a trained translator folder")
    parser.add_argument("--precisions", nargs="+", default=["bf16", "int8"], choices=["bf16", "int8"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = aiayn.load(args.model).eval(), load_tokenizer(args.model)
    sources = [encode_source(tok, s) for s, _ in load_corpus().test]
    reference = greedy(model, sources)
    everywhere = [m for i in range(0, len(sources), 7) for m in margins(model, sources[i], reference[i])]
    print(f"{args.model}: {len(sources)} test verses, greedy, {torch.get_num_threads()} thread(s)")
    print(f"fp32's margin (log P best - log P second) over {len(everywhere)} positions of every 7th verse: "
          f"median {statistics.median(everywhere):.3f}; below 0.05: {share(everywhere, 0.05):.1%}, "
          f"below 0.01: {share(everywhere, 0.01):.1%}")
    for precision in args.precisions:
        copy = aiayn.for_decoding(model, precision)
        output = greedy(copy, sources)
        at_split = []
        for i, (ours, theirs) in enumerate(zip(reference, output)):
            if ours != theirs:
                first = next((j for j, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
                at_split.append(margins(model, sources[i], reference[i])[first])
        same = len(sources) - len(at_split)
        print(f"{precision}: {same}/{len(sources)} verses identical to fp32 ({same / len(sources):.1%})", end="")
        if at_split:
            at_split.sort()
            print(f"; fp32's margin at the first split: median {statistics.median(at_split):.3f}, 90th percentile "
                  f"{at_split[int(0.9 * len(at_split))]:.3f}, largest {at_split[-1]:.3f}; below 0.05: "
                  f"{share(at_split, 0.05):.0%}", end="")
        print(flush=True)


if __name__ == "__main__":
    main()
