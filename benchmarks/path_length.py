"""§4's maximum path length, measured: how far a trained encoder looks, and how far a token's influence reaches.

(1) Transformer only: the attention weight each encoder self-attention layer gives to a key at distance
    d = |i - j| from its query, from the weights `model.encode(src, need_weights=True)` returns. For each layer,
    `mean weight` at d is the sum of the weights a_hij over heads h and all (i, j) pairs at distance d of every
    sentence, divided by H times the number of such pairs (a mean per (query, key) pair: a distance that few
    pairs reach is not outweighed by the many pairs at short distances). `mass beyond r` is the share of a
    query's attention on keys farther than r, averaged over heads, queries and sentences (each query counts
    once). The `uniform` row is what attention spread evenly over the sentence would give.
(2) Both models: the influence of source token j on the encoder's output at i, ||∂h_i / ∂e_j||_F, where e_j
    is the encoder's input vector (Transformer: token embedding scaled, plus positions; RNN: token embedding)
    and h_i the final encoder output (after the final LayerNorm of a pre-LN stack; the RNN's both directions).
    The squared norm is estimated with K Gaussian probes v per output position (E||vᵀJ||² = ||J||_F²;
    --probes 0 computes it exactly, one probe per output dimension). Per sentence, influence(d) is the RMS of
    the norm over the pairs at distance d divided by that at d = 0; the figure is its mean over sentences.
    Self-attention reaches every distance within one layer; the bidirectional LSTM's signal must pass through
    d recurrent steps.

Sentences are the run's own dev split (as benchmarks/teacher_forcing.py reads it) with >= --min-len source
tokens (EOS included). Without --rnn, a freshly initialised RNN of the small preset stands in (--rnn-random).

    OMP_NUM_THREADS=1 python benchmarks/path_length.py --model runs/why-attention/transformer-20m/model \\
        --rnn runs/why-attention/rnn-20m/model \\
        --threads 1 --out benchmarks/results/path-length-cpu | tee benchmarks/results/path-length-cpu.txt
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib
import torch
from torch import Tensor

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from common import configure_threads  # noqa: E402
from teacher_forcing import REPO, SEARCHED, dev_pairs, find_model  # noqa: E402

from aiayn.data.tokenizer import encode_batch  # noqa: E402
from aiayn.io.loading import load_with_tokenizer  # noqa: E402
from aiayn.model.config import RNNConfig  # noqa: E402
from aiayn.model.recurrent import RecurrentSeq2Seq  # noqa: E402

RADII = (5, 10, 20)  # "mass beyond r"
SHOWN = (0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 40)  # distances in the printed table


def long_sources(model_dir: Path, tokenizer: Any, root: Path, eos_id: int, min_len: int,
                 limit: int) -> list[list[int]]:
    """Source ids + EOS of the run's dev pairs with >= min_len tokens, the first `limit`, in dev order."""
    pairs = dev_pairs(model_dir, root, 10 ** 9)
    sources = [ids + [eos_id] for ids in encode_batch(tokenizer, [s for s, _ in pairs])]
    return [ids for ids in sources if len(ids) >= min_len][:limit]


