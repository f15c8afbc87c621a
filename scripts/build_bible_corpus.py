"""Build the bundled English-Spanish (KJV / Reina-Valera 1909) verse-aligned parallel corpus."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import html
import math
import random
import re
import shutil
import statistics
import subprocess
import textwrap
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS_DIR = REPO_ROOT / "src" / "aiayn" / "data" / "corpora"
CORPUS_NAME = "kjv_rv1909.tsv.gz"
LICENSE_NAME = "kjv_rv1909.LICENSE.txt"

ENGLISH_MODULE = "engKJV2006eb"  # Debian package sword-text-kjv
SPANISH_MODULE = "spaRV1909eb"  # Debian package sword-text-sparv
DEBIAN_PACKAGES = ("sword-text-kjv", "sword-text-sparv", "diatheke", "libsword1.9.0")
MODULE_CONF_DIRS = (Path("/usr/share/sword/mods.d"), Path.home() / ".sword" / "mods.d")

# The 66 books of the Protestant canon, in canonical order, spelled as diatheke (locale "en") prints them.
BOOKS: tuple[str, ...] = (
    "Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy", "Joshua", "Judges", "Ruth",
    "I Samuel", "II Samuel", "I Kings", "II Kings", "I Chronicles", "II Chronicles", "Ezra",
    "Nehemiah", "Esther", "Job", "Psalms", "Proverbs", "Ecclesiastes", "Song of Solomon", "Isaiah",
    "Jeremiah", "Lamentations", "Ezekiel", "Daniel", "Hosea", "Joel", "Amos", "Obadiah", "Jonah",
    "Micah", "Nahum", "Habakkuk", "Zephaniah", "Haggai", "Zechariah", "Malachi",
    "Matthew", "Mark", "Luke", "John", "Acts", "Romans", "I Corinthians", "II Corinthians",
    "Galatians", "Ephesians", "Philippians", "Colossians", "I Thessalonians", "II Thessalonians",
    "I Timothy", "II Timothy", "Titus", "Philemon", "Hebrews", "James", "I Peter", "II Peter",
    "I John", "II John", "III John", "Jude", "Revelation of John",
)  # fmt: skip
TEST_BOOKS = frozenset({"John"})
DEV_BOOKS = frozenset({"Ruth", "James"})

# Alignment check: a window of WINDOW verses whose Spanish/English length ratios fit a verse
# offset of 1..MAX_OFFSET much better (by SHIFT_THRESHOLD in mean |log ratio|) than offset 0
# means the two texts divide the verses differently there, so the chapter is dropped.
WINDOW = 5
MAX_OFFSET = 3
SHIFT_THRESHOLD = 0.2

# Psalm 119's acrostic letter names, which RV1909 prints inside verses 1, 9, ..., 169.
ACROSTIC = re.compile(
    r"^(?:ALEPH|BETH|GIMEL|DALETH|HE|VAU|ZAIN|CHETH|TETH|JOD|CAPH|LAMED|MEM|NUN|SAMECH|AIN|PE"
    r"|TZADDI|COPH|KOPH|RESH|SIN|SCHIN|SHIN|TAU)\b\.?\s*"
)
TITLE = re.compile(r"<title\b([^>]*)>(.*?)</title>", re.DOTALL)
NOTE = re.compile(r"<note\b.*?</note>", re.DOTALL)
EMPTY_ELEMENT = re.compile(r"<[^<>]*/>")
TAG = re.compile(r"<[^<>]*>")
USFM_MARKER = re.compile(r"\\[a-z]+\d*\*?")  # e.g. a stray "\nd " (USFM divine-name marker) in the KJV
STRONGS = re.compile(r"[<{\[(]\s*[GH]\d+[a-z]?\s*[>}\])]")
# An editor-supplied word glued to the word before it, e.g. "hablándo</w><transChange ...>les".
ADDED_AFTER_WORD = re.compile(r"(\w*)</w><transChange\b[^>]*>([^<]*)</transChange>")
ENCLITICS = frozenset({"lo", "la", "los", "las", "le", "les", "me", "te", "se", "nos", "os"})
WORD = re.compile(r"[^\W\d_]+")
MID_SENTENCE_WORD = re.compile(r"(?<=[^\W\d_]|,) ([^\W\d_]+)")
SENTENCE_END = re.compile(r"(?:^|[.:;?!¿¡(])[^\w]*$")
LEFTOVER_MARKUP = re.compile(r"[<>¶\\\t\n\r]")


@dataclass(frozen=True)
class Pair:
    """One aligned verse: its book (diatheke spelling), chapter, verse and both texts."""

    book: str
    chapter: int
    verse: int
    english: str
    spanish: str

    @property
    def reference(self) -> str:
        """Return the reference with the English book name, e.g. 'John 3:16'."""
        return f"{english_book_name(self.book)} {self.chapter}:{self.verse}"


@dataclass(frozen=True)
class Book:
    """Both versions of one book, cleaned, keyed by (chapter, verse)."""

    name: str
    english: dict[tuple[int, int], str]
    spanish: dict[tuple[int, int], str]

    def chapters(self) -> list[int]:
        """Return the chapter numbers in order."""
        return sorted({chapter for chapter, _ in self.english} | {chapter for chapter, _ in self.spanish})

    def chapter_texts(self, chapter: int) -> tuple[dict[int, str], dict[int, str]]:
        """Return the non-empty English and Spanish verses of one chapter, keyed by verse."""
        eng = {v: t for (c, v), t in self.english.items() if c == chapter and t}
        spa = {v: t for (c, v), t in self.spanish.items() if c == chapter and t}
        return eng, spa


def english_book_name(book: str) -> str:
    """Return the book name used in the corpus: arabic ordinals and plain 'Revelation'."""
    if book == "Revelation of John":
        return "Revelation"
    ordinal, _, rest = book.partition(" ")
    return f"{('I', 'II', 'III').index(ordinal) + 1} {rest}" if ordinal in ("I", "II", "III") else book


def run_diatheke(module: str, key: str) -> str:
    """Return diatheke's raw module markup for key, with headings shown once where they belong."""
    # "-o h" switches the heading filter on; without it diatheke 4.8 repeats a psalm title before
    # every verse of the psalm. "-f internal" keeps the OSIS markup so canonical titles can be told apart.
    cmd = ["diatheke", "-b", module, "-l", "en", "-f", "internal", "-o", "h", "-k", key]
    result = subprocess.run(cmd, check=True, capture_output=True, text=True, encoding="utf-8")
    return result.stdout


