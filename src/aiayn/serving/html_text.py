"""An HTML fragment cut into markup, kept byte for byte, and the text runs between tags, to be translated.

LibreTranslate's `format: "html"`: a browser extension or a CMS plugin sends a whole fragment and expects the
same markup back with its text translated. The standard library's html.parser finds where every tag, comment,
doctype and text run starts in the source; the markup is then copied from the source itself, so tags,
attributes (their quoting and entities included), comments and declarations come back exactly as sent.

Each text node is translated alone ("Click <b>here</b> to go on." is three inputs: "Click", "here", "to go
on."). That is the simple, predictable choice: every tag stays where it was, and every input is a plain text
the model translates as `format: "text"` would, so an HTML request answers what a text request answers for
its pieces. The price is that a sentence split by inline tags is translated in pieces, with the pieces' word
order. LibreTranslate's translatehtml (argostranslate's tags.py) instead translates a block's whole text and
each inline tag's text, and puts each tag where its text is found in the whole: better sentences when every
piece is found, the block left untranslated when one is not, one more translation per inline tag.

Left untouched: the contents of <script>, <style>, <code> and <pre> (code, and text whose whitespace is its
meaning), and text runs that are only whitespace. Around a run, the whitespace before and after (no-break
spaces, &nbsp;, included) is kept as it was; inside it, HTML's whitespace (line breaks of wrapped source
included) is one space, as a browser shows it.
Entities are decoded before translation ("&lt;" is the text "<") and the translation is escaped back, so
"&lt;" and "&amp;" survive and a "<" in a translation cannot open a tag.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

KEPT_ELEMENTS = frozenset({"script", "style", "code", "pre"})  # their contents are never translated
HTML_SPACE = " \t\n\r\f"  # HTML's whitespace: a browser shows a run of it as one space
# kept as sent around a run: HTML's whitespace and no-break spaces, which a translation would drop
EDGE_SPACE = (*HTML_SPACE, "\xa0", "&nbsp;", "&#160;", "&#xa0;", "&#xA0;")
_INNER_SPACE = re.compile(f"[{re.escape(HTML_SPACE)}]+")


@dataclass
class Fragment:
    """A fragment's source in order: markup and surrounding whitespace as sent, and a slot (None) per text run."""

    parts: list[str | None] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # the runs to translate: entities decoded, inner space as one

    def rebuild(self, translations: list[str]) -> str:
        """The fragment with each text run replaced by its translation (escaped: &, < and > as entities)."""
        if len(translations) != len(self.texts):
            raise ValueError(f"{len(translations)} translations for {len(self.texts)} text runs")
        out, given = [], iter(translations)
        for part in self.parts:
            out.append(html.escape(next(given), quote=False) if part is None else part)
        return "".join(out)


def split_html(source: str) -> Fragment:
    """source (an HTML fragment) as markup kept verbatim and text runs to translate."""
    parser = _Spans()
    parser.feed(source)
    parser.close()
    lines = [0] + [m.end() for m in re.finditer("\n", source)]  # html.parser's positions are (line, column)
    starts = [(lines[line - 1] + column, translatable) for line, column, translatable in parser.spans]
    fragment = Fragment()
    for (start, translatable), end in zip(starts, [s for s, _ in starts[1:]] + [len(source)]):
        raw = source[start:end]
        first, last = _space_around(raw)
        text = _INNER_SPACE.sub(" ", html.unescape(raw[first:last]))
        if translatable and text.strip():
            fragment.parts += [raw[:first], None, raw[last:]]
            fragment.texts.append(text)
        else:
            fragment.parts.append(raw)
    if starts and starts[0][0] > 0:  # html.parser reports everything from the first character on; be sure
        fragment.parts.insert(0, source[:starts[0][0]])
    return fragment


def _space_around(raw: str) -> tuple[int, int]:
    """(start, end) of raw without its leading and trailing whitespace (HTML's, and no-break spaces)."""
    start, end = 0, len(raw)
    while start < end and (step := next((len(s) for s in EDGE_SPACE if raw.startswith(s, start, end)), 0)):
        start += step
    while start < end and (step := next((len(s) for s in EDGE_SPACE if raw.endswith(s, start, end)), 0)):
        end -= step
    return start, end


class _Spans(HTMLParser):
    """Records where each piece of the source starts, and whether it is text to translate.

    Each handler runs with getpos() at the start of its piece, which ends where the next begins; a text run
    the parser reports in several pieces (around a stray "<") is one span.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # a text run in one piece, entities and all
        self.spans: list[tuple[int, int, bool]] = []  # (line from 1, column, translatable)
        self.open_kept: dict[str, int] = dict.fromkeys(KEPT_ELEMENTS, 0)  # how deep inside each kept element

    def _mark(self, translatable: bool) -> None:
        if translatable and self.spans and self.spans[-1][2]:
            return  # the same text run goes on
        self.spans.append((*self.getpos(), translatable))

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self._mark(False)
        if tag in self.open_kept:
            self.open_kept[tag] += 1

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self._mark(False)  # <code/> opens nothing

    def handle_endtag(self, tag: str) -> None:
        self._mark(False)
        if self.open_kept.get(tag, 0) > 0:
            self.open_kept[tag] -= 1

    def handle_data(self, data: str) -> None:
        self._mark(not any(self.open_kept.values()))  # script and style: their contents come here too

    def handle_comment(self, data: str) -> None:
        self._mark(False)

    def handle_decl(self, decl: str) -> None:
        self._mark(False)

    def handle_pi(self, data: str) -> None:
        self._mark(False)

    def unknown_decl(self, data: str) -> None:
        self._mark(False)


__all__ = ["KEPT_ELEMENTS", "Fragment", "split_html"]
