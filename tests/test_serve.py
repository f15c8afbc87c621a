"""`aiayn serve`: the LibreTranslate shape over real HTTP, batching equal to one-at-a-time, every fault, both
engines, the stream of /generate."""

from __future__ import annotations

import asyncio
import html
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra: pip install 'aiayn[serve]'")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from aiayn.cli import main  # noqa: E402
from aiayn.inference.evaluation import translate  # noqa: E402
from aiayn.inference.text import generate_text  # noqa: E402
from aiayn.io.loading import load_with_tokenizer  # noqa: E402
from aiayn.serving.app import Settings, create_app  # noqa: E402
from aiayn.serving.batching import Batcher  # noqa: E402
from aiayn.serving.engines import AiaynEngine, Output  # noqa: E402

from .helpers_translation import write_corpus  # noqa: E402
from .viz_fixtures import save_models  # noqa: E402

try:
    import ctranslate2
except ImportError:  # the optional extra: pip install 'aiayn[ct2]'
    ctranslate2 = None
needs_ct2 = pytest.mark.skipif(ctranslate2 is None, reason="ctranslate2 is not installed (pip install 'aiayn[ct2]')")

SENTENCES = ["the king", "god of the land", "the man and the son of the king", "water", "light of the city",
             "the lord of the house and the people of the earth", "hand", "the day of the father"]