def split_verses(raw: str, book: str, module: str) -> dict[tuple[int, int], tuple[str, str]]:
    """Split diatheke output for one book into (chapter, verse) -> (pre-verse markup, verse markup)."""
    raw = raw.rstrip().removesuffix(f"({module})")
    marker = re.compile(rf"^(.*?){re.escape(book)} (\d+):(\d+): ", re.MULTILINE)
    matches = list(marker.finditer(raw))
    verses: dict[tuple[int, int], tuple[str, str]] = {}
    for match, after in zip(matches, [*matches[1:], None], strict=True):
        body = raw[match.end() : after.start() if after else len(raw)]
        chapter, verse = int(match.group(2)), int(match.group(3))
        if verse > 0:
            verses[chapter, verse] = (match.group(1), body)
    if not verses:
        raise ValueError(f"{module}: no verses parsed for {book!r}")
    return verses


def keep_titles(markup: str, canonical_only: bool) -> str:
    """Replace titles by their text, dropping non-canonical ones when canonical_only is set."""

    def title(match: re.Match[str]) -> str:
        keep = not canonical_only or 'canonical="true"' in match.group(1)
        return f" {match.group(2)} " if keep else " "

    return TITLE.sub(title, markup)


def attach_added_words(markup: str) -> str:
    """Space out editor-supplied words that touch a word, gluing only enclitic pronouns to verbs."""

    def join(match: re.Match[str]) -> str:
        word, added = match.group(1), match.group(2)
        verb_like = word.endswith(("r", "d", "z")) or any(ch in "áéíóú" for ch in word)
        glue = added in ENCLITICS and verb_like
        return f"{word}{'' if glue else ' '}{added}"

    markup = markup.replace("</transChange><w", "</transChange> <w")
    return ADDED_AFTER_WORD.sub(join, markup)


def strip_markup(markup: str) -> str:
    """Remove notes, tags, Strong's numbers, USFM markers and pilcrows, then collapse whitespace."""
    text = NOTE.sub(" ", markup)
    text = EMPTY_ELEMENT.sub(" ", text)  # milestones, line and paragraph markers separate words
    text = STRONGS.sub(" ", text)
    text = USFM_MARKER.sub(" ", text)
    text = TAG.sub("", text)  # inline elements (<w>, <transChange>, ...) do not
    text = html.unescape(text).replace("¶", " ")
    text = unicodedata.normalize("NFC", text)
    return " ".join(text.split())


