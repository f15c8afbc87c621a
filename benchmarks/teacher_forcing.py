"""Teacher forcing, measured: what feeding the true prefix saves in training, and what it hides at test time.

(a) One batch, one training step (forward + backward): the teacher-forced step (the decoder reads the true
    target prefix, every position in one pass for the Transformer) against a free-running decoder that feeds
    its own greedy predictions back in, one position at a time on the decoding cache, scored on the same
    labels. For the trained translator, and for a freshly initialised RNN of the same size (speed only).
(b) On a trained translator's dev set, by target position: token accuracy (argmax = reference) and the
    reference token's loss, once with the true prefix and once with the model's own greedy prefix (exposure
    bias: the model never trained on its own mistakes). The gap by position goes into a PNG.

    python benchmarks/teacher_forcing.py --model runs/gettext-en-es/model --threads 1 \\
        --out benchmarks/results/teacher-forcing-cpu
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import sys
import time
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from common import configure_threads, median  # noqa: E402

from aiayn.data.batching import collate  # noqa: E402
from aiayn.data.corpus import BUNDLED, load_corpus  # noqa: E402
from aiayn.data.tokenizer import encode_batch  # noqa: E402
from aiayn.io.loading import load_with_tokenizer  # noqa: E402
from aiayn.model.config import RNNConfig  # noqa: E402
from aiayn.model.recurrent import RecurrentSeq2Seq  # noqa: E402
from aiayn.training.loss import label_smoothed_loss  # noqa: E402

REPO = Path(__file__).resolve().parents[1]  # the repository root: relative data paths in train.json start here
# Where trained translators live (the first found is used without --model).
SEARCHED = (f"{REPO}/runs/*/model", f"{REPO}/runs/levers/*/model")


def find_model() -> Path | None:
    """The first trained translator folder in SEARCHED, or None."""
    for pattern in SEARCHED:
        for folder in sorted(glob.glob(pattern)):
            if (Path(folder) / "model.safetensors").is_file():
                return Path(folder)
    return None


def dev_pairs(model_dir: Path, root: Path, limit: int) -> list[tuple[str, str]]:
    """The dev split of the run that trained model_dir (its train.json, paths relative to `root`)."""
    settings = json.loads((model_dir.parent / "train.json").read_text(encoding="utf-8"))

    def path(name: str) -> str | None:
        value = settings.get(name)
        if value is None or value == BUNDLED:  # the bundled corpus's name is no path
            return value
        return str(root / value) if not Path(value).is_absolute() else value

    corpus = load_corpus(path("data") or settings["data"], path("target"), path("dev"), path("dev_target"),
                         None, None, settings.get("dev_size", 500), settings.get("test_size", 1000),
                         settings.get("split_seed", 1))
    return corpus.dev[:limit]


@torch.no_grad()
def free_running(model: torch.nn.Module, src: torch.Tensor, steps: int) -> torch.Tensor:
    """Logits (B, steps, V) of a decoder fed its own greedy predictions from BOS, on the decoding cache."""
    keep = src != model.cfg.pad_id
    memory = model.encode(src, keep)
    caches = model.new_caches(steps)
    token = torch.full((src.shape[0], 1), model.cfg.bos_id, dtype=torch.long)
    every = []
    for t in range(steps):
        hidden = model.decode_step(token, memory, keep[:, None, None, :], caches, t)  # (B, 1, d)
        logits = model.output_logits(hidden[:, -1])  # (B, V)
        every.append(logits)
        token = logits.argmax(-1, keepdim=True)
    return torch.stack(every, 1)


def free_running_step(model: torch.nn.Module, src: torch.Tensor, steps: int) -> torch.Tensor:
    """Logits (B, steps, V) with gradients after the model's own greedy prefix: the prefix decoded on the cache
    (no gradient flows through an argmax), then one decoder pass over it. The logits are the free-running
    decoder's (a decoder's output at t depends only on the prefix before t); the aiayn KV cache writes in place,
    which autograd refuses, so the gradient comes from the one pass. Greedy decoding runs without dropout."""
    model.eval()
    own = free_running(model, src, steps).argmax(-1)  # (B, steps)
    model.train()
    prefix = torch.cat([torch.full_like(own[:, :1], model.cfg.bos_id), own[:, :-1]], 1)
    return model(src, prefix)


def step_times(model: torch.nn.Module, batch, rounds: int) -> dict[str, tuple[float, float]]:
    """Median seconds of one forward + backward and the loss per token, teacher-forced and free-running."""
    model.train()
    runs = {"teacher-forced": lambda: model(batch.src, batch.tgt_in),
            "free-running": lambda: free_running_step(model, batch.src, batch.tgt_in.shape[1])}
    times: dict[str, list[float]] = {name: [] for name in runs}
    losses: dict[str, float] = {}
    torch.manual_seed(0)
    for _ in range(rounds + 1):  # the first round warms up
        for name, run in runs.items():
            model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            loss = label_smoothed_loss(run(), batch.labels, 0.0, model.cfg.pad_id) / batch.n_tokens
            loss.backward()
            times[name].append(time.perf_counter() - start)
            losses[name] = float(loss.detach())
    model.eval()
    return {name: (median(t[1:]), losses[name]) for name, t in times.items()}


@torch.no_grad()
def by_position(model: torch.nn.Module, examples: list, batch_size: int, cap: int) -> dict[str, list[float]]:
    """Per target position < cap: tokens, correct argmaxes and summed reference loss, true vs own prefix."""
    sums = {key: [0.0] * cap for key in ("n", "true_ok", "true_nll", "own_ok", "own_nll")}
    order = sorted(range(len(examples)), key=lambda i: len(examples[i][1]))
    for first in range(0, len(order), batch_size):
        batch = collate([examples[i] for i in order[first:first + batch_size]], model.cfg.pad_id,
                        model.cfg.bos_id, model.cfg.eos_id)
        labels = batch.labels  # (B, T): target + EOS, padded
        for key, logits in (("true", model(batch.src, batch.tgt_in)),
                            ("own", free_running(model, batch.src, labels.shape[1]))):
            nll = -logits.float().log_softmax(-1).gather(-1, labels[..., None])[..., 0]  # (B, T)
            ok = logits.argmax(-1) == labels
            real = labels != model.cfg.pad_id
            for t in range(min(cap, labels.shape[1])):
                sums[f"{key}_ok"][t] += float(ok[:, t][real[:, t]].sum())
                sums[f"{key}_nll"][t] += float(nll[:, t][real[:, t]].sum())
                if key == "true":
                    sums["n"][t] += float(real[:, t].sum())
    return sums


def plot(sums: dict[str, list[float]], path: Path, title: str, min_tokens: int) -> None:
    """Accuracy and loss by position, true vs own prefix, and their gap (positions with >= min_tokens)."""
    shown = [t for t, n in enumerate(sums["n"]) if n >= min_tokens]
    acc = {k: [sums[f"{k}_ok"][t] / sums["n"][t] for t in shown] for k in ("true", "own")}
    nll = {k: [sums[f"{k}_nll"][t] / sums["n"][t] for t in shown] for k in ("true", "own")}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].plot(shown, acc["true"], label="true prefix (teacher forcing)")
    axes[0].plot(shown, acc["own"], label="own greedy prefix (free running)")
    axes[0].plot(shown, [a - b for a, b in zip(acc["true"], acc["own"])], "k--", label="gap")
    axes[0].set(xlabel="target position", ylabel="token accuracy", title="accuracy by position")
    axes[1].plot(shown, nll["true"], label="true prefix")
    axes[1].plot(shown, nll["own"], label="own greedy prefix")
    axes[1].set(xlabel="target position", ylabel="reference token NLL (nats)", title="loss by position")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    """Run (a) and (b) and print the tables; write OUT.txt's figures via stdout and OUT.png."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help=f"a trained translator's model folder (default: first of "
                                                   f"{', '.join(SEARCHED)})")
    parser.add_argument("--root", type=Path, default=REPO, help="where train.json's relative "
                                                                              "data paths start")
    parser.add_argument("--sentences", type=int, default=200, help="dev sentences for (b)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--positions", type=int, default=60, help="target positions reported")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds for (a)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/teacher-forcing-cpu"),
                        help="OUT.png is written; print to OUT.txt yourself (tee)")
    args = parser.parse_args()
    print(configure_threads(args.threads))
    model_dir = args.model or find_model()
    if model_dir is None:
        print(f"no trained translator found in {', '.join(SEARCHED)}: skipped (give --model DIR)")
        return
    model, tokenizer = load_with_tokenizer(model_dir, "cpu", "transformer")
    pairs = dev_pairs(model_dir, args.root, args.sentences)
    src = encode_batch(tokenizer, [s for s, _ in pairs])
    tgt = encode_batch(tokenizer, [t for _, t in pairs])
    examples = [(s + [model.cfg.eos_id], t) for s, t in zip(src, tgt)]
    print(f"model {model_dir} ({model.model_type}, {model.num_parameters():,} parameters); {len(examples)} dev "
          f"pairs of the run's own dev split")

    # (a) one batch of the first batch_size dev pairs (as the trainer pads them)
    batch = collate(examples[:args.batch_size], model.cfg.pad_id, model.cfg.bos_id, model.cfg.eos_id)
    print(f"\n(a) one training step (forward + backward), batch of {batch.src.shape[0]} sentences, "
          f"S={batch.src.shape[1]} T={batch.tgt_in.shape[1]}, {batch.n_tokens} target tokens; median of "
          f"{args.rounds} rounds")
    rnn = RecurrentSeq2Seq(RNNConfig.preset("small", vocab_size=model.cfg.vocab_size))
    print(f"{'model':34s} {'teacher-forced s':>16s} {'free-running s':>15s} {'ratio':>6s} "
          f"{'TF loss':>8s} {'FR loss':>8s}")
    for name, net in ((f"trained {model.model_type}", model), (f"fresh rnn ({rnn.num_parameters():,} params)", rnn)):
        result = step_times(net, batch, args.rounds)
        (tf_s, tf_loss), (fr_s, fr_loss) = result["teacher-forced"], result["free-running"]
        print(f"{name:34s} {tf_s:16.3f} {fr_s:15.3f} {fr_s / tf_s:5.1f}x {tf_loss:8.3f} {fr_loss:8.3f}")
    print("(loss: NLL per target token of the reference, no label smoothing; free running scores the reference "
          "token at each position after the model's own prefix)")

    # (b) by position on the dev set
    started = time.perf_counter()
    sums = by_position(model.eval(), examples, args.batch_size, args.positions)
    total = sum(sums["n"])
    print(f"\n(b) dev token accuracy and loss by target position, {int(total)} tokens "
          f"({time.perf_counter() - started:.0f}s)")
    for key, words in (("true", "true prefix"), ("own", "own greedy prefix")):
        nll = sum(sums[f"{key}_nll"]) / total
        print(f"  {words:18s}: accuracy {sum(sums[f'{key}_ok']) / total:.3f}, NLL {nll:.3f} nats/token "
              f"(ppl {math.exp(nll):.1f})")
    print(f"{'pos':>4s} {'tokens':>7s} {'acc true':>9s} {'acc own':>8s} {'gap':>6s} {'nll true':>9s} {'nll own':>8s}")
    for t, n in enumerate(sums["n"]):
        if n and (t < 10 or t % 5 == 0):
            at, ao = sums["true_ok"][t] / n, sums["own_ok"][t] / n
            print(f"{t:4d} {int(n):7d} {at:9.3f} {ao:8.3f} {at - ao:6.3f} {sums['true_nll'][t] / n:9.3f} "
                  f"{sums['own_nll'][t] / n:8.3f}")
    png = args.out.with_suffix(".png")
    png.parent.mkdir(parents=True, exist_ok=True)
    plot(sums, png, f"{model_dir}: {len(examples)} dev sentences; positions with >= 20 tokens", 20)
    print(f"\nplot: {png}")


if __name__ == "__main__":
    sys.exit(main())
