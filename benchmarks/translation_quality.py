"""Translation quality on the bundled Bible (English -> Spanish): test BLEU/chrF on John at fixed steps.

The issue-4 protocol: the "small" preset (3+3 layers, d_model 256, 4 heads, d_ff 1024, dropout 0.1), joint
BPE 8k on the training split, batches of about 4,096 tokens, warmup 1,000 with a peak learning rate of
1e-3, 1,500 optimizer steps; beam 4, alpha 0.6 on the test set (the Gospel of John) at steps 500, 1,000 and
1,500. Prints, per checkpoint: test BLEU and chrF (sacreBLEU, with signatures), target tokens seen, seconds
of training (optimizer steps only) and wall-clock since the start (everything, BPE and evaluations included).

    python benchmarks/translation_quality.py                      # the full protocol (about 40-80 min on 2 cores)
    python benchmarks/translation_quality.py --steps 20 --test-bleu-at 10,20 --out runs/quality-smoke

The reference it is compared with: eole 0.6.4 (pre-LN, same protocol and split, on the same 2-core
machine) reached test BLEU 0.64 at step 500 and 11.86 (chrF 30.2) at step 1,000, at about 3.2 s per step.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

import torch

from aiayn.training.run_folder import read_metrics
from aiayn.training.translation import TrainConfig, train

EOLE = {500: {"test_bleu": 0.64}, 1000: {"test_bleu": 11.86, "test_chrf": 30.2}}
EOLE_SECONDS_PER_STEP = 3.2


def main() -> None:
    """Run the protocol and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/quality-small")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--test-bleu-at", default="500,1000,1500")
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--peak-lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--fresh", action="store_true", help="delete --out first")
    args = parser.parse_args()
    if args.fresh:
        shutil.rmtree(args.out, ignore_errors=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    test_at = [int(s) for s in args.test_bleu_at.split(",") if s]
    print(f"torch {torch.__version__}, torch.get_num_threads()={torch.get_num_threads()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}",
          flush=True)
    cfg = TrainConfig(out=args.out, preset="small", vocab_size=8000, batch_tokens=args.batch_tokens,
                      steps=args.steps, warmup=args.warmup, peak_lr=args.peak_lr, eval_every=0, save_every=500,
                      test_bleu_at=test_at, final_test=True, beam=4, length_penalty=0.6)
    started = time.perf_counter()
    train(cfg)
    wall = time.perf_counter() - started
    rows = [r for r in read_metrics(args.out) if "test_bleu" in r]
    print(f"\n{'step':>6} {'BLEU':>6} {'chrF':>6} {'eole BLEU':>9} {'tgt tokens':>11} {'train s':>8} {'s/step':>7}")
    for r in rows:
        ref = EOLE.get(r["step"], {}).get("test_bleu")
        print(f"{r['step']:>6} {r['test_bleu']:>6.2f} {r['test_chrf']:>6.1f} {'' if ref is None else ref:>9} "
              f"{r['tgt_tokens_seen']:>11,} {r['train_s']:>8.0f} {r['train_s'] / r['step']:>7.2f}")
    if rows:
        print(f"signatures: BLEU {rows[-1]['bleu_signature']}; chrF {rows[-1]['chrf_signature']}")
    print(f"wall-clock, everything included (BPE, evaluations): {wall:.0f}s; eole: ~{EOLE_SECONDS_PER_STEP} s/step")
    print(json.dumps({"rows": rows, "wall_s": round(wall, 1)}), file=sys.stderr)


if __name__ == "__main__":
    main()
