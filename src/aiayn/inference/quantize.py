"""Decoding in reduced precision: a copy of a trained model with bf16 or int8 weights, for search only.

The paper decodes in fp32. Two named options trade exactness for fewer bytes read per step (a batch-1
decoding step reads every weight once and is bound by that):

- "bf16": every weight, activation and KV cache in bfloat16 (8 exponent bits, like fp32). LayerNorm and
  softmax accumulate in fp32 inside torch's kernels; beam scores are kept in fp32. Fast only where the
  hardware multiplies bf16 natively (AVX-512 BF16 / AMX, or a GPU); elsewhere it is emulated and slow.
- "int8": every linear layer (attention projections, feed-forward, the pre-softmax projection, and so the
  cross-attention keys/values) runs torch's dynamic-quantization kernel `quantized::linear_dynamic`
  (fbgemm): weights int8 with one scale per output row, activations quantized per call to 8 bits (7 where
  the CPU lacks VNNI, as torch's quantize_dynamic does), int32 accumulation, fp32 out. Activations, the KV
  cache, LayerNorm and softmax stay fp32. Chosen over weight-only `torch._weight_int8pack_mm` because
  it multiplies in int8 too: on batches of 4 rows and more it is several times faster (docs/benchmarks.md).

Models are saved in fp32 and quantized when loaded for decoding (`for_decoding`): a quantized copy cannot
be saved, so no file ever holds weights that training could not continue from.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..model.attention import MultiHeadAttention
from ..model.registry import MODEL_TYPES
from ..runtime.precision import bf16_is_fast, cpu_flags
from .protocols import DecodingModel

TransformerBase = DecodingModel  # Transformer, RecurrentSeq2Seq, DecoderLM

DECODING_PRECISIONS = ("auto", "fp32", "bf16", "int8")
_DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.qint8: "int8", torch.int8: "int8"}


class PrecisionError(ValueError):
    """A decoding precision that this machine or model cannot run; the message names what would work."""


def quantized_engines() -> set[str]:
    """The int8 kernel libraries this PyTorch build offers ("fbgemm"/"x86" on x86 CPUs, "qnnpack" on ARM)."""
    return set(torch.backends.quantized.supported_engines)


def int8_problem(device: torch.device) -> str | None:
    """Why int8 decoding cannot run on `device` (one line naming the fix), or None where it can."""
    if device.type != "cpu":
        return (f"--precision int8 runs on the CPU only (fbgemm kernels), the model is on {device.type}: use "
                f"--precision bf16 there, or --device cpu")
    if not {"fbgemm", "x86"} & quantized_engines():
        return ("--precision int8 needs torch's x86 int8 kernels (fbgemm), which this PyTorch build or CPU lacks: "
                "use --precision bf16 or fp32")
    return None


def resolve_precision(precision: str | torch.dtype, device: torch.device) -> str:
    """"fp32", "bf16" or "int8" for a name or dtype; "auto" picks the fastest one that keeps quality here.

    auto: int8 on CPUs with int8 dot-product instructions (VNNI) and the fbgemm kernels; else bf16 where
    bf16 matmuls are native (runtime.precision.bf16_is_fast: AVX-512 BF16 / AMX, or a GPU with bf16); else
    fp32. bf16 is never assumed fast: emulated bf16 is far slower than fp32.
    """
    if isinstance(precision, torch.dtype):
        if precision not in _DTYPE_NAMES:
            raise PrecisionError(f"dtype {precision} is not a decoding precision: use torch.float32, "
                                 f"torch.bfloat16 or torch.qint8 (or 'auto')")
        precision = _DTYPE_NAMES[precision]
    if precision not in DECODING_PRECISIONS:
        raise PrecisionError(f"precision must be one of {list(DECODING_PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    if int8_problem(device) is None and {"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_flags():
        return "int8"
    return "bf16" if bf16_is_fast(device) else "fp32"


def for_decoding(model: TransformerBase, precision: str | torch.dtype = "auto") -> TransformerBase:
    """A copy of `model` for search in `precision` ("auto", "fp32", "bf16", "int8" or a torch dtype).

    fp32 returns the model itself. The copy is in eval mode, shares nothing with `model` (training it
    further does not change the copy), and its generate() runs in the chosen precision.
    """
    return copy_in(model, resolve_precision(precision, next(model.parameters()).device))


def copy_in(model: TransformerBase, name: str) -> TransformerBase:
    """for_decoding with the precision already resolved ("fp32", "bf16" or "int8"): a command resolves it once."""
    device = next(model.parameters()).device
    if name == "fp32":
        return model
    if name == "bf16":
        return copy.deepcopy(model).to(torch.bfloat16).eval()
    problem = int8_problem(device)
    if problem is not None:
        raise PrecisionError(problem)
    if not getattr(MODEL_TYPES.get(getattr(model, "model_type", "")), "int8", False):
        raise PrecisionError(f"int8 decoding is for translators (Transformer); this is a {type(model).__name__}: "
                             f"use bf16 or fp32")
    return int8_copy(model)


# ------------------------------------------------------------------------------------------- int8 kernels

def _reduce_range() -> bool:
    """7-bit activations where the CPU lacks VNNI: its 8-bit x 8-bit pair sums can overflow int16 otherwise."""
    return not {"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_flags()


def _row_scales(weight: Tensor) -> Tensor:
    """One symmetric int8 scale per output row of a (out, in) weight: max |row| / 127, (out,) fp32."""
    return (weight.detach().float().abs().amax(dim=1) / 127.0).clamp(min=1e-12)


def _pack(weight: Tensor, bias: Tensor | None) -> Any:
    """fbgemm's packed int8 weight (out, in) with one symmetric scale per output row, and the fp32 bias."""
    weight = weight.detach().float()
    scales = _row_scales(weight).double()  # (out,)
    zero_points = torch.zeros(weight.shape[0], dtype=torch.long)
    with warnings.catch_warnings():  # torch marks quantized tensors as deprecated; the kernels are what we use
        warnings.simplefilter("ignore")
        q = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
        return torch.ops.quantized.linear_prepack(q, None if bias is None else bias.detach().float())


