"""Where a training step spends its time: torch.profiler over a few steps of benchmarks/train.py's step.

Prints the operators (on a GPU: the kernels) that take the most device time, grouped into kinds (matmul,
attention, loss, elementwise and norms, optimizer, copies), and the share the device sat idle between them
(on a GPU: time the CPU did not keep it fed). It is the measurement behind issue #8's GPU MFU work:

    python benchmarks/profile_step.py --device cuda --preset paper-base --batch 256
    python benchmarks/profile_step.py --device cuda --preset paper-base --batch 256 --contender "aiayn compile"
    python benchmarks/profile_step.py --preset small --batch 8 --steps 2      # on the CPU
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from common import configure_threads, sync  # noqa: E402
from train import PRESETS, config_for, contender_step, make_batch  # noqa: E402

# (kind, substrings of an operator or kernel name, lower case), first match wins
KINDS = [
    ("attention", ("attention", "flash", "sdpa", "fmha", "efficient_attention")),
    ("matmul", ("gemm", "mm", "matmul", "linear", "addmm", "cutlass", "nvjet", "sm90_xmma")),
    ("loss (log_softmax, gather)", ("log_softmax", "softmax", "gather", "scatter", "nll", "cross_entropy")),
    ("optimizer", ("adam", "foreach", "multi_tensor")),
    ("norm / dropout / elementwise", ("layer_norm", "norm", "dropout", "bernoulli", "rand", "add", "mul",
                                      "relu", "elementwise", "vectorized", "triton", "where", "fill")),
    ("copies / casts", ("copy", "cast", "to_copy", "memcpy", "memset", "cat", "index")),
]


def kind_of(name: str) -> str:
    """The kind an operator or kernel name belongs to."""
    lowered = name.lower()
    return next((kind for kind, keys in KINDS if any(key in lowered for key in keys)), "other")


def main() -> None:
    """Profile a few warm steps of one contender and print where the device time goes."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="paper-base", choices=sorted(PRESETS))
    parser.add_argument("--batch", type=int, default=None, help="sentences per batch (default: the preset's)")
    parser.add_argument("--contender", default="aiayn", help='a benchmarks/train.py contender, e.g. "aiayn compile"')
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    parser.add_argument("--steps", type=int, default=5, help="profiled steps, after 3 warm-up steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=25, help="how many operators/kernels to list")
    args = parser.parse_args()

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    on_gpu = device.type == "cuda"
    print(configure_threads(args.threads))
    cfg = config_for(args.preset)
    shape = dict(PRESETS[args.preset])
    if args.batch:
        shape["batch"] = args.batch
    step = contender_step(args.contender, cfg, make_batch(cfg.vocab_size, shape["batch"], shape["src_len"],
                                                          shape["tgt_len"]), device)
    for _ in range(3):  # warm-up (compiles a "... compile" contender)
        step()
    sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    with profile(activities=activities) as prof:
        started = time.perf_counter()
        for _ in range(args.steps):
            step()
        sync(device)
        wall = (time.perf_counter() - started) / args.steps
    print(f"{args.contender}, preset {args.preset}, B={shape['batch']} S={shape['src_len']} T={shape['tgt_len']}, "
          f"device {device}: {wall * 1e3:.1f} ms per step (profiled, {args.steps} steps)")

    # self times: each microsecond counted once, in the operator or kernel that spent it. On a GPU the
    # kernels carry the device time (the CPU operators that launched them have none of their own).
    metric = "self_device_time_total" if on_gpu else "self_cpu_time_total"
    times = [(e.key, getattr(e, metric) / 1e3) for e in prof.key_averages()]  # ms, all steps
    total_device = sum(ms for _, ms in times) / args.steps
    by_name: dict[str, float] = {}
    by_kind: dict[str, float] = {}
    for name, ms in times:
        by_name[name] = by_name.get(name, 0.0) + ms / args.steps
        by_kind[kind_of(name)] = by_kind.get(kind_of(name), 0.0) + ms / args.steps
    busy = total_device / (wall * 1e3)
    label = "kernel (device time)" if on_gpu else "operator (self CPU time)"
    print(f"device busy {total_device:.1f} ms of {wall * 1e3:.1f} ms per step ({busy:.0%}; on a GPU the rest is "
          f"idle: launches, host waits)" if on_gpu else f"operators: {total_device:.1f} ms per step")
    print(f"{'kind':32} {'ms/step':>9} {'share':>6}")
    for kind, ms in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"{kind:32} {ms:9.2f} {ms / total_device:6.1%}")
    print(f"\ntop {args.top} by {label}:")
    for name, ms in sorted(by_name.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"{ms:9.2f} ms {ms / total_device:6.1%}  [{kind_of(name)}] {name[:100]}")


if __name__ == "__main__":
    main()
