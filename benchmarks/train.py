"""Training-step benchmark: aiayn vs torch.nn.Transformer vs Hugging Face Marian, side by side in one process.

The same encoder-decoder (sizes of a preset, shared tied embeddings, post-LN, ReLU, dropout 0.1) in three
implementations gets the identical batch (B x S source, B x T target tokens, with padding, causal and
padding masks) and does forward + label-smoothed loss + backward + AdamW step, fp32. Rounds are
interleaved (A B C A B C ...) after a warm-up; medians and per-round ratios are printed, with MFU
against the fp32 matmul peak measured in the same run.

    python benchmarks/train.py --preset small --rounds 7
    python benchmarks/train.py --preset paper-base --rounds 5
    python benchmarks/train.py --preset paper-base --batch 256 \
        --contenders "aiayn,aiayn compile,nn.Transformer,HF Marian"    # on a GPU

Every contender steps torch's fused AdamW (on a CPU too). On a GPU every contender runs under bf16
autocast, attention through SDPA's fused kernels, MFU against the bf16 matmul peak measured in the same
run (8192^3), peak memory from the CUDA allocator; a contender named "... compile" has its forward
compiled with torch.compile.

FLOPs per step (stated formula): 6 x (matmul parameters x the tokens they see) + attention terms, where
encoder weights see B*S tokens, decoder weights B*T tokens, the output projection (V x d) the P target
positions it runs at, and each attention adds 3 x 4*B*Tq*Tk*d_model (QK^T and AV, forward and twice for
backward). Embedding lookups, LayerNorm, softmax and the optimizer are not counted. Two figures:
- useful FLOPs, the same for every contender: P = the N scored (non-pad) labels, the only positions
  whose logits the loss reads;
- FLOPs done, each contender's own: aiayn projects only at the N scored positions (its trainer's step),
  the others at all B*T positions. "MFU" is FLOPs done / step time / matmul peak (the work each one
  really does); "useful MFU" is useful FLOPs / step time / peak (comparable across contenders).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from common import configure_threads, interleaved, matmul_peak_flops, median  # noqa: E402

import aiayn  # noqa: E402
import aiayn.runtime.allocator  # noqa: E402
from aiayn.training import label_smoothed_loss  # noqa: E402

PRESETS = {"small": dict(batch=32, src_len=64, tgt_len=64), "paper-base": dict(batch=16, src_len=64, tgt_len=64),
           "paper-big": dict(batch=16, src_len=64, tgt_len=64)}
PAD, BOS, EOS = 0, 1, 2


class TorchTransformerMT(nn.Module):
    """torch.nn.Transformer with shared token embeddings x sqrt(d), sinusoids and a tied output projection."""

    def __init__(self, cfg: aiayn.ModelConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        nn.init.normal_(self.embed.weight, std=cfg.d_model ** -0.5)
        self.register_buffer("pe", aiayn.sinusoidal_table(cfg.max_positions, cfg.d_model), persistent=False)
        self.scale = math.sqrt(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.core = nn.Transformer(cfg.d_model, cfg.n_heads, cfg.n_encoder_layers, cfg.n_decoder_layers,
                                   cfg.d_ff, cfg.dropout, batch_first=True)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V); torch's masks use True = blocked, the opposite of aiayn's."""
        src_pad, tgt_pad = src == PAD, tgt == PAD
        causal = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1], tgt.device, torch.bool)
        x = self.drop(self.embed(src) * self.scale + self.pe[: src.shape[1]])
        y = self.drop(self.embed(tgt) * self.scale + self.pe[: tgt.shape[1]])
        h = self.core(x, y, tgt_mask=causal, src_key_padding_mask=src_pad, tgt_key_padding_mask=tgt_pad,
                      memory_key_padding_mask=src_pad)
        return F.linear(h, self.embed.weight)


