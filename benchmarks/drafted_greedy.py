"""Greedy search drafted in int8 and checked in fp32 (generate(draft="int8")), against fp32 and int8 alone.

On a trained translator and the bundled test split (John), one verse at a time (batch 1, as an interactive
translator runs): the share of verses whose tokens equal fp32 greedy search's, test BLEU, and new tokens/s
over every 7th verse in interleaved rounds (each contender once per round, after a warm-up on 8 verses).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/drafted_greedy.py runs/NAME/model --draft-tokens 2 4 8 --rounds 3

--compile inductor aoti adds the draft on the compiled fixed-shape step (inference.static_step; int8 weight-only):
its shapes (source length rounded to 32, output capacity to 64) compile during the agreement pass.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from sacrebleu.metrics import BLEU

import aiayn
from aiayn.data.corpus import load_corpus
from aiayn.data.tokenizer import decode, encode_source, load_tokenizer

Search = Callable[[torch.Tensor], list[int]]


def search_each(search: Search, sources: list[list[int]]) -> list[list[int]]:
    """Greedy token ids of every source, one at a time."""
    return [search(torch.tensor([source])) for source in sources]


def main() -> None:
    """Agreement with fp32, BLEU, then interleaved timing rounds."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a trained translator folder")
    parser.add_argument("--draft-tokens", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", nargs="*", default=[], choices=["inductor", "aoti"],
                        help="also drafted by the compiled int8 step (weight-only; generate(draft='int8', "
                             "compile=...)), for each backend named; every shape compiles on first use")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = aiayn.load(args.model).eval(), load_tokenizer(args.model)
    int8 = aiayn.for_decoding(model, "int8")
    test = load_corpus().test
    sources = [encode_source(tok, s) for s, _ in test]
    searches: dict[str, Search] = {
        "fp32": lambda src: model.generate(src, beam_size=1)[0],
        "int8": lambda src: int8.generate(src, beam_size=1)[0],
        **{f"fp32 drafted by int8, {k} tokens": (
            lambda src, k=k: model.generate(src, beam_size=1, draft=int8, draft_tokens=k)[0])
           for k in args.draft_tokens},
        **{f"fp32 drafted by {backend} int8, {k} tokens": (
            lambda src, k=k, backend=backend: model.generate(src, beam_size=1, draft="int8", draft_tokens=k,
                                                             compile=True if backend == "inductor" else backend)[0])
           for backend in args.compile for k in args.draft_tokens}}
    print(f"{args.model}: {len(sources)} test verses, greedy, batch 1, torch threads {torch.get_num_threads()} "
          f"(each step chooses 1 or all: generate's default)")
    outputs = {name: search_each(search, sources) for name, search in searches.items()}
    bleu = BLEU()
    references = [[t for _, t in test]]
    for name, output in outputs.items():
        same = sum(a == b for a, b in zip(output, outputs["fp32"]))
        score = bleu.corpus_score([decode(tok, ids) for ids in output], references).score
        print(f"{name}: {same}/{len(sources)} verses identical to fp32 ({same / len(sources):.1%}), "
              f"BLEU {score:.2f}", flush=True)
    subset = sources[::7]
    new_tokens = sum(len(ids) + 1 for ids in outputs["fp32"][::7])  # + EOS
    for search in searches.values():
        search_each(search, subset[:8])
    seconds: dict[str, list[float]] = {name: [] for name in searches}
    for _ in range(args.rounds):
        for name, search in searches.items():
            start = time.perf_counter()
            search_each(search, subset)
            seconds[name].append(time.perf_counter() - start)
    print(f"\nnew tokens/s over {len(subset)} verses (every 7th, {new_tokens} fp32 tokens), median of {args.rounds} "
          f"interleaved rounds")
    print("| search | new tokens/s | against fp32 |")
    print("|---|---:|---:|")
    fp32 = statistics.median(seconds["fp32"])
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"| {name} | {new_tokens / median:.0f} | {fp32 / median:.2f}x |")


if __name__ == "__main__":
    main()
