"""The pure parts of scripts/build_gettext_corpus.py: .mo parsing, cleaning, deduplication, the split."""

from __future__ import annotations

import importlib.util
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_gettext_corpus.py"


@pytest.fixture(scope="module")
def gt():
    """The script, imported as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("build_gettext_corpus", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def make_mo(pairs: list[tuple[bytes, bytes]]) -> bytes:
    """A little-endian .mo file holding the given (original, translation) byte strings."""
    pairs = sorted(pairs)
    header = 28
    originals_at, translations_at = header, header + 8 * len(pairs)
    data_at = translations_at + 8 * len(pairs)
    tables, blob = [b"", b""], b""
    for side in (0, 1):
        for pair in pairs:
            tables[side] += struct.pack("<2I", len(pair[side]), data_at + len(blob))
            blob += pair[side] + b"\0"
    head = struct.pack("<7I", 0x950412DE, 0, len(pairs), originals_at, translations_at, 0, 0)
    return head + tables[0] + tables[1] + blob


def clean(gt, msgid: str, msgstr: str, **kwargs) -> tuple[str, str] | None:
    """clean_entry on a hand-made entry."""
    return gt.clean_entry(gt.Entry(msgid=msgid, msgstrs=(msgstr,), **kwargs))


def test_parse_mo_context_plural_and_charset(gt):
    mo = make_mo([(b"", b"Content-Type: text/plain; charset=ISO-8859-1\n"),
                  (b"menu\x04_Open", b"_Abrir"),
                  (b"%d file\x00%d files", b"%d fichero\x00%d ficheros"),
                  (b"Caf\xe9", b"Cafeter\xeda")])
    entries = {e.msgid: e for e in gt.parse_mo(mo)}
    assert entries["_Open"].msgctxt == "menu"
    assert entries["%d file"].msgid_plural == "%d files"
    assert entries["%d file"].msgstrs == ("%d fichero", "%d ficheros")
    assert entries["Café"].msgstrs == ("Cafetería",)  # decoded with the header's charset
    assert clean(gt, "", "Content-Type: text/plain") is None  # the header entry is dropped
    assert gt.clean_entry(entries["_Open"]) == ("Open", "Abrir")  # context stripped
    assert gt.clean_entry(entries["%d file"]) == ("%d file", "%d fichero")  # singular -> msgstr[0]


def test_mnemonics_removed_on_both_sides(gt):
    assert clean(gt, "_File", "_Archivo") == ("File", "Archivo")
    assert clean(gt, "Pre_ferences", "Prefere_ncias") == ("Preferences", "Preferencias")
    assert clean(gt, "Show Message _Content", "Mostrar el c_ontenido") == ("Show Message Content",
                                                                           "Mostrar el contenido")
    assert clean(gt, "Print line nu_mbers", "Imprimir los nú_meros") == ("Print line numbers",
                                                                         "Imprimir los números")
    assert clean(gt, "_Windows system", "Sistema _Windows") == ("Windows system", "Sistema Windows")
    assert clean(gt, "&Open file", "&Abrir archivo") == ("Open file", "Abrir archivo")
    assert clean(gt, "Rotating d&ash", "Hélice de &actividad") == ("Rotating dash", "Hélice de actividad")
    assert clean(gt, "&Save && quit", "&Guardar && salir") == ("Save & quit", "Guardar & salir")


def test_identifiers_and_literal_ampersands_kept(gt):
    assert clean(gt, "Set LC_ALL to C", "Ponga LC_ALL a C") == ("Set LC_ALL to C", "Ponga LC_ALL a C")
    assert clean(gt, "ai_socktype not supported", "no se admite ai_socktype") == (
        "ai_socktype not supported", "no se admite ai_socktype")
    assert clean(gt, "--term <terminal_name> set TERM", "--term <nombre_terminal> fija TERM") == (
        "--term <terminal_name> set TERM", "--term <nombre_terminal> fija TERM")
    assert clean(gt, "Date & Time", "Fecha y hora") == ("Date & Time", "Fecha y hora")
    assert clean(gt, "AT&T format", "formato AT&T") == ("AT&T format", "formato AT&T")
    assert clean(gt, "Date &amp; Time", "Fecha y hora") == ("Date & Time", "Fecha y hora")  # entity, not mnemonic


def test_placeholders_kept_and_whitespace_normalised(gt):
    assert clean(gt, "%s: cannot open '%s'", "%s: no se puede abrir «%s»") == (
        "%s: cannot open '%s'", "%s: no se puede abrir «%s»")
    assert clean(gt, "Copied {count} files to %1$s", "Copiados {count} archivos a %1$s") == (
        "Copied {count} files to %1$s", "Copiados {count} archivos a %1$s")
    assert clean(gt, "line one\n\tline  two\n", "línea uno\nlínea\tdos") == ("line one line two",
                                                                            "línea uno línea dos")


def test_dropped_entries(gt):
    assert clean(gt, "Open", "Abrir", fuzzy=True) is None
    assert clean(gt, "Open", "") is None
    assert clean(gt, "Open", "  \n") is None
    assert gt.clean_entry(gt.Entry(msgid="Open", msgstrs=())) is None
    assert clean(gt, "Linux", "Linux") is None  # msgstr == msgid
    assert clean(gt, "_Linux", "_Linux") is None  # equal once the mnemonics are gone
    assert clean(gt, "%s: %s", "%s: %s.") is None  # a pure format string
    assert clean(gt, "(%d%%)", "(%d %%)") is None
    assert clean(gt, "---", "—") is None  # punctuation only
    assert clean(gt, "1024", "1.024") is None  # numbers only
    assert clean(gt, "x" * 301, "y" * 10) is None and clean(gt, "word " * 10, "palabra " * 70) is None
    assert clean(gt, "@i %i has a bad @b", "el nodo-i %i tiene un bloque erróneo") is None  # codes spelled out
    assert clean(gt, "Cannot open @FILE@", "No se puede abrir @FILE@") is not None


def test_dedupe_keeps_most_common_translation_ties_lexicographic(gt):
    pairs = [("Open", "Abrir"), ("Open", "Abre"), ("Open", "Abrir"), ("Close", "Cierra"), ("Close", "Cerrar")]
    assert gt.dedupe(pairs) == {"Open": "Abrir", "Close": "Cerrar"}
    assert gt.dedupe(list(reversed(pairs))) == gt.dedupe(pairs)


def test_split_by_package_holds_whole_packages_out(gt):
    by_package = {
        "app": [(f"Message {i}", f"Mensaje {i}") for i in range(20)] + [("File not found", "No encontrado")],
        "held": [("file not found.", "Archivo no encontrado."), ("Quit the editor", "Salir del editor")],
        "dev": [("Build the target", "Construir el objetivo")],
    }
    splits, left_out = gt.split_by_package(by_package, frozenset({"held"}), frozenset({"dev"}),
                                           dev_size=5, test_size=5, seed=1)
    assert sorted(splits["test"]) == [("File not found", "No encontrado"), ("Quit the editor", "Salir del editor"),
                                      ("file not found.", "Archivo no encontrado.")]  # near-duplicate held out too
    assert splits["dev"] == [("Build the target", "Construir el objetivo")]
    assert len(splits["train"]) == 20 and left_out == {"dev": 0, "test": 0}
    again, _ = gt.split_by_package(by_package, frozenset({"held"}), frozenset({"dev"}), 5, 5, 1)
    assert again == splits  # deterministic
    capped, left_out = gt.split_by_package(by_package, frozenset({"held"}), frozenset({"dev"}), 5, 2, 1)
    assert len(capped["test"]) == 2 and left_out["test"] == 1 and len(capped["train"]) == 20


def test_catalog_pattern_default_locale_only_or_anywhere(gt):
    fixed, anywhere = gt.catalog_pattern("es", False), gt.catalog_pattern("es", True)
    locale = "./usr/share/locale/es/LC_MESSAGES/coreutils.mo"
    office = "./usr/lib/libreoffice/program/resource/es/LC_MESSAGES/sw.mo"
    assert fixed.fullmatch(locale) and not fixed.fullmatch(office)
    assert anywhere.fullmatch(locale) and anywhere.fullmatch(office)
    for other in ("./usr/share/locale/es_AR/LC_MESSAGES/x.mo", "./usr/share/locale/pt_BR/LC_MESSAGES/x.mo",
                  "./usr/share/locale/es/LC_MESSAGES/sub/x.mo", "./usr/share/locale/es/LC_MESSAGES/x.po"):
        assert not anywhere.fullmatch(other), other


def test_contents_packages_reads_the_index_lines(gt):
    lines = [
        "usr/share/locale/es/LC_MESSAGES/grep.mo                 utils/grep\n",
        "usr/lib/R/site-library/Rcmdr/po/es/LC_MESSAGES/R-Rcmdr.mo gnu-r/r-cran-rcmdr\n",
        "usr/share/doc/my file/es/LC_MESSAGES/spaced.mo\tmisc/spaced,non-free/misc/other\n",
        "usr/share/locale/de/LC_MESSAGES/grep.mo                 utils/grep-de-only\n",
        "usr/bin/grep utils/grep\n",
        "\n",
    ]
    assert gt.contents_packages(lines, gt.catalog_pattern("es", True)) == {"grep", "r-cran-rcmdr", "spaced",
                                                                           "other"}
    assert gt.contents_packages(lines, gt.catalog_pattern("es", False)) == {"grep"}


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb (Debian/Ubuntu)")
def test_read_catalogs_streams_matching_files_of_a_real_deb(gt, tmp_path):
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text("Package: tiny\nVersion: 1.0\nArchitecture: all\n"
                                             "Maintainer: t <t@example.org>\nDescription: test\n")
    locale = root / "usr/share/locale/es/LC_MESSAGES"
    office = root / "usr/lib/office/resource/es/LC_MESSAGES"
    for folder in (locale, office, root / "usr/share/locale/fr/LC_MESSAGES"):
        folder.mkdir(parents=True)
    (locale / "tiny.mo").write_bytes(make_mo([(b"Open file", b"Abrir archivo")]))
    (office / "ui.mo").write_bytes(make_mo([(b"Save", b"Guardar"), (b"Quit", b"Salir")]))
    (root / "usr/share/locale/fr/LC_MESSAGES/tiny.mo").write_bytes(make_mo([(b"Save", b"Enregistrer")]))
    (locale / "linked.mo").symlink_to("tiny.mo")  # another package's catalog: not read twice
    deb = tmp_path / "tiny_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)], check=True,
                   capture_output=True)
    fixed = gt.read_catalogs(deb, gt.catalog_pattern("es", False))
    assert {path: [(e.msgid, e.msgstrs) for e in entries] for path, entries in fixed.items()} == {
        "usr/share/locale/es/LC_MESSAGES/tiny.mo": [("Open file", ("Abrir archivo",))]}
    anywhere = gt.read_catalogs(deb, gt.catalog_pattern("es", True))
    assert sorted(anywhere) == ["usr/lib/office/resource/es/LC_MESSAGES/ui.mo",
                                "usr/share/locale/es/LC_MESSAGES/tiny.mo"]
    row, pairs = gt.read_package(deb, gt.MAX_CHARS, gt.catalog_pattern("es", True))
    assert (row["package"], row["version"], row["catalogs"], row["entries"], row["pairs"]) == (
        "tiny", "1.0", "tiny.mo,ui.mo", "3", "3")
    assert pairs == [("Quit", "Salir"), ("Save", "Guardar"), ("Open file", "Abrir archivo")]  # catalogs by path
