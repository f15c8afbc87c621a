"""Decoding speed: aiayn's KV-cache search against Hugging Face `generate` on the same weights, on the CPU.

Builds the "small" preset with random weights, copies them into a MarianMTModel built from a MarianConfig
(nothing is downloaded), checks both give the same greedy tokens, then times greedy and beam-4 search at
batch 1 and 16 (source length 64, 64 new tokens with EOS suppressed, fp32) in interleaved A/B rounds after
a warm-up, and prints medians and per-round ratios in new tokens per second.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/decode.py --threads 2 --rounds 5
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable

import torch

import aiayn

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


def run_aiayn(model: aiayn.Transformer, src: torch.Tensor, beams: int) -> list[list[int]]:
    """aiayn search with EOS suppressed for NEW_TOKENS steps."""
    return model.generate(src, beam_size=beams, max_new_tokens=NEW_TOKENS, min_length=NEW_TOKENS,
                          length_penalty_form="plain", length_penalty=1.0)


def run_hf(hf, src: torch.Tensor, beams: int) -> list[list[int]]:
    """Hugging Face generate with its cache, EOS suppressed for NEW_TOKENS steps; drops the start token."""
    out = hf.generate(input_ids=src, attention_mask=torch.ones_like(src), num_beams=beams, do_sample=False,
                      max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, length_penalty=1.0,
                      early_stopping=True, use_cache=True)
    return out[:, 1:].tolist()


def timed(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    """Parity check, then interleaved timing rounds and a table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cases", default="greedy:1,greedy:16,beam4:1,beam4:16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, torch.get_num_threads()={torch.get_num_threads()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}, cpus={os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    torch.manual_seed(0)
    cfg = aiayn.ModelConfig.preset("small", dropout=0.0)
    model = aiayn.Transformer(cfg).eval()
    hf = marian_from_aiayn(model)
    generator = torch.Generator().manual_seed(1)
    sources = {b: torch.randint(3, cfg.vocab_size, (b, SOURCE_LENGTH), generator=generator) for b in (1, 16)}

    with torch.no_grad():
        tgt = torch.cat([torch.full((2, 1), cfg.bos_id), sources[16][:2, :10]], 1)
        ours_logits = model(sources[16][:2], tgt)
        hf_logits = hf(input_ids=sources[16][:2], decoder_input_ids=tgt).logits
    print(f"parity: teacher-forced logits max |diff| = {float((ours_logits - hf_logits).abs().max()):.2e}")
    for beams in (1, 4):
        same = run_aiayn(model, sources[16][:4], beams) == run_hf(hf, sources[16][:4], beams)
        print(f"parity: {'greedy' if beams == 1 else f'beam {beams}'} tokens identical on 4 sources: {same}")
        if beams == 1 and not same:
            raise SystemExit("greedy tokens differ: the weight copy is wrong, timings would be meaningless")

    rows = []
    for case in args.cases.split(","):
        kind, batch = case.split(":")
        beams, batch = (1 if kind == "greedy" else int(kind[4:])), int(batch)
        src = sources[batch]
        a = functools.partial(run_aiayn, model, src, beams)
        b = functools.partial(run_hf, hf, src, beams)
        a(), b()  # warm-up
        times_a, times_b = [], []
        for _ in range(args.rounds):  # interleaved: A B A B ...
            times_a.append(timed(a))
            times_b.append(timed(b))
        new_tokens = batch * NEW_TOKENS
        tps_a = [new_tokens / t for t in times_a]
        tps_b = [new_tokens / t for t in times_b]
        ratios = [x / y for x, y in zip(tps_a, tps_b)]
        rows.append((f"{kind} b={batch}", statistics.median(tps_a), statistics.median(tps_b),
                     statistics.median(ratios), ratios))
        print(f"  {rows[-1][0]}: done", flush=True)
    print(f"\nnew tokens/s (median of {args.rounds} interleaved rounds; source {SOURCE_LENGTH}, "
          f"{NEW_TOKENS} new tokens, fp32, {torch.get_num_threads()} threads)")
    print("| case | aiayn tok/s | HF generate tok/s | aiayn/HF (median) | per-round ratios |")
    print("|---|---:|---:|---:|---|")
    for name, ta, tb, ratio, ratios in rows:
        print(f"| {name} | {ta:.0f} | {tb:.0f} | {ratio:.2f}x | {' '.join(f'{r:.2f}' for r in ratios)} |")


if __name__ == "__main__":
    main()
