"""What the site's executed examples share: code shown from the source, pictures inlined, a cache, a toy translator.

The examples run while MkDocs builds (markdown-exec). Nothing here is part of the aiayn package.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import inspect
import io
import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "aiayn"
CACHE = Path(os.environ.get("AIAYN_DOCS_CACHE", ROOT / ".cache" / "docs"))


# --- code from the source --------------------------------------------------------------------------------

def resolve(dotted: str) -> Any:
    """The object a dotted path names: 'aiayn.model.attention.attend', 'aiayn.model.layers.Stack.forward'."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(f"nothing importable in {dotted!r}")


def show(*dotted_names: str) -> str:
    """The source of functions, methods or classes as Markdown code blocks, each titled with its file and lines."""
    return "\n\n".join(_code_block(dotted) for dotted in dotted_names)


def _code_block(dotted: str) -> str:
    """One object's source as a Markdown code block."""
    obj = resolve(dotted)
    lines, start = inspect.getsourcelines(obj)
    path = Path(inspect.getsourcefile(obj)).resolve()
    parts = path.parts
    where = "/".join(("src",) + parts[len(parts) - 1 - parts[::-1].index("aiayn"):])  # src/aiayn/...
    code = textwrap.dedent("".join(lines)).rstrip()
    return f'```python title="{where}, lines {start}-{start + len(lines) - 1}"\n{code}\n```'


# --- pictures ---------------------------------------------------------------------------------------------

def png_html(fig: Any, alt: str, width: int | None = None) -> str:
    """A matplotlib Figure as an inline <img> (a data: URL, so the page needs no extra file)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi)
    return png_bytes_html(buffer.getvalue(), alt, width)


def png_bytes_html(data: bytes, alt: str, width: int | None = None) -> str:
    """PNG bytes as an inline <img>."""
    size = f' style="max-width:{width}px;width:100%"' if width else ""
    encoded = base64.b64encode(data).decode("ascii")
    return f'\n<img class="aiayn-figure" alt="{alt}" src="data:image/png;base64,{encoded}"{size}>\n'


# --- the cache of slow outputs ----------------------------------------------------------------------------

def source_files(paths: Iterable[Path]) -> list[Path]:
    """The .py files under each path (a folder is walked), sorted."""
    out: list[Path] = []
    for path in paths:
        out.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return out


def fingerprint(paths: Iterable[Path], extra: str = "") -> str:
    """A hash of the files' contents (and `extra`): the key of a cached output."""
    digest = hashlib.sha256(extra.encode())
    for path in source_files(paths):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def cached(name: str, depends_on: Iterable[Path], make: Callable[[Path], None], extra: str = "") -> Path:
    """A folder `make(folder)` filled, reused while the sources it depends on are unchanged.

    The key is a hash of those sources (and `extra`); an older folder of the same name is replaced.
    """
    key = fingerprint(depends_on, extra + Path(__file__).read_text())
    folder = CACHE / f"{name}-{key}"
    if (folder / ".done").exists():
        return folder
    for old in CACHE.glob(f"{name}-*"):
        shutil.rmtree(old, ignore_errors=True)
    partial = CACHE / f".{name}-{key}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    make(partial)
    (partial / ".done").write_text("")
    partial.rename(folder)
    return folder


# --- a toy translator, trained during the build -------------------------------------------------------------

# English -> Spanish with two things a word-by-word copy gets wrong: the adjective follows the noun, and the
# article and the adjective agree with the noun's gender. Small enough to learn in a few hundred steps.
NOUNS = {"cat": ("gato", "m"), "dog": ("perro", "m"), "house": ("casa", "f"), "girl": ("niña", "f"),
         "boy": ("niño", "m"), "bird": ("pájaro", "m"), "street": ("calle", "f"), "book": ("libro", "m"),
         "table": ("mesa", "f"), "tree": ("árbol", "m"), "window": ("ventana", "f"), "river": ("río", "m")}
ADJECTIVES = {"red": "roj", "small": "pequeñ", "black": "negr", "white": "blanc", "old": "viej", "new": "nuev",
              "tired": "cansad"}
VERBS = {"sees": "ve", "finds": "encuentra", "watches": "mira", "has": "tiene"}


def _phrase(rng: random.Random) -> tuple[str, str]:
    """'the (adjective) noun' and its Spanish."""
    noun = rng.choice(list(NOUNS))
    spanish, gender = NOUNS[noun]
    article = "el" if gender == "m" else "la"
    if rng.random() < 0.6:
        adjective = rng.choice(list(ADJECTIVES))
        ending = "o" if gender == "m" else "a"
        return f"the {adjective} {noun}", f"{article} {spanish} {ADJECTIVES[adjective]}{ending}"
    return f"the {noun}", f"{article} {spanish}"


