"""Build an English-Spanish parallel corpus from the Spanish gettext catalogs (.mo) that Debian packages ship.

What it does: `apt-get download` (no install) a fixed list of Debian packages (or, with --all-packages,
every package of the release that ships a catalog of the language, found in the archive's Contents index),
stream each through `dpkg-deb --fsys-tarfile`, read every /usr/share/locale/es/LC_MESSAGES/*.mo (with
--all-packages, every */es/LC_MESSAGES/*.mo) with a small standard-library .mo parser, clean the
msgid -> msgstr pairs (see clean_entry), deduplicate them by English source, and split them by package:
the test and dev pairs come from a few whole packages that no training pair comes from, so near-identical
messages of one program cannot leak from train into test.

Output (default data/gettext-en-es/, or data/gettext-en-es-all/ with --all-packages, under the repo root,
git-ignored):
  train.tsv, dev.tsv, test.tsv   English<TAB>Spanish, one pair a line, no header; for
                                 `aiayn train --data train.tsv --dev dev.tsv --test test.tsv`
  all.tsv                        package<TAB>English<TAB>Spanish: every kept pair before the split
  manifest.tsv                   package, exact version, architecture and sha256 of every .deb read,
                                 its catalogs and pair counts; plus the Debian release and output hashes
  README.txt                     where the data comes from and its licence

Reproducibility: the same package versions give byte-identical output files (sorting, deduplication and
sampling are deterministic, with a fixed seed). The script downloads whatever versions the machine's apt
sources offer now, so a newer Debian release or a point/security update may change the corpus; the
manifest records what was used, and `--pin manifest.tsv` asks apt for exactly those versions again
(that works while the archive still holds them; snapshot.debian.org keeps old ones).

Prerequisites: a Debian or Ubuntu system with apt-get and dpkg-deb, package lists present (`apt-get
update`), network access to the archive. Nothing is installed; no root is needed to download.

Licence: each catalog is covered by its package's licence (mostly GPL-2+/GPL-3+ or LGPL; see
/usr/share/doc/PACKAGE/copyright inside each .deb, and manifest.tsv for which packages and versions were
used). The corpus is a derived collection for research use (training and evaluating translation models);
redistributing it means honouring those licences. It is not committed to this repository.
"""

from __future__ import annotations

import argparse
import codecs
import gzip
import hashlib
import html
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LANG = "es"
LANGUAGE_NAMES = {"es": "Spanish", "de": "German", "fr": "French", "it": "Italian", "pt_BR": "Brazilian Portuguese"}


def locale_dir(lang: str) -> str:
    """Where a .deb keeps its catalogs of one language."""
    return f"usr/share/locale/{lang}/LC_MESSAGES"


def catalog_pattern(lang: str, anywhere: bool) -> re.Pattern[str]:
    """Which paths inside a .deb are catalogs of `lang`: under /usr/share/locale, or (anywhere) in any
    LANG/LC_MESSAGES folder (LibreOffice keeps its catalogs under /usr/lib/libreoffice/program/resource)."""
    folder = rf"(?:.*/)?{re.escape(lang)}/LC_MESSAGES" if anywhere else re.escape(locale_dir(lang))
    return re.compile(rf"(?:\./)?{folder}/[^/]+\.mo")


def default_out(lang: str, all_packages: bool = False) -> Path:
    """data/gettext-en-LANG (or, for --all-packages, data/gettext-en-LANG-all) under the repo root."""
    return REPO_ROOT / "data" / f"gettext-en-{lang.lower().replace('_', '-')}{'-all' if all_packages else ''}"

