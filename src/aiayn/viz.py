"""Attention pictures: heatmaps (matplotlib PNGs) of every kind of attention, and a self-contained HTML explorer.

The three kinds of §3.2.3: encoder self-attention (every source token sees every source token), decoder
masked self-attention (a target position sees itself and earlier positions only) and encoder-decoder
("cross") attention (each target position looks at the source). An EncoderLM has the first kind only,
a DecoderLM the second only.

    rec = collect_attention(model, tokenizer, "the cat sat", target="el gato")
    fig = plot_attention(rec, "cross", layer=0)          # a grid of heads, for notebooks
    write_pngs(rec, "pictures/"); write_html(rec, "attention.html")
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from .masks import decoder_self_mask, padding_mask
from .saving import atomic_write, atomic_write_text

KINDS = ("encoder_self", "decoder_self", "cross")
KIND_TITLES = {
    "encoder_self": "encoder self-attention",
    "decoder_self": "decoder masked self-attention",
    "cross": "encoder-decoder (cross) attention",
}
DPI = 100  # every PNG is figure inches x DPI pixels (no tight bounding box, so sizes are predictable)
CELL_INCHES = 0.26  # one token row / column of a heatmap
LABEL_INCHES = 1.1  # room for the tick labels (tokens) and a title around each heatmap
MAX_PANEL_INCHES = 9.0  # long sentences shrink their cells instead of growing the picture forever
MAX_GRID_COLUMNS = 4  # heads per row of a grid


@dataclass
class AttentionRecord:
    """Attention weights of one sentence (pair), as numpy arrays, with the tokens that label them.

    weights[kind][layer] is (H, T_query, T_key) for kind in "encoder_self", "decoder_self", "cross".
    source_tokens label the encoder side (EncoderLM: the text); target_tokens the decoder side (the
    decoder input: BOS + target for a Transformer; the text for a DecoderLM).
    """

    model_type: str
    source_tokens: list[str]
    target_tokens: list[str]
    weights: dict[str, list[np.ndarray]]
    source_text: str = ""
    target_text: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def kinds(self) -> list[str]:
        """The kinds of attention this model has, in the paper's order."""
        return [kind for kind in KINDS if self.weights.get(kind)]

    def tokens(self, kind: str) -> tuple[list[str], list[str]]:
        """(query tokens, key tokens) labelling the rows and columns of `kind`'s matrices."""
        self._check_kind(kind)
        if kind == "encoder_self":
            return self.source_tokens, self.source_tokens
        if kind == "decoder_self":
            return self.target_tokens, self.target_tokens
        return self.target_tokens, self.source_tokens

    def matrix(self, kind: str, layer: int, head: int | str | None = "mean") -> np.ndarray:
        """(T_query, T_key) weights of one head, or the mean over heads (head="mean")."""
        self._check_kind(kind)
        layers = self.weights[kind]
        if not -len(layers) <= layer < len(layers):
            raise ValueError(f"layer {layer} is out of range: {kind} has layers 0..{len(layers) - 1}")
        heads = layers[layer]  # (H, Tq, Tk)
        if head is None or head == "mean":
            return heads.mean(0)
        if not isinstance(head, int) or not -heads.shape[0] <= head < heads.shape[0]:
            raise ValueError(f"head {head!r} is out of range: the model has heads 0..{heads.shape[0] - 1} "
                             f"(or 'mean')")
        return heads[head]

    def _check_kind(self, kind: str) -> None:
        """Raise a clear ValueError unless the model has attention of this kind."""
        if kind not in self.kinds:
            raise ValueError(f"a {self.model_type} model has no {kind!r} attention; choose one of {self.kinds}")


# ---------------------------------------------------------------------------------------------------------
# Running a model