def toy_pairs(n: int = 6000, seed: int = 0) -> list[tuple[str, str]]:
    """n sentence pairs 'the small cat sees the old house.' -> 'el gato pequeño ve la casa vieja.'."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        (s1, t1), verb, (s2, t2) = _phrase(rng), rng.choice(list(VERBS)), _phrase(rng)
        pairs.append((f"{s1} {verb} {s2}.", f"{t1} {VERBS[verb]} {t2}."))
    return pairs


TOY_TRAIN_FLAGS = ["--steps", "200", "--time-budget", "10m", "--d-model", "64", "--d-ff", "256", "--n-heads", "4",
                   "--encoder-layers", "2", "--decoder-layers", "2", "--vocab-size", "300", "--warmup", "60",
                   "--batch-tokens", "1024", "--dev-size", "50", "--test-size", "50", "--no-final-test",
                   "--eval-every", "0", "--save-every", "100000", "--log-every", "50"]


def toy_translator() -> Path:
    """The run folder of the toy translator: trained by `aiayn train` on toy_pairs() once, then cached."""

    def train(folder: Path) -> None:
        data = folder / "toy.tsv"
        data.write_text("".join(f"{s}\t{t}\n" for s, t in toy_pairs()), encoding="utf-8")
        command = [sys.executable, "-m", "aiayn", "train", "--data", str(data), "--out", str(folder / "run"),
                   *TOY_TRAIN_FLAGS]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=folder)
        log = done.stdout + done.stderr
        (folder / "train.log").write_text(log)
        if done.returncode:
            raise RuntimeError(f"training the toy translator failed:\n{log}")
        shutil.rmtree(folder / "run" / "checkpoints", ignore_errors=True)
        (folder / "command.json").write_text(json.dumps(["aiayn", "train", "--data", "toy.tsv", "--out", "run",
                                                         *TOY_TRAIN_FLAGS]))

    return cached("toy-translator", [SRC, Path(__file__)], train) / "run"


def toy_training_summary() -> tuple[str, str]:
    """(the command that trained the toy translator, the last lines of its log)."""
    folder = toy_translator().parent
    command = " ".join(json.loads((folder / "command.json").read_text()))
    lines = [line for line in (folder / "train.log").read_text().splitlines() if line.startswith("step")]
    return command, "\n".join(lines[-3:])


# --- a beam-search tree -------------------------------------------------------------------------------------

def token_log_probs(model: Any, src: Any, tokens: list[int]) -> list[float]:
    """log p of each token of a hypothesis (and its EOS) given the source, by one teacher-forced pass."""
    cfg = model.cfg
    tgt_in = torch.tensor([[cfg.bos_id] + tokens])
    labels = torch.tensor([tokens + [cfg.eos_id]])
    with torch.no_grad():
        log_probs = model(src, tgt_in).log_softmax(-1)  # (1, T, V)
    return log_probs.gather(-1, labels[..., None])[0, :, 0].tolist()


def draw_beam_tree(hypotheses: list[Any], words: Callable[[list[int]], list[str]], step_log_probs: list[list[float]],
                   title: str) -> Any:
    """The finished hypotheses of a beam search as the tree of their shared prefixes, with log-probabilities."""
    paths = [words(h.tokens) + ["</s>"] for h in hypotheses]
    nodes: dict[tuple[str, ...], tuple[float, float]] = {(): (0.0, 0.0)}
    leaves = []
    for rank, path in enumerate(paths):
        for depth in range(1, len(path) + 1):
            prefix = tuple(path[:depth])
            if prefix not in nodes:
                nodes[prefix] = (depth, -rank)
        leaves.append(tuple(path))
    fig = Figure(figsize=(1.25 * (max(len(p) for p in paths) + 3), 0.9 * len(paths) + 1.2), dpi=100,
                 layout="constrained")
    ax = fig.subplots()
    for prefix, (x, y) in nodes.items():
        if prefix:
            px, py = nodes[prefix[:-1]]
            ax.plot([px, x], [py, y], color="0.6", lw=1, zorder=1)
        label = prefix[-1] if prefix else "<s>"
        ax.text(x, y, label, ha="center", va="center", fontsize=9, zorder=2,
                bbox=dict(boxstyle="round,pad=0.25", fc="white", ec="0.4"))
    labelled: set[tuple[str, ...]] = set()
    for rank, (leaf, hyp, lps) in enumerate(zip(leaves, hypotheses, step_log_probs)):
        x, y = nodes[leaf]
        label = f"log P = {hyp.log_prob:.2f}   score = {hyp.score:.2f}" + ("   (best)" if rank == 0 else "")
        ax.text(x + 0.6, y, label, va="center", fontsize=9, color="C3" if rank == 0 else "0.2")
        for depth, lp in enumerate(lps, start=1):  # the log-probability of each token, under its edge
            if leaf[:depth] in labelled:
                continue
            labelled.add(leaf[:depth])
            cx, cy = nodes[leaf[:depth]]
            ax.text(cx - 0.5, cy - 0.28, f"{lp:.2f}", ha="center", fontsize=6.5, color="C0")
    ax.set_xlim(-0.6, max(x for x, _ in nodes.values()) + 4.2)
    ax.set_ylim(-len(paths) + 0.4, 0.6)
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    return fig
