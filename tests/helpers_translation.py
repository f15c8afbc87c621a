"""A small synthetic parallel corpus for training tests: word-for-word "English" -> "Spanish"."""

from __future__ import annotations

import random
from pathlib import Path

EN = ["the", "god", "man", "land", "king", "son", "day", "house", "people", "father", "city", "water", "lord", "hand",
      "earth", "light"]
ES = ["el", "dios", "hombre", "tierra", "rey", "hijo", "dia", "casa", "pueblo", "padre", "ciudad", "agua", "senor",
      "mano", "mundo", "luz"]
BOOKS = ["Genesis", "Exodus", "Ruth", "James", "John", "Mark"]


def write_corpus(path: Path, n: int = 300, seed: int = 0, references: bool = True) -> Path:
    """A TSV of n pairs (reference, English, Spanish), each a word-by-word translation."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        idx = [rng.randrange(len(EN)) for _ in range(rng.randint(2, 7))]
        en, es = " ".join(EN[j] for j in idx), " ".join(ES[j] for j in idx)
        ref = f"{BOOKS[i % len(BOOKS)]} {i // len(BOOKS) + 1}:1"
        lines.append(f"{ref}\t{en}\t{es}" if references else f"{en}\t{es}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
