"""Padding waste of token-budget bucketed batches against naive fixed-size batches on the bundled corpus.

Bucketed: aiayn's TokenBatcher (sentences sorted by length, cut into batches of at most N padded source
and N padded target tokens, §5.1). Naive: the same sentences in random order, cut into batches of a fixed
number of sentences (the mean number per bucketed batch, so both see the same batches per epoch).

    python benchmarks/padding.py --batch-tokens 2048 4096
"""

from __future__ import annotations

import argparse
import random

from aiayn.data.batching import TokenBatcher
from aiayn.data.corpus import BUNDLED, load_corpus
from aiayn.data.tokenizer import encode_batch, train_bpe


def real_fraction(lengths: list[list[tuple[int, int]]]) -> tuple[float, float]:
    """(source, target) share of real tokens over padded tokens, for batches of (src_len, tgt_len)."""
    real_src = sum(s for batch in lengths for s, _ in batch)
    real_tgt = sum(t for batch in lengths for _, t in batch)
    padded_src = sum(len(batch) * max(s for s, _ in batch) for batch in lengths)
    padded_tgt = sum(len(batch) * max(t for _, t in batch) for batch in lengths)
    return real_src / padded_src, real_tgt / padded_tgt


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-tokens", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--vocab-size", type=int, default=8000)
    args = parser.parse_args()
    corpus = load_corpus(BUNDLED)
    tokenizer = train_bpe((text for pair in corpus.train for text in pair), args.vocab_size)
    src = encode_batch(tokenizer, [s for s, _ in corpus.train])
    tgt = encode_batch(tokenizer, [t for _, t in corpus.train])
    sizes = [(len(s) + 1, len(t) + 1) for s, t in zip(src, tgt)]  # + EOS on the source, + BOS/EOS on the target
    print(f"{len(sizes):,} training pairs of the bundled corpus, joint BPE {args.vocab_size:,}")
    print(f"{'batch tokens':>12} {'batching':>9} {'batches':>8} {'real src':>9} {'real tgt':>9}")
    for budget in args.batch_tokens:
        batcher = TokenBatcher([([0] * s, [0] * (t - 1)) for s, t in sizes], budget, seed=1)
        bucketed = [[sizes[i] for i in batch] for batch in batcher.epoch(0)]
        per_batch = round(len(sizes) / len(bucketed))
        order = list(range(len(sizes)))
        random.Random(1).shuffle(order)
        naive = [[sizes[i] for i in order[k:k + per_batch]] for k in range(0, len(order), per_batch)]
        for name, batches in (("bucketed", bucketed), ("naive", naive)):
            real_src, real_tgt = real_fraction(batches)
            print(f"{budget:>12} {name:>9} {len(batches):>8} {real_src:>9.1%} {real_tgt:>9.1%}")


if __name__ == "__main__":
    main()