# Packages whose .deb carries Spanish catalogs (checked on Debian 12 bookworm). Many programs keep their
# translations in a separate -l10n / -locales / -common / -data package, which is the one listed here.
# gcc-12-locales (8,700 compiler diagnostics) is left out on purpose: it would be a fifth of the corpus.
PACKAGES: tuple[str, ...] = (
    "apt", "aptitude-common", "bash", "bison", "coreutils", "cpio", "cryptsetup-bin", "debconf-i18n",
    "diffutils", "dpkg", "e2fsprogs-l10n", "evince-common", "findutils", "flex", "gawk", "gedit-common",
    "gettext", "gettext-base", "gnome-control-center-data", "gnupg-l10n", "grep", "iso-codes", "kbd",
    "libc-l10n", "libglib2.0-data", "libgnutls30", "libgpg-error-l10n", "libgtk-3-common", "login", "make",
    "man-db", "mc-data", "nano", "nautilus-data", "network-manager", "procps", "psmisc", "recode", "sed",
    "sharutils", "sudo", "tar", "texinfo", "util-linux-locales", "wdiff", "wget", "xfce4-session", "xkb-data",
)  # fmt: skip
# Held-out packages: every pair whose source (near-)matches a message of one of these is dev or test,
# never train. Chosen for size (a little over 1000 test and 500 dev pairs after cleaning, sampled down to
# --test-size/--dev-size) and for being ordinary command-line programs: an editor and an archiver for
# test, a build tool and a stream editor for dev.
TEST_PACKAGES = frozenset({"nano", "tar"})
DEV_PACKAGES = frozenset({"make", "sed"})
# --all-packages: every package of the release whose files include a catalog of the language, found in the
# archive's Contents index; .deb files over MAX_DEB_MB are skipped (game and artwork data packages of
# hundreds of MB that hold a few catalogs each).
DEFAULT_MIRROR = "http://deb.debian.org/debian"
MAX_DEB_MB = 50
MAX_CHARS = 300  # longer messages are mostly --help screens: many sentences, not one aligned pair

Pair = tuple[str, str]  # (English, Spanish)

# printf conversions (with positional args, flags, width, precision, length), GCC's %qs / %< %> quotes,
# Python's %(name)s and {name} / {0} fields, shell-like $VAR / ${VAR}: kept in the text, but a message
# that is nothing else is dropped.
PLACEHOLDER = re.compile(
    r"%(?:\d+\$)?[-+ #0']*(?:\d+|\*)?(?:\.(?:\d+|\*))?(?:hh|h|ll|l|L|q|j|z|t|I|w)*[diouxXeEfFgGaAcCsSpnm%<>']"
    r"|%\([\w.-]+\)[-+ #0]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa%]"
    r"|\{[\w.\[\]]*(?:![rsa])?(?::[^{}]*)?\}"
    r"|\$\{?\w+\}?"
)
LETTERS = re.compile(r"[^\W\d_]{2,}")  # a run of two or more letters: some natural-language content
WORD = re.compile(r"[^\W_]+")
WHITESPACE = re.compile(r"\s+")
XML_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|apos|#\d+|#x[0-9A-Fa-f]+);")
EXPANSION_CODE = re.compile(r"(?<![\w@])@[A-Za-z](?![\w@])")  # e2fsck's "@i" (inode), "@b" (block), ...
# A mnemonic marker: "_" or "&" right before a letter or digit, not doubled ("__", "&&" are literal).
UNDERSCORE_MNEMONIC = re.compile(r"(?<!_)_(?=[^\W_])")
AMPERSAND_MNEMONIC = re.compile(r"(?<!&)&(?=[^\W_])")
METAVARIABLE = re.compile(r"[<\[{=]")  # what precedes a metavariable: <file_name>, [-m key_map], --x=a_b
CONTENTS_LINE = re.compile(r"(.*?)\s+(\S+)")  # a Contents index line: the path, then the owning packages
CHARSET = re.compile(r"charset=([\w.:-]+)", re.IGNORECASE)


@dataclass(frozen=True)
class Entry:
    """One catalog message: msgid (+ plural), its msgstr(s), msgctxt and whether it is marked fuzzy."""

    msgid: str
    msgstrs: tuple[str, ...]
    msgctxt: str | None = None
    msgid_plural: str | None = None
    fuzzy: bool = False


# ---------------------------------------------------------------- reading .mo files


