"""The HTML attention explorer in a real headless Chromium (driven by playwright's Python API, with the
system's browser: never `playwright install`). Skipped only when no Chromium can be found at all."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import aiayn
from aiayn import viz

from .viz_fixtures import save_models, train_tokenizer

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def find_browser() -> str | None:
    """$AIAYN_CHROMIUM, else the first Chromium on PATH."""
    candidates = [os.environ.get("AIAYN_CHROMIUM", "")] + [shutil.which(name) or "" for name in BROWSER_NAMES]
    return next((path for path in candidates if path and os.access(path, os.X_OK)), None)


@pytest.fixture(scope="module")
def browser():
    executable = find_browser()
    if executable is None:
        pytest.skip("no Chromium found (install Debian's: apt-get install -y chromium; or set AIAYN_CHROMIUM)")
    from playwright.sync_api import sync_playwright  # a test extra: pip install -e '.[test]'

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """Explorer pages of a Transformer (three kinds) and a DecoderLM (one kind), with their records."""
    folder = tmp_path_factory.mktemp("viz_browser")
    models, tok = save_models(folder), train_tokenizer()
    out = {}
    for model_type, target in (("transformer", "el gato se sentó"), ("decoder_lm", None)):
        record = viz.collect_attention(aiayn.load(models[model_type]), tok, "the cat sat on the mat", target)
        out[model_type] = (viz.write_html(record, folder / f"{model_type}.html"), record)
    return out


def open_page(browser, path):
    """A page at path, with its console errors, uncaught exceptions and requests recorded."""
    page = browser.new_page(viewport={"width": 900, "height": 700})
    log = {"errors": [], "requests": []}
    page.on("console", lambda message: message.type == "error" and log["errors"].append(message.text))
    page.on("pageerror", lambda error: log["errors"].append(str(error)))
    page.on("request", lambda request: log["requests"].append(request.url))
    page.goto(path.as_uri())
    page.wait_for_selector("#lines line", state="attached")
    return page, log


def test_explorer_runs_without_errors_and_fetches_nothing(browser, pages):
    for path, record in pages.values():
        page, log = open_page(browser, path)
        assert log["errors"] == []
        assert log["requests"] == [path.as_uri()]  # self-contained: no scripts, styles or fonts fetched
        kinds = page.eval_on_selector_all("#kind option", "options => options.map(o => o.value)")
        assert kinds == record.kinds
        page.close()


def test_screenshot_changes_when_another_head_is_picked(browser, pages):
    path, _ = pages["transformer"]
    page, log = open_page(browser, path)
    shots = {}
    for head in ("0", "1", "mean"):
        page.select_option("#head", head)
        shots[head] = page.screenshot()
    assert shots["0"] != shots["1"] and shots["1"] != shots["mean"] and shots["0"] != shots["mean"]
    page.select_option("#head", "0")
    assert page.screenshot() == shots["0"]  # the same head draws the same picture
    assert log["errors"] == []
    page.close()


def test_hovering_a_token_shows_where_it_attends(browser, pages):
    path, record = pages["transformer"]
    page, log = open_page(browser, path)
    for kind, layer, head in (("cross", 1, 2), ("encoder_self", 0, 3), ("decoder_self", 1, "mean")):
        page.select_option("#kind", kind)
        page.select_option("#layer", str(layer))
        page.select_option("#head", str(head))
        queries, keys = record.tokens(kind)
        assert page.eval_on_selector_all("#q-column text:not(.weight)", "ts => ts.map(t => t.textContent)") == queries
        assert page.eval_on_selector_all("#k-column text:not(.weight)", "ts => ts.map(t => t.textContent)") == keys
        expected = record.matrix(kind, layer, head if head == "mean" else int(head))
        query = len(queries) - 1
        page.hover(f"#q-{query}")
        shaded = page.eval_on_selector_all("#k-column rect", "rs => rs.map(r => Number(r.dataset.weight))")
        np.testing.assert_allclose(shaded, expected[query], atol=1e-4)
        shown = page.eval_on_selector_all("#lines line", "ls => ls.filter(l => l.getAttribute('display') "
                                                         "!== 'none').length")
        assert shown == len(keys)  # one line from the hovered query to each key
        page.hover("#k-0")
        shaded = page.eval_on_selector_all("#q-column rect", "rs => rs.map(r => Number(r.dataset.weight))")
        np.testing.assert_allclose(shaded, expected[:, 0], atol=1e-4)
        page.mouse.move(1, 1)
    page.select_option("#kind", "decoder_self")  # masked self-attention: the first query sees only itself
    page.hover("#q-0")
    shaded = page.eval_on_selector_all("#k-column rect", "rs => rs.map(r => Number(r.dataset.weight))")
    assert shaded[0] == pytest.approx(1.0) and all(w == 0 for w in shaded[1:])
    assert log["errors"] == []
    page.close()
