"""torch's fused CPU attention kernel against the explicit matmul-softmax-matmul, in bf16, forward + backward
(training) and a one-query cached step (decoding), interleaved rounds, medians in milliseconds.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/attention_kernel.py [--threads 2]

aiayn.model.attention.attend takes the explicit formula on a CPU in half precision for keys up to
EXPLICIT_MAX_KEYS long; this script is the measurement behind that threshold.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

Attention = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


def explicit(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """softmax(Q K^T / sqrt(d_k)) V with the softmax in fp32, as aiayn's attend does."""
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B, H, Tq, Tk)
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), -1, dtype=torch.float32).to(q.dtype)
    return weights @ v


def fused(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """torch's scaled_dot_product_attention (its fused CPU kernel)."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def time_one(fn: Attention, batch: int, keys: int, queries: int, train: bool, reps: int = 6) -> float:
    """Median seconds of one call (with its backward when train) on random bf16 inputs, 8 heads of 64."""
    q = torch.randn(batch, 8, queries, 64, dtype=torch.bfloat16, requires_grad=train)
    k, v = (torch.randn(batch, 8, keys, 64, dtype=torch.bfloat16, requires_grad=train) for _ in range(2))
    mask = (torch.ones(keys, keys, dtype=torch.bool).tril()[None, None] if queries == keys
            else torch.ones(batch, 1, 1, keys, dtype=torch.bool))  # causal (training), padding (a decode step)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        if train:
            fn(q, k, v, mask).float().sum().backward()
        else:
            with torch.no_grad():
                fn(q, k, v, mask)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    """Print one line per shape: fused and explicit milliseconds, and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases = [("train", b, t, t) for b, t in [(56, 40), (32, 64), (16, 128), (8, 256), (4, 512), (2, 1024)]]
    cases += [("decode", b, t, 1) for b, t in [(1, 64), (16, 64), (64, 64), (16, 256)]]
    print(f"bf16, {args.threads} threads, 8 heads x 64, median of {args.rounds} interleaved rounds (ms)")
    print("case    batch  keys   fused  explicit  fused/explicit")
    for kind, batch, keys, queries in cases:
        rounds: dict[str, list[float]] = {"fused": [], "explicit": []}
        for _ in range(args.rounds):
            for name, fn in (("fused", fused), ("explicit", explicit)):
                rounds[name].append(time_one(fn, batch, keys, queries, kind == "train"))
        f, e = (statistics.median(rounds[n]) * 1e3 for n in ("fused", "explicit"))
        print(f"{kind:7} {batch:5} {keys:5} {f:7.2f} {e:9.2f} {f / e:15.2f}")


if __name__ == "__main__":
    main()
