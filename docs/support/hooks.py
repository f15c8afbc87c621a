"""MkDocs hook: make docs/support importable by the executed examples (markdown-exec) of the site."""

from __future__ import annotations

import sys
from pathlib import Path

SUPPORT = str(Path(__file__).resolve().parent)


def on_config(config, **kwargs):  # noqa: ANN001, ANN003 - MkDocs' hook signature
    """Put docs/support on sys.path before any page runs its examples."""
    if SUPPORT not in sys.path:
        sys.path.insert(0, SUPPORT)
    return config