def token_strings(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """The tokenizer's string for each id (e.g. '▁the', '##ing', '</s>'), '<id N>' for unknown ids."""
    out = []
    for i in ids:
        token = tokenizer.id_to_token(int(i)) if tokenizer is not None else None
        out.append(token if token is not None else f"<id {int(i)}>")
    return out


def source_ids(model: Any, tokenizer: Any, text: str) -> list[int]:
    """Token ids of the text as the model reads it: BPE ids + [EOS] for a Transformer's source;
    the tokenizer's own encoding (with its special tokens, e.g. BERT's [CLS] .. [SEP]) otherwise."""
    encoding = tokenizer.encode(text, add_special_tokens=model.model_type != "transformer")
    ids = [i for i, keep in zip(encoding.ids, encoding.attention_mask) if keep]  # a tokenizer may pad
    return ids + [model.cfg.eos_id] if model.model_type == "transformer" else ids


@torch.no_grad()
def collect_attention(model: Any, tokenizer: Any, text: str, target: str | None = None,
                      beam_size: int = 4) -> AttentionRecord:
    """Run `model` on one text (and target) and keep every layer's attention weights.

    Transformer: text is the source; target is the reference translation, or, when None, the model's
    own translation (beam search of §6.1; greedy where beam search is not available). EncoderLM and
    DecoderLM read the text alone.
    """
    was_training = model.training
    try:
        model.eval()  # no dropout: the weights a reader sees are the ones inference uses
        return _collect(model, tokenizer, text, target, beam_size)
    finally:
        model.train(was_training)


def _collect(model: Any, tokenizer: Any, text: str, target: str | None, beam_size: int) -> AttentionRecord:
    """collect_attention's work, on a model in eval mode."""
    device = next(model.parameters()).device
    ids = source_ids(model, tokenizer, text)
    if not ids:
        raise ValueError("the text has no tokens; give at least one word")
    src = torch.tensor([ids], dtype=torch.long, device=device)  # (1, S)
    notes: dict[str, Any] = {}
    if model.model_type == "transformer":
        if target is None:
            target_ids, notes["decoding"] = _translate(model, src, beam_size)
            target = tokenizer.decode(target_ids)
        else:
            encoding = tokenizer.encode(target, add_special_tokens=False)
            target_ids = [i for i, keep in zip(encoding.ids, encoding.attention_mask) if keep]
        decoder_in = [model.cfg.bos_id] + list(target_ids)  # BOS + target, shifted right
        tgt = torch.tensor([decoder_in], dtype=torch.long, device=device)  # (1, T)
        out = model(src, tgt, return_attention=True)
        src_tokens, tgt_tokens = token_strings(tokenizer, ids), token_strings(tokenizer, decoder_in)
    elif target is not None:
        raise ValueError(f"a target is only for encoder-decoder models; this is a {model.model_type}: "
                         f"put the whole text in the first argument")
    else:
        out = model(src, return_attention=True)
        tokens = token_strings(tokenizer, ids)
        src_tokens = tokens if model.model_type == "encoder_lm" else []
        tgt_tokens = tokens if model.model_type == "decoder_lm" else []
    weights = {kind: [w[0].float().cpu().numpy() for w in out.attentions[kind]]  # layers of (H, Tq, Tk)
               for kind in KINDS if kind in out.attentions}
    return AttentionRecord(model.model_type, src_tokens, tgt_tokens, weights, source_text=text,
                           target_text=target or "", notes=notes)


def _translate(model: Any, src: Tensor, beam_size: int) -> tuple[list[int], str]:
    """The model's translation of src (1, S) and how it was decoded."""
    if beam_size == 1:
        return model.generate(src, beam_size=1)[0], "greedy search"
    try:
        return model.generate(src, beam_size=beam_size)[0], f"beam search, beam {beam_size}"
    except NotImplementedError:  # beam search lands with the decoding issue
        return model.generate(src, beam_size=1)[0], "greedy search (beam search not available)"


# ---------------------------------------------------------------------------------------------------------
# Heatmaps


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
    wanted = _bare(token)
    for position, candidate in enumerate(tokens):
        if _bare(candidate) == wanted:
            return position
    raise ValueError(f"token {token!r} is not among the tokens {list(tokens)}; give one of them or a position")


def _bare(token: str) -> str:
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


def explorer_data(record: AttentionRecord, decimals: int = 4) -> dict[str, Any]:
    """The JSON the HTML explorer embeds: per kind its tokens and weights [layer][head][query][key]."""
    kinds = {}
    for kind in record.kinds:
        queries, keys = record.tokens(kind)
        kinds[kind] = {"title": KIND_TITLES[kind], "queries": queries, "keys": keys,
                       "weights": [np.round(w.astype(np.float64), decimals).tolist() for w in record.weights[kind]]}
    return {"model_type": record.model_type, "source": record.source_text, "target": record.target_text,
            "notes": record.notes, "kinds": kinds}


def render_html(record: AttentionRecord, title: str = "aiayn attention explorer") -> str:
    """One self-contained HTML page (no network: inline CSS, data as JSON, plain JavaScript)."""
    data = json.dumps(explorer_data(record), ensure_ascii=False)
    data = data.replace("<", "\\u003c").replace(">", "\\u003e")  # cannot close the <script> element
    page = (Path(__file__).with_name("viz_explorer.html")).read_text(encoding="utf-8")
    safe_title = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return page.replace("{{TITLE}}", safe_title).replace("{{DATA}}", data)


def write_html(record: AttentionRecord, path: str | Path, title: str = "aiayn attention explorer") -> Path:
    """Write the HTML explorer to path, atomically."""
    path = Path(path)
    atomic_write_text(path, render_html(record, title))
    return path


# ---------------------------------------------------------------------------------------------------------
# Helpers


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


# ---------------------------------------------------------------------------------------------------------
# `aiayn attention`


def load_model_and_tokenizer(folder: str | Path) -> tuple[Any, Any]:
    """An aiayn model folder (or a Hugging Face one, once aiayn.from_huggingface exists) and its tokenizer."""
    from .cli import UserError
    from .models import MODEL_CLASSES
    from .saving import CONFIG_FILE, TOKENIZER_FILE, CheckpointError, check_tokenizer, load

    folder = Path(folder)
    tokenizer_path = folder / TOKENIZER_FILE
    try:
        model_type = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8")).get("model_type", "transformer")
    except (OSError, ValueError, AttributeError):
        model_type = "transformer"  # aiayn.load names the problem
    try:
        if model_type in MODEL_CLASSES:
            model = load(folder)
        else:  # a Hugging Face checkpoint (e.g. BERT): converted by the interop module
            from_huggingface = _from_huggingface()
            if from_huggingface is None:
                raise UserError(f"{folder} holds a Hugging Face {model_type!r} model, and this aiayn has no "
                                f"aiayn.from_huggingface to convert it; convert it to an aiayn folder first")
            model = from_huggingface(folder)
    except CheckpointError as error:
        raise UserError(str(error)) from None
    if not tokenizer_path.is_file():
        raise UserError(f"{tokenizer_path} is missing: the pictures need the model's tokenizer; save the model "
                        f"with model.save(folder, tokenizer=tok) or copy its tokenizer.json there")
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
    except Exception as error:  # noqa: BLE001 (tokenizers raises a bare Exception for a bad file)
        raise UserError(f"{tokenizer_path} is not a valid tokenizers JSON file ({error}); save it again") from None
    if model_type in MODEL_CLASSES:  # an aiayn folder records its tokenizer's vocabulary fingerprint
        try:
            check_tokenizer(folder, tokenizer)
        except CheckpointError as error:
            raise UserError(str(error)) from None
    tokenizer.no_padding()  # one sentence: no padding, and no silent truncation (an over-long text is an error)
    tokenizer.no_truncation()
    return model, tokenizer


def _from_huggingface() -> Any:
    """aiayn.from_huggingface where the interop module provides it, else None."""
    import aiayn

    return getattr(aiayn, "from_huggingface", None)


def attention_command(args: Any) -> None:
    """The `aiayn attention` command: PNGs into args.out, the HTML explorer into args.html."""
    from .cli import UserError

    if not args.text.strip():
        raise UserError("the text is empty; give a sentence, e.g. aiayn attention MODEL_DIR \"The cat sat.\"")
    if args.beam < 1:
        raise UserError(f"--beam must be at least 1, got {args.beam}")
    model, tokenizer = load_model_and_tokenizer(args.model_dir)
    head = None if args.head is None else _position_or_word(args.head)
    selected = args.kind is not None or args.layer is not None or head is not None
    try:
        record = collect_attention(model, tokenizer, args.text, args.target, beam_size=args.beam)
        kind = args.kind or record.kinds[0]
        focus = find_token(record.tokens(kind)[0], _position_or_word(args.focus)) \
            if args.focus is not None else None
        if selected:  # check the choice before anything is written
            for name in [args.kind] if args.kind else record.kinds:
                record.matrix(name, args.layer or 0, "mean" if head is None else head)
    except ValueError as error:  # over-long text, ids outside the vocabulary, a target for an LM, ...
        raise UserError(str(error)) from None
    if record.notes.get("decoding"):
        print(f"translation ({record.notes['decoding']}): {record.target_text or '(empty)'}")
    written = write_selected(record, args.out, args.kind, args.layer, head) if selected \
        else write_pngs(record, args.out)
    if focus is not None:
        name = f"focus_{_bare(record.tokens(kind)[0][focus]) or 'token'}_{focus}.png"
        written.append(save_figure(plot_token_attention(record, focus, kind), Path(args.out) / name))
    if args.html:
        written.append(write_html(record, args.html))
    for path in written:
        print(path)


def _position_or_word(value: str) -> int | str:
    """--focus 5 is a position; --focus it is a word."""
    return int(value) if value.lstrip("-").isdigit() else value