def clean_verse(pre: str, body: str) -> str:
    """Turn one verse's markup into plain text: of the headings before it only canonical titles stay."""
    # Titles inside the verse are the KJV's subscriptions to Paul's letters, which RV1909 also has.
    markup = f"{keep_titles(pre, canonical_only=True)} {keep_titles(body, canonical_only=False)}"
    return strip_markup(attach_added_words(markup))


def is_acrostic_verse(book: str, chapter: int, verse: int) -> bool:
    """Tell whether a verse opens one of Psalm 119's 22 eight-verse stanzas."""
    return book == "Psalms" and chapter == 119 and verse % 8 == 1


def fold(word: str) -> str:
    """Drop diacritics, so that 'Achâb' and 'ACHAB' share evidence."""
    return "".join(ch for ch in unicodedata.normalize("NFD", word) if not unicodedata.combining(ch))


def word_cases(texts: list[str]) -> Counter[str]:
    """Count lower-case words anywhere and capitalised words mid-sentence, to learn each word's usual case."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(fold(word) for word in WORD.findall(text) if word.islower())
        counts.update(fold(m.group(1)) for m in MID_SENTENCE_WORD.finditer(text) if m.group(1).istitle())
    return counts


def uncap_drop_capital(text: str, cases: Counter[str]) -> str:
    """Put RV1909's all-capitals chapter opening ('Y ACONTECIÓ', '¡OH', 'A TI') in normal case."""
    words = list(WORD.finditer(text))
    first = next((i for i, m in enumerate(words) if len(m.group()) > 1 and m.group().isupper()), None)
    if first is None:
        return text
    pieces, last = [], 0
    for index in range(first, len(words)):
        match = words[index]
        if not match.group().isupper():
            break
        lower, capitalized = match.group().lower(), match.group().capitalize()
        initial = index == 0 or SENTENCE_END.search(text[: match.start()]) is not None
        # Otherwise usage decides: 'Y JEHOVÁ' -> 'Y Jehová', 'Y FUÉ' -> 'Y fué'; unseen words go lower-case.
        usual = capitalized if cases[fold(capitalized)] > cases[fold(lower)] else lower
        pieces += [text[last : match.start()], capitalized if initial else usual]
        last = match.end()
    return "".join(pieces) + text[last:]


def fix_spanish(book: Book) -> Book:
    """Remove Psalm 119's letter names from RV1909 (the KJV has them as headings, which are dropped)."""
    spanish = {
        (c, v): ACROSTIC.sub("", text) if is_acrostic_verse(book.name, c, v) else text
        for (c, v), text in book.spanish.items()
    }
    return Book(book.name, book.english, spanish)


def uncap_spanish(books: list[Book]) -> list[Book]:
    """Normal-case the drop-capital words that open RV1909's chapters and Psalm 119's stanzas."""
    cases = word_cases([text for book in books for text in book.spanish.values()])
    fixed = []
    for book in books:
        spanish = {
            (c, v): uncap_drop_capital(text, cases) if v == 1 or is_acrostic_verse(book.name, c, v) else text
            for (c, v), text in book.spanish.items()
        }
        fixed.append(Book(book.name, book.english, spanish))
    return fixed


def load_module_book(module: str, book: str) -> dict[tuple[int, int], str]:
    """Return the cleaned verses of one book of one module."""
    raw = run_diatheke(module, book)
    return {key: clean_verse(pre, body) for key, (pre, body) in split_verses(raw, book, module).items()}


def load_books() -> list[Book]:
    """Read and clean every book of both modules."""
    books = [
        Book(name, load_module_book(ENGLISH_MODULE, name), load_module_book(SPANISH_MODULE, name))
        for name in BOOKS
    ]
    return uncap_spanish([fix_spanish(book) for book in books])


def log_ratio(english: str, spanish: str) -> float:
    """Return log(len(spanish) / len(english))."""
    return math.log(len(spanish) / len(english))


