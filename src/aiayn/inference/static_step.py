"""The decoder step with fixed shapes, and its compiled copies (generate(..., compile=True); not in the paper).

The library's step (`Transformer.decode_step`) attends over the positions so far, so its shapes grow by one
key per step, and finished rows leave the batch. Compiled as it is, it would recompile at every step. This
step keeps every shape fixed for a whole search, so one graph (torch.compile, fullgraph, no dynamic shapes)
serves every step:

- the self-attention keys/values of all layers live in one (L, 2, R, H, T, d_k) block, written at a position
  tensor; each step attends over all T keys under the mask `key <= position`;
- the cross-attention keys/values are projected once per source, (L, 2, B, H, S, d_k);
- rows stay in the block until the search ends: a row that has finished keeps being computed and its
  output is ignored. Beam search's R = B * K rows follow their parents by a copy inside the block;
- shapes are rounded up so a few graphs serve many inputs: T to a multiple of CAPACITY_MULTIPLE, S to a
  multiple of SOURCE_MULTIPLE (the padding masked), the B sources to a power of two (extra rows repeat
  the first source and are never read).

The step is the model's own: its embeddings, layers (pre- or post-LN), attention, feed-forward and output
projection run unchanged on small cache objects that write into the block; no weight is copied.

Compiled steps are kept on the model (an attribute, `_aiayn_static_steps`, emptied by copy.deepcopy and
by `forget(model)`), one per (precision copy, rows, padded source length, capacity), so a second search
with the same shapes does not compile again; a decoding copy asked for with dtype= is kept there too.
Inductor's freezing makes the weights constants of the compiled code: a model whose weights change
after its first compiled search must be forgotten (`forget(model)`) or its steps keep the old weights.

int8 here is weight-only (quantize.int8_copy(weight_only=True): torch._weight_int8pack_mm, activations in
bf16 where native): torch.compile cannot trace the fbgemm kernels of eager int8 decoding.
"""

from __future__ import annotations

import contextlib
import time
import types
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..model.attention import KVCache
from ..model.layers import LayerCache
from .protocols import Seq2SeqModel
from .quantize import Int8Linear, PrecisionError, for_decoding, int8_copy, int8_problem, resolve_precision

Transformer = Seq2SeqModel

CAPACITY_MULTIPLE = 64  # decoder positions T are rounded up to this
SOURCE_MULTIPLE = 32  # source positions S are rounded up to this
# Inductor with its CPU GEMM choices tuned, and freezing (weights as constants, prepacked for its GEMM
# kernels); without freezing the compiled step gained little over the eager one
# (benchmarks/results/compile-decode-cpu-shared.txt).
COMPILE_MODE = "max-autotune-no-cudagraphs"
FREEZE = True
QUIET = {"autotune_num_choices_displayed": 0, "max_autotune_report_choices_stats": False}  # no autotune tables
_CACHE_ATTRIBUTE = "_aiayn_static_steps"
# compile="aoti": the step exported (torch.export) and compiled ahead of time by AOTInductor instead of
# torch.compile; each shape compiles once, as with "inductor", and is called without dynamo's wrappers.
AHEAD_OF_TIME = "aoti"


