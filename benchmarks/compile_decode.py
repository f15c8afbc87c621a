"""Does torch.compile (inductor's CPU backend, fused C++ kernels) of the per-token decode step pay on the CPU?

aiayn's eager step slices its self-attention cache to the positions so far, so its shapes grow by one key per
step; compiled as it is, it would recompile every step or need dynamic shapes. This prototype writes the step
with static shapes instead: the self-attention keys/values live in one (L, 2, B, H, T_max, d_k) block written at
a position tensor, every step attends over all T_max keys under the mask `key <= position`, the cross-attention
keys/values are projected once per source, and the step returns the greedy token (EOS suppressed). One graph
(fullgraph=True, dynamic=False) then serves every step of a search.

Builds the "small" preset (pre-LN, random weights, as benchmarks/decode.py does) and times greedy decoding of
64 new tokens (source 64, EOS suppressed) at batch 1 and 16: eager aiayn generate() in fp32 and bf16 against
the compiled step in fp32 and bf16, in interleaved rounds (every contender once per round), medians and
per-round ratios. Checks the compiled tokens against eager's first and prints each compile's time.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/compile_decode.py --threads 2 --rounds 7
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch._inductor.config
import torch.nn.functional as F
from torch import Tensor

import aiayn

SOURCE_LENGTH = 64
NEW_TOKENS = 64


class StaticStep:
    """Greedy decoding of one batch on a static-shape step: (B, 1) tokens at a position tensor -> (B,) tokens."""

    def __init__(self, model: aiayn.Transformer, capacity: int, compile_mode: str | None) -> None:
        """The step of `model` (pre-LN, sinusoidal positions, tied table) over `capacity` decoder positions."""
        cfg = model.cfg
        if cfg.norm != "pre" or cfg.positions != "sinusoidal" or not cfg.tie_embeddings:
            raise SystemExit("the prototype covers the small preset only: pre-LN, sinusoids, tied table")
        self.model, self.capacity = model, capacity
        self.dtype = next(model.parameters()).dtype
        self.table_t = model.token_embedding.weight.detach().t().contiguous()  # (d, V), as step_projection
        self.step = self._step if compile_mode is None else torch.compile(
            self._step, fullgraph=True, dynamic=False, mode=compile_mode)

    def _step(self, token: Tensor, position: Tensor, kv: Tensor, cross: Tensor,
              memory_keep: Tensor | None) -> Tensor:
        """The greedy next token (B,) with EOS suppressed, as min_length does."""
        logits = self.logits(token, position, kv, cross, memory_keep)
        logits[:, self.model.cfg.eos_id] = float("-inf")
        return logits.argmax(-1)

    def logits(self, token: Tensor, position: Tensor, kv: Tensor, cross: Tensor,
               memory_keep: Tensor | None) -> Tensor:
        """Logits (B, V) of token (B, 1) at position (1,); kv (L, 2, B, H, T, d_k) written in place; cross
        (L, 2, B, H, S, d_k); memory_keep (B, S) or None."""
        model, cfg = self.model, self.model.cfg
        emb = model.tgt_positions
        x = model.token_embedding(token) * emb.scale.factor  # (B, 1, d)
        x = x + emb.sinusoids.weight.index_select(0, position).to(x.dtype)  # (1, d)
        seen = torch.arange(self.capacity, device=token.device) <= position  # (T,) keys written so far
        self_mask = seen[None, None, None, :]  # (1, 1, 1, T)
        cross_mask = None if memory_keep is None else memory_keep[:, None, None, :]  # (B, 1, 1, S)
        b, h, dk = token.shape[0], cfg.n_heads, cfg.d_k
        for i, layer in enumerate(model.decoder.layers):
            attn = layer.self_attn
            qkv = attn.in_proj(layer.self_norm(x)).view(b, 1, 3, h, dk).permute(2, 0, 3, 1, 4)  # (3, B, H, 1, d_k)
            kv[i].index_copy_(3, position, qkv[1:])  # this position's keys and values
            out = F.scaled_dot_product_attention(qkv[0], kv[i, 0], kv[i, 1], attn_mask=self_mask)
            x = x + attn.out_proj(out.transpose(1, 2).reshape(b, 1, h * dk))
            cross_attn = layer.cross_attn
            q = cross_attn.project_rows(layer.cross_norm(x), 0, h * dk).view(b, 1, h, dk).transpose(1, 2)
            out = F.scaled_dot_product_attention(q, cross[i, 0], cross[i, 1], attn_mask=cross_mask)
            x = x + cross_attn.out_proj(out.transpose(1, 2).reshape(b, 1, h * dk))
            x = x + layer.ffn(layer.ffn_norm(x))
        hidden = model.decoder.final_norm(x)[:, -1]  # (B, d)
        return torch.mm(hidden, self.table_t)  # (B, V)

    def start(self, src: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """For src (B, S): an empty self-attention block, the cross-attention keys/values and the keep-mask."""
        model, cfg = self.model, self.model.cfg
        keep = src != cfg.pad_id
        memory = model.encode(src, keep)  # (B, S, d)
        b, s = src.shape
        h, dk, layers = cfg.n_heads, cfg.d_k, cfg.n_decoder_layers
        cross = torch.stack([layer.cross_attn.project_rows(memory, h * dk, 3 * h * dk)
                             .view(b, s, 2, h, dk).permute(2, 0, 3, 1, 4) for layer in model.decoder.layers])
        kv = torch.zeros(layers, 2, b, h, self.capacity, dk, dtype=self.dtype)
        return kv, cross, None if bool(keep.all()) else keep

    @torch.inference_mode()
    def generate(self, src: Tensor, new_tokens: int) -> list[list[int]]:
        """Greedy ids for src (B, S), `new_tokens` per row (EOS suppressed)."""
        kv, cross, memory_keep = self.start(src)
        b = src.shape[0]
        token = torch.full((b, 1), self.model.cfg.bos_id, dtype=torch.long)
        out = torch.empty(b, new_tokens, dtype=torch.long)
        for step in range(new_tokens):
            token = self.step(token, torch.tensor([step]), kv, cross, memory_keep)[:, None]
            out[:, step] = token[:, 0]
        return out.tolist()


def eager(model: aiayn.Transformer, src: Tensor) -> list[list[int]]:
    """aiayn's greedy generate() with EOS suppressed for NEW_TOKENS steps."""
    return model.generate(src, beam_size=1, max_new_tokens=NEW_TOKENS, min_length=NEW_TOKENS)


