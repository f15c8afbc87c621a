"""The documentation site's Walk-through in a real headless Chromium (playwright's Python API driving the system's
browser, never `playwright install`): every picture loads, no console errors, nothing is fetched from the network,
and each table-of-contents link scrolls to its section. Skipped with a message when no Chromium or no built site
(`make docs`) is found."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .test_viz_browser import FLAGS, find_browser

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("AIAYN_DOCS_SITE", ROOT / "site"))


def built_site() -> Path:
    """site/ as `make docs` built it (`make test` builds it before the tests run)."""
    if not (SITE / "walkthrough" / "index.html").exists():
        pytest.skip(f"no built site in {SITE}: run `make docs` first (`make test` does)")
    return SITE


@pytest.fixture(scope="module")
def walkthrough():
    """(the built Walk-through page, a headless Chromium)."""
    executable = find_browser()
    if executable is None:
        pytest.skip("no Chromium found (install Debian's: apt-get install -y chromium; or set AIAYN_CHROMIUM)")
    page_path = built_site() / "walkthrough" / "index.html"
    from playwright.sync_api import sync_playwright  # a test extra: pip install -e '.[test]'

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=FLAGS)
        yield page_path, chromium
        chromium.close()


def open_page(browser, path: Path):
    """The page, with its console errors, uncaught exceptions and the URLs it requested."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log = {"errors": [], "requests": []}
    page.on("console", lambda message: message.type == "error" and log["errors"].append(message.text))
    page.on("pageerror", lambda error: log["errors"].append(str(error)))
    page.on("request", lambda request: log["requests"].append(request.url))
    page.goto(path.as_uri(), wait_until="load")
    return page, log


def test_walkthrough_pictures_load_without_errors_or_network(walkthrough, tmp_path):
    path, browser = walkthrough
    page, log = open_page(browser, path)
    images = page.eval_on_selector_all(
        "article img", "imgs => imgs.map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth}))")
    figures = [image for image in images if image["alt"]]
    assert len(figures) >= 6, f"expected the walk-through's pictures, found {images}"
    assert [image for image in images if not image["complete"] or image["width"] == 0] == []
    assert log["errors"] == []
    remote = [url for url in log["requests"] if not url.startswith(("file:", "data:"))]
    assert remote == []  # no fonts, scripts or styles from the network
    page.screenshot(path=tmp_path / "walkthrough.png", full_page=False)
    assert (tmp_path / "walkthrough.png").stat().st_size > 10_000
    page.close()


def test_table_of_contents_reaches_each_section(walkthrough):
    path, browser = walkthrough
    page, log = open_page(browser, path)
    toc = ".md-sidebar--secondary nav.md-nav--secondary a.md-nav__link"  # the table of contents on the right
    links = page.eval_on_selector_all(toc, "links => links.map(a => a.getAttribute('href'))")
    anchors = [href for href in links if href and href.startswith("#")]
    headings = page.eval_on_selector_all("article h2[id], article h3[id]", "hs => hs.map(h => '#' + h.id)")
    assert len(headings) >= 12 and set(headings) <= set(anchors)  # every section is in the table of contents
    for anchor in anchors:
        page.click(f'{toc}[href="{anchor}"]')
        page.wait_for_function("a => location.hash === a", arg=anchor)
        top = page.eval_on_selector(anchor, "h => h.getBoundingClientRect().top")
        assert 0 <= top < 200, f"{anchor} is at {top}px after its link was clicked"
    assert log["errors"] == []
    page.close()