def build_marian(cfg: aiayn.ModelConfig) -> nn.Module:
    """Hugging Face MarianMTModel of the same sizes (built from a config, nothing downloaded)."""
    from transformers import MarianConfig, MarianMTModel

    hf_cfg = MarianConfig(vocab_size=cfg.vocab_size, d_model=cfg.d_model, encoder_layers=cfg.n_encoder_layers,
                          decoder_layers=cfg.n_decoder_layers, encoder_attention_heads=cfg.n_heads,
                          decoder_attention_heads=cfg.n_heads, encoder_ffn_dim=cfg.d_ff, decoder_ffn_dim=cfg.d_ff,
                          activation_function="relu", dropout=cfg.dropout, attention_dropout=0.0,
                          activation_dropout=0.0, max_position_embeddings=cfg.max_positions, scale_embedding=True,
                          pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=PAD)
    model = MarianMTModel(hf_cfg)

    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hf = model

        def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
            return self.hf(input_ids=src, attention_mask=(src != PAD).long(), decoder_input_ids=tgt,
                           decoder_attention_mask=(tgt != PAD).long()).logits

    return Wrapper()


def make_batch(vocab: int, batch: int, src_len: int, tgt_len: int, seed: int = 0):
    """Random tokens with per-row lengths between half and full length, padded; tgt_in = BOS + y."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, vocab, (batch, src_len), generator=g)
    y = torch.randint(4, vocab, (batch, tgt_len), generator=g)
    for row in range(batch):
        src[row, int(torch.randint(src_len // 2, src_len + 1, (1,), generator=g)):] = PAD
        cut = int(torch.randint(tgt_len // 2, tgt_len, (1,), generator=g))
        y[row, cut] = EOS
        y[row, cut + 1:] = PAD
    tgt_in = torch.cat([torch.full((batch, 1), BOS), y[:, :-1]], 1)
    return src, tgt_in, y


def step_fn(model: nn.Module, batch, device: torch.device, compile_model: bool = False,
            bf16: bool = False, compile_mode: str = "default") -> Callable[[], None]:
    """One training step: forward, label-smoothed loss (eps 0.1, pads ignored), backward, AdamW.

    fp32 on a CPU unless bf16; on a GPU bf16 autocast. Every contender gets torch's fused AdamW (one
    kernel for all parameters, on a CPU too: 0.04 s instead of 0.30 s a paper-base step). aiayn's step
    is its trainer's: logits only at the non-pad labels, picked by flat indices found on the host, and its
    loss (aiayn.training.label_smoothed_loss, the same formula in fewer passes over the logits, reading
    bf16 logits as they are); ids come from its own tokenizer, so no range check reads them back
    from a GPU. The others' loss is F.cross_entropy, which their own training code calls.
    """
    model.to(device).train()
    src, tgt_in, labels = (t.to(device) for t in batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9, fused=True)
    forward = torch.compile(model, mode=compile_mode) if compile_model else model
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 or device.type == "cuda")

    scored_index = (batch[2] != PAD).reshape(-1).nonzero().squeeze(1)  # on the host, as the trainer's batches
    n_scored = scored_index.numel()
    scored_index = scored_index.to(device)
    scored_labels = labels.reshape(-1).index_select(0, scored_index)

    def step() -> None:
        with autocast:
            if isinstance(model, aiayn.Transformer):  # aiayn's trainer: logits only where a label is, its loss
                with model.ids_from_own_tokenizer():
                    logits = forward(src, tgt_in, positions=scored_index)
                loss = label_smoothed_loss(logits, scored_labels, 0.1, PAD) / n_scored
            else:
                logits = forward(src, tgt_in).flatten(0, 1)
                loss = F.cross_entropy(logits.float(), labels.flatten(), ignore_index=PAD, label_smoothing=0.1,
                                       reduction="sum") / n_scored
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def step_flops(cfg: aiayn.ModelConfig, batch: int, src_len: int, tgt_len: int, projected: int | None = None) -> float:
    """Model FLOPs of one training step by the formula in the module docstring; the output projection runs at
    `projected` target positions (default all B*T)."""
    d, ff = cfg.d_model, cfg.d_ff
    enc_layer = 4 * d * d + 2 * d * ff
    dec_layer = 8 * d * d + 2 * d * ff
    projected = batch * tgt_len if projected is None else projected
    linear = 6 * (cfg.n_encoder_layers * enc_layer * batch * src_len
                  + cfg.n_decoder_layers * dec_layer * batch * tgt_len + cfg.vocab_size * d * projected)
    attention = 3 * 4 * batch * d * (cfg.n_encoder_layers * src_len * src_len
                                     + cfg.n_decoder_layers * (tgt_len * tgt_len + tgt_len * src_len))
    return float(linear + attention)


def projects_scored_only(name: str) -> bool:
    """True for the contenders whose step computes logits only at the scored positions (aiayn's, see step_fn)."""
    return name.startswith("aiayn")


def build(name: str, cfg: aiayn.ModelConfig) -> nn.Module:
    """One contender by name."""
    torch.manual_seed(0)
    if name.startswith("aiayn"):
        return aiayn.Transformer(cfg)
    if name == "nn.Transformer":
        return TorchTransformerMT(cfg)
    return build_marian(cfg)


def contender_step(name: str, cfg: aiayn.ModelConfig, batch, device: torch.device,
                   compile_all: bool = False) -> Callable[[], None]:
    """The step of a contender by name: "... compile" compiles its forward ("... compile MODE" in that
    torch.compile mode, e.g. "aiayn compile max-autotune"), "... bf16" runs CPU bf16 autocast."""
    model_name, compiled, mode = name.partition(" compile")
    return step_fn(build(model_name, cfg), batch, device, compile_all or bool(compiled),
                   bf16=name.endswith("bf16"), compile_mode=mode.strip() or "default")


def peak_memory_mb(name: str, preset: str, shape: dict[str, int], threads: int, compile_all: bool,
                   tune_allocator: bool = False) -> float:
    """Peak resident memory (MB) that 3 steps of one contender add to a fresh process (CPU): the model,
    its gradients, Adam's state and the activations; the libraries loaded before are not counted.

    Read from /proc/self/status VmHWM, which a new program starts afresh (ru_maxrss would carry over the
    parent's peak through fork and exec). With tune_allocator the child tunes malloc as the timed process did.
    """
    code = (f"import sys; sys.argv=['x']; sys.path.insert(0, {__file__.rsplit('/', 1)[0]!r});"
            + ("from aiayn.runtime.allocator import tune_cpu_allocator; tune_cpu_allocator();"
               if tune_allocator else "") +
            f"import train as t, torch; torch.set_num_threads({threads});"
            f"hwm=lambda: int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]);"
            f"cfg=t.config_for({preset!r}); s={shape!r}; base=hwm();"
            f"f=t.contender_step({name!r}, cfg, t.make_batch(cfg.vocab_size, s['batch'], s['src_len'], s['tgt_len']),"
            f"torch.device('cpu'), {compile_all!r}); [f() for _ in range(3)];"
            f"print(hwm() - base)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def cuda_peak_memory_mb(step: Callable[[], None], device: torch.device) -> float:
    """Peak CUDA memory (MB) the allocator held during one more step, above what it held before it."""
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def config_for(preset: str) -> aiayn.ModelConfig:
    """The preset's model config, with the paper's dropout 0.1."""
    return aiayn.ModelConfig.preset(preset, dropout=0.1, max_positions=512)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--contenders", default="aiayn,nn.Transformer,HF Marian",
                        help='comma-separated; "aiayn bf16" runs aiayn under CPU bf16 autocast, '
                             '"aiayn compile" (or any "... compile") compiles that contender\'s forward, '
                             '"aiayn compile max-autotune" in that torch.compile mode (reduce-overhead: CUDA graphs)')
    parser.add_argument("--batch", type=int, default=None, help="sentences per batch (default: the preset's)")
    parser.add_argument("--src-len", type=int, default=None, help="source length (default: the preset's)")
    parser.add_argument("--tgt-len", type=int, default=None, help="target length (default: the preset's)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    parser.add_argument("--repeats", type=int, default=None,
                        help="steps per timed sample (default 1 on a CPU, 10 on a GPU)")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-contender peak-memory runs")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--compile", action="store_true", help="torch.compile every contender's forward")
    parser.add_argument("--tune-allocator", action="store_true",
                        help="tune glibc malloc for the whole process first "
                             "(aiayn.runtime.allocator.tune_cpu_allocator, what `aiayn train` does): "
                             "every contender gets it")
    args = parser.parse_args()
    if args.tune_allocator:
        tuned = aiayn.runtime.allocator.tune_cpu_allocator()
        print(f"allocator: {tuned or 'not glibc, nothing tuned'} (--tune-allocator)")
    else:
        env = " ".join(f"{key}={value}" for key, value in os.environ.items() if key.startswith("MALLOC_"))
        print(f"allocator: not tuned (no --tune-allocator){'; environment: ' + env if env else ''}")

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    repeats = args.repeats or (10 if on_gpu else 1)
    print(configure_threads(args.threads))
    if on_gpu:
        print(f"device: {torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}, "
              f"bf16 autocast, SDPA")
    cfg = config_for(args.preset)
    shape = dict(PRESETS[args.preset])
    for key in ("batch", "src_len", "tgt_len"):
        if getattr(args, key) is not None:
            shape[key] = getattr(args, key)
    batch = make_batch(cfg.vocab_size, shape["batch"], shape["src_len"], shape["tgt_len"])
    target_tokens = shape["batch"] * shape["tgt_len"]  # B x T, the count peers' figures use
    useful_tokens = int((batch[2] != PAD).sum())
    names = args.contenders.split(",")
    steps = {name: contender_step(name, cfg, batch, device, args.compile) for name in names}
    peak_dtype = torch.bfloat16 if on_gpu else torch.float32  # what the steps run in
    peak_size = 8192 if on_gpu else 2048  # a GPU needs a large product to reach its peak
    peak = matmul_peak_flops(device, peak_dtype, size=peak_size)
    if device.type == "cpu":  # bf16 is no win on CPUs without AVX-512 BF16 / AMX: say what this one does
        bf16 = matmul_peak_flops(device, torch.bfloat16, size=512, rounds=2)
        print(f"cpu bf16 matmul: {bf16 / 1e9:.1f} GFLOP/s (512^3) -> "
              f"{'fp32 kept' if bf16 < peak else 'bf16 would be faster here'}")
    compile_started = time.perf_counter()
    # the warm-up also compiles the "compile" contenders
    times = interleaved(steps, args.rounds, device, repeats, warmup=3 if on_gpu else 1)
    print(f"warm-up and {args.rounds} rounds of {repeats} step(s) each: "
          f"{time.perf_counter() - compile_started:.1f}s")
    peak_after = matmul_peak_flops(device, peak_dtype, size=peak_size)
    all_flops = step_flops(cfg, shape["batch"], shape["src_len"], shape["tgt_len"])  # projection at all B*T
    useful_flops = step_flops(cfg, shape["batch"], shape["src_len"], shape["tgt_len"], projected=useful_tokens)
    print(f"preset {args.preset}: B={shape['batch']} S={shape['src_len']} T={shape['tgt_len']}, "
          f"vocab {cfg.vocab_size}, {target_tokens} target tokens/step ({useful_tokens} not padding), "
          f"{useful_flops / 1e9:.1f} GFLOP/step useful (output projection at the {useful_tokens} scored positions: "
          f"what aiayn does), {all_flops / 1e9:.1f} with it at all {target_tokens} (what the others do), "
          f"device {device}")
    unit, scale = ("TFLOP/s", 1e12) if on_gpu else ("GFLOP/s", 1e9)
    print(f"{peak_dtype} matmul peak ({peak_size}^3): {peak / scale:.1f} {unit} before, "
          f"{peak_after / scale:.1f} after the rounds")
    reference = next((n for n in names if n == "nn.Transformer"), names[0])
    results = {}
    print(f"{'model':16} {'s/step':>8} {'tgt tok/s':>10} {'MFU':>6} {'useful':>6} {'peak MB':>8}  "
          f"per-round ratio vs {reference}")
    for name in names:
        t = median(times[name])
        ratios = [r / a for a, r in zip(times[name], times[reference])]
        if args.no_memory:
            memory = float("nan")
        elif on_gpu:
            memory = cuda_peak_memory_mb(steps[name], device)
        else:
            memory = peak_memory_mb(name, args.preset, shape, args.threads, args.compile, args.tune_allocator)
        done = useful_flops if projects_scored_only(name) else all_flops  # the FLOPs this contender does
        mfu, useful_mfu = done / t / max(peak, peak_after), useful_flops / t / max(peak, peak_after)
        results[name] = dict(seconds=t, tokens_per_s=target_tokens / t, flops=done, mfu=mfu,
                             useful_flops=useful_flops, useful_mfu=useful_mfu, peak_mb=memory, ratios=ratios,
                             times=times[name])
        print(f"{name:16} {t:8.4f} {target_tokens / t:10.0f} {mfu:6.1%} {useful_mfu:6.1%} {memory:8.0f}  "
              + " ".join(f"{r:.2f}" for r in ratios) + f"  (median {median(ratios):.2f}x)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(dict(preset=args.preset, shape=shape, device=str(device), peak_flops=max(peak, peak_after),
                           results=results), handle, indent=2)


if __name__ == "__main__":
    main()
