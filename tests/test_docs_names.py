"""Every dotted `aiayn.x.y` name the docs and the README mention exists in the code."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
NAME = re.compile(r"\baiayn(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


def _resolve(name: str) -> object:
    """The module or attribute a dotted name names; AttributeError / ImportError if none."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):  # the longest importable module prefix, then attributes
        try:
            value: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            value = getattr(value, attribute)
        return value
    raise ImportError(name)


def _names() -> list[tuple[str, str]]:
    found = set()
    for path in DOCS:
        for name in NAME.findall(path.read_text(encoding="utf-8")):
            found.add((str(path.relative_to(ROOT)), name.rstrip(".")))
    return sorted(found)


@pytest.mark.parametrize("where, name", _names())
def test_named_code_exists(where: str, name: str) -> None:
    try:
        _resolve(name)
    except (AttributeError, ImportError):
        pytest.fail(f"{where} names {name}, which does not exist")