@torch.no_grad()
def attention_by_distance(model: torch.nn.Module, sources: list[list[int]], max_distance: int,
                          radii: tuple[int, ...] = RADII) -> dict[str, Tensor]:
    """Per encoder layer: mean weight per (query, key) pair at distance 0..max_distance (L, D+1) and the share of
    a query's mass beyond each radius (L, R); the same for uniform attention ("uniform_weight" (D+1,),
    "uniform_beyond" (R,)); "pairs" (D+1,) counts the (i, j) pairs at each distance."""
    layers = model.cfg.n_encoder_layers
    size = max_distance + 1
    weight, pairs, uniform_weight = (torch.zeros(shape, dtype=torch.float64) for shape in ((layers, size), size, size))
    beyond, uniform_beyond = (torch.zeros(shape, dtype=torch.float64) for shape in ((layers, len(radii)), len(radii)))
    queries = 0
    for ids in sources:
        n = len(ids)
        _, every = model.encode(torch.tensor([ids]), need_weights=True)  # layers of {"self": (1, H, n, n)}
        distance = (torch.arange(n)[:, None] - torch.arange(n)[None, :]).abs()  # (n, n)
        flat = distance.flatten()
        count = torch.bincount(flat, minlength=n).double()[:size]  # pairs per distance
        pairs[:len(count)] += count
        uniform_weight[:len(count)] += count / n
        for r, radius in enumerate(radii):
            uniform_beyond[r] += float((distance > radius).sum()) / n  # summed over the n queries
        for layer, weights in enumerate(every):
            a = weights["self"][0].double().mean(0)  # (n, n): averaged over heads
            weight[layer, :len(count)] += torch.bincount(flat, weights=a.flatten(), minlength=n)[:size]
            for r, radius in enumerate(radii):
                beyond[layer, r] += float(a[distance > radius].sum())
        queries += n
    seen = pairs.clamp(min=1)
    return {"weight": weight / seen, "beyond": beyond / queries, "uniform_weight": uniform_weight / seen,
            "uniform_beyond": uniform_beyond / queries, "pairs": pairs}


def encoder_input(model: torch.nn.Module) -> torch.nn.Module:
    """The module whose output is e, the encoder's input vectors: scaled embeddings + positions, or the RNN's
    token embedding (encode() calls it once, on the source)."""
    return model.token_embedding if model.model_type == "rnn" else model.src_positions