def parse_mo(data: bytes) -> list[Entry]:
    """Entries of a compiled gettext catalog (GNU .mo, either byte order), decoded with its header charset."""
    if len(data) < 20:
        raise ValueError("too short for a .mo file")
    magic = struct.unpack("<I", data[:4])[0]
    order = {0x950412DE: "<", 0xDE120495: ">"}.get(magic)
    if order is None:
        raise ValueError(f"bad .mo magic number {magic:#x}")
    _revision, count, originals, translations = struct.unpack(order + "4I", data[4:20])
    raw: list[tuple[bytes, bytes]] = []
    for index in range(count):
        raw.append((_mo_string(data, order, originals + 8 * index),
                    _mo_string(data, order, translations + 8 * index)))
    charset = _header_charset(raw)
    return [_entry(original.decode(charset, "replace"), translation.decode(charset, "replace"))
            for original, translation in raw]


def _mo_string(data: bytes, order: str, table_offset: int) -> bytes:
    """The string that a (length, offset) descriptor of a .mo table points at."""
    length, offset = struct.unpack(order + "2I", data[table_offset:table_offset + 8])
    return data[offset:offset + length]


def _header_charset(raw: list[tuple[bytes, bytes]]) -> str:
    """The charset the catalog's header (the msgid "" entry) declares; UTF-8 if none or unknown."""
    for original, translation in raw:
        if original == b"":
            match = CHARSET.search(translation.decode("ascii", "replace"))
            if match:
                try:
                    return codecs.lookup(match.group(1)).name
                except LookupError:  # e.g. the template's "CHARSET"
                    return "utf-8"
    return "utf-8"


def _entry(original: str, translation: str) -> Entry:
    """An Entry from a .mo original ("ctxt\\x04msgid\\x00plural") and translation ("str0\\x00str1...")."""
    context = None
    if "\x04" in original:
        context, original = original.split("\x04", 1)
    msgid, _, plural = original.partition("\x00")
    return Entry(msgid=msgid, msgstrs=tuple(translation.split("\x00")), msgctxt=context,
                 msgid_plural=plural or None)


# ---------------------------------------------------------------- cleaning one entry


def normalise_space(text: str) -> str:
    """Collapse every run of whitespace (newlines, tabs included) to one space; trim the ends."""
    return WHITESPACE.sub(" ", text).strip()


def mnemonic_candidates(text: str, mark: str) -> list[int]:
    """Positions of a possible mnemonic marker: `mark` ("_" or "&") before a letter or digit, not doubled,
    and for "&" not the start of an XML entity ("&amp;")."""
    if mark == "&":
        text = XML_ENTITY.sub(lambda m: "\0" * len(m.group()), text)
    pattern = UNDERSCORE_MNEMONIC if mark == "_" else AMPERSAND_MNEMONIC
    return [m.start() for m in pattern.finditer(text)]


def token_at(text: str, at: int, mark: str) -> str:
    """The word (letters, digits and `mark`) around position `at`: "LC_ALL", "_File", "AT&T"."""
    start, end = at, at + 1
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == mark):
        start -= 1
    while end < len(text) and (text[end].isalnum() or text[end] == mark):
        end += 1
    return text[start:end]


def classify_marker(text: str, at: int, mark: str, other: str) -> str:
    """"identifier", "strong" (surely a mnemonic) or "weak" (a mnemonic if the other side agrees) for the
    marker at `at`; `other` is the other side of the pair.

    "_": a word copied verbatim on the other side (ai_flags, filter_mode) or an upper-case word
    (LC_ALL, FICH_R) is an identifier, as is a word in <...>, [...] or after "=" (metavariables like
    <terminal_name>); a marker starting a word with no other "_" ("_File") or inside a mixed-case
    word ("Pre_ferences") is strong; one inside a lower-case word ("nu_mbers") is weak. "&": an
    upper-case word copied on the other side (AT&T, R&D) is an identifier; anything else is strong
    ("&Open", "d&ash").
    """
    token = token_at(text, at, mark)
    start = text.index(token, max(0, at - len(token)))
    copied = re.search(rf"(?<![\w{re.escape(mark)}]){re.escape(token)}(?![\w{re.escape(mark)}])", other)
    letters = [c for c in token if c.isalpha()]
    upper = bool(letters) and all(c.isupper() for c in letters)
    if mark == "&":
        return "identifier" if copied and upper else "strong"
    if at == start and mark not in token[1:]:
        return "strong"  # "_File", "Sistema _Windows" (the brand name is copied, the marker still goes)
    if copied or (upper and at > start) or METAVARIABLE.match(text[:start][-1:] or " "):
        return "identifier"
    if not all(c.islower() for c in letters):
        return "strong"
    return "weak"