def best_shift(english: dict[int, str], spanish: dict[int, str], centre: float) -> tuple[float, int, int]:
    """Return (gain, offset, first verse) of the window that most prefers a non-zero verse offset."""
    numbers = sorted(english)
    best = (0.0, 0, 0)
    for start in range(len(numbers) - WINDOW + 1):
        window = numbers[start : start + WINDOW]
        aligned = statistics.fmean(abs(log_ratio(english[v], spanish[v]) - centre) for v in window)
        for offset in [*range(-MAX_OFFSET, 0), *range(1, MAX_OFFSET + 1)]:
            if not all(spanish.get(v + offset) for v in window):
                continue
            shifted = statistics.fmean(
                abs(log_ratio(english[v], spanish[v + offset]) - centre) for v in window
            )
            if aligned - shifted > best[0]:
                best = (aligned - shifted, offset, window[0])
    return best


def count_problem(book: Book, chapter: int) -> str | None:
    """Describe a verse-count mismatch in one chapter, or return None."""
    eng, spa = book.chapter_texts(chapter)
    if len(eng) != len(spa):
        return f"verse count differs (KJV {len(eng)}, RV1909 {len(spa)})"
    if set(eng) != set(spa):
        return "verse numbering differs"
    return None


def shift_problem(book: Book, chapter: int, centre: float) -> str | None:
    """Describe a verse offset between the versions in one chapter, or return None."""
    eng, spa = book.chapter_texts(chapter)
    gain, offset, first = best_shift(eng, spa, centre)
    if gain < SHIFT_THRESHOLD:
        return None
    return f"verses offset by {offset:+d} from about verse {first} (length check, gain {gain:.2f})"


def median_log_ratio(books: list[Book]) -> float:
    """Return the median log length ratio (Spanish/English) over all verses present in both."""
    ratios = [
        log_ratio(english, book.spanish[key])
        for book in books
        for key, english in book.english.items()
        if english and book.spanish.get(key)
    ]
    return statistics.median(ratios)


def align(books: list[Book]) -> tuple[list[Pair], list[str]]:
    """Return the aligned pairs of kept chapters and a description of each dropped chapter."""
    centre = median_log_ratio(books)
    pairs: list[Pair] = []
    dropped: list[str] = []
    for book in books:
        for chapter in book.chapters():
            problem = count_problem(book, chapter) or shift_problem(book, chapter, centre)
            if problem:
                dropped.append(f"{english_book_name(book.name)} {chapter}: {problem}")
                continue
            eng, spa = book.chapter_texts(chapter)
            pairs += [Pair(book.name, chapter, v, eng[v], spa[v]) for v in sorted(eng) if v in spa]
    return pairs, dropped


def check_pairs(pairs: list[Pair]) -> None:
    """Fail if any field is empty or still holds markup, pilcrows, tabs or newlines."""
    for pair in pairs:
        for text in (pair.english, pair.spanish):
            if not text or LEFTOVER_MARKUP.search(text):
                raise ValueError(f"{pair.reference}: bad text {text!r}")
    if len({pair.reference for pair in pairs}) != len(pairs):
        raise ValueError("duplicate references")


def split_of(pair: Pair) -> str:
    """Return the split a pair belongs to: 'test', 'dev' or 'train'."""
    if pair.book in TEST_BOOKS:
        return "test"
    return "dev" if pair.book in DEV_BOOKS else "train"


def split_counts(pairs: list[Pair]) -> dict[str, int]:
    """Return the number of pairs in each split and in total."""
    counts = {"train": 0, "dev": 0, "test": 0}
    for pair in pairs:
        counts[split_of(pair)] += 1
    return {**counts, "total": len(pairs)}


def tsv_text(pairs: list[Pair]) -> str:
    """Render the pairs as header-less 'reference<TAB>English<TAB>Spanish' lines."""
    return "".join(f"{p.reference}\t{p.english}\t{p.spanish}\n" for p in pairs)


def write_gzip(path: Path, text: str) -> None:
    """Write text as UTF-8 gzip with mtime 0 and no file name, so output is reproducible."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(text.encode("utf-8"))


def debian_version(package: str) -> str:
    """Return the installed Debian version of a package, or 'unknown'."""
    if shutil.which("dpkg-query") is None:
        return "unknown"
    result = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else "unknown"


def module_field(module: str, field: str) -> str:
    """Return one field of a SWORD module's .conf file, or 'unknown'."""
    header = re.compile(rf"^\[{re.escape(module)}\]\s*$", re.MULTILINE)
    for conf_dir in MODULE_CONF_DIRS:
        for conf in sorted(conf_dir.glob("*.conf")) if conf_dir.is_dir() else []:
            text = conf.read_text(encoding="utf-8", errors="replace")
            if header.search(text) and (match := re.search(rf"^{field}=(.*)$", text, re.MULTILINE)):
                return match.group(1).strip()
    return "unknown"