def round_up(n: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is >= n (and >= multiple)."""
    return max(-(-n // multiple), 1) * multiple


def padded_sources(n: int) -> int:
    """The number of source rows a static search holds for n sources: the next power of two."""
    return 1 << max(n - 1, 0).bit_length()


def inductor_options() -> dict[str, Any]:
    """torch.compile's per-call inductor settings: COMPILE_MODE's, without the autotuning tables it prints.

    torch._inductor is reached through torch's lazy attribute, so importing aiayn does not load it.
    """
    return {**torch._inductor.list_mode_options(COMPILE_MODE), **QUIET}


def compile_backend(value: Any) -> str | None:
    """The torch.compile backend for generate's `compile` option: None (off), "inductor" (True) or a name."""
    if value is None or value is False:
        return None
    if value is True:
        return "inductor"
    if isinstance(value, str) and value:
        return value
    raise ValueError(f"compile must be True, False or a torch.compile backend name (e.g. 'eager'), got {value!r}")


def check_compilable(model: Transformer, flag: str = "compile=True") -> None:
    """Raise ValueError naming what a fixed-shape compiled step cannot run (before any work starts): a model
    that is not a translator, or an int8 copy on fbgemm's kernels (every precision asked for is runnable).

    flag names the setting in the message ("compile=True", or the command line's "--compile").
    """
    if getattr(model, "model_type", None) != "transformer":
        raise ValueError(f"{flag} is for translators (Transformer); this is a {type(model).__name__}: decode "
                         f"without it")
    if any(isinstance(m, Int8Linear) for m in model.modules()):
        raise ValueError(f"{flag} cannot run this int8 copy: torch.compile does not trace fbgemm's packed int8 "
                         f"linear kernels; give the fp32 model and ask for int8 (dtype='int8', or --precision "
                         f"int8), which {flag} runs with weight-only int8 kernels")


class _StaticKV:
    """Self-attention keys/values of one layer in a fixed (2, R, H, T, d_k) block, as KVCache's interface.

    `length` is the (1,) position tensor of the step: MultiHeadAttention starts rotary positions there, and
    append_stacked writes the new keys/values at it and returns all T (the step masks the unwritten ones).
    """

    static = False

    def __init__(self, block: Tensor, position: Tensor) -> None:
        """Write into `block` (2, R, H, T, d_k) at `position` (1,)."""
        self.block, self.length = block, position

    def append_stacked(self, kv: Tensor) -> tuple[Tensor, Tensor]:
        """Write kv (2, R, H, 1, d_k) at the position; return keys and values (R, H, T, d_k)."""
        self.block.index_copy_(3, self.length, kv)
        return self.block[0], self.block[1]


def step_logits(model: Transformer, token: Tensor, position: Tensor, kv: Tensor, cross: Tensor, memory: Tensor,
                memory_keep: Tensor) -> Tensor:
    """Logits (R, V) for token (R, 1) at position (1,); kv (L, 2, R, H, T, d_k) is written in place.

    cross (L, 2, B, H, S, d_k): the cross-attention keys/values of B sources (R = B * K beams, K consecutive
    rows per source); memory (B, S, d): the encoder output they came from (not read again); memory_keep
    (B, 1, 1, S): True at real source positions.
    """
    seen = torch.arange(kv.shape[4], device=token.device) <= position  # (T,) positions written so far
    caches = []
    for i in range(kv.shape[0]):
        cache = LayerCache()
        cache.self_kv = _StaticKV(kv[i], position)  # type: ignore[assignment]
        cache.cross_kv = KVCache()
        cache.cross_kv.set_static(cross[i, 0], cross[i, 1])
        caches.append(cache)
    x = model.tgt_positions(model._tgt_tokens()(token), position)  # (R, 1, d)
    hidden, _ = model.decoder(x, seen[None, None, None, :], memory, memory_keep, caches)  # (R, 1, d)
    return model.step_projection()(hidden)  # (R, V)


def _own_code(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """fn with a code object of its own: torch.compile keeps its graphs per code object, at most
    torch._dynamo.config.recompile_limit of them (then it runs eagerly); one code object per shape keeps
    every kept step compiled, without changing that global setting."""
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__,
                              fn.__closure__)


class StaticStep:
    """One model's step for fixed shapes: R rows, B sources of S positions, T decoder positions."""

    def __init__(self, model: Transformer, rows: int, sources: int, source_length: int, capacity: int,
                 backend: str | None) -> None:
        """Compile the step with torch.compile `backend` (None: run it uncompiled); compiling is lazy."""
        self.model, self.rows, self.sources = model, rows, sources
        self.source_length, self.capacity, self.backend = source_length, capacity, backend
        self.compile_seconds: float | None = None  # set by the first call, which compiles
        if backend is None or backend == AHEAD_OF_TIME:  # the latter is compiled on the first call
            self._fn: Callable[..., Tensor] = step_logits
        elif backend == "inductor":
            self._fn = torch.compile(_own_code(step_logits), fullgraph=True, dynamic=False,
                                     options=inductor_options())
        else:
            self._fn = torch.compile(_own_code(step_logits), fullgraph=True, dynamic=False, backend=backend)

    def __call__(self, token: Tensor, position: Tensor, kv: Tensor, cross: Tensor, memory: Tensor,
                 memory_keep: Tensor) -> Tensor:
        """step_logits of the model, compiled; the first call compiles (timed in compile_seconds)."""
        if self.compile_seconds is not None or self.backend is None:
            return self._fn(self.model, token, position, kv, cross, memory, memory_keep)
        start = time.perf_counter()
        if self.backend == AHEAD_OF_TIME:
            self._fn = _compile_ahead(self.model, (token, position, kv, cross, memory, memory_keep))
            self.compile_seconds = time.perf_counter() - start
            return self._fn(self.model, token, position, kv, cross, memory, memory_keep)
        # Freezing is read by torch.compile's tracer from the global inductor config (its per-call options=
        # reach only the later compiler, so freezing given there has no effect): set for this compile only.
        freezing = FREEZE and self.backend == "inductor"
        with torch._inductor.config.patch(freezing=True) if freezing else contextlib.nullcontext():
            out = self._fn(self.model, token, position, kv, cross, memory, memory_keep)
        self.compile_seconds = time.perf_counter() - start
        return out


class _StepModule(torch.nn.Module):
    """step_logits of one model as a module, for torch.export."""

    def __init__(self, model: Transformer) -> None:
        """Hold the model whose step is exported."""
        super().__init__()
        self.model = model

    def forward(self, *buffers: Tensor) -> Tensor:
        """Logits (R, V) of one step; buffers as StaticStep takes them."""
        return step_logits(self.model, *buffers)


def _compile_ahead(model: Transformer, buffers: tuple[Tensor, ...]) -> Callable[..., Tensor]:
    """step_logits for these buffers' shapes exported and compiled by AOTInductor (freezing, COMPILE_MODE's
    settings): a shared library called without torch.compile's guards and wrappers."""
    for parameter in model.parameters():  # a decoding copy made inside a search holds inference tensors,
        if parameter.is_inference():       # which torch.export cannot mark as needing gradients
            parameter.requires_grad_(False)
    with torch.inference_mode(False), torch.no_grad(), torch._inductor.config.patch(freezing=FREEZE):
        exported = torch.export.export(_StepModule(model), tuple(b.clone() for b in buffers))
        package = torch._inductor.aoti_compile_and_package(exported, inductor_configs=inductor_options())
    runner = torch._inductor.aoti_load_package(package)
    fast = _flat_call(runner, buffers)
    return lambda _model, *step_buffers: fast(list(step_buffers))


def _flat_call(runner: Any, buffers: tuple[Tensor, ...]) -> Callable[[list[Tensor]], Tensor]:
    """The loaded step called on its flat list of tensors, skipping the package's per-call parsing of its input
    and output specs (the step takes six tensors and returns one); the packaged call where the loader offers no
    flat entry, or where the two disagree on these buffers."""
    loader = getattr(runner, "loader", None)
    if loader is None or not hasattr(loader, "boxed_run"):
        return lambda flat: runner(*flat)
    probe = [b.clone() for b in buffers]
    expected = runner(*[b.clone() for b in buffers])
    found = loader.boxed_run(probe)
    if len(found) != 1 or not torch.equal(found[0], expected):
        return lambda flat: runner(*flat)
    return lambda flat: loader.boxed_run(flat)[0]


class _Kept:
    """What a model keeps for compiled search: its steps by shape and its decoding copies; never copied."""

    def __init__(self) -> None:
        """Nothing kept yet."""
        self.steps: dict[tuple[Any, ...], StaticStep] = {}
        self.copies: dict[str, Transformer] = {}

    def __deepcopy__(self, memo: dict[int, Any]) -> "_Kept":
        """A copy of a model starts with nothing kept (its weights are its own)."""
        return _Kept()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled empty: compiled code does not travel."""
        return {"steps": {}, "copies": {}}


def _kept(model: Transformer) -> _Kept:
    """The model's _Kept, made on first use."""
    kept = model.__dict__.get(_CACHE_ATTRIBUTE)
    if kept is None:
        kept = _Kept()
        object.__setattr__(model, _CACHE_ATTRIBUTE, kept)
    return kept


def kept_steps(model: Transformer) -> list[StaticStep]:
    """The compiled steps kept on `model`, oldest first (each with its compile_seconds)."""
    kept = model.__dict__.get(_CACHE_ATTRIBUTE)
    return [] if kept is None else list(kept.steps.values())


def forget(model: Transformer) -> None:
    """Drop the compiled steps and decoding copies kept on `model` (after changing its weights)."""
    model.__dict__.pop(_CACHE_ATTRIBUTE, None)


def decoding_copy(model: Transformer, precision: str | torch.dtype) -> Transformer:
    """for_decoding(model, precision) (int8: its weight-only form), made once and kept on `model`, so its
    compiled steps are reused."""
    device = next(model.parameters()).device
    name = resolve_precision(precision, device)
    if name == "fp32":
        return for_decoding(model, name)
    kept = _kept(model)
    if name not in kept.copies:
        if name == "int8":
            problem = int8_problem(device)
            if problem is not None:
                raise PrecisionError(problem)
        kept.copies[name] = int8_copy(model, weight_only=True) if name == "int8" else for_decoding(model, name)
    return kept.copies[name]


def static_step(model: Transformer, rows: int, sources: int, source_length: int, capacity: int,
                backend: str | None) -> StaticStep:
    """The kept StaticStep of `model` for these shapes (made on first use)."""
    dtype = next(model.parameters()).dtype
    key = (dtype, rows, sources, source_length, capacity, backend)
    steps = _kept(model).steps
    if key not in steps:
        steps[key] = StaticStep(model, rows, sources, source_length, capacity, backend)
    return steps[key]


class StaticSearch:
    """One search's buffers on a StaticStep, and which of its rows are live (the searches' step interface).

    A search sees only its live rows: logits() takes their tokens and returns their logits; keep_sources()
    and follow() say which sources and rows go on, as they do for the eager step, whose buffers shrink.
    Here nothing shrinks: live rows are mapped onto the block's fixed rows.
    """

    def __init__(self, model: Transformer, src: Tensor, keep: Tensor, beams: int, capacity: int,
                 backend: str | None) -> None:
        """Encode src (B, S) with keep-mask (B, S) as the eager search does; fill the fixed-shape buffers."""
        cfg = model.cfg
        n, length = src.shape
        b, s = padded_sources(n), round_up(length, SOURCE_MULTIPLE)
        t = round_up(capacity, CAPACITY_MULTIPLE)
        self.step = static_step(model, b * beams, b, s, t, backend)
        self.beams, self.position = beams, 0
        memory = model.encode(src, keep)  # (n, S, d), as the eager search encodes
        h, dk, layers = cfg.n_heads, cfg.d_k, model.decoder.layers
        width = h * dk
        device, dtype = memory.device, memory.dtype
        fill = torch.cat([torch.arange(n, device=device), torch.zeros(b - n, dtype=torch.long, device=device)])
        self.cross = torch.zeros(len(layers), 2, b, h, s, dk, dtype=dtype, device=device)  # (L, 2, B, H, S, d_k)
        for i, layer in enumerate(layers):  # projected from the unpadded memory: the eager step's values
            kv = layer.cross_attn.project_rows(memory, width, 3 * width).view(n, length, 2, h, dk)
            self.cross[i, :, :, :, :length] = kv.permute(2, 0, 3, 1, 4).index_select(1, fill)
        self.memory = torch.zeros(b, s, memory.shape[2], dtype=dtype, device=device)  # (B, S, d)
        self.memory[:, :length] = memory.index_select(0, fill)
        self.memory_keep = torch.zeros(b, 1, 1, s, dtype=torch.bool, device=device)  # (B, 1, 1, S)
        self.memory_keep[:, 0, 0, :length] = keep.index_select(0, fill)
        rows = b * beams
        self.kv = torch.zeros(len(layers), 2, rows, h, t, dk, dtype=dtype, device=device)  # (L, 2, R, H, T, d_k)
        self.token = torch.full((rows, 1), cfg.bos_id, dtype=torch.long, device=device)
        self.sources = torch.arange(n, device=device)  # live source of each live source slot
        self.rows = torch.arange(n * beams, device=device)  # block row of each live row
        self.everyone = n == b  # every block row is live: no gathering

    def computed_rows(self, live: int) -> int:
        """Rows one step computes for `live` live rows: all of the block's."""
        return self.step.rows

    def logits(self, token: Tensor, step: int) -> Tensor:
        """Logits (n, V) of the live rows' tokens (n, 1) at position `step`."""
        if self.everyone:
            self.token = token
        else:
            self.token.index_copy_(0, self.rows, token)
        position = torch.tensor([step], device=token.device)
        logits = self.step(self.token, position, self.kv, self.cross, self.memory, self.memory_keep)
        self.position = step + 1
        return logits if self.everyone else logits.index_select(0, self.rows)

    def keep_sources(self, index: Tensor) -> None:
        """Only the live sources `index` (into the live ones) go on."""
        self.sources = self.sources.index_select(0, index)
        if self.everyone:  # from now on live tokens are written into a buffer of all rows
            self.token = self.token.clone()
        self.everyone = False

    def forget_after(self, length: int) -> None:
        """Positions from `length` on (drafted tokens not kept): nothing to do, the step masks every position
        after the one it is at, and writing a position again overwrites it."""

    def follow(self, parent: Tensor) -> None:
        """Live row i continues from live row parent[i]: its written keys/values are copied over (beam search)."""
        k = self.beams
        new = (self.sources[:, None] * k + torch.arange(k, device=parent.device)).view(-1)  # (n,) block rows
        old = self.rows.index_select(0, parent)
        if not torch.equal(new, old):  # only the positions written so far; the rest is masked
            self.kv[:, :, new, :, :self.position] = self.kv[:, :, old, :, :self.position]
        self.rows = new
        self.everyone = self.everyone and new.shape[0] == self.step.rows