def influence_matrix(model: torch.nn.Module, ids: list[int], probes: int = 4,
                     generator: torch.Generator | None = None) -> Tensor:
    """(n, n): ||∂h_i / ∂e_j||_F for output i (rows) and input j (columns) of one sentence, in eval mode.

    All probes of all output positions run as one batch of n * K copies of the sentence: copy (i, k) sums
    v_kᵀ h_i, so its gradient at e_j is v_kᵀ J_ij. probes 0 uses the d unit vectors (exact: the sum of the
    squares is ||J_ij||_F²); otherwise K Gaussian probes (the mean of the squares estimates it).
    """
    n, d = len(ids), model.cfg.d_model
    vectors = torch.eye(d) if probes == 0 else torch.randn(probes, d, generator=generator)  # (K, d)
    k = vectors.shape[0]
    src = torch.tensor([ids]).repeat(n * k, 1)  # (n*K, n)
    held: dict[str, Tensor] = {}

    def leaf(module: torch.nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        held["e"] = output.detach().requires_grad_()  # (n*K, n, d)
        return held["e"]

    handle = encoder_input(model).register_forward_hook(leaf)
    try:
        with torch.enable_grad():
            h = model.encode(src)  # (n*K, n, d)
            rows = torch.arange(n * k)
            (h[rows, rows // k] * vectors[rows % k]).sum().backward()
    finally:
        handle.remove()
    squares = held["e"].grad.pow(2).sum(-1).view(n, k, n)  # (i, probe, j)
    squares = squares.sum(1) if probes == 0 else squares.mean(1)
    model.zero_grad(set_to_none=True)
    return squares.sqrt()


def influence_by_distance(model: torch.nn.Module, sources: list[list[int]], max_distance: int, probes: int,
                          seed: int = 0) -> tuple[Tensor, Tensor]:
    """Mean over sentences of RMS_{|i-j|=d} ||∂h_i/∂e_j|| / RMS_{i=j} (D+1,), and the sentences at each d."""
    generator = torch.Generator().manual_seed(seed)
    size = max_distance + 1
    total, sentences = torch.zeros(size, dtype=torch.float64), torch.zeros(size, dtype=torch.float64)
    for ids in sources:
        norms = influence_matrix(model, ids, probes, generator).double()  # (n, n)
        n = len(ids)
        flat = (torch.arange(n)[:, None] - torch.arange(n)[None, :]).abs().flatten()
        mean_square = torch.bincount(flat, weights=norms.pow(2).flatten(), minlength=n) / torch.bincount(flat)
        rms = mean_square.sqrt()[:size]
        total[:len(rms)] += rms / rms[0]
        sentences[:len(rms)] += 1
    return total / sentences.clamp(min=1), sentences


def plot(attention: dict[str, Tensor], influence: dict[str, Tensor], path: Path, title: str) -> None:
    """Two panels: mean attention weight by distance per layer; gradient influence by distance per model."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    distances = range(attention["weight"].shape[1])
    for layer, row in enumerate(attention["weight"]):
        axes[0].plot(distances, row.tolist(), label=f"encoder layer {layer + 1}")
    axes[0].plot(distances, attention["uniform_weight"].tolist(), "k--", label="uniform over the sentence")
    axes[0].set(xlabel="distance |i - j| (tokens)", ylabel="mean attention weight per (query, key) pair",
                yscale="log", title="Transformer encoder self-attention")
    for name, values in influence.items():
        axes[1].plot(range(len(values)), values.tolist(), label=name)
    axes[1].set(xlabel="distance |i - j| (tokens)", ylabel="||∂h_i/∂e_j|| relative to d = 0 (RMS)", yscale="log",
                title="influence of input j on encoder output i")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    """Measure (1) and (2), print the tables, write OUT.png."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help=f"a trained Transformer's model folder (default: first of "
                                                   f"{', '.join(SEARCHED)})")
    parser.add_argument("--rnn", type=Path, help="a trained RNN's model folder (aiayn train --arch rnn)")
    parser.add_argument("--rnn-random", action="store_true", help="a fresh small-preset RNN (the default without "
                                                                  "--rnn)")
    parser.add_argument("--root", type=Path, default=REPO, help="where train.json's relative "
                                                                              "data paths start")
    parser.add_argument("--min-len", type=int, default=30, help="source tokens (with EOS) a sentence needs")
    parser.add_argument("--sentences", type=int, default=50, help="sentences for the gradient influence")
    parser.add_argument("--attention-sentences", type=int, default=500, help="sentences for the attention weights")
    parser.add_argument("--max-distance", type=int, default=40)
    parser.add_argument("--probes", type=int, default=1, help="Gaussian probes per output position (0: exact)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/path-length-cpu"),
                        help="OUT.png is written; print to OUT.txt yourself (tee)")
    args = parser.parse_args()
    if args.rnn is not None and args.rnn_random:
        parser.error("give --rnn FOLDER or --rnn-random, not both")
    for name in ("min_len", "sentences", "attention_sentences", "max_distance"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    print(configure_threads(args.threads))
    model_dir = args.model or find_model()
    if model_dir is None:
        print(f"no trained translator found in {', '.join(SEARCHED)}: skipped (give --model DIR)")
        return
    model, tokenizer = load_with_tokenizer(model_dir, "cpu", "transformer")
    if model.model_type != "transformer":
        parser.error(f"--model {model_dir} holds a {model.model_type} model; give a Transformer's (and the RNN "
                     f"with --rnn)")
    if args.rnn is not None:
        rnn, rnn_tokenizer = load_with_tokenizer(args.rnn, "cpu", "transformer")
        if rnn.model_type != "rnn":
            parser.error(f"--rnn {args.rnn} holds a {rnn.model_type} model, not an RNN (aiayn train --arch rnn)")
        if rnn.cfg.vocab_size != model.cfg.vocab_size:
            print(f"note: the RNN's vocabulary ({rnn.cfg.vocab_size}) differs from the Transformer's; each reads the "
                  f"same text through its own run's tokenizer")
        rnn_name = f"RNN {args.rnn}"
    else:
        torch.manual_seed(args.seed)
        rnn = RecurrentSeq2Seq(RNNConfig.preset("small", vocab_size=model.cfg.vocab_size)).eval()
        rnn_name = "RNN, freshly initialised (small preset)"
    sources = long_sources(model_dir, tokenizer, args.root, model.cfg.eos_id, args.min_len, args.attention_sentences)
    if not sources:
        parser.error(f"no dev sentence of the run has >= {args.min_len} source tokens: lower --min-len")
    rnn_sources = sources if args.rnn is None else long_sources(args.rnn, rnn_tokenizer, args.root, rnn.cfg.eos_id,
                                                                args.min_len, args.sentences)
    lengths = sorted(len(s) for s in sources)
    print(f"Transformer {model_dir} ({model.num_parameters():,} parameters, {model.cfg.n_encoder_layers} encoder "
          f"layers); {rnn_name} ({rnn.num_parameters():,} parameters, {rnn.cfg.n_encoder_layers} bidirectional "
          f"LSTM layers)")
    print(f"{len(sources)} dev sentences of >= {args.min_len} source tokens (median {lengths[len(lengths) // 2]}, "
          f"max {lengths[-1]}); gradient influence on the first {min(args.sentences, len(sources))}, "
          f"{'exact' if args.probes == 0 else f'{args.probes} Gaussian probe(s) per output position'}")

    started = time.perf_counter()
    attention = attention_by_distance(model, sources, args.max_distance)
    print(f"\n(1) Transformer encoder self-attention by distance ({time.perf_counter() - started:.0f}s): mean weight "
          f"per (query, key) pair, x100, averaged over heads, pairs and sentences")
    layers = attention["weight"].shape[0]
    print(f"{'d':>3s} {'pairs':>7s} " + " ".join(f"{f'layer {i + 1}':>8s}" for i in range(layers))
          + f" {'uniform':>8s}")
    for d in SHOWN:
        if d <= args.max_distance and attention["pairs"][d] > 0:
            print(f"{d:3d} {int(attention['pairs'][d]):7d} "
                  + " ".join(f"{100 * float(attention['weight'][i, d]):8.3f}" for i in range(layers))
                  + f" {100 * float(attention['uniform_weight'][d]):8.3f}")
    print("share of each query's attention mass beyond distance r (mean over heads, queries and sentences)")
    print(f"{'':11s} " + " ".join(f"{f'> {r}':>7s}" for r in RADII))
    for i in range(layers):
        print(f"{f'layer {i + 1}':11s} " + " ".join(f"{float(v):7.3f}" for v in attention["beyond"][i]))
    print(f"{'uniform':11s} " + " ".join(f"{float(v):7.3f}" for v in attention["uniform_beyond"]))

    influence, counts = {}, {}
    for name, net, texts in (("Transformer", model, sources), ("RNN", rnn, rnn_sources)):
        started = time.perf_counter()
        influence[name], counts[name] = influence_by_distance(net, texts[:args.sentences], args.max_distance,
                                                              args.probes, args.seed)
        print(f"\n{name}: gradient influence over {min(args.sentences, len(texts))} sentences in "
              f"{time.perf_counter() - started:.0f}s")
    print("\n(2) influence of input j on encoder output i: RMS ||dh_i/de_j|| at distance d over that at d = 0, "
          "mean over sentences")
    print(f"{'d':>3s} {'sentences':>9s} {'Transformer':>12s} {'RNN':>10s}")
    for d in SHOWN:
        if d <= args.max_distance and counts["Transformer"][d] > 0:
            print(f"{d:3d} {int(counts['Transformer'][d]):9d} {float(influence['Transformer'][d]):12.3e} "
                  f"{float(influence['RNN'][d]):10.3e}")
    png = args.out.with_suffix(".png")
    png.parent.mkdir(parents=True, exist_ok=True)
    plot(attention, {f"Transformer ({model.cfg.n_encoder_layers} layers)": influence["Transformer"],
                     f"RNN ({'trained' if args.rnn else 'untrained'})": influence["RNN"]}, png,
         f"{model_dir}; {len(sources)} dev sentences of >= {args.min_len} tokens (influence: "
         f"{min(args.sentences, len(sources))})")
    print(f"\nplot: {png}")


if __name__ == "__main__":
    sys.exit(main())
