"""How one training step's time grows with sentence length: the small Transformer against the recurrent baseline.

§4 (Table 1): self-attention costs O(n^2 d) per layer in O(1) sequential operations; a recurrent layer O(n d^2)
in O(n) sequential operations. On a CPU at one thread nothing runs in parallel anyway, so this measures the
work and the per-operation overheads of n sequential steps, not the parallelism a GPU would add.
Both models have ~7.6M parameters (presets "small"); the batch has B sentences of L source and L target
tokens (random ids, no padding); a step is forward + label-smoothed loss + backward, teacher-forced.

    python benchmarks/length_scaling.py --threads 1 --lengths 16 32 64 128 256
"""

from __future__ import annotations

import argparse

import torch
from common import configure_threads, interleaved, median

from aiayn.model.config import ModelConfig, RNNConfig
from aiayn.model.models import Transformer
from aiayn.model.recurrent import RecurrentSeq2Seq
from aiayn.training.loss import label_smoothed_loss


def training_step(model: torch.nn.Module, src: torch.Tensor, tgt: torch.Tensor) -> None:
    """Forward, loss and backward of one teacher-forced batch."""
    model.zero_grad(set_to_none=True)
    loss = label_smoothed_loss(model(src, tgt), tgt, 0.1, model.cfg.pad_id)
    loss.backward()


def main() -> None:
    """Print seconds per step and per target token for each length and model, and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    parser.add_argument("--batch", type=int, default=8, help="sentences per batch (B)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    print(configure_threads(args.threads))
    torch.manual_seed(0)
    vocab = 8000
    models = {"transformer": Transformer(ModelConfig.preset("small", vocab_size=vocab, dropout=0.1)),
              "rnn": RecurrentSeq2Seq(RNNConfig.preset("small", vocab_size=vocab)),
              "rnn, no input feeding": RecurrentSeq2Seq(RNNConfig.preset("small", vocab_size=vocab,
                                                                          input_feeding=False))}
    for name, model in models.items():
        model.train()
        print(f"{name}: {model.num_parameters():,} parameters")
    print(f"B={args.batch} sentences of L source and L target tokens; median of {args.rounds} interleaved rounds")
    print(f"{'L':>4s} " + " ".join(f"{name + ' s/step':>28s}" for name in models) + "   rnn / transformer")
    first: dict[str, float] = {}
    for length in args.lengths:
        src = torch.randint(4, vocab, (args.batch, length))
        tgt = torch.randint(4, vocab, (args.batch, length))
        times = interleaved({name: (lambda m=m, s=src, t=tgt: training_step(m, s, t)) for name, m in models.items()},
                            args.rounds, torch.device("cpu"))
        seconds = {name: median(t) for name, t in times.items()}
        first = first or seconds
        cells = " ".join(f"{s:9.3f} ({s / first[name]:5.1f}x L={args.lengths[0]})".rjust(28)
                         for name, s in seconds.items())
        print(f"{length:4d} {cells}   {seconds['rnn'] / seconds['transformer']:5.2f}x "
              f"({seconds['rnn, no input feeding'] / seconds['transformer']:.2f}x without input feeding)")


if __name__ == "__main__":
    main()
