"""Attention pictures: heatmaps (matplotlib PNGs) of every kind of attention, and a self-contained HTML explorer.

    rec = collect_attention(model, tokenizer, "the cat sat", target="el gato")
    fig = plot_attention(rec, "cross", layer=0)          # a grid of heads, for notebooks
    write_pngs(rec, "pictures/"); write_html(rec, "attention.html")
"""

from .collect import KINDS, AttentionRecord, collect_attention, source_ids, token_strings
from .explorer import explorer_data, render_html, write_html
from .plots import (
    find_token,
    mask_batch,
    plot_attention,
    plot_heads,
    plot_masks,
    plot_overview,
    plot_token_attention,
    save_figure,
    write_pngs,
    write_selected,
)

__all__ = ["KINDS", "AttentionRecord", "collect_attention", "explorer_data", "find_token", "mask_batch",
           "plot_attention", "plot_heads", "plot_masks", "plot_overview", "plot_token_attention", "render_html",
           "save_figure", "source_ids", "token_strings", "write_html", "write_pngs", "write_selected"]
