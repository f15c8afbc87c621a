"""Decoding speed on the CPU: aiayn's KV-cache search in fp32, bf16 and int8 against CTranslate2 (fp32, int8).

Builds the "small" preset (pre-LN, the default translator) with random weights, converts the same weights
to CTranslate2 (io/ctranslate2.py's pre-norm TransformerSpec, in memory; fp32 and int8 models), checks
aiayn fp32 and CTranslate2 fp32 give the same greedy tokens, then times greedy and beam-4 search at batch
1 and 16 (source length 64, 64 new tokens with EOS suppressed) in interleaved rounds after a warm-up:
every contender once per round, A B C D E A B C D E ... Prints medians in new tokens per second and, per
case, aiayn's best precision against CTranslate2's best, as the median of per-round ratios.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/decode.py --threads 2 --rounds 7

--layouts adds each engine's int8 search in the other ways of spending the same cores: one intra-op thread
("1t": aiayn's generate(threads=1), CTranslate2's intra_threads=1) and the batch cut into halves searched
at once by two single-threaded workers ("2x1t": aiayn's inference.workers.WorkerPool, forked once before
the rounds as a Translator's threads are started once; CTranslate2's inter_threads=2, max_batch_size=batch/2).
Under OMP_WAIT_POLICY=PASSIVE, waking a sleeping second thread for every op can cost more than it shares.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/decode.py --layouts --threads 2 --rounds 5

--hf times Hugging Face `generate` (MarianMTModel, post-LN) against aiayn fp32 on a post-LN model instead.
--rnn times the Transformer against the recurrent baseline of the same parameter count (`--arch rnn`, the
"small" RNN preset: 2+2 LSTM layers, d_model 360), each in fp32 and bf16 (docs/why-attention.md).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/decode.py --rnn --threads 2 --cases greedy:1,greedy:16,beam4:1,beam4:16
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch

import aiayn
from aiayn.inference.workers import WorkerPool

SOURCE_LENGTH = 64
NEW_TOKENS = 64


def marian_from_aiayn(model: aiayn.Transformer):
    """A MarianMTModel with the same architecture and weights as `model` (post-LN, relu, tied, scaled)."""
    from transformers import MarianConfig, MarianMTModel

    cfg = model.cfg
    hf_cfg = MarianConfig(
        vocab_size=cfg.vocab_size, decoder_vocab_size=cfg.vocab_size, d_model=cfg.d_model,
        encoder_layers=cfg.n_encoder_layers, decoder_layers=cfg.n_decoder_layers,
        encoder_attention_heads=cfg.n_heads, decoder_attention_heads=cfg.n_heads,
        encoder_ffn_dim=cfg.d_ff, decoder_ffn_dim=cfg.d_ff, activation_function=cfg.activation,
        max_position_embeddings=cfg.max_positions, scale_embedding=cfg.scale_embeddings,
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        pad_token_id=cfg.pad_id, eos_token_id=cfg.eos_id, bos_token_id=cfg.bos_id,
        decoder_start_token_id=cfg.bos_id, forced_eos_token_id=None, share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True)
    hf = MarianMTModel(hf_cfg).eval()
    d = cfg.d_model
    state = {"final_logits_bias": torch.zeros(1, cfg.vocab_size), "model.shared.weight": model.token_embedding.weight,
             "model.encoder.embed_tokens.weight": model.token_embedding.weight,
             "model.decoder.embed_tokens.weight": model.token_embedding.weight,
             "lm_head.weight": model.token_embedding.weight,
             # aiayn's §3.5 table interleaves sin/cos; Marian's lays them out in halves: use ours.
             "model.encoder.embed_positions.weight": model.src_positions.sinusoids.weight,
             "model.decoder.embed_positions.weight": model.tgt_positions.sinusoids.weight}

    def attention(prefix: str, mha: aiayn.MultiHeadAttention) -> None:
        w, b = mha.in_proj.weight, mha.in_proj.bias
        for i, name in enumerate(("q_proj", "k_proj", "v_proj")):  # split the fused (3d, d) projection
            rows = slice(i * d, (i + 1) * d)
            state[f"{prefix}.{name}.weight"], state[f"{prefix}.{name}.bias"] = w[rows], b[rows]
        state[f"{prefix}.out_proj.weight"], state[f"{prefix}.out_proj.bias"] = mha.out_proj.weight, mha.out_proj.bias

    def norm(prefix: str, module: torch.nn.LayerNorm) -> None:
        state[f"{prefix}.weight"], state[f"{prefix}.bias"] = module.weight, module.bias

    for side, stack in (("encoder", model.encoder), ("decoder", model.decoder)):
        for i, layer in enumerate(stack.layers):
            p = f"model.{side}.layers.{i}"
            attention(f"{p}.self_attn", layer.self_attn)
            norm(f"{p}.self_attn_layer_norm", layer.self_norm)
            if layer.cross_attn is not None:
                attention(f"{p}.encoder_attn", layer.cross_attn)
                norm(f"{p}.encoder_attn_layer_norm", layer.cross_norm)
            state[f"{p}.fc1.weight"], state[f"{p}.fc1.bias"] = layer.ffn.linear1.weight, layer.ffn.linear1.bias
            state[f"{p}.fc2.weight"], state[f"{p}.fc2.bias"] = layer.ffn.linear2.weight, layer.ffn.linear2.bias
            norm(f"{p}.final_layer_norm", layer.ffn_norm)
    missing, unexpected = hf.load_state_dict({k: v.detach().clone() for k, v in state.items()}, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"weight copy incomplete: missing {missing}, unexpected {unexpected}")
    return hf


def run_aiayn(model: aiayn.Transformer, src: torch.Tensor, beams: int, **options: Any) -> list[list[int]]:
    """aiayn search with EOS suppressed for NEW_TOKENS steps (options: e.g. threads=1)."""
    return model.generate(src, beam_size=beams, max_new_tokens=NEW_TOKENS, min_length=NEW_TOKENS,
                          length_penalty_form="plain", length_penalty=1.0, **options)


def run_aiayn_workers(pool: WorkerPool, src: torch.Tensor, beams: int) -> list[list[int]]:
    """The batch cut into one part per worker of `pool` (forked one-thread processes holding the model, kept
    for every call), searched at once as run_aiayn searches."""
    parts = list(src.chunk(pool.workers))
    found = dict(pool.generate(parts, beam_size=beams, max_new_tokens=NEW_TOKENS, min_length=NEW_TOKENS,
                               length_penalty_form="plain", length_penalty=1.0))
    return [row for index in range(len(parts)) for row in found[index]]


def run_hf(hf, src: torch.Tensor, beams: int) -> list[list[int]]:
    """Hugging Face generate with its cache, EOS suppressed for NEW_TOKENS steps; drops the start token."""
    out = hf.generate(input_ids=src, attention_mask=torch.ones_like(src), num_beams=beams, do_sample=False,
                      max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, length_penalty=1.0,
                      early_stopping=True, use_cache=True)
    return out[:, 1:].tolist()


def ct2_translators(model: aiayn.Transformer, threads: int, layouts: bool = False) -> dict[str, Any]:
    """CTranslate2 Translators (fp32 and int8 weights) holding `model`'s weights, by name; with `layouts` also
    int8 on one thread ("int8 1t") and on `threads` single-threaded workers ("int8 2x1t")."""
    import ctranslate2

    from aiayn.io.ctranslate2 import transformer_spec

    words = [f"t{i}" for i in range(model.cfg.vocab_size)]
    translators = {}
    for compute_type in ("float32", "int8"):
        with tempfile.TemporaryDirectory() as folder:
            spec = transformer_spec(model, words)
            spec.validate()
            spec.optimize(quantization=compute_type)
            spec.save(folder)
            translators[compute_type] = ctranslate2.Translator(folder, device="cpu", compute_type=compute_type,
                                                               intra_threads=threads, inter_threads=1)
            if layouts and compute_type == "int8":
                for name, inter, intra in (("int8 1t", 1, 1), (f"int8 {threads}x1t", threads, 1)):
                    translators[name] = ctranslate2.Translator(folder, device="cpu", compute_type=compute_type,
                                                               intra_threads=intra, inter_threads=inter)
    return translators


def run_ct2(translator: Any, src: torch.Tensor, beams: int) -> list[list[int]]:
    """CTranslate2 translate_batch, EOS suppressed for NEW_TOKENS steps; token strings "t<id>" back to ids.

    With several workers (inter_threads) the batch is cut into one part per worker (max_batch_size)."""
    tokens = [[f"t{i}" for i in row] for row in src.tolist()]
    part = -(-len(tokens) // translator.num_translators) if translator.num_translators > 1 else 0
    out = translator.translate_batch(tokens, beam_size=beams, max_decoding_length=NEW_TOKENS,
                                     min_decoding_length=NEW_TOKENS, length_penalty=1.0, max_batch_size=part)
    return [[int(t[1:]) for t in r.hypotheses[0]] for r in out]


def timed(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cases(text: str) -> list[tuple[str, int, int]]:
    """"greedy:1,beam4:16" -> [(name, beams, batch), ...]."""
    out = []
    for case in text.split(","):
        kind, batch = case.split(":")
        out.append((f"{kind} b={batch}", 1 if kind == "greedy" else int(kind[4:]), int(batch)))
    return out


def time_case(contenders: dict[str, Callable[[], object]], rounds: int, new_tokens: int) -> dict[str, list[float]]:
    """Tokens per second of each contender per round, interleaved, after one warm-up call each."""
    for fn in contenders.values():
        fn()
    tps: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            tps[name].append(new_tokens / timed(fn))
    return tps


def main() -> None:
    """Parity checks, then interleaved timing rounds and tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--cases", default="greedy:1,greedy:16,beam4:1,beam4:16")
    parser.add_argument("--hf", action="store_true", help="aiayn fp32 against Hugging Face generate (post-LN)")
    parser.add_argument("--rnn", action="store_true", help="the Transformer against the LSTM baseline (--arch rnn)")
    parser.add_argument("--layouts", action="store_true",
                        help="also int8 on one thread and on two single-threaded workers, for both engines")
    parser.add_argument("--preset", default="small", help="the translator's size (default small; `aiayn train` "
                                                          "trains shallow)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, torch.get_num_threads()={torch.get_num_threads()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}, cpus={os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    torch.manual_seed(0)
    cfg = aiayn.ModelConfig.preset(args.preset, dropout=0.0, norm="post" if args.hf else "pre")
    model = aiayn.Transformer(cfg).eval()
    generator = torch.Generator().manual_seed(1)
    sources = {b: torch.randint(3, cfg.vocab_size, (b, SOURCE_LENGTH), generator=generator) for b in (1, 16)}
    if args.hf:
        hf = marian_from_aiayn(model)
        others = {"HF generate": functools.partial(run_hf, hf)}
        ours = {"aiayn fp32": functools.partial(run_aiayn, model)}
    elif args.rnn:
        rnn = aiayn.RecurrentSeq2Seq(aiayn.RNNConfig.preset("small", dropout=0.0)).eval()
        print(f"parameters: Transformer {model.num_parameters():,}, RNN {rnn.num_parameters():,}")
        ours = {f"aiayn {p}": functools.partial(run_aiayn, aiayn.for_decoding(model, p)) for p in ("fp32", "bf16")}
        others = {f"RNN {p}": functools.partial(run_aiayn, aiayn.for_decoding(rnn, p)) for p in ("fp32", "bf16")}
    else:
        import ctranslate2

        print(f"ctranslate2 {ctranslate2.__version__}")
        translators = ct2_translators(model, args.threads, args.layouts)
        # A Translator sets OpenMP's thread count, which torch shares, to its intra_threads when built: with a
        # one-thread translator, torch would go on at one OpenMP thread while believing it had its count
        # (aiayn's beam search measured 4x slower until torch's count was set again).
        torch.set_num_threads(args.threads)
        others = {f"CT2 {'fp32' if t == 'float32' else t}": functools.partial(run_ct2, translators[t])
                  for t in translators}
        copies = {p: aiayn.for_decoding(model, p) for p in ("fp32", "bf16", "int8")}
        ours = {f"aiayn {p}": functools.partial(run_aiayn, copies[p]) for p in copies}
        if args.layouts:
            ours["aiayn int8 1t"] = functools.partial(run_aiayn, copies["int8"], threads=1)
            pool = WorkerPool(copies["int8"], args.threads)
            ours[f"aiayn int8 {args.threads}x1t"] = functools.partial(run_aiayn_workers, pool)
    check = sources[16][:4]
    reference = ours["aiayn fp32"](check, 1)
    for name, fn in {**ours, **others}.items():
        if name.startswith("RNN"):
            continue
        same = sum(a == b for a, b in zip(fn(check, 1), reference))
        print(f"greedy tokens of {name} equal aiayn fp32's on {same}/4 sources")
        if name in ("HF generate", "CT2 fp32") and same != 4:
            raise SystemExit(f"{name} differs from aiayn fp32: the weight copy is wrong, timings would be meaningless")

    table = []
    for name, beams, batch in cases(args.cases):
        src = sources[batch]
        contenders = {n: functools.partial(fn, src, beams) for n, fn in {**ours, **others}.items()}
        tps = time_case(contenders, args.rounds, batch * NEW_TOKENS)
        best_ours = max(ours, key=lambda n: statistics.median(tps[n]))
        best_other = max(others, key=lambda n: statistics.median(tps[n]))
        ratios = [a / b for a, b in zip(tps[best_ours], tps[best_other])]
        table.append((name, {n: statistics.median(v) for n, v in tps.items()}, best_ours, best_other, ratios))
        print(f"  {name}: done", flush=True)
    names = [*ours, *others]
    print(f"\nnew tokens/s (median of {args.rounds} interleaved rounds; source {SOURCE_LENGTH}, {NEW_TOKENS} new "
          f"tokens, EOS suppressed, {torch.get_num_threads()} threads)")
    print("| case | " + " | ".join(names) + " | best aiayn / best other (median of rounds) | per-round ratios |")
    print("|---|" + "---:|" * len(names) + "---:|---|")
    for name, medians, best_ours, best_other, ratios in table:
        cells = " | ".join(f"{medians[n]:.0f}" for n in names)
        print(f"| {name} | {cells} | {best_ours} / {best_other}: {statistics.median(ratios):.2f}x | "
              f"{' '.join(f'{r:.2f}' for r in ratios)} |")


if __name__ == "__main__":
    main()
