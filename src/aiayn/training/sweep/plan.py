"""The sweep's plan: the TOML file read into variants and runs, every run's settings checked before any starts."""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..translation import TrainConfig, TrainingError

SWEEP_KEYS = ("seeds", "note", "paper")  # a variant's keys that are the sweep's, not `aiayn train`'s
PAPER_KEYS = ("ppl", "bleu")  # the figures a `paper` table may hold
OWN_KEYS = ("out", "seed", "threads", "resume")  # set by the sweep for every run
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=+-]*")


class SweepError(TrainingError):
    """A sweep file or folder that cannot be run as asked; the message names the entry and the fix."""


@dataclass
class Run:
    """One training run: a variant at one seed, its `aiayn train` settings and its folder."""

    variant: str
    seed: int
    settings: dict[str, Any]  # the --config file's keys (base + variant + seed)
    run_dir: Path
    config_file: Path
    log_file: Path

    @property
    def name(self) -> str:
        """NAME-seedS, the run folder's name."""
        return f"{self.variant}-seed{self.seed}"


@dataclass
class Variant:
    """A row of the table: the settings it changes from the base, a note, its seeds."""

    name: str
    changes: dict[str, Any]
    seeds: list[int]
    note: str = ""
    paper: dict[str, float] = field(default_factory=dict)  # a publication's dev figures: "ppl", "bleu"
    runs: list[Run] = field(default_factory=list)


@dataclass
class Plan:
    """Every run of a sweep, checked before the first starts."""

    source: Path
    out: Path
    base: dict[str, Any]
    variants: list[Variant]
    reference: str | None = None  # the variant every row's change is measured from

    @property
    def runs(self) -> list[Run]:
        """All runs, variant by variant, seed by seed."""
        return [run for variant in self.variants for run in variant.runs]


def plan_sweep(path: str | Path, out: str | Path) -> Plan:
    """Read the sweep file and check every run's settings (keys, values, a buildable model): SweepError if not."""
    path, out = Path(path), Path(out)
    if not path.is_file():
        raise SweepError(f"sweep file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise SweepError(f"{path} is not valid TOML: {error}") from None
    unknown = sorted(set(data) - {"base", "seeds", "variants", "reference_variant"})
    if unknown:
        raise SweepError(f"{path}: unknown top-level key(s) {unknown}: a sweep file has `seeds`, "
                         f"`reference_variant`, [base] and [variants.NAME] tables")
    base = data.get("base", {})
    if not isinstance(base, dict):
        raise SweepError(f"{path}: `base` must be a table of `aiayn train` settings ([base])")
    seeds = _seeds(data.get("seeds", [1]), f"{path}: seeds")
    variants_data = data.get("variants")
    if not isinstance(variants_data, dict) or not variants_data:
        raise SweepError(f"{path} has no [variants.NAME] table: name at least one variant (an empty table, "
                         f"[variants.base], runs the base as it is)")
    for key in OWN_KEYS:
        if key in base:
            raise SweepError(f"{path}: [base] sets {key!r}, which the sweep sets for every run "
                             f"(seed: the `seeds` lists; threads: `aiayn sweep --threads`; out: --out)")
    if "paper" in base:
        raise SweepError(f"{path}: [base] sets 'paper', which is a row's: put the publication's base figures in "
                         f"[variants.base] as paper = {{ ppl = 4.92, bleu = 25.8 }}")
    variants = []
    for name, changes in variants_data.items():
        where = f"{path}: [variants.{name}]"
        if not isinstance(changes, dict):
            raise SweepError(f"{where} must be a table of settings")
        if not NAME.fullmatch(name):
            raise SweepError(f"{where}: a variant's name becomes a folder name: use letters, digits and _ . = + -")
        for key in OWN_KEYS:
            if key in changes:
                raise SweepError(f"{where} sets {key!r}, which the sweep sets for every run (seeds: `seeds = [..]`)")
        nested = [key for key, value in changes.items() if isinstance(value, dict) and key != "paper"]
        if nested:
            raise SweepError(f"{where} holds the table(s) {nested}: a dot in a table name nests tables; quote "
                             f"names with dots, as [variants.\"{name}.{nested[0]}\"]")
        variant = Variant(name, {k: v for k, v in changes.items() if k not in SWEEP_KEYS},
                          _seeds(changes.get("seeds", seeds), f"{where} seeds"), str(changes.get("note", "")),
                          _paper(changes.get("paper", {}), f"{where} paper"))
        for seed in variant.seeds:
            settings = {**base, **variant.changes, "seed": seed}
            try:
                TrainConfig.from_dict(settings, where)  # every key known, every value allowed, the model buildable
            except TrainingError as error:
                message = str(error)
                raise SweepError(message if message.startswith(where) else f"{where}: {message}") from None
            run_name = f"{name}-seed{seed}"
            variant.runs.append(Run(name, seed, settings, out / "runs" / run_name, out / "configs" / f"{run_name}.toml",
                                    out / "logs" / f"{run_name}.log"))
        variants.append(variant)
    names = [variant.name for variant in variants]
    reference = data.get("reference_variant", "base" if "base" in names else None)
    if reference is not None and reference not in names:
        raise SweepError(f"{path}: reference_variant = {reference!r} is not a variant: name one of {names}")
    return Plan(path, out, base, variants, reference)


def _seeds(value: Any, where: str) -> list[int]:
    """A non-empty list of distinct integers, or a SweepError naming `where`."""
    if not isinstance(value, list) or not value or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           for s in value) or len(set(value)) != len(value):
        raise SweepError(f"{where} must be a non-empty list of distinct integers, got {value!r}")
    return list(value)


def _paper(value: Any, where: str) -> dict[str, float]:
    """A table of a publication's figures (ppl, bleu: finite numbers), or a SweepError naming `where`."""
    fix = "write it as paper = { ppl = 5.29, bleu = 24.9 } (either key may be left out)"
    if not isinstance(value, dict):
        raise SweepError(f"{where} must be a table of the publication's dev figures: {fix}, got {value!r}")
    unknown = sorted(set(value) - set(PAPER_KEYS))
    if unknown:
        raise SweepError(f"{where} has unknown key(s) {unknown}: {fix}")
    for key, number in value.items():
        if not isinstance(number, (int, float)) or isinstance(number, bool) or not math.isfinite(number):
            raise SweepError(f"{where}: {key} must be a number, got {number!r}: {fix}")
    return {key: float(value[key]) for key in PAPER_KEYS if key in value}


def write_toml(settings: dict[str, Any], path: Path) -> None:
    """Top-level keys of strings, numbers, booleans and lists of them, as a TOML file."""
    lines = [f"{key} = {toml_value(value)}" for key, value in settings.items() if value is not None]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)


def toml_value(value: Any) -> str:
    """One TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return toml_string(str(value))


def toml_string(text: str) -> str:
    """A TOML basic string of any text, as UTF-8 (JSON's \\ud83d-style surrogate escapes are invalid TOML): quotes,
    backslashes and control characters escaped, every other character as itself."""
    escaped = "".join("\\" + char if char in '"\\' else f"\\u{ord(char):04X}" if ord(char) < 0x20 or ord(char) == 0x7F
                      else char for char in text)
    return f'"{escaped}"'
