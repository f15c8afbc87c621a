"""The page of `aiayn serve` in a real headless Chromium (playwright's Python API with the system's browser, as
tests/test_viz_browser.py): type, translate, click a sentence, see its cross-attention heatmap and the explorer.
Skipped when no Chromium can be found."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra: pip install 'aiayn[serve]'")
pytest.importorskip("uvicorn")

from aiayn.inference.evaluation import translate  # noqa: E402
from aiayn.io.loading import load_with_tokenizer  # noqa: E402
from aiayn.serving.app import Settings, create_app  # noqa: E402
from aiayn.serving.engines import AiaynEngine  # noqa: E402

from .test_serve import Running  # noqa: E402
from .test_viz_browser import browser  # noqa: E402, F401 - the module-scoped Chromium fixture
from .viz_fixtures import save_models  # noqa: E402

LINES = ["the cat sat on the mat", "the dog ran to the river"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A running server with a tiny (untrained) Transformer, and the model with its tokenizer."""
    folder = save_models(tmp_path_factory.mktemp("serve_browser"))["transformer"]
    model, tok = load_with_tokenizer(Path(folder))
    server = Running(create_app(AiaynEngine(model, tok), Settings(model=str(folder), pair=("en", "es"))))
    yield server, model, tok
    server.stop()


def test_type_translate_click_a_sentence_and_see_its_heatmap(browser, served) -> None:  # noqa: F811 - the fixture
    server, model, tok = served
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    log = {"errors": [], "requests": []}
    page.on("console", lambda message: message.type == "error" and log["errors"].append(message.text))
    page.on("pageerror", lambda error: log["errors"].append(str(error)))
    page.on("request", lambda request: log["requests"].append(request.url))
    page.goto(server.url + "/")
    page.wait_for_selector("body[data-ready='1']")
    assert "en → es" in page.text_content("#info")
    page.fill("#text", "\n".join(LINES))
    page.click("#go")
    page.wait_for_selector(".sentence >> nth=1")
    shown = page.eval_on_selector_all(".sentence", "spans => spans.map(s => s.textContent)")
    assert shown == translate(model, tok, LINES)  # beam 4 as the page asks, what `aiayn translate` gives
    page.click(".sentence >> nth=0")
    page.wait_for_selector("#heatmap-table td")
    rows = page.eval_on_selector_all("#heatmap-table tbody tr", "rows => rows.length")
    columns = page.eval_on_selector_all("#heatmap-table thead th", "cells => cells.length") - 1
    source_tokens = len(tok.encode(LINES[0], add_special_tokens=False).ids) + 1  # + EOS
    target_tokens = len(tok.encode(shown[0], add_special_tokens=False).ids) + 1  # BOS + target
    assert (rows, columns) == (target_tokens, source_tokens)
    weights = page.eval_on_selector_all("#heatmap-table td", "cells => cells.map(c => Number(c.dataset.weight))")
    row_sums = [sum(weights[i * columns:(i + 1) * columns]) for i in range(rows)]
    assert row_sums == pytest.approx([1.0] * rows, abs=5e-3)  # each target token's weights over the source
    assert page.is_visible("#explorer")
    frame = page.frame_locator("#explorer")
    frame.locator("#lines line").first.wait_for(state="attached")  # the attention explorer, in the page
    before = page.screenshot()
    page.click(".sentence >> nth=1")
    page.wait_for_function("document.querySelectorAll('#heatmap-table tbody tr').length > 0")
    assert page.screenshot() != before
    assert log["errors"] == []
    assert all(url.startswith(server.url) or url.startswith("about:") for url in log["requests"])  # no CDN
    page.close()
