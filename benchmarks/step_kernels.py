"""The kernels a batched decoding step can call on the CPU, one thread: which of torch's is fastest per shape.

A decoding step of the "small" preset (d_model 256, d_ff 1024, 4 heads, vocabulary 8,000) at 1-16 rows is
~20 linear layers, 6 single-query attentions and the output projection. This times each kind alone, with
the step's shapes, on one intra-op thread (as each of inference.workers' processes runs):

- linear layers (M rows x K -> N): fbgemm's dynamic int8 (`quantize.Int8Linear`, eager int8 decoding),
  weight-only int8 (`torch._weight_int8pack_mm`, bf16 activations: the form compiled int8 steps ran), bf16 and
  fp32 `F.linear`; for the output projection also oneDNN's int8 (`torch.ops.onednn.qlinear_pointwise`,
  activations already quantized) and `torch._int_mm` (int8 x int8 -> int32, activations already quantized);
- single-query attention over a (B, H, T, d_k) cache: torch's fused `scaled_dot_product_attention` and the
  explicit matmul-softmax-matmul, in fp32 and bf16.

"hot" repeats one call on the same tensors (they stay in cache); "cold" rotates through copies whose
bytes exceed the L2 cache and touches 5 MB between calls, as a step does between two uses of one layer's
weights or keys. Medians of 5 repeats, microseconds per call.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/step_kernels.py
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

from aiayn.inference.quantize import Int8Linear, _row_scales

COPIES = 6  # tensors rotated through in the cold runs
_JUNK = torch.zeros(5 * 2**20 // 4)  # 5 MB touched between cold calls


def per_call_us(fn: Callable[[int], object], cold: bool, calls: int = 60) -> float:
    """Median over 5 repeats of the microseconds of fn(copy index) per call; cold: rotate copies, touch _JUNK."""
    for _ in range(5):
        fn(0)
    repeats = []
    for _ in range(5):
        total = 0.0
        for call in range(calls):
            if cold:
                _JUNK.add_(1.0)
            start = time.perf_counter()
            fn(call % COPIES if cold else 0)
            total += time.perf_counter() - start
        repeats.append(total / calls * 1e6)
    return statistics.median(repeats)


def linear_contenders(in_features: int, out_features: int, rows: int) -> dict[str, Callable[[int], object]]:
    """Each kernel on its own COPIES weights of (out, in) and one input of `rows` rows."""
    weights = [torch.nn.Linear(in_features, out_features) for _ in range(COPIES)]
    fbgemm = [Int8Linear(w.weight.detach(), w.bias.detach()) for w in weights]
    scales = [_row_scales(w.weight) for w in weights]  # (out,)
    weight_only = [((w.weight.detach() / s[:, None]).round().clamp(-127, 127).to(torch.int8), s.bfloat16())
                   for w, s in zip(weights, scales)]
    bf16 = [(w.weight.detach().bfloat16(), w.bias.detach().bfloat16()) for w in weights]
    fp32 = [(w.weight.detach(), w.bias.detach()) for w in weights]
    x = torch.randn(rows, in_features)
    x_bf16 = x.bfloat16()
    out = {"fbgemm int8 (dynamic)": lambda i: fbgemm[i](x),
           "weight-only int8": lambda i: torch._weight_int8pack_mm(x_bf16, *weight_only[i]),
           "bf16": lambda i: F.linear(x_bf16, *bf16[i]),
           "fp32": lambda i: F.linear(x, *fp32[i])}
    if out_features >= 4096:  # the output projection: the other int8 GEMMs too
        int8 = [torch.randint(-127, 128, (out_features, in_features), dtype=torch.int8) for _ in range(COPIES)]
        scales, zeros = torch.rand(out_features) * 0.01, torch.zeros(out_features, dtype=torch.long)
        onednn = [torch.ops.onednn.qlinear_prepack(w, [rows, in_features]) for w in int8]
        x_u8 = torch.randint(0, 255, (rows, in_features), dtype=torch.uint8)
        x_s8 = torch.randint(-127, 128, (rows, in_features), dtype=torch.int8)
        columns = [w.t() for w in int8]  # (in, out), column-major
        out["oneDNN int8 (quantized input)"] = lambda i: torch.ops.onednn.qlinear_pointwise(
            x_u8, 0.02, 128, onednn[i], scales, zeros, None, 1.0, 0, torch.float32, "none", [], "")
        out["_int_mm (quantized input)"] = lambda i: torch._int_mm(x_s8, columns[i])
    return out


def attention_contenders(rows: int, keys: int, heads: int = 4, d_k: int = 64) -> dict[str, Callable[[int], object]]:
    """Single-query attention of `rows` rows over `keys` cached keys, fused and explicit, fp32 and bf16."""
    out = {}
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        q = [torch.randn(rows, heads, 1, d_k, dtype=dtype) for _ in range(COPIES)]
        k = [torch.randn(rows, heads, keys, d_k, dtype=dtype) for _ in range(COPIES)]
        v = [torch.randn(rows, heads, keys, d_k, dtype=dtype) for _ in range(COPIES)]

        def fused(i: int, q=q, k=k, v=v) -> torch.Tensor:
            return F.scaled_dot_product_attention(q[i], k[i], v[i])

        def explicit(i: int, q=q, k=k, v=v) -> torch.Tensor:
            scores = torch.matmul(q[i], k[i].transpose(-2, -1)) / d_k ** 0.5  # (B, H, 1, T)
            return torch.matmul(scores.softmax(-1), v[i])

        out[f"fused {name}"], out[f"explicit {name}"] = fused, explicit
    return out


def table(title: str, shapes: list[tuple[str, dict[str, Callable[[int], object]]]]) -> None:
    """Print one markdown table: a row per shape, hot / cold microseconds per contender."""
    names = list(shapes[0][1])
    print(f"\n{title} (us per call, hot / cold; one thread)")
    print("| shape | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for shape, contenders in shapes:
        cells = [f"{per_call_us(contenders[n], False):.0f} / {per_call_us(contenders[n], True):.0f}" for n in names]
        print(f"| {shape} | " + " | ".join(cells) + " |", flush=True)


@torch.inference_mode()
def main() -> None:
    """Time the step's linear layers, its output projection and its attention, per row count."""
    warnings.filterwarnings("ignore", category=UserWarning)  # torch's deprecation notes on quantized tensors
    torch.set_num_threads(1)
    table("linear layers of a decoder layer", [
        (f"{rows} x {k} -> {n}", linear_contenders(k, n, rows))
        for k, n in ((256, 768), (256, 1024), (1024, 256)) for rows in (1, 8, 16)])
    table("output projection", [(f"{rows} x 256 -> 8000", linear_contenders(256, 8000, rows)) for rows in (1, 8, 16)])
    table("single-query attention, 4 heads of 64", [
        (f"{rows} rows x {keys} keys", attention_contenders(rows, keys)) for rows in (1, 8, 16) for keys in (64,)])


if __name__ == "__main__":
    main()