def strip_mnemonics(source: str, target: str) -> Pair:
    """Remove keyboard-mnemonic markers ("_File", "Pre_ferences", "&Open", "d&ash") from both sides alike.

    Per marker kind, each side may hold at most one marker that is not an identifier (classify_marker);
    then the markers go if one of them is strong, or if both sides hold a weak one ("nu_mbers" /
    "nú_meros"). Two or more on a side mean the markers are part of the text, and both sides keep theirs.
    A side that loses an "&" mnemonic also has "&&" turned into a literal "&" (the Qt/mc escape).
    """
    for mark in ("_", "&"):
        found = [{at: classify_marker(text, at, mark, other) for at in mnemonic_candidates(text, mark)}
                 for text, other in ((source, target), (target, source))]
        found = [{at: kind for at, kind in side.items() if kind != "identifier"} for side in found]
        kinds = [kind for side in found for kind in side.values()]
        if any(len(side) > 1 for side in found) or not ("strong" in kinds or kinds == ["weak", "weak"]):
            continue
        sides = [source, target]
        for index, side in enumerate(found):
            for at in side:
                text = sides[index][:at] + sides[index][at + 1:]
                sides[index] = text.replace("&&", "&") if mark == "&" else text
        source, target = sides
    return source, target


def unescape_entities(source: str, target: str) -> Pair:
    """Turn XML entities (&amp; &lt; &#39; ...) into characters on both sides if either side has one
    (markup strings: the translator may have written "&" where the English has "&amp;")."""
    if XML_ENTITY.search(source) or XML_ENTITY.search(target):
        return html.unescape(source), html.unescape(target)
    return source, target


def lost_codes(source: str, target: str) -> bool:
    """Whether the source has an expansion code (e2fsprogs' "@i", "@S") that the target spelled out, so the
    two sides no longer say the same thing."""
    return any(code not in target for code in EXPANSION_CODE.findall(source))


def is_natural_language(text: str) -> bool:
    """Whether text has some words once placeholders are removed (not "%s: %s", "(%d)", "---", "42")."""
    return bool(LETTERS.search(PLACEHOLDER.sub(" ", text)))


def clean_entry(entry: Entry, max_chars: int = MAX_CHARS) -> Pair | None:
    """The (English, Spanish) pair an entry yields after cleaning, or None if it is dropped.

    Dropped: the header (msgid ""), fuzzy or empty translations, msgstr == msgid, messages with no
    words besides placeholders, digits and punctuation, messages over max_chars characters, and sources
    whose expansion codes the translation spelled out (lost_codes). Kept text: context stripped, plural
    entries as singular msgid -> msgstr[0], mnemonics removed on both sides, XML entities unescaped,
    whitespace collapsed to single spaces, placeholders untouched.
    """
    if entry.msgid == "" or entry.fuzzy or not entry.msgstrs or not entry.msgstrs[0].strip():
        return None
    source, target = strip_mnemonics(entry.msgid, entry.msgstrs[0])
    source, target = unescape_entities(source, target)
    source, target = normalise_space(source), normalise_space(target)
    if not source or not target or source == target or lost_codes(source, target):
        return None
    if len(source) > max_chars or len(target) > max_chars:
        return None
    if not (is_natural_language(source) and is_natural_language(target)):
        return None
    return source, target


