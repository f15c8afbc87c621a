"""Multi-head attention (§3.2): one module for encoder self-, decoder masked self- and cross-attention."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .beam_layout import fold_beams, unfold_beams
from .embeddings import RotaryPositions


class KVCache:
    """Keys and values of one attention module during incremental decoding, (B, H, T, d_k) each.

    Self-attention appends one step at a time into one preallocated (2, B, H, capacity, d_k) block
    (keys, values), so writing a step and following beam parents are one copy each: beam parents are
    gathered into a second block of the same size, which then becomes the cache (gathering in place would
    need a temporary and a second copy). Cross-attention stores the projection of the encoder output once
    per source (`static`).
    """

    def __init__(self, capacity: int | None = None) -> None:
        """An empty cache; `capacity` preallocates that many positions (grown if exceeded)."""
        self.capacity = capacity
        self.block: Tensor | None = None  # (2, B, H, capacity, d_k): keys, values
        self._whole: Tensor | None = None  # the allocation `block` is a leading-rows view of
        self._spare: Tensor | None = None  # a second allocation of the same shape, for reorder
        self.keys: Tensor | None = None  # (B, H, capacity, d_k) views of the block (or static tensors)
        self.values: Tensor | None = None
        self.length = 0
        self.static = False

    def append_stacked(self, kv: Tensor) -> tuple[Tensor, Tensor]:
        """Write new keys and values, stacked as (2, B, H, t, d_k), after the cached ones (one copy); return all."""
        t = kv.shape[3]
        if self.block is None or self.length + t > self.block.shape[3]:
            self._grow(kv, self.length + t)
        assert self.block is not None
        self.block[:, :, :, self.length:self.length + t] = kv
        self.length += t
        return self.get()

    def _grow(self, kv: Tensor, needed: int) -> None:
        """(Re)allocate the block to hold at least `needed` positions, keeping what is cached."""
        old = self.block
        size = max(needed, self.capacity or 0, 2 * (old.shape[3] if old is not None else 0))
        two, b, h, _, d = kv.shape
        self.block = self._whole = kv.new_empty(two, b, h, size, d)
        self._spare = None
        if old is not None and self.length:
            self.block[:, :, :, :self.length] = old[:, :, :, :self.length]
        self.keys, self.values = self.block[0], self.block[1]

    def truncate(self, length: int) -> None:
        """Forget the appended positions from `length` on (drafted tokens that were not kept); no copy."""
        if not self.static:
            self.length = min(self.length, length)

    def set_static(self, k: Tensor, v: Tensor) -> None:
        """Store cross-attention keys/values computed once from the encoder output.

        Stored contiguous, each head's (S, d_k) keys in one block: every later step reads all of them, and
        the projection's head view would make those reads strided (docs/benchmarks.md, "Where a batched step goes").
        """
        self.keys, self.values, self.length, self.static = k.contiguous(), v.contiguous(), k.shape[2], True

    def get(self) -> tuple[Tensor, Tensor]:
        """The cached keys and values (B, H, T, d_k)."""
        assert self.keys is not None and self.values is not None
        if self.static:  # cross-attention: stored whole
            return self.keys, self.values
        return self.keys[:, :, :self.length], self.values[:, :, :self.length]

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows `index` (beam search: follow each hypothesis's parent; finished rows leave).

        Appended caches are gathered into the spare block, which becomes the cache (one copy of the written
        positions, no allocation after the first); `index` may be shorter than the batch, which then shrinks.
        """
        if self.block is not None and self._whole is not None and not self.static:
            n, length = index.shape[0], self.length
            if self._spare is None:
                self._spare = torch.empty_like(self._whole)
            torch.index_select(self.block[:, :, :, :length], 1, index, out=self._spare[:, :n, :, :length])
            self._whole, self._spare = self._spare, self._whole
            self.block = self._whole[:, :n]
            self.keys, self.values = self.block[0], self.block[1]
        elif self.keys is not None and self.values is not None:
            self.keys = self.keys.index_select(0, index)
            self.values = self.values.index_select(0, index)


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1..head_h) W^O with head_i = Attention(Q W^Q_i, K W^K_i, V W^V_i).

    The three input projections are stored as one (3 H d_k, d_model) matrix `in_proj`: self-attention
    runs one fused matmul for Q, K and V; cross-attention projects the decoder states with the Q rows
    and the encoder output with the K, V rows (one fused matmul for both). `rotary` rotates the queries and
    keys of self-attention by their positions (RoFormer); cross-attention, whose queries and keys come
    from different sequences, is left unrotated (as RoFormer applies it to self-attention only).
    """

    def __init__(self, d_model: int, n_heads: int, attention_dropout: float = 0.0, bias: bool = True,
                 d_k: int | None = None, rotary: RotaryPositions | None = None) -> None:
        """Projections for `n_heads` heads of width d_k (default d_model / n_heads, §3.2.2)."""
        super().__init__()
        if d_k is None and d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.d_k = d_model, n_heads, d_k or d_model // n_heads
        self.inner = self.n_heads * self.d_k  # width of the concatenated heads
        self.attention_dropout = attention_dropout
        self.rotary = rotary
        self.in_proj = nn.Linear(d_model, 3 * self.inner, bias=bias)  # rows: W^Q; W^K; W^V
        self.out_proj = nn.Linear(self.inner, d_model, bias=bias)  # W^O

    def forward(self, x: Tensor, memory: Tensor | None = None, mask: Tensor | None = None,
                cache: KVCache | None = None, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """Attend from x (B, Tq, d) to itself, or to `memory` (B, Tk, d) for cross-attention.

        `mask` is boolean, broadcastable to (B, H, Tq, Tk), True = may attend. For beam search, memory
        (and a cross-attention cache) may hold B / K rows, each shared by K consecutive rows of x; a
        mask then has the memory's rows, (B / K, 1, 1, Tk). Returns the output
        (B, Tq, d) and, if `need_weights`, the attention weights (B, H, Tq, Tk).
        """
        q, k, v = self._project(x, memory, cache)  # (B, H, T, d_k) each
        group = q.shape[0] // k.shape[0]
        if group > 1:  # beam search: `group` consecutive query rows share one memory row (B = S_rows * group)
            q = fold_beams(q, group)  # (S_rows, H, group * T, d_k): one source's K, V read once for all beams
        out, weights = attend(q, k, v, mask, self.attention_dropout if self.training else 0.0, need_weights)
        if group > 1:
            out = unfold_beams(out, group)
            weights = None if weights is None else unfold_beams(weights, group)
        b, _, t, _ = out.shape
        out = out.transpose(1, 2).reshape(b, t, self.inner)  # concat heads: (B, Tq, H d_k)
        return self.out_proj(out), weights

    def _project(self, x: Tensor, memory: Tensor | None, cache: KVCache | None) -> tuple[Tensor, Tensor, Tensor]:
        """Q from x; K, V from x (self) or memory (cross), reusing and extending the cache."""
        d = self.inner
        if memory is None:  # self-attention: one (B, T, 3d) matmul
            qkv = self._split_heads(self.in_proj(x))  # (3, B, H, T, d_k)
            if self.rotary is not None:  # new rows sit after the cached ones: positions start at the cache length
                start = cache.length if cache is not None else 0
                qkv = torch.stack((self.rotary(qkv[0], start), self.rotary(qkv[1], start), qkv[2]))
            if cache is not None:
                k, v = cache.append_stacked(qkv[1:])
                return qkv[0], k, v
            q, k, v = qkv.unbind(0)
            return q, k, v
        q = self._split_heads(self.project_rows(x, 0, d))[0]  # (B, H, Tq, d_k)
        if cache is not None and cache.static:
            k, v = cache.get()
        else:  # cross-attention: one (B, S, 2d) matmul for keys and values
            k, v = self._split_heads(self.project_rows(memory, d, 3 * d)).unbind(0)
            if cache is not None:
                cache.set_static(k, v)
        return q, k, v

    def project_rows(self, x: Tensor, start: int, end: int) -> Tensor:
        """x (B, T, d) times rows start:end of in_proj (W^Q: 0:d, W^K and W^V: d:3d): (B, T, end - start).

        The one place cross-attention reads in_proj's weights; inference.quantize overrides it to run the
        same rows through int8 kernels.
        """
        w, b = self.in_proj.weight, self.in_proj.bias
        return F.linear(x, w[start:end], None if b is None else b[start:end])

    def _split_heads(self, projected: Tensor) -> Tensor:
        """(B, T, n*d) -> (n, B, H, T, d_k) for n stacked projections."""
        b, t, width = projected.shape
        n = width // self.inner
        return projected.view(b, t, n, self.n_heads, self.d_k).permute(2, 0, 3, 1, 4)


def _can_branch_on_values(x: Tensor) -> bool:
    """True where reading a tensor's value back is cheap: eager code on a CPU."""
    return x.device.type == "cpu" and not torch.compiler.is_compiling()