def provenance() -> dict[str, str]:
    """Return the versions of the Debian packages and SWORD modules used."""
    info = {package: debian_version(package) for package in DEBIAN_PACKAGES}
    for module in (ENGLISH_MODULE, SPANISH_MODULE):
        info[module] = f"{module_field(module, 'Version')} ({module_field(module, 'SwordVersionDate')})"
    return info


def wrapped(lines: list[str]) -> str:
    """Return the lines as an indented bullet list."""
    return "\n".join(
        textwrap.fill(line, 78, initial_indent="  - ", subsequent_indent="    ") for line in lines
    )


def license_text(pairs: list[Pair], dropped: list[str], versions: dict[str, str], corpus: str) -> str:
    """Render the provenance and licence notice for the corpus."""
    counts = split_counts(pairs)
    digest = hashlib.sha256(corpus.encode("utf-8")).hexdigest()
    title = f"KJV / Reina-Valera 1909 parallel corpus ({CORPUS_NAME})"
    dropped_title = f"Dropped chapters ({len(dropped)})"
    return f"""\
{title}
{"=" * len(title)}

Generated by scripts/build_bible_corpus.py; do not edit by hand.

Content
-------
Verse-aligned English-Spanish Bible text: the King James Version (KJV, English,
1769 standard text) and the Reina-Valera 1909 revision (RV1909, Spanish), the
66 books of the Protestant canon. One verse pair per line, in canonical order,
UTF-8, gzip-compressed, no header, three tab-separated columns:

  reference (English book name, e.g. "John 3:16")  English  Spanish

No field contains a tab or a newline.

Provenance
----------
The CrossWire Bible Society's SWORD modules as packaged by Debian 12
("bookworm"), read with CrossWire's diatheke command-line front end:
  - {ENGLISH_MODULE} ("King James Version"), module version {versions[ENGLISH_MODULE]},
    Debian package sword-text-kjv {versions["sword-text-kjv"]}
  - {SPANISH_MODULE} ("Reina Valera 1909"), module version {versions[SPANISH_MODULE]},
    Debian package sword-text-sparv {versions["sword-text-sparv"]}
  - diatheke {versions["diatheke"]} (libsword1.9.0 {versions["libsword1.9.0"]})
Both modules were made from eBible.org sources with Haiola and both use the
SWORD "KJV" versification. Install with:
  apt-get install diatheke sword-text-kjv sword-text-sparv

Licence
-------
- RV1909: public domain (the module says "Public Domain" / "Dominio Público").
- KJV: public domain outside the United Kingdom. In the UK the text is
  Crown property: letters patent with no expiry date restrict printing it, and
  importing printed copies, to the King's Printer and licensed presses
  (Cambridge University Press, Oxford University Press, Collins), as the
  module's own notes say. Whether that reaches a digital data file is not
  settled; UK users who republish the text should bear it in mind.
The SWORD modules themselves are marked "PUBLIC DOMAIN". The cleaning below
adds no copyrightable material.

Cleaning
--------
Each book of each module was read with
  diatheke -b MODULE -l en -f internal -o h -k BOOK
("-o h" switches the heading filter on, which makes diatheke print each
heading once, where it belongs: without it diatheke 4.8 repeats a psalm's
title before every verse of the psalm; "-f internal" keeps the OSIS markup, so
canonical titles can be told from editorial headings). Then:
1. headings: the KJV's canonical psalm titles ("A Psalm of David, ...") are
   kept at the start of verse 1, as RV1909 has them inside its verse 1; the
   KJV's subscriptions to Paul's letters ("Written from Rome ...") are kept
   at the end of the last verse, as RV1909 has them there too; other headings
   (the KJV's Psalm 119 letter headings) and any notes are dropped;
2. markup: all XML tags are removed (with them Strong's numbers, lemma and
   morphology attributes), as are bare Strong's tags left in the RV1909 text
   (e.g. "<H6565>"), stray USFM markers in the KJV (e.g. "\\nd"), pilcrows
   (¶) and HTML entities; Unicode NFC; whitespace collapsed to single spaces;
3. RV1909 only: words the editors supplied (<transChange>) that touch the
   neighbouring word are spaced apart ("PASANDO"+"Jesús" -> "PASANDO Jesús"),
   except enclitic pronouns after a verb ("hablándo"+"les" -> "hablándoles");
   the Hebrew letter names opening Psalm 119:1, 9, ..., 169 ("ALEPH.") are
   removed; the all-capitals words that open each chapter and each Psalm 119
   stanza (a drop-capital convention: "Y ACONTECIÓ", "¡OH", "A TI") are put
   in normal case, a word after the first being capitalised only if the text
   capitalises it mid-sentence ("Y JEHOVÁ" -> "Y Jehová");
4. chapters are dropped where the versions disagree on the verse count: the
   module is mapped to the KJV versification, but where RV1909 follows the
   Hebrew division it leaves verses empty or merges them into a neighbour;
5. chapters are also dropped where the verse counts agree but the versions
   divide the verses differently (the chapter after a step-4 chapter, or a
   verse boundary moved inside a chapter). A length check finds them: a
   window of {WINDOW} consecutive verses whose Spanish/English length ratios fit a
   verse offset of 1..{MAX_OFFSET} better than offset 0 by at least {SHIFT_THRESHOLD} in mean
   |log ratio - median log ratio|;
6. pairs with an empty side are dropped (none remain after steps 4-5).
The texts are otherwise as in the modules: archaic spelling, accents and
punctuation (RV1909's "á", "fué", "Achâb"; the KJV's "LORD", curly
apostrophes and the bracketed "[but]" of 1 John 2:23) are kept. A few verse
pairs whose boundary differs slightly between the versions (part of a
sentence on the other side of the boundary) remain.

{dropped_title}
{"-" * len(dropped_title)}
{wrapped(dropped)}

Statistics
----------
- Verse pairs: {counts["total"]:,}
- Split used by aiayn (by book): test = John ({counts["test"]:,} pairs),
  dev = Ruth and James ({counts["dev"]:,} pairs), train = all other books
  ({counts["train"]:,} pairs).
- SHA-256 of the uncompressed TSV: {digest}
"""


