"""Where a decoding step's time goes: torch.profiler over one greedy search (small preset, pre-LN, random weights,
source 64, 64 new tokens, EOS suppressed) per precision; ops by self time, and calls per step.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/profile_decode.py --precision int8 --batch 1 --beams 1
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

import aiayn

NEW_TOKENS = 64


def main() -> None:
    """Profile one search after a warm-up and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--beams", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = aiayn.Transformer(aiayn.ModelConfig.preset("small", dropout=0.0, norm="pre")).eval()
    model = aiayn.for_decoding(model, args.precision)
    src = torch.randint(3, model.cfg.vocab_size, (args.batch, 64))

    def search() -> object:
        return model.generate(src, beam_size=args.beams, max_new_tokens=NEW_TOKENS, min_length=NEW_TOKENS)

    search()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        search()
    events = prof.key_averages()
    total_ms = sum(e.self_cpu_time_total for e in events) / 1000
    calls = sum(e.count for e in events if e.key.startswith(("aten::", "quantized::")))
    print(f"{args.precision}, batch {args.batch}, beam {args.beams}: {total_ms / NEW_TOKENS:.2f} ms per step "
          f"(profiled), {calls / NEW_TOKENS:.0f} torch op calls per step")
    print(events.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=50))


if __name__ == "__main__":
    main()
