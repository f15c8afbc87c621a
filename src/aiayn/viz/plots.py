"""Attention heatmaps (matplotlib PNGs): a grid of heads, an overview of every layer, one token's view, masks."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from ..io.atomic import atomic_write
from ..model.masks import decoder_self_mask, padding_mask
from .collect import KIND_TITLES, AttentionRecord

DPI = 100  # every PNG is figure inches x DPI pixels (no tight bounding box, so sizes are predictable)
CELL_INCHES = 0.26  # one token row / column of a heatmap
LABEL_INCHES = 1.1  # room for the tick labels (tokens) and a title around each heatmap
MAX_PANEL_INCHES = 9.0  # long sentences shrink their cells instead of growing the picture forever
MAX_GRID_COLUMNS = 4  # heads per row of a grid


def panel_inches(n_query: int, n_key: int) -> tuple[float, float]:
    """(width, height) in inches of one heatmap with its token labels."""
    width = min(LABEL_INCHES + CELL_INCHES * n_key, MAX_PANEL_INCHES)
    height = min(LABEL_INCHES + CELL_INCHES * n_query, MAX_PANEL_INCHES)
    return max(width, 2.5), max(height, 2.5)


def grid_shape(n_panels: int, max_columns: int = MAX_GRID_COLUMNS) -> tuple[int, int]:
    """(rows, columns) of a grid holding n_panels heatmaps."""
    columns = max(1, min(n_panels, max_columns))
    return math.ceil(n_panels / columns), columns


def _font_size(n_tokens: int) -> float:
    """Tick label size that keeps labels of n_tokens tokens from overlapping."""
    return 8.0 if n_tokens <= 24 else 6.0 if n_tokens <= 40 else 4.5


def draw_heatmap(ax: Any, matrix: np.ndarray, query_tokens: Sequence[str], key_tokens: Sequence[str],
                 title: str = "", vmax: float | None = None, cmap: str = "viridis") -> Any:
    """Draw one (T_query, T_key) matrix on ax: queries down the side, keys along the top; the image."""
    image = ax.imshow(matrix, cmap=cmap, vmin=0.0, vmax=vmax if vmax is not None else max(float(matrix.max()), 1e-9),
                      aspect="auto", interpolation="nearest")
    size = _font_size(max(len(query_tokens), len(key_tokens)))
    ax.set_xticks(range(len(key_tokens)), labels=list(key_tokens), rotation=90, fontsize=size)
    ax.set_yticks(range(len(query_tokens)), labels=list(query_tokens), fontsize=size)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    if title:
        ax.set_title(title, fontsize=9, pad=4)
    return image


def plot_heads(weights: np.ndarray | Tensor, query_tokens: Sequence[str], key_tokens: Sequence[str],
               title: str = "") -> Figure:
    """A grid with one heatmap per head of (H, T_query, T_key) weights, one shared colour scale."""
    heads = _as_numpy(weights)
    if heads.ndim == 2:
        heads = heads[None]
    if heads.ndim != 3:
        raise ValueError(f"expected weights (H, T_query, T_key) or (T_query, T_key), got shape {heads.shape}")
    n_heads, n_query, n_key = heads.shape
    _check_labels(n_query, n_key, query_tokens, key_tokens)
    rows, columns = grid_shape(n_heads)
    width, height = panel_inches(n_query, n_key)
    fig = Figure(figsize=(columns * width, rows * height + 0.4), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    vmax = max(float(heads.max()), 1e-9)
    for index, ax in enumerate(axes.flat):
        if index >= n_heads:
            ax.set_visible(False)
            continue
        image = draw_heatmap(ax, heads[index], query_tokens, key_tokens, f"head {index}", vmax=vmax)
    fig.colorbar(image, ax=axes, shrink=0.6, label="attention weight")
    if title:  # wrapped to the figure's width (about 11 characters per inch at this size)
        fig.suptitle(textwrap.fill(title, max(20, int(columns * width * 11))), fontsize=11)
    return fig


def plot_attention(attention: AttentionRecord | np.ndarray | Tensor, kind: str | None = None, layer: int = 0,
                   head: int | str | None = None, query_tokens: Sequence[str] | None = None,
                   key_tokens: Sequence[str] | None = None, title: str | None = None) -> Figure:
    """A matplotlib Figure of one layer's attention: every head as a grid (head=None), one head, or the
    mean over heads (head="mean").

    `attention` is an AttentionRecord from collect_attention (then `kind` picks the kind; default the
    last one the model has: cross-attention for a Transformer), or raw weights (H, T_query, T_key) or
    (1, H, T_query, T_key) as returned in `model(..., return_attention=True).attentions[kind][layer]`.
    """
    if isinstance(attention, AttentionRecord):
        kind = kind or attention.kinds[-1]
        rows, cols = attention.tokens(kind)
        query_tokens = rows if query_tokens is None else query_tokens
        key_tokens = cols if key_tokens is None else key_tokens
        attention.matrix(kind, layer, 0)  # checks kind and layer
        heads = attention.weights[kind][layer]
        n_layers = len(attention.weights[kind])
        default_title = f"{KIND_TITLES[kind]}, layer {layer % n_layers} (of layers 0..{n_layers - 1})"
    else:
        heads = _as_numpy(attention)
        if heads.ndim == 4:
            if heads.shape[0] != 1:
                raise ValueError(f"weights of {heads.shape[0]} sentences: pick one, e.g. weights[0]")
            heads = heads[0]
        if heads.ndim == 2:
            heads = heads[None]
        n_query, n_key = heads.shape[-2:]
        query_tokens = query_tokens if query_tokens is not None else [str(i) for i in range(n_query)]
        key_tokens = key_tokens if key_tokens is not None else [str(i) for i in range(n_key)]
        default_title = KIND_TITLES.get(kind or "", "attention") + f", layer {layer}"
    if head == "mean":
        heads, label = heads.mean(0, keepdims=True), "mean over heads"
    elif head is not None:
        if not isinstance(head, int) or not -heads.shape[0] <= head < heads.shape[0]:
            raise ValueError(f"head {head!r} is out of range: heads 0..{heads.shape[0] - 1}, 'mean' or None")
        heads, label = heads[head:head + 1 if head != -1 else None], f"head {head % heads.shape[0]}"
    fig = plot_heads(heads, query_tokens, key_tokens, title if title is not None else default_title)
    if head is not None:
        fig.axes[0].set_title(label, fontsize=9, pad=4)
    return fig


def plot_overview(record: AttentionRecord) -> Figure:
    """Every layer of every kind, averaged over heads: one row per kind, one column per layer."""
    kinds = record.kinds
    n_layers = max(len(record.weights[kind]) for kind in kinds)
    sizes = [panel_inches(*(len(t) for t in record.tokens(kind))) for kind in kinds]
    width, height = max(w for w, _ in sizes), sum(h for _, h in sizes)
    fig = Figure(figsize=(n_layers * width, height + 0.4), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(kinds), n_layers, squeeze=False,
                        gridspec_kw={"height_ratios": [h for _, h in sizes]})
    for row, kind in enumerate(kinds):
        queries, keys = record.tokens(kind)
        for layer in range(n_layers):
            ax = axes[row, layer]
            if layer >= len(record.weights[kind]):
                ax.set_visible(False)
                continue
            draw_heatmap(ax, record.matrix(kind, layer, "mean"), queries, keys,
                         f"{KIND_TITLES[kind]}\nlayer {layer}, mean of heads")
    fig.suptitle("attention averaged over heads (each panel scaled to its own maximum)", fontsize=11)
    return fig


def plot_token_attention(record: AttentionRecord, token: int | str, kind: str = "encoder_self") -> Figure:
    """Where one query token attends in each layer: per layer a (heads x keys) heatmap of its row.

    token is a query position or a token string (its first occurrence, ignoring a leading '▁'/'Ġ'/'##').
    """
    queries, keys = record.tokens(kind)
    position = find_token(queries, token)
    n_layers = len(record.weights[kind])
    n_heads = record.weights[kind][0].shape[0]
    width, height = panel_inches(n_heads, len(keys))
    rows, columns = grid_shape(n_layers, max_columns=2)
    fig = Figure(figsize=(columns * width, rows * height + 0.4), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for layer, ax in enumerate(axes.flat):
        if layer >= n_layers:
            ax.set_visible(False)
            continue
        rows_of_token = record.weights[kind][layer][:, position, :]  # (H, Tk)
        image = draw_heatmap(ax, rows_of_token, [f"head {h}" for h in range(n_heads)], keys, f"layer {layer}",
                             vmax=1.0)
    fig.colorbar(image, ax=axes, shrink=0.5, label="attention weight")
    fig.suptitle(f"{KIND_TITLES[kind]}: where {queries[position]!r} (position {position}) attends", fontsize=11)
    return fig


def find_token(tokens: Sequence[str], token: int | str) -> int:
    """Position of `token` (an index, or a token string matched without BPE markers) in tokens."""
    if isinstance(token, int):
        if not -len(tokens) <= token < len(tokens):
            raise ValueError(f"token position {token} is out of range 0..{len(tokens) - 1}")
        return token % len(tokens)
    wanted = bare_token(token)
    for position, candidate in enumerate(tokens):
        if bare_token(candidate) == wanted:
            return position
    raise ValueError(f"token {token!r} is not among the tokens {list(tokens)}; give one of them or a position")


def bare_token(token: str) -> str:
    """A token without its BPE word markers, lower-cased: '▁It' -> 'it', 'Ġit' -> 'it', '##s' -> 's'."""
    return token.lstrip("▁Ġ").removeprefix("##").removesuffix("</w>").lower()


# ---------------------------------------------------------------------------------------------------------
# Masks


def mask_batch(record: AttentionRecord, pad_token: str = "<pad>") -> dict[str, Any]:
    """A small batch built from the record's tokens: the sentence and its first half, padded.

    Returns {"source": (2, S) token strings, "target": (2, T) token strings, and the boolean masks
    (True = may attend) the models build from pad_id: "encoder_self" (2, S, S), "decoder_self" (2, T, T),
    "cross" (2, T, S)} for the kinds the model has.
    """
    def two_rows(tokens: list[str]) -> tuple[list[list[str]], Tensor]:
        short = len(tokens) - len(tokens) // 2  # the second sentence: the first half, padded
        rows = [list(tokens), list(tokens[:short]) + [pad_token] * (len(tokens) - short)]
        ids = torch.ones(2, len(tokens), dtype=torch.long)  # 1 = a token, 0 = pad_id
        ids[1, short:] = 0
        return rows, ids

    batch: dict[str, Any] = {}
    if record.source_tokens:
        batch["source"], src = two_rows(record.source_tokens)
        key_mask = padding_mask(src, pad_id=0)  # (2, 1, 1, S)
        if "encoder_self" in record.kinds:
            batch["encoder_self"] = key_mask.expand(-1, -1, src.shape[1], -1)[:, 0].numpy()  # (2, S, S)
    if record.target_tokens:
        batch["target"], tgt = two_rows(record.target_tokens)
        batch["decoder_self"] = decoder_self_mask(None, tgt, pad_id=0)[:, 0].numpy()  # (2, T, T)
        if "cross" in record.kinds:
            batch["cross"] = padding_mask(src, pad_id=0).expand(-1, -1, tgt.shape[1], -1)[:, 0].numpy()
    return batch


def plot_masks(record: AttentionRecord) -> Figure:
    """The padding and causal masks of a two-sentence batch (the sentence and its padded first half):
    one row per sentence, one column per kind of attention; dark = may attend."""
    batch = mask_batch(record)
    kinds = [kind for kind in record.kinds if kind in batch]
    size = [panel_inches(*batch[kind].shape[1:]) for kind in kinds]
    fig = Figure(figsize=(sum(w for w, _ in size), 2 * max(h for _, h in size) + 0.6), dpi=DPI,
                 layout="constrained")
    axes = fig.subplots(2, len(kinds), squeeze=False, gridspec_kw={"width_ratios": [w for w, _ in size]})
    for column, kind in enumerate(kinds):
        for row in range(2):
            queries = batch["source" if kind == "encoder_self" else "target"][row]
            keys = batch["target" if kind == "decoder_self" else "source"][row]
            what = {"encoder_self": "padding", "decoder_self": "causal & padding", "cross": "source padding"}[kind]
            draw_heatmap(axes[row, column], batch[kind][row].astype(np.float32), queries, keys,
                         f"sentence {row}: {KIND_TITLES[kind]}\n({what} mask)", vmax=1.0, cmap="Greys")
    fig.suptitle("attention masks of a padded batch (dark = may attend, True)", fontsize=11)
    return fig


# ---------------------------------------------------------------------------------------------------------
# Files


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write fig as a PNG at DPI, atomically; the pixel size is exactly figsize x DPI."""
    path = Path(path)
    FigureCanvasAgg(fig)  # render with Agg (no display needed), whatever pyplot's backend is
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    return path