def timed(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    """Token checks, compile times, then interleaved rounds per batch size."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--mode", default="default", help="torch.compile mode (default, max-autotune-no-cudagraphs)")
    parser.add_argument("--freeze", action="store_true",
                        help="inductor's freezing: weights become constants, prepacked for its CPU GEMM kernels")
    parser.add_argument("--step-threads", type=int, default=1,
                        help="intra-op threads of the compiled steps; 1 as eager generate() picks for these sizes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch._inductor.config.freezing = args.freeze
    print(f"torch {torch.__version__}, torch.get_num_threads()={torch.get_num_threads()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, cpus={os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.2f}, compile mode {args.mode}, freezing {args.freeze}, compiled steps on "
          f"{args.step_threads} thread(s) (eager generate() picks 1 for these sizes: SERIAL_STEP_MACS)")
    torch.manual_seed(0)
    cfg = aiayn.ModelConfig.preset("small", dropout=0.0, norm="pre")
    fp32 = aiayn.Transformer(cfg).eval()
    models = {"fp32": fp32, "bf16": aiayn.for_decoding(fp32, "bf16")}
    generator = torch.Generator().manual_seed(1)
    batches = [int(b) for b in args.batches.split(",")]
    sources = {b: torch.randint(3, cfg.vocab_size, (b, SOURCE_LENGTH), generator=generator) for b in batches}

    def with_threads(fn: Callable[[], object]) -> Callable[[], object]:
        """fn run on --step-threads intra-op threads, torch's count put back after."""
        def run() -> object:
            torch.set_num_threads(args.step_threads)
            try:
                return fn()
            finally:
                torch.set_num_threads(args.threads)
        return run

    contenders: dict[int, dict[str, Callable[[], object]]] = {b: {} for b in batches}
    for precision, model in models.items():
        for b in batches:
            contenders[b][f"eager {precision}"] = functools.partial(eager, model, sources[b])
        compiled = StaticStep(model, NEW_TOKENS, args.mode)
        plain = StaticStep(model, NEW_TOKENS, None)
        for b in batches:
            run = functools.partial(compiled.generate, sources[b], NEW_TOKENS)
            seconds = timed(with_threads(run))  # the first call compiles (one graph per batch size)
            reference = eager(model, sources[b])
            ours = with_threads(run)()
            static_eager = plain.generate(sources[b], NEW_TOKENS)
            same = sum(a == r for a, r in zip(ours, reference))
            tokens = sum(x == y for a, r in zip(ours, reference) for x, y in zip(a, r))
            print(f"{precision} batch {b}: first call (compile + run) {seconds:.1f} s; compiled greedy rows equal "
                  f"eager generate()'s: {same}/{b}, tokens {tokens}/{b * NEW_TOKENS}; uncompiled static step "
                  f"equals eager: {sum(a == r for a, r in zip(static_eager, reference))}/{b}", flush=True)
            contenders[b][f"compiled {precision}"] = with_threads(run)

    print(f"\nnew tokens/s, median of {args.rounds} interleaved rounds (source {SOURCE_LENGTH}, {NEW_TOKENS} new "
          f"tokens, EOS suppressed, greedy)")
    for b in batches:
        for fn in contenders[b].values():
            fn()  # warm-up
        tps: dict[str, list[float]] = {name: [] for name in contenders[b]}
        for _ in range(args.rounds):
            for name, fn in contenders[b].items():
                tps[name].append(b * NEW_TOKENS / timed(fn))
        cells = ", ".join(f"{n} {statistics.median(v):.0f}" for n, v in tps.items())
        print(f"batch {b}: {cells}")
        for precision in models:
            ratios = [c / e for c, e in zip(tps[f"compiled {precision}"], tps[f"eager {precision}"])]
            print(f"  compiled {precision} / eager {precision}: {statistics.median(ratios):.2f}x "
                  f"(rounds: {' '.join(f'{r:.2f}' for r in ratios)})")
        best = max(tps, key=lambda n: statistics.median(tps[n]))
        ratios = [c / e for c, e in zip(tps[best], tps["eager fp32"])]
        print(f"  best ({best}) / eager fp32: {statistics.median(ratios):.2f}x", flush=True)
    print(f"# load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