class Int8Linear(nn.Module):
    """y = x W^T + b with W in int8 (per-row scales) and x quantized per call: (..., in) -> (..., out), fp32."""

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        """Quantize a (out, in) weight and keep the bias in fp32."""
        super().__init__()
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.packed = _pack(weight, bias)
        self.reduce_range = _reduce_range()

    def forward(self, x: Tensor) -> Tensor:
        """(..., in) fp32 -> (..., out) fp32."""
        return torch.ops.quantized.linear_dynamic(x, self.packed, self.reduce_range)

    def extra_repr(self) -> str:
        """Sizes, as nn.Linear shows them."""
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


class Int8Attention(MultiHeadAttention):
    """MultiHeadAttention with in_proj and out_proj in int8; cross-attention's Q and K/V rows packed apart."""

    rows: dict[tuple[int, int], Int8Linear]

    def project_rows(self, x: Tensor, start: int, end: int) -> Tensor:
        """x (B, T, d) times rows start:end of in_proj, through their own packed int8 weight."""
        return self.rows[(start, end)](x)


class Int8Projection:
    """The int8 pre-softmax projection of a translator; mixed into the model's own class by int8_copy."""

    output_projection: Int8Linear

    def output_logits(self, hidden: Tensor) -> Tensor:
        """Pre-softmax projection (B, T, d) -> (B, T, vocab) in int8 (§3.4's shared table, quantized)."""
        return self.output_projection(hidden)

    def step_projection(self) -> Callable[[Tensor], Tensor]:
        """Decoder output (b, T, d) -> logits (b, V) of its last position, through the int8 projection."""
        projection = self.output_projection
        return lambda hidden: projection(hidden[:, -1])

    def save(self, path: str | Path, tokenizer: Any = None) -> Path:
        """Refused: save the fp32 model; int8 is made from it on load (aiayn.for_decoding(model, "int8"))."""
        raise PrecisionError("an int8 decoding copy cannot be saved: save the fp32 model it was made from and "
                             "quantize after loading (aiayn.for_decoding(model, 'int8'), or translate "
                             "--precision int8)")


_INT8_CLASSES: dict[type, type] = {}


def int8_copy(model: TransformerBase) -> TransformerBase:
    """An int8 copy of an fp32 Transformer (the original is left as it is): same modules and forward, with
    every linear layer and the pre-softmax projection on fbgemm's dynamic int8 kernels (Int8Linear)."""
    new = copy.deepcopy(model).float().eval()
    int8_linear = Int8Linear

    cls = type(model)
    if cls not in _INT8_CLASSES:
        _INT8_CLASSES[cls] = type(f"Int8{cls.__name__}", (Int8Projection, cls), {"__doc__": Int8Projection.__doc__})
    new.__class__ = _INT8_CLASSES[cls]
    cross = {id(m.cross_attn) for m in new.modules() if getattr(m, "cross_attn", None) is not None}
    for module in list(new.modules()):
        if isinstance(module, MultiHeadAttention):
            w, b, d = module.in_proj.weight, module.in_proj.bias, module.in_proj.weight.shape[0] // 3
            # cross-attention reads in_proj by rows: W^Q for the decoder states, W^K;W^V for the memory
            module.rows = {(start, end): int8_linear(w[start:end], None if b is None else b[start:end])
                           for start, end in ((0, d), (d, 3 * d))} if id(module) in cross else {}
            module.__class__ = Int8Attention
    _swap_linears(new, int8_linear)
    table = new.token_embedding.weight if new.cfg.tie_embeddings else new.lm_head.weight  # (V, d)
    new.output_projection = int8_linear(table, getattr(new, "final_logits_bias", None))
    return new  # embeddings and LayerNorms stay fp32


def _swap_linears(module: nn.Module, int8_linear: Callable[[Tensor, Tensor | None], nn.Module]) -> None:
    """Replace every nn.Linear below module with int8_linear(weight, bias), holding the same weights."""
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, int8_linear(child.weight, child.bias))
        else:
            _swap_linears(child, int8_linear)
