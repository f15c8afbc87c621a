"""serving/html_text.py: an HTML fragment's markup kept byte for byte, its text runs decoded for translation and
escaped back (POST /translate with format html: tests/test_serve.py)."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiayn.serving.html_text import split_html


def upper(source: str) -> str:
    """source with every text run "translated" to upper case."""
    fragment = split_html(source)
    return fragment.rebuild([text.upper() for text in fragment.texts])


@pytest.mark.parametrize("source, texts, translated", [
    # each text node alone; the space around it kept, inside it one space; tags and attributes as sent
    ('<p class="x" data-n=\'1 &amp; 2\'>Click <B>here</B>\n   to  go\n on.</p>', ["Click", "here", "to go on."],
     '<p class="x" data-n=\'1 &amp; 2\'>CLICK <B>HERE</B>\n   TO GO ON.</p>'),
    # a ">" inside a quoted attribute, a tag over several lines, a comment holding tags: all markup
    ('<a title="1 > 0"\n   href=x>one</a><!-- <b>two</b> -->three', ["one", "three"],
     '<a title="1 > 0"\n   href=x>ONE</a><!-- <b>two</b> -->THREE'),
    # script, style, code and pre (nested too) untouched; their closing tags end the kept part
    ('<script>if (a < b) s = "</b>";</script><style>p::after { content: "x" }</style><code>c</code>'
     '<pre> p <pre>q</pre> r </pre>after', ["after"],
     '<script>if (a < b) s = "</b>";</script><style>p::after { content: "x" }</style><code>c</code>'
     '<pre> p <pre>q</pre> r </pre>AFTER'),
    # entities decoded for the model and escaped back: "&lt;" and "&amp;" survive
    ("a &lt;b&gt; &amp; c &#60;", ["a <b> & c <"], "A &lt;B&gt; &amp; C &lt;"),
    # a stray "<" is text (one run with what is around it), escaped on the way back
    ("a < b", ["a < b"], "A &lt; B"),
    # no-break spaces around a run kept as sent; whitespace-only runs and &nbsp; alone are not text
    ("<p>&nbsp;x&#160;</p>\n<p> </p><p>&nbsp;</p>", ["x"], "<p>&nbsp;X&#160;</p>\n<p> </p><p>&nbsp;</p>"),
    ("<!DOCTYPE html><?php x ?><![CDATA[y]]><br/><img src='a.png' alt=\"an image\">", [],
     "<!DOCTYPE html><?php x ?><![CDATA[y]]><br/><img src='a.png' alt=\"an image\">"),
    ("", [], ""),
    ("<code/>z", ["z"], "<code/>Z"),  # a self-closed <code/> keeps nothing after it
])
def test_split_and_rebuild(source: str, texts: list[str], translated: str) -> None:
    fragment = split_html(source)
    assert fragment.texts == texts
    assert upper(source) == translated


def test_a_translation_cannot_inject_markup() -> None:
    fragment = split_html("<p>hello</p>")
    assert fragment.rebuild(['<script>alert("x")</script> & co']) == \
        '<p>&lt;script&gt;alert("x")&lt;/script&gt; &amp; co</p>'
    with pytest.raises(ValueError, match="1 translations for 0 text runs"):
        split_html("<br>").rebuild(["x"])


class Markup(HTMLParser):
    """Every tag, comment and declaration the standard parser sees, as (kind, name or data, attributes)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple] = []

    def handle_starttag(self, tag, attrs):
        self.seen.append(("start", tag, attrs))

    def handle_endtag(self, tag):
        self.seen.append(("end", tag))

    def handle_comment(self, data):
        self.seen.append(("comment", data))

    def handle_decl(self, decl):
        self.seen.append(("decl", decl))


def markup(source: str) -> list[tuple]:
    parser = Markup()
    parser.feed(source)
    parser.close()
    return parser.seen


pieces = st.sampled_from(["<p>", "</p>", '<a href="x?a=1&amp;b=2" title=\'1 > 0\'>', "</a>", "<br/>", "<b>", "</b>",
                          "<!-- note <i> -->", "<script>", "</script>", "<code>", "</code>", "the king", " ", "\n",
                          "&amp;", "&lt;", "&nbsp;", "é", "water of life", "<!DOCTYPE html>"])

words = st.text(max_size=6) | st.sampled_from(["<b>", "</p>", "a & b", "<!--", "&lt;"])


@settings(max_examples=300, deadline=None)
@given(st.lists(pieces, max_size=12), st.lists(words, min_size=12, max_size=12))
def test_any_translation_leaves_the_markup_as_the_parser_sees_it(parts: list[str], given_words: list[str]) -> None:
    source = "".join(parts)
    fragment = split_html(source)
    out = fragment.rebuild(given_words[:len(fragment.texts)] + ["x"] * (len(fragment.texts) - len(given_words)))
    assert markup(out) == markup(source)  # whatever the translations hold ("<", "&", quotes)
    assert split_html(fragment.rebuild(fragment.texts)).texts == fragment.texts  # decoded and escaped back