def spot_check(pairs: list[Pair], wanted: tuple[str, ...], n_random: int, seed: int) -> None:
    """Print some named references and some random pairs for a by-eye alignment check."""
    by_ref = {pair.reference: pair for pair in pairs}
    chosen = [by_ref.get(ref) or ref for ref in wanted]
    chosen += random.Random(seed).sample(pairs, n_random)
    for item in chosen:
        if isinstance(item, str):
            print(f"  {item}: (not in corpus)")
        else:
            print(f"  {item.reference}\n    EN: {item.english}\n    ES: {item.spanish}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out-dir", type=Path, default=CORPUS_DIR, help="where to write the corpus")
    parser.add_argument("--samples", type=int, default=10, help="random pairs to print for checking")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Read both modules, align, clean, write the corpus and licence, and print a summary."""
    args = parse_args(argv)
    if shutil.which("diatheke") is None:
        raise SystemExit("diatheke not found: apt-get install diatheke sword-text-kjv sword-text-sparv")
    books = load_books()
    pairs, dropped = align(books)
    check_pairs(pairs)
    corpus = tsv_text(pairs)
    corpus_path = args.out_dir / CORPUS_NAME
    write_gzip(corpus_path, corpus)
    versions = provenance()
    (args.out_dir / LICENSE_NAME).write_text(license_text(pairs, dropped, versions, corpus), encoding="utf-8")
    print("versions: " + ", ".join(f"{name} {version}" for name, version in versions.items()))
    print(f"dropped chapters ({len(dropped)}):")
    print("\n".join(f"  {line}" for line in dropped))
    print("sample pairs:")
    spot_check(
        pairs,
        ("Genesis 1:1", "John 3:16", "Psalms 23:1", "Psalms 51:1", "Psalms 119:1", "Jonah 1:17"),
        args.samples,
        seed=0,
    )
    print(f"compressed size: {corpus_path.stat().st_size:,} bytes ({corpus_path})")
    print("counts: " + ", ".join(f"{name} {count:,}" for name, count in split_counts(pairs).items()))


if __name__ == "__main__":
    main()