# Longest key sequence for which the explicit formula is used on a CPU in half precision (see attend).
EXPLICIT_MAX_KEYS = 256


def _explicit_is_faster(q: Tensor, k: Tensor) -> bool:
    """True where torch's fused CPU kernel loses to three plain ops: bf16/fp16 inputs with short keys.

    The fused CPU kernel tiles for long sequences; with the short sentences of translation its bf16
    forward and backward, and its batched one-query decoding steps, are slower than the explicit
    matmul-softmax-matmul, whose (Tq, Tk) scores are small (benchmarks/attention_kernel.py). Eager batch-1
    decoding steps are the exception; compiled ones are not: inductor fuses the three ops into its own loops
    and calls the fused kernel as a library call (docs/benchmarks.md, "torch.compile of the step").
    """
    # a batch-1 eager decoding step: the fused kernel is as fast
    single_query = q.shape[0] * q.shape[-2] == 1 and not torch.compiler.is_compiling()
    return q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16) \
        and k.shape[-2] <= EXPLICIT_MAX_KEYS and not single_query


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout_p: float = 0.0,
           need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
    """softmax(Q K^T / sqrt(d_k)) V (§3.2.1) on (B, H, T, d_k) inputs; fully masked rows give zeros.

    Fast path: torch's fused scaled_dot_product_attention. The explicit formula where it is faster (half
    precision on a CPU, short keys) and where the weights (B, H, Tq, Tk) are wanted (need_weights).
    """
    row_has_key = None
    if mask is not None:
        # A query with no allowed key would softmax over all -inf (NaN): let it see every key, then
        # zero its output so values and gradients stay finite and it contributes nothing.
        row_has_key = mask.any(dim=-1, keepdim=True)  # (B|1, H|1, Tq, 1)
        if _can_branch_on_values(q) and bool(row_has_key.all()):
            row_has_key = None  # the common case on a CPU: nothing to repair
        else:  # on a GPU reading the flag back would stall the queue (and break a compiled graph): repair always
            mask = mask | ~row_has_key
    if need_weights or _explicit_is_faster(q, k):
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B, H, Tq, Tk)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        # half-precision scores are normalised in fp32, as the fused kernel does (its accumulators are fp32)
        weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(scores.dtype)
        if row_has_key is not None:
            weights = weights * row_has_key
        out = torch.matmul(F.dropout(weights, dropout_p) if dropout_p else weights, v)
        return out, weights if need_weights else None
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    if row_has_key is not None:
        out = out * row_has_key
    return out, None