def write_pngs(record: AttentionRecord, folder: str | Path) -> list[Path]:
    """Write KIND_layerN.png (a grid of heads) for every layer and kind, overview.png (mean over heads)
    and masks.png into folder; returns the paths."""
    folder = Path(folder)
    written = []
    for kind in record.kinds:
        for layer in range(len(record.weights[kind])):
            written.append(save_figure(plot_attention(record, kind, layer), folder / f"{kind}_layer{layer}.png"))
    written.append(save_figure(plot_overview(record), folder / "overview.png"))
    written.append(save_figure(plot_masks(record), folder / "masks.png"))
    return written


def write_selected(record: AttentionRecord, folder: str | Path, kind: str | None = None, layer: int | None = None,
                   head: int | str | None = None) -> list[Path]:
    """Write only the chosen pictures, KIND_layerN.png (or ..._headH.png, ..._mean.png with a head):
    one kind or all, one layer (negative counts from the top) or all, one head, "mean" or the grid."""
    plans = []
    for name in [kind] if kind else record.kinds:
        record.matrix(name, 0)  # a clear ValueError for a kind the model lacks
        n_layers = len(record.weights[name])
        for number in [layer] if layer is not None else range(n_layers):
            record.matrix(name, number, head if head is not None else "mean")  # checks layer and head
            number %= n_layers
            suffix = "" if head is None else "_mean" if head == "mean" else f"_head{int(head) % 10_000}"
            plans.append((name, number, Path(folder) / f"{name}_layer{number}{suffix}.png"))
    return [save_figure(plot_attention(record, name, number, head), path) for name, number, path in plans]


def _as_numpy(weights: np.ndarray | Tensor) -> np.ndarray:
    """Weights as a float numpy array (detached, on the CPU)."""
    if isinstance(weights, Tensor):
        return weights.detach().float().cpu().numpy()
    return np.asarray(weights, dtype=np.float32)


def _check_labels(n_query: int, n_key: int, query_tokens: Sequence[str], key_tokens: Sequence[str]) -> None:
    """Raise a clear ValueError unless there is one label per row and per column."""
    if len(query_tokens) != n_query or len(key_tokens) != n_key:
        raise ValueError(f"weights have {n_query} query x {n_key} key positions but {len(query_tokens)} query "
                         f"and {len(key_tokens)} key tokens were given")