def dedupe(pairs: list[Pair]) -> dict[str, str]:
    """One translation per source: the most common one, ties broken by the lexicographically smallest."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for source, target in pairs:
        counts[source][target] += 1
    return {source: min(targets, key=lambda t: (-targets[t], t)) for source, targets in counts.items()}


def match_key(source: str) -> str:
    """A loose key for near-duplicates across splits: lower-cased words, placeholders and punctuation dropped."""
    return " ".join(WORD.findall(PLACEHOLDER.sub(" ", source).lower()))


# ---------------------------------------------------------------- splitting


def split_by_package(by_package: dict[str, list[Pair]], test_packages: frozenset[str],
                     dev_packages: frozenset[str], dev_size: int, test_size: int,
                     seed: int) -> tuple[dict[str, list[Pair]], dict[str, int]]:
    """Deduplicated train/dev/test pairs; a source whose match_key occurs in a test (dev) package is test (dev).

    Dev and test are then sampled down to dev_size/test_size with `seed`; the pairs not drawn are left
    out (not moved into train), so train never holds a message of a held-out package. Returns the
    splits (train shuffled with `seed`, dev/test sorted) and the number of pairs left out of each.
    """
    translations = dedupe([pair for pairs in by_package.values() for pair in pairs])
    held: dict[str, str] = {}  # match_key -> "test" | "dev"
    for package in sorted(by_package):
        split = "test" if package in test_packages else "dev" if package in dev_packages else None
        for source, _ in by_package[package] if split else ():
            key = match_key(source)
            if held.get(key) != "test":
                held[key] = split
    splits: dict[str, list[Pair]] = {"train": [], "dev": [], "test": []}
    for source in sorted(translations):
        splits[held.get(match_key(source), "train")].append((source, translations[source]))
    rng = random.Random(seed)
    left_out = {}
    for name, size in (("dev", dev_size), ("test", test_size)):
        pairs = splits[name]
        left_out[name] = max(0, len(pairs) - size)
        splits[name] = sorted(rng.sample(pairs, size)) if len(pairs) > size else pairs
    rng.shuffle(splits["train"])  # mix packages, so a prefix of the file is a fair sample
    return splits, left_out


# ---------------------------------------------------------------- downloading and unpacking


def fail(message: str) -> None:
    """Print one error line and exit with status 1."""
    print(f"build_gettext_corpus: error: {message}", file=sys.stderr)
    sys.exit(1)


def check_tools() -> None:
    """Exit with a one-line hint unless apt-get and dpkg-deb are on PATH."""
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            fail(f"{tool} not found: this script needs a Debian or Ubuntu system with apt (e.g. a "
                 f"debian:bookworm container, after `apt-get update`)")


def read_pins(manifest: Path) -> dict[str, str]:
    """package -> version from an earlier manifest.tsv (its package rows)."""
    pins = {}
    for line in manifest.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        if len(fields) >= 2 and not line.startswith("#") and fields[0] != "package":
            pins[fields[0]] = fields[1]
    return pins


def download(packages: tuple[str, ...], pins: dict[str, str], folder: Path) -> list[Path]:
    """`apt-get download` each package (at its pinned version if any) into folder; the .deb paths."""
    folder.chmod(0o755)  # apt's _apt user must be able to write here, or apt warns and downloads as root
    specs = [f"{p}={pins[p]}" if p in pins else p for p in packages]
    result = subprocess.run(["apt-get", "download", *specs], cwd=folder, capture_output=True, text=True)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith("E:")] or [result.stderr]
        fail(f"apt-get download failed: {' | '.join(errors).strip()} (run `apt-get update`; with --pin, "
             f"a version no longer in the archive must come from snapshot.debian.org)")
    debs = sorted(folder.glob("*.deb"))
    found = {deb.name.split("_")[0] for deb in debs}
    missing = sorted(set(packages) - found)
    if missing:
        fail(f"apt-get download gave no .deb for {', '.join(missing)}")
    return debs


def deb_field(deb: Path, field: str) -> str:
    """One control field (Package, Version, Architecture) of a .deb."""
    return subprocess.run(["dpkg-deb", "-f", str(deb), field], capture_output=True, text=True,
                          check=True).stdout.strip()


def read_catalogs(deb: Path, pattern: re.Pattern[str]) -> dict[str, list[Entry]]:
    """The catalogs of a .deb whose paths match `pattern` (path inside the .deb -> entries), read from its
    data archive as a stream (`dpkg-deb --fsys-tarfile`): nothing is unpacked to disk. Symbolic links are
    skipped (they point at a catalog another package ships), as are hard links (the same bytes as a file
    the archive holds under another name)."""
    catalogs = {}
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as unpack:
        with tarfile.open(fileobj=unpack.stdout, mode="r|") as archive:
            for member in archive:
                if member.isfile() and pattern.fullmatch(member.name):
                    handle = archive.extractfile(member)
                    if handle is not None:
                        catalogs[member.name.removeprefix("./")] = parse_mo(handle.read())
        unpack.stdout.read()  # type: ignore[union-attr]  # drain, so dpkg-deb exits cleanly
    if unpack.returncode != 0:
        fail(f"dpkg-deb --fsys-tarfile {deb} failed (exit {unpack.returncode}): a damaged .deb? delete it "
             f"and download it again")
    return catalogs


def contents_packages(lines: Iterable[str], pattern: re.Pattern[str]) -> set[str]:
    """Packages that a Debian Contents index lists for a path matching `pattern`.

    Each line is "PATH<whitespace>SECTION/PACKAGE[,SECTION/PACKAGE...]" (the path may hold spaces; the
    package list never does).
    """
    packages = set()
    for line in lines:
        fields = CONTENTS_LINE.fullmatch(line.rstrip("\n"))
        if fields is None:
            continue
        path, owners = fields.groups()
        if pattern.fullmatch(path):
            packages.update(owner.rsplit("/", 1)[-1] for owner in owners.split(","))
    return packages


def discover(mirror: str, release: str, pattern: re.Pattern[str]) -> list[str]:
    """Packages of `release` (main, this machine's architecture and "all") whose files match `pattern`."""
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()
    found: set[str] = set()
    for name in (f"Contents-{arch}.gz", "Contents-all.gz"):
        url = f"{mirror.rstrip('/')}/dists/{release}/main/{name}"
        print(f"reading {url}", flush=True)
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                with gzip.open(response, "rt", encoding="utf-8", errors="replace") as lines:
                    found |= contents_packages(lines, pattern)
        except OSError as error:
            fail(f"cannot read {url}: {error} (check --mirror and --release, or the network)")
    return sorted(found)


def deb_sizes(packages: list[str]) -> dict[str, int]:
    """package -> its candidate .deb's size in bytes, from apt's package lists (`apt-cache show`)."""
    sizes: dict[str, int] = {}
    for start in range(0, len(packages), 500):
        shown = subprocess.run(["apt-cache", "show", "--no-all-versions", *packages[start:start + 500]],
                               capture_output=True, text=True).stdout
        package = None
        for line in shown.splitlines():
            if line.startswith("Package: "):
                package = line.split(": ", 1)[1]
            elif line.startswith("Size: ") and package:
                sizes[package] = int(line.split(": ", 1)[1])
    return sizes


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- writing


def write_tsv(path: Path, rows: list[tuple[str, ...]]) -> None:
    """Write tab-separated rows, one a line, UTF-8, "\\n" line ends, no header."""
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write("\t".join(row) + "\n")


def debian_release() -> str:
    """PRETTY_NAME from /etc/os-release, or "unknown"."""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "unknown"


def write_manifest(path: Path, packages: list[dict[str, str]], outputs: list[Path], seed: int) -> None:
    """manifest.tsv: a comment block (release, seed, output hashes), then one row per .deb read."""
    lines = [f"# built by scripts/build_gettext_corpus.py on {debian_release()}; split seed {seed}",
             "# the same package versions give the same output files; newer Debian versions may change them"]
    lines += [f"# sha256 {sha256(out)} {out.name}" for out in outputs]
    columns = ["package", "version", "architecture", "deb_sha256", "catalogs", "entries", "pairs"]
    lines.append("\t".join(columns))
    lines += ["\t".join(row[c] for c in columns) for row in packages]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


README = """\
English-Spanish pairs from the Spanish gettext catalogs of Debian packages (msgid -> msgstr), built by
scripts/build_gettext_corpus.py. manifest.tsv lists every package and exact version used.
train.tsv / dev.tsv / test.tsv: English<TAB>Spanish; dev = packages {dev}, test = packages {test}
(whole packages held out; no train source matches a dev/test source up to case, punctuation and
placeholders). all.tsv: package<TAB>English<TAB>Spanish before the split.
Licence: each message is under its package's licence (mostly GPL or LGPL; /usr/share/doc/PACKAGE/copyright
in each .deb). For research use; redistribution must honour those licences.
"""


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Example: python scripts/build_gettext_corpus.py && aiayn train "
                                            "--data data/gettext-en-es/train.tsv --dev data/gettext-en-es/dev.tsv "
                                            "--test data/gettext-en-es/test.tsv")
    parser.add_argument("--lang", default=DEFAULT_LANG, choices=sorted(LANGUAGE_NAMES),
                        help="the target language's catalogs (default es; the package list was checked for es, "
                             "and the held-out packages ship the others too)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: data/gettext-en-LANG)")
    parser.add_argument("--dev-size", type=int, default=500, help="at most this many dev pairs (default 500)")
    parser.add_argument("--test-size", type=int, default=1000, help="at most this many test pairs (default 1000)")
    parser.add_argument("--seed", type=int, default=1, help="seed for sampling dev/test and shuffling train")
    parser.add_argument("--max-chars", type=int, default=MAX_CHARS,
                        help=f"drop messages longer than this on either side (default {MAX_CHARS})")
    parser.add_argument("--pin", type=Path, metavar="MANIFEST",
                        help="download the exact versions an earlier manifest.tsv lists")
    parser.add_argument("--debs", type=Path, metavar="DIR",
                        help="read the listed packages' .deb files from DIR (e.g. kept from an earlier "
                             "`apt-get download`) instead of downloading; other .deb files there are ignored "
                             "(with --all-packages: every .deb file in DIR is read)")
    parser.add_argument("--all-packages", action="store_true",
                        help="every package of the release that ships a catalog of --lang (found in the "
                             "archive's Contents index; catalogs anywhere in the package, not only under "
                             "/usr/share/locale), instead of the fixed list of 48; written to "
                             "data/gettext-en-LANG-all by default")
    parser.add_argument("--max-deb-mb", type=float, default=MAX_DEB_MB,
                        help=f"--all-packages: skip .deb files larger than this (default {MAX_DEB_MB} MB)")
    parser.add_argument("--mirror", default=DEFAULT_MIRROR,
                        help=f"--all-packages: the archive whose Contents index is read (default {DEFAULT_MIRROR})")
    parser.add_argument("--release", default=None,
                        help="--all-packages: the release's code name (default: this system's, from /etc/os-release)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="read this many .deb files at once (default: the CPU count)")
    return parser.parse_args(argv)


def read_package(deb: Path, max_chars: int, pattern: re.Pattern[str]) -> tuple[dict[str, str], list[Pair]]:
    """One .deb's manifest row and its cleaned pairs (catalogs in path order)."""
    package = deb_field(deb, "Package")
    catalogs = read_catalogs(deb, pattern)
    entries = [entry for path in sorted(catalogs) for entry in catalogs[path]]
    pairs = [pair for entry in entries if (pair := clean_entry(entry, max_chars))]
    row = {"package": package, "version": deb_field(deb, "Version"),
           "architecture": deb_field(deb, "Architecture"), "deb_sha256": sha256(deb),
           "catalogs": ",".join(sorted(Path(path).name for path in catalogs)) or "-",
           "entries": str(len(entries)), "pairs": str(len(pairs))}
    return row, pairs


def collect(debs: list[Path], max_chars: int, pattern: re.Pattern[str],
            jobs: int = 1) -> tuple[dict[str, list[Pair]], list[dict[str, str]]]:
    """Cleaned pairs per package and one manifest row per .deb (`jobs` .deb files read at once)."""
    by_package: dict[str, list[Pair]] = {}
    rows = []
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = pool.map(read_package, debs, [max_chars] * len(debs), [pattern] * len(debs))
        for number, (row, pairs) in enumerate(results, 1):  # in .deb order, whatever order they finish in
            by_package[row["package"]] = pairs
            rows.append(row)
            print(f"  [{number}/{len(debs)}] {row['package']} {row['version']}: "
                  f"{len(row['catalogs'].split(',')) if row['catalogs'] != '-' else 0} catalog(s), "
                  f"{row['entries']} entries, {row['pairs']} kept", flush=True)
    return by_package, rows


def release_codename() -> str:
    """VERSION_CODENAME from /etc/os-release ("bookworm"), or a one-line failure naming --release."""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME=") and line.split("=", 1)[1].strip('"'):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    fail("cannot tell this system's release from /etc/os-release: name it with --release (e.g. bookworm)")
    return ""


def discovered_packages(args: argparse.Namespace, pattern: re.Pattern[str]) -> list[str]:
    """--all-packages: the packages shipping a catalog, less those whose .deb is over --max-deb-mb."""
    packages = discover(args.mirror, args.release or release_codename(), pattern)
    sizes = deb_sizes(packages)
    unknown = [p for p in packages if p not in sizes]  # in the index, not in this machine's package lists
    large = [p for p in packages if sizes.get(p, 0) > args.max_deb_mb * 1e6]
    kept = [p for p in packages if p in sizes and p not in large]
    print(f"{len(packages)} packages ship catalogs; {len(kept)} kept, {len(large)} skipped as over "
          f"{args.max_deb_mb:g} MB ({', '.join(large) or 'none'}), {len(unknown)} not in apt's lists "
          f"({', '.join(unknown) or 'none'}: run `apt-get update`?)", flush=True)
    return kept


def main(argv: list[str] | None = None) -> None:
    """Download, extract, clean, split and write the corpus."""
    args = parse_args(argv)
    args.out = args.out or default_out(args.lang, args.all_packages)
    if args.jobs < 1:
        fail(f"--jobs {args.jobs}: give at least 1")
    language = LANGUAGE_NAMES[args.lang]
    pattern = catalog_pattern(args.lang, args.all_packages)
    started = time.monotonic()
    pins = read_pins(args.pin) if args.pin else {}
    with tempfile.TemporaryDirectory(prefix="gettext-debs-") as download_dir:
        if args.debs:
            if shutil.which("dpkg-deb") is None:
                fail("dpkg-deb not found: this script needs a Debian or Ubuntu system (package dpkg)")
            wanted = set(pins or PACKAGES) if (pins or not args.all_packages) else None
            debs = sorted(deb for deb in args.debs.glob("*.deb") if wanted is None or deb.name.split("_")[0] in wanted)
            missing = sorted((wanted or set()) - {deb.name.split("_")[0] for deb in debs})
            if missing:
                fail(f"{args.debs} lacks the .deb of {', '.join(missing)}")
            if not debs:
                fail(f"{args.debs} holds no .deb files")
        else:
            check_tools()
            packages = tuple(sorted(pins)) if (pins and args.all_packages) else \
                tuple(discovered_packages(args, pattern)) if args.all_packages else PACKAGES
            print(f"downloading {len(packages)} packages with apt-get download ...", flush=True)
            debs = download(packages, pins, Path(download_dir))
        print(f"reading {language} catalogs from {len(debs)} .deb files ({args.jobs} at once)", flush=True)
        by_package, rows = collect(debs, args.max_chars, pattern, args.jobs)
    empty = [row["package"] for row in rows if row["pairs"] == "0"]
    if empty:
        print(f"warning: no {language} pairs in {', '.join(empty)}", file=sys.stderr)
    missing = sorted((TEST_PACKAGES | DEV_PACKAGES) - set(by_package))
    if missing:
        fail(f"held-out package(s) {', '.join(missing)} not among the .deb files; the split needs them")
    splits, left_out = split_by_package(by_package, TEST_PACKAGES, DEV_PACKAGES, args.dev_size,
                                        args.test_size, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    outputs = []
    for name in ("train", "dev", "test"):
        outputs.append(args.out / f"{name}.tsv")
        write_tsv(outputs[-1], splits[name])
    all_rows = sorted({(package, s, t) for package, pairs in by_package.items() for s, t in pairs})
    outputs.append(args.out / "all.tsv")
    write_tsv(outputs[-1], all_rows)
    write_manifest(args.out / "manifest.tsv", rows, outputs, args.seed)
    (args.out / "README.txt").write_text(README.replace("Spanish", language).format(dev=", ".join(sorted(DEV_PACKAGES)),
                                                       test=", ".join(sorted(TEST_PACKAGES))), encoding="utf-8")
    counts = ", ".join(f"{name} {len(splits[name])}" for name in ("train", "dev", "test"))
    print(f"wrote {args.out}: {counts} pairs ({sum(len(p) for p in by_package.values())} kept before "
          f"deduplication; {left_out['dev']} dev and {left_out['test']} test pairs of the held-out packages "
          f"left out by the size caps) in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
