"""The HTML attention explorer: one self-contained page (inline CSS, the weights as JSON, plain JavaScript)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import atomic_write_text
from .collect import KIND_TITLES, AttentionRecord

PAGE = Path(__file__).with_name("explorer.html")


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
    page = PAGE.read_text(encoding="utf-8")
    safe_title = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return page.replace("{{TITLE}}", safe_title).replace("{{DATA}}", data)


def write_html(record: AttentionRecord, path: str | Path, title: str = "aiayn attention explorer") -> Path:
    """Write the HTML explorer to path, atomically."""
    path = Path(path)
    atomic_write_text(path, render_html(record, title))
    return path