TINY = ["--preset", "tiny", "--vocab-size", "80", "--dev-size", "20", "--test-size", "20", "--batch-tokens", "400",
        "--warmup", "5", "--peak-lr", "3e-3", "--eval-every", "0", "--save-every", "0", "--beam", "1", "--dropout",
        "0", "--threads", "1", "--norm", "pre"]  # pre-LN: CTranslate2's TransformerSpec, no transformers needed
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def translator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder: a tiny translator trained 120 steps on a synthetic word-for-word corpus."""
    tmp = tmp_path_factory.mktemp("serve")
    corpus = write_corpus(tmp / "corpus.tsv", n=300)
    assert main(["train", "--data", str(corpus), "--out", str(tmp / "run"), "--steps", "120", *TINY]) == 0
    return tmp / "run"


@pytest.fixture(scope="module")
def loaded(translator: Path):
    return load_with_tokenizer(translator / "model")


@pytest.fixture(scope="module")
def engine(loaded) -> AiaynEngine:
    return AiaynEngine(*loaded)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Running:
    """A uvicorn server on 127.0.0.1 (a free port) in a thread, serving app; stop() ends it."""

    def __init__(self, app) -> None:
        self.app = app
        port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        assert not self.thread.is_alive()


@pytest.fixture
def serve():
    """serve(engine, **settings) -> a Running server; all are stopped at the end of the test."""
    running = []

    def start(engine, **settings) -> Running:
        server = Running(create_app(engine, Settings(**settings)))
        running.append(server)
        return server

    yield start
    for server in running:
        server.stop()


# -- the LibreTranslate shape, over HTTP ------------------------------------------------------------------------
def test_libretranslate_shape_over_http(engine, loaded, serve, translator: Path) -> None:
    model, tok = loaded
    server = serve(engine, model=str(translator / "model"), pair=("en", "es"))
    expected = translate(model, tok, SENTENCES)  # what `aiayn translate` prints (beam 4, alpha 0.6)
    assert any(expected)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        one = client.post("/translate", json={"q": SENTENCES[2], "source": "en", "target": "es", "format": "text"})
        assert one.status_code == 200 and one.json() == {"translatedText": expected[2]}
        many = client.post("/translate", json={"q": SENTENCES, "source": "auto", "target": "es"})
        assert many.json() == {"translatedText": expected,  # the model's one source language, as LibreTranslate's
                               "detectedLanguage": [{"confidence": 100.0, "language": "en"}] * len(SENTENCES)}
        lines = client.post("/translate", json={"q": "\n".join(SENTENCES[:3]), "source": "en", "target": "es"})
        assert lines.json() == {"translatedText": "\n".join(expected[:3])}  # a text's lines, one by one
        form = client.post("/translate", data={"q": SENTENCES[0], "source": "en", "target": "es"})  # form fields
        assert form.json() == {"translatedText": expected[0]}
        assert client.get("/languages").json() == [{"code": "en", "name": "en", "targets": ["es"]}]
        assert client.get("/health").json()["status"] == "ok"
        info = client.get("/info").json()
        assert (info["engine"], info["precision"], info["kind"], info["pair"]) == ("aiayn", "fp32", "transformer",
                                                                                   ["en", "es"])
        assert (info["translator"], info["causal_lm"]) == (True, False)  # model/registry.py's capabilities
        assert info["batching"]["sentences"] >= len(SENTENCES)
        spec = client.get("/openapi.json").json()
        assert {"/translate", "/v1/translate", "/health", "/info", "/generate"} <= set(spec["paths"])
        assert client.get("/docs").status_code == 404  # FastAPI's Swagger page loads scripts from a CDN: off
        page = client.get("/")
        assert page.status_code == 200 and "<textarea" in page.text and "http" not in page.text.split("<body>")[1]


FRAGMENT = ('<!DOCTYPE html><p class="verse" data-n=\'3\' title="a &amp; b">the king <b>god of the land</b>\n'
            '  and<br/>water</p><!-- the man --><script>var s = "the king";</script>'
            '<style>p::after { content: "water"; }</style><code>the king</code><pre> hand </pre>\n'
            '<a href="/x?a=1&amp;b=2">light of the city</a> ')
RUNS = ["the king", "god of the land", "and", "water", "light of the city"]  # FRAGMENT's text runs, in order


def test_html_format_keeps_the_markup_and_translates_each_text_run_as_text_does(engine, serve) -> None:
    server = serve(engine, pair=("en", "es"))
    with httpx.Client(base_url=server.url, timeout=60) as client:
        text = client.post("/translate", json={"q": RUNS, "source": "en", "target": "es", "format": "text"}).json()
        t = [html.escape(line, quote=False) for line in text["translatedText"]]
        assert any(t) and t != RUNS
        expected = ('<!DOCTYPE html><p class="verse" data-n=\'3\' title="a &amp; b">'
                    f'{t[0]} <b>{t[1]}</b>\n  {t[2]}<br/>{t[3]}</p><!-- the man --><script>var s = "the king";'
                    '</script><style>p::after { content: "water"; }</style><code>the king</code><pre> hand </pre>\n'
                    f'<a href="/x?a=1&amp;b=2">{t[4]}</a> ')
        one = client.post("/translate", json={"q": FRAGMENT, "source": "en", "target": "es", "format": "html"})
        assert one.status_code == 200 and one.json() == {"translatedText": expected}
        tags = re.compile(r"<[^>]*>")  # FRAGMENT has no ">" inside an attribute
        assert tags.findall(one.json()["translatedText"]) == tags.findall(FRAGMENT)  # every tag, byte for byte
        many = client.post("/translate", json={"q": [FRAGMENT, "<b>water</b>"], "source": "auto", "format": "html"})
        assert many.json() == {"translatedText": [expected, f"<b>{t[3]}</b>"],
                               "detectedLanguage": [{"confidence": 100.0, "language": "en"}] * 2}
        form = client.post("/translate", data={"q": "<i>water</i>", "source": "en", "target": "es",
                                               "format": "html"})  # form fields, as LibreTranslate's clients
        assert form.json() == {"translatedText": f"<i>{t[3]}</i>"}


def test_native_endpoint_options_match_the_library(engine, loaded, serve) -> None:
    model, tok = loaded
    server = serve(engine)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        greedy = client.post("/v1/translate", json={"q": SENTENCES, "beam": 1}).json()
        assert greedy["translatedText"] == translate(model, tok, SENTENCES, beam_size=1)
        best = client.post("/v1/translate", json={"q": SENTENCES[5], "beam": 4, "n_best": 3}).json()
        hyps = best["hypotheses"][0]
        ref = model.generate(_src(tok, SENTENCES[5]), beam_size=4, n_best=3, return_scores=True)[0]
        assert [h["text"] for h in hyps] == [tok.decode(h.tokens) for h in ref]
        assert [h["score"] for h in hyps] == pytest.approx([h.score for h in ref], abs=1e-5)
        assert hyps[0]["text"] == best["translatedText"]
        sample = {"q": SENTENCES[:4], "sample": True, "top_k": 5, "seed": 3}
        drawn = client.post("/v1/translate", json=sample).json()["translatedText"]
        assert drawn == client.post("/v1/translate", json=sample).json()["translatedText"]  # seeded: reproducible
        assert drawn == translate(model, tok, SENTENCES[:4], do_sample=True, top_k=5, seed=3)
        bad = client.post("/v1/translate", json={"q": "water", "beam": 2, "n_best": 3})
        assert bad.status_code == 400 and bad.json() == {"error": "n_best (3) must be at most beam (2)"}


def _src(tok, text):
    import torch

    from aiayn.data.tokenizer import encode_source
    return torch.tensor([encode_source(tok, text)])


# -- batching -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("beam", [1, 4])
def test_concurrent_requests_are_batched_with_the_same_output_as_one_at_a_time(engine, loaded, serve,
                                                                              beam: int) -> None:
    model, tok = loaded
    alone = [translate(model, tok, [s], beam_size=beam)[0] for s in SENTENCES]  # one sentence per search
    server = serve(engine, batch_wait_ms=300)  # requests arriving within 0.3 s share a batch
    with httpx.Client(base_url=server.url, timeout=60) as client, ThreadPoolExecutor(len(SENTENCES)) as pool:
        replies = list(pool.map(lambda s: client.post("/v1/translate", json={"q": s, "beam": beam}), SENTENCES))
    assert [r.json()["translatedText"] for r in replies] == alone
    stats = server.app.state.batcher.stats
    assert stats.largest_batch > 1 and stats.batches < len(SENTENCES)


class Blocking:
    """A fake engine whose searches wait for `release`; it records every batch it is given."""

    name, precision, kind, workers = "fake", "fp32", "transformer", 1

    def __init__(self) -> None:
        self.release, self.batches, self.started = threading.Event(), [], threading.Event()

    def count(self, text: str) -> int:
        return len(text.split()) + 1

    def search(self, texts, options):
        self.batches.append(list(texts))
        self.started.set()
        assert self.release.wait(30)
        return [[Output(t.upper())] for t in texts]

    def close(self) -> None:
        pass


def test_a_long_request_does_not_hold_up_short_ones_beyond_one_batch(serve) -> None:
    fake = Blocking()
    server = serve(fake, max_batch_tokens=48, batch_wait_ms=0)  # 4 sentences of 2 words x beam 4 fill a batch
    long_q = [f"long {i}" for i in range(16)]
    with httpx.Client(base_url=server.url, timeout=30) as client, ThreadPoolExecutor(2) as pool:
        long_reply = pool.submit(client.post, "/translate", json={"q": long_q})
        assert fake.started.wait(10)  # the long request's first batch is running
        short_reply = pool.submit(client.post, "/translate", json={"q": ["short one"]})
        time.sleep(0.3)
        fake.release.set()
        assert short_reply.result().json() == {"translatedText": ["SHORT ONE"]}
        assert long_reply.result().json() == {"translatedText": [q.upper() for q in long_q]}
    assert fake.batches[0] == long_q[:4] and fake.batches[1] == ["short one", *long_q[4:7]]  # the next batch


def test_a_batch_takes_the_oldest_sentence_and_those_closest_to_it_in_length() -> None:
    batches = []

    def run(texts, options):
        batches.append(list(texts))
        return [t.upper() for t in texts]

    long, short = "a b c d e f", "a"
    texts = [long, short, long, short, short, long, short, short, short]  # arrival order

    async def go():
        batcher = Batcher(run, lambda text: len(text.split()), max_batch_tokens=12, wait_ms=50)
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit([t], {}) for t in texts))
        finally:
            await batcher.stop()

    assert asyncio.run(go()) == [[t.upper()] for t in texts]
    # first-come first-served would pad every short sentence to 6 tokens: [long, short], [long, short], ...
    assert batches == [[long, long], [short] * 6, [long]]


def test_every_batch_takes_the_oldest_sentence_waiting() -> None:
    # fairness under load (p99 latency): whatever the lengths, each batch holds the oldest sentence still
    # waiting, so a sentence waits at most as many batches as there are sentences ahead of it
    rng = random.Random(0)
    texts = [" ".join("w" * rng.randint(1, 3) for _ in range(rng.choice([1, 2, 3, 8, 20]))) for _ in range(60)]
    batches: list[list[str]] = []

    def run(batch, options):
        batches.append(list(batch))
        return [t.upper() for t in batch]

    async def go():
        batcher = Batcher(run, lambda text: len(text.split()), max_batch_tokens=40, wait_ms=20)
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit([f"{i} {t}"], {}) for i, t in enumerate(texts)))
        finally:
            await batcher.stop()

    assert asyncio.run(go()) == [[f"{i} {t}".upper()] for i, t in enumerate(texts)]
    waiting = set(range(len(texts)))
    for batch in batches:
        taken = {int(text.split()[0]) for text in batch}
        assert min(waiting) in taken, (min(waiting), sorted(taken))
        waiting -= taken
    assert not waiting and len(batches) > 5


# -- faults ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body, message", [
    (b'{"q": ', "the body is not valid JSON"),
    (b'["q"]', "the body must be a JSON object with a field q"),
    (b'{"q": 3}', "q must be a string or a list of strings"),
    (b'{"q": ["a", 3]}', "q must be a string or a list of strings"),
    (b'{"q": ""}', "q is empty: give the text to translate"),
    (b'{"q": []}', "q is empty: give the text to translate"),
    (b'{"source": "en"}', "q is missing: give the text to translate as q"),
    (b'{"q": "a", "format": "xml"}', "format 'xml' is not supported: send format \"text\" or \"html\""),
    (b'{"q": "a", "source": "fr", "target": "es"}', "source 'fr' is not this model's: it translates en -> es"),
])
def test_bad_requests_are_400_with_one_line(serve, body: bytes, message: str) -> None:
    server = serve(Blocking(), pair=("en", "es"))
    reply = httpx.post(server.url + "/translate", content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error.startswith(message) and "\n" not in error and list(reply.json()) == ["error"]


def test_native_endpoint_type_errors_are_400_not_422(serve) -> None:
    server = serve(Blocking())
    for body, message in (({"q": "a", "beam": "four"}, "beam: Input should be a valid integer"),
                          ({"q": "a", "beam": 0}, "beam: Input should be greater than or equal to 1"),
                          ({"q": "a", "bean": 2}, "unknown field bean"), ({"q": 5}, "q must be a string")):
        reply = httpx.post(server.url + "/v1/translate", json=body)
        assert reply.status_code == 400 and reply.json()["error"].startswith(message), reply.text


def test_limits_are_413_naming_the_limit(serve) -> None:
    server = serve(Blocking(), max_chars=20, max_sentences=2)
    reply = httpx.post(server.url + "/translate", json={"q": "x" * 21})
    assert reply.status_code == 413
    assert reply.json()["error"] == "the request has 21 characters; this server's limit (--max-chars) is 20"
    reply = httpx.post(server.url + "/translate", json={"q": ["a", "b", "c"]})
    assert reply.status_code == 413
    assert reply.json()["error"] == ("the request has 3 sentences (lines); this server's limit (--max-sentences) "
                                     "is 2")


class Rewriting(Blocking):
    """A fake engine that answers at once, each sentence rewritten by `rewrite`."""

    def __init__(self, rewrite) -> None:
        super().__init__()
        self.rewrite = rewrite
        self.release.set()

    def search(self, texts, options):
        self.batches.append(list(texts))
        return [[Output(self.rewrite(text))] for text in texts]


def test_html_format_decodes_entities_escapes_translations_and_batches_every_run_together(serve) -> None:
    fake = Rewriting(lambda text: text)  # each sentence back as the engine was given it
    server = serve(fake, batch_wait_ms=0)
    url = server.url + "/translate"
    fragments = ['<p title="&lt;x&gt;">  a &lt;b&gt; &amp;  c\n</p>', "<ul><li>one</li>\n<li>two</li></ul>"]
    reply = httpx.post(url, json={"q": fragments, "format": "html"})
    assert reply.json() == {"translatedText": ['<p title="&lt;x&gt;">  a &lt;b&gt; &amp; c\n</p>', fragments[1]]}
    assert fake.batches == [["a <b> & c", "one", "two"]]  # decoded, inner space as one; one job, one batch
    nothing = '<p> </p><br/><!-- words --><script>x = "y"</script><p>&nbsp;</p>'
    assert httpx.post(url, json={"q": nothing, "format": "html"}).json() == {"translatedText": nothing}
    assert len(fake.batches) == 1  # no text: nothing searched
    fake.rewrite = lambda text: '<script>alert("x")</script>'  # a translation cannot open a tag
    assert httpx.post(url, json={"q": "<p>hi</p>", "format": "html"}).json() == {
        "translatedText": '<p>&lt;script&gt;alert("x")&lt;/script&gt;</p>'}
    schema = httpx.get(server.url + "/openapi.json").json()["paths"]["/translate"]["post"]["requestBody"]
    assert schema["content"]["application/json"]["schema"]["properties"]["format"]["enum"] == ["text", "html"]


def test_html_format_limits_are_413_on_what_the_client_sent(serve) -> None:
    server = serve(Rewriting(str.upper), max_chars=30, max_sentences=2)
    url = server.url + "/translate"
    reply = httpx.post(url, json={"q": ["<b>x</b>" * 3, "<br/>" * 2], "format": "html"})  # 3 letters, 34 characters
    assert reply.status_code == 413
    assert reply.json()["error"] == "the request has 34 characters; this server's limit (--max-chars) is 30"
    reply = httpx.post(url, json={"q": "<p>a</p><p>b</p><p>c</p>", "format": "html"})
    assert reply.status_code == 413
    assert reply.json()["error"] == ("the request has 3 sentences (text runs between tags); this server's limit "
                                     "(--max-sentences) is 2")
    two = "<p>a</p><br><hr><br><p>b</p>"  # 2 runs: the tags are not sentences
    reply = httpx.post(url, json={"q": two, "format": "html"})
    assert reply.json() == {"translatedText": "<p>A</p><br><hr><br><p>B</p>"}
    assert httpx.post(url, json={"q": " \n", "format": "html"}).status_code == 400  # empty q, as for text


def test_overload_is_503_with_retry_after_and_the_queue_drains(serve) -> None:
    fake = Blocking()
    server = serve(fake, queue_size=1, batch_wait_ms=0)
    with httpx.Client(base_url=server.url, timeout=30) as client, ThreadPoolExecutor(2) as pool:
        running = pool.submit(client.post, "/translate", json={"q": "first"})
        assert fake.started.wait(10)
        queued = pool.submit(client.post, "/translate", json={"q": "second"})
        deadline = time.monotonic() + 10
        while server.app.state.batcher.queued < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        refused = client.post("/translate", json={"q": "third"})
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        assert refused.json()["error"].startswith("the server is busy")
        fake.release.set()
        assert running.result().json() == {"translatedText": "FIRST"}
        assert queued.result().json() == {"translatedText": "SECOND"}
        assert client.post("/translate", json={"q": "fourth"}).json() == {"translatedText": "FOURTH"}


def test_a_client_that_disconnects_has_its_work_dropped(serve) -> None:
    fake = Blocking()
    server = serve(fake, batch_wait_ms=0)
    with httpx.Client(base_url=server.url, timeout=30) as client, ThreadPoolExecutor(1) as pool:
        running = pool.submit(client.post, "/translate", json={"q": "first"})
        assert fake.started.wait(10)
        with pytest.raises(httpx.ReadTimeout):  # queued behind the first; the client gives up and closes
            httpx.post(server.url + "/translate", json={"q": "abandoned"}, timeout=0.5)
        deadline = time.monotonic() + 10
        while server.app.state.batcher.stats.dropped_jobs < 1:
            assert time.monotonic() < deadline, "the abandoned request was not dropped"
            time.sleep(0.02)
        fake.release.set()
        assert running.result().json() == {"translatedText": "FIRST"}
        assert client.post("/translate", json={"q": "next"}).json() == {"translatedText": "NEXT"}
    assert ["abandoned"] not in fake.batches  # never searched


def _thread_cpu_seconds(thread: threading.Thread) -> float:
    """CPU seconds (user + system) one thread of this process has used (Linux /proc)."""
    fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads a thread's CPU time from Linux /proc")
def test_waiting_requests_cost_the_event_loop_nothing(serve) -> None:
    # a request waiting for its batch listens for its client's disconnect without waking the event loop; polling
    # is_disconnected() every 50 ms cost ~2 ms of CPU per waiting request per second (64 waiting: 0.13 s/s)
    fake = Blocking()
    server = serve(fake, batch_wait_ms=0, max_batch_tokens=10**6)
    with httpx.Client(base_url=server.url, timeout=30) as client, ThreadPoolExecutor(33) as pool:
        first = pool.submit(client.post, "/translate", json={"q": "first"})
        assert fake.started.wait(10)  # the one worker is busy: the next requests wait in the queue
        waiting = [pool.submit(httpx.post, server.url + "/translate", json={"q": f"verse {i}"}, timeout=30)
                   for i in range(32)]
        deadline = time.monotonic() + 10
        while server.app.state.batcher.queued < 32:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.2)
        before = _thread_cpu_seconds(server.thread)
        time.sleep(2)
        used = _thread_cpu_seconds(server.thread) - before
        fake.release.set()
        assert first.result().json() == {"translatedText": "FIRST"}
        assert [w.result().json()["translatedText"] for w in waiting] == [f"VERSE {i}" for i in range(32)]
    assert used < 0.03, f"the event loop used {used:.2f} s of CPU in 2 s while 32 requests waited"


def test_api_key(serve) -> None:
    fake = Blocking()
    fake.release.set()
    server = serve(fake, api_key="s3cret")
    url = server.url + "/translate"
    assert httpx.post(url, json={"q": "a"}).status_code == 403
    wrong = httpx.post(url, json={"q": "a", "api_key": "s3cre"})
    assert wrong.status_code == 403 and wrong.json()["error"].startswith("invalid or missing API key")
    assert httpx.post(url, json={"q": "a", "api_key": "s3cret"}).json() == {"translatedText": "A"}
    assert httpx.post(url, json={"q": "a"}, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert httpx.post(url, json={"q": "a"}, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert httpx.get(server.url + "/health").status_code == 200  # health checks need no key


def test_missing_or_corrupt_model_and_an_open_bind_without_a_key_are_refused_at_start(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["serve", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"aiayn serve: error: {tmp_path / 'nope'} is not a folder") and err.count("\n") == 1
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    assert main(["serve", str(broken)]) == 1
    err = capsys.readouterr().err
    assert "config.json is not valid JSON" in err and err.count("\n") == 1
    os.environ.pop("AIAYN_API_KEY", None)
    assert main(["serve", str(broken), "--host", "0.0.0.0"]) == 1
    assert "--host 0.0.0.0 is reachable from other machines: give --api-key" in capsys.readouterr().err


def test_sigterm_finishes_the_request_in_flight_then_exits(translator: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "AIAYN_CACHE": str(tmp_path / "cache")}
    process = subprocess.Popen([sys.executable, "-m", "aiayn", "serve", str(translator), "--port", str(port),
                                "--threads", "1", "--batch-wait-ms", "1500"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
                time.sleep(0.2)
        with ThreadPoolExecutor(1) as pool:
            reply = pool.submit(httpx.post, url + "/translate", json={"q": SENTENCES[0]}, timeout=30)
            time.sleep(0.5)  # the request waits in the batcher (1.5 s)
            process.send_signal(signal.SIGTERM)
            assert reply.result().status_code == 200 and reply.result().json()["translatedText"]
        assert process.wait(30) == 0
        with pytest.raises(httpx.TransportError):  # no longer taking requests
            httpx.get(url + "/health", timeout=1)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


# -- engines ---------------------------------------------------------------------------------------------------
def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@needs_ct2
def test_ctranslate2_engine_gives_aiayns_tokens_and_writes_nothing_into_the_model(engine, loaded, translator: Path,
                                                                                  tmp_path: Path, serve) -> None:
    from aiayn.serving.engines import CTranslate2Engine

    model, tok = loaded
    folder = translator / "model"
    before = _files(folder)
    ct2 = CTranslate2Engine(model, tok, folder, "fp32", cache=tmp_path / "cache")
    assert ct2.export.parent.parent == tmp_path / "cache" and (ct2.export / "model.bin").is_file()
    assert _files(folder) == before  # nothing written into the model folder
    for beam, alpha in ((1, 0.6), (4, 0.0)):
        options = {"beam_size": beam, "length_penalty": alpha}
        ours = [h[0].text for h in engine.search(SENTENCES, options)]
        theirs = [h[0].text for h in ct2.search(SENTENCES, options)]
        assert ours == theirs and any(ours), (beam, ours, theirs)
    again = CTranslate2Engine(model, tok, folder, "int8", cache=tmp_path / "cache")  # the cached export, reused
    assert again.export == ct2.export
    server = serve(ct2, pair=("en", "es"))
    reply = httpx.post(server.url + "/v1/translate", json={"q": SENTENCES, "beam": 1}, timeout=60)
    assert reply.json()["translatedText"] == translate(model, tok, SENTENCES, beam_size=1)


# -- language models -------------------------------------------------------------------------------------------
def test_generate_streams_the_continuation_generate_text_gives(tmp_path: Path, serve) -> None:
    folder = save_models(tmp_path)["decoder_lm"]
    model, tok = load_with_tokenizer(folder)
    expected = generate_text(model, tok, "the cat", max_new_tokens=12)  # greedy
    server = serve(AiaynEngine(model, tok))
    pieces = []
    with httpx.stream("POST", server.url + "/generate", json={"prompt": "the cat", "max_new_tokens": 12,
                                                               "sample": False}, timeout=60) as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        for line in reply.iter_lines():
            if line.startswith("data: "):
                pieces.append(line[6:])
    assert pieces[-1] == "[DONE]" and len(pieces) > 2  # streamed in several pieces
    assert "".join(json.loads(p)["text"] for p in pieces[:-1]) == expected
    refused = httpx.post(server.url + "/translate", json={"q": "a"})
    assert refused.status_code == 400 and refused.json()["error"].startswith("this server has a language model")
    too_many = httpx.post(server.url + "/generate", json={"prompt": "a", "max_new_tokens": 10 ** 6})
    assert too_many.status_code == 413 and "max_new_tokens" in too_many.json()["error"]


def test_serve_refuses_an_encoder_lm(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = save_models(tmp_path)["encoder_lm"]
    assert main(["serve", str(folder)]) == 1
    assert "serves translators and DecoderLMs" in capsys.readouterr().err


def test_a_cache_inside_the_model_folder_and_a_bad_pair_are_refused(translator: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    before = _files(translator / "model")
    assert main(["serve", str(translator), "--cache", str(translator / "model" / "ct2")]) == 1
    assert "is inside the model folder" in capsys.readouterr().err
    assert main(["serve", str(translator), "--pair", "en"]) == 1
    assert "--pair 'en': give the source and target codes as SRC-TGT" in capsys.readouterr().err
    assert _files(translator / "model") == before


def test_two_workers_search_two_batches_at_once_with_the_same_output(loaded, serve) -> None:
    model, tok = loaded
    engine = AiaynEngine(model, tok, "fp32", workers=2)  # a WorkerPool of 2 forked processes
    try:
        server = serve(engine, batch_wait_ms=0, max_batch_tokens=40)  # small batches, so several run at once
        with httpx.Client(base_url=server.url, timeout=60) as client, ThreadPoolExecutor(len(SENTENCES)) as pool:
            replies = list(pool.map(lambda s: client.post("/translate", json={"q": s}), SENTENCES))
        assert [r.json()["translatedText"] for r in replies] == translate(model, tok, SENTENCES)
        assert server.app.state.batcher.stats.batches > 1 and server.app.state.batcher.parallel == 2
    finally:
        engine.close()


# --- decoding options: the fields come from inference/options.py's table ----------------------------------------


def test_request_fields_are_the_tables_serve_options_under_their_http_names() -> None:
    from aiayn.inference.options import OPTIONS, for_command
    from aiayn.serving.options import Decoding, decoding_keywords

    fields = Decoding.model_fields
    assert set(fields) == {"beam", "greedy", "length_penalty", "n_best", "scores", "sample", "temperature", "top_k",
                           "top_p", "seed"}  # docs/serving.md's names (greedy: new with the table)
    assert {o.name for o in for_command("serve")} - {"precision", "workers"} == {
        "beam_size", "greedy", "length_penalty", "n_best", "return_scores", "do_sample", "temperature", "top_k",
        "top_p", "seed"}
    assert (fields["beam"].default, fields["length_penalty"].default) == (4, 0.6)  # §6.1
    assert fields["top_p"].description == OPTIONS["top_p"].help_for("serve")
    schema = Decoding.model_json_schema()["properties"]
    top_p = schema["top_p"]["anyOf"][0]  # a number, or null (off)
    assert top_p["exclusiveMinimum"] == 0 and top_p["maximum"] == 1
    assert schema["beam"]["minimum"] == 1 and schema["beam"]["maximum"] == 64  # the table's bound, the server's cap
    assert decoding_keywords(Decoding()) == {"beam_size": 4, "length_penalty": 0.6}
    assert decoding_keywords(Decoding(greedy=True, beam=5)) == {"beam_size": 1, "length_penalty": 0.6}
    assert decoding_keywords(Decoding(beam=4, n_best=2)) == {"beam_size": 4, "length_penalty": 0.6, "n_best": 2,
                                                              "return_scores": True}
    assert decoding_keywords(Decoding(sample=True, top_k=5, seed=3)) == {
        "beam_size": 4, "length_penalty": 0.6, "do_sample": True, "temperature": 1.0, "top_k": 5, "seed": 3}


def test_a_decoding_option_declared_for_serve_reaches_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """One Option with "serve" in its commands is a request field, with its bounds, and a keyword of the search."""
    import dataclasses

    from aiayn.inference import options
    from aiayn.serving import options as serving

    min_length = dataclasses.replace(options.OPTIONS["min_length"], commands=frozenset({"serve"}))
    monkeypatch.setitem(options.OPTIONS, "min_length", min_length)
    decoding = serving._model("Decoding", "as at import, with the option added", serving.request_options())
    assert decoding.model_fields["min_length"].default == 0
    assert serving.decoding_keywords(decoding(min_length=3))["min_length"] == 3
    with pytest.raises(ValueError, match="min_length"):
        decoding(min_length=-1)


def test_serve_flags_come_from_the_table(capsys: pytest.CaptureFixture) -> None:
    from aiayn.inference.options import OPTIONS

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert " ".join(OPTIONS["precision"].help_for("serve").split()) in out
    assert "--beam" not in out  # a request's option, not the server's
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "somewhere", "--workers", "0"])
    assert exit_.value.code == 2 and "--workers: expected an integer >= 1, got '0'" in capsys.readouterr().err


def test_ctranslate2_refuses_an_option_it_is_not_given() -> None:
    """Every request option today maps to CTranslate2's search; one added to the table later is a 400, not ignored."""
    from aiayn.serving.engines import check_ct2_options
    from aiayn.serving.options import Decoding, decoding_keywords

    check_ct2_options(decoding_keywords(Decoding(beam=4, n_best=2, scores=True)))
    check_ct2_options(decoding_keywords(Decoding(sample=True, temperature=0.5, top_k=3, top_p=0.9)))
    with pytest.raises(ValueError, match=r"does not take \['seed'\]: CTranslate2 seeds each of its threads once"):
        check_ct2_options(decoding_keywords(Decoding(sample=True, top_k=3, seed=1)))  # not silently unseeded
    with pytest.raises(ValueError, match=r"--engine ctranslate2 does not take \['min_length'\]"):
        check_ct2_options({"beam_size": 4, "min_length": 3})
