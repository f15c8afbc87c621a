"""`aiayn serve LM --engine ctranslate2`: POST /generate streamed by CTranslate2's Generator on an export of a
DecoderLM, held to the aiayn engine's text (greedy, fp32), its options mapped or refused, nothing written into
the model folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra: pip install 'aiayn[serve]'")
pytest.importorskip("ctranslate2", reason="the ct2 extra: pip install 'aiayn[ct2]'")
pytest.importorskip("transformers", reason="the ct2 extra: pip install 'aiayn[ct2]'")
httpx = pytest.importorskip("httpx")

from aiayn.data.lm import bundled_shakespeare  # noqa: E402
from aiayn.inference.text import generate_text  # noqa: E402
from aiayn.io.loading import load_with_tokenizer  # noqa: E402
from aiayn.serving.app import GenerateRequest, Settings, create_app  # noqa: E402
from aiayn.serving.ctranslate2_lm import CTranslate2LMEngine, check_ct2_generate_options  # noqa: E402
from aiayn.serving.engines import AiaynEngine, CTranslate2Engine, EngineError  # noqa: E402
from aiayn.serving.options import sampling_keywords  # noqa: E402
from aiayn.training.lm import LMTrainConfig, train_lm  # noqa: E402

from .test_serve import SRC, Running, _files, free_port  # noqa: E402
from .viz_fixtures import save_models  # noqa: E402

# a character-level DecoderLM (the paper's post-LN, sinusoids: exported through OPT), context 32
LM_TINY = dict(n_layers=2, n_heads=2, d_model=32, d_ff=64, context=32, batch_size=8, eval_every=0, save_every=0,
               log_every=100, threads=1, dropout=0.0, peak_lr=3e-3, warmup=10, steps=300)
PROMPTS = ["ROMEO:\n", "To be, or not", "KING"]


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder: a tiny character-level DecoderLM trained 300 steps on Shakespeare (at 40 it says only spaces)."""
    tmp = tmp_path_factory.mktemp("ct2-lm")
    text = tmp / "small.txt"
    text.write_text(bundled_shakespeare()[:20_000], encoding="utf-8")
    train_lm(LMTrainConfig(task="lm", data=str(text), out=str(tmp / "run"), **LM_TINY), log=lambda m: None)
    return tmp / "run"


@pytest.fixture(scope="module")
def loaded(lm_run: Path):
    return load_with_tokenizer(lm_run / "model")


@pytest.fixture(scope="module")
def ct2(loaded, lm_run: Path, tmp_path_factory: pytest.TempPathFactory) -> CTranslate2LMEngine:
    """The CTranslate2 engine in fp32 (as the aiayn engine's), its export made into a cache of its own."""
    before = _files(lm_run / "model")
    engine = CTranslate2LMEngine(*loaded, lm_run / "model", "fp32", cache=tmp_path_factory.mktemp("cache"))
    assert _files(lm_run / "model") == before  # the export went into the cache, nothing into the model folder
    return engine


@pytest.fixture
def serve():
    """serve(engine) -> a Running server; all are stopped at the end of the test."""
    running = []

    def start(engine, **settings) -> Running:
        server = Running(create_app(engine, Settings(**settings)))
        running.append(server)
        return server

    yield start
    for server in running:
        server.stop()


def events(url: str, body: dict) -> list[str]:
    """The data of every server-sent event of a POST /generate, [DONE] last."""
    with httpx.stream("POST", url + "/generate", json=body, timeout=60) as reply:
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
        return [line[6:] for line in reply.iter_lines() if line.startswith("data: ")]


def text_of(pieces: list[str]) -> str:
    assert pieces[-1] == "[DONE]", pieces[-1]
    return "".join(json.loads(p)["text"] for p in pieces[:-1])


def test_greedy_generate_on_ctranslate2_is_the_aiayn_engines_text(loaded, ct2, serve) -> None:
    model, tok = loaded
    n = 2 * model.cfg.max_positions  # past the context: both go on from the last half-context
    ours, theirs = serve(AiaynEngine(model, tok)), serve(ct2)
    said = ""
    for prompt in PROMPTS:
        body = {"prompt": prompt, "max_new_tokens": n, "sample": False}
        expected = generate_text(model, tok, prompt, max_new_tokens=n)  # greedy, what `aiayn generate` prints
        assert len(expected) > model.cfg.max_positions  # no early EOS: the window really moved
        assert text_of(events(ours.url, body)) == expected
        pieces = events(theirs.url, body)
        assert text_of(pieces) == expected
        assert len(pieces) > 10  # streamed: a piece per new character, not one text at the end
        said += expected
    assert len(set(said)) >= 8  # words and lines, not one character over and over


def test_concurrent_streams_on_two_ctranslate2_workers_each_give_their_own_text(loaded, lm_run: Path, serve,
                                                                                tmp_path: Path) -> None:
    model, tok = loaded
    engine = CTranslate2LMEngine(model, tok, lm_run / "model", "fp32", workers=2, cache=tmp_path / "cache")
    server = serve(engine)
    prompts = PROMPTS * 2
    with ThreadPoolExecutor(len(prompts)) as pool:
        texts = list(pool.map(lambda p: text_of(events(server.url, {"prompt": p, "max_new_tokens": 40,
                                                                     "sample": False})), prompts))
    assert texts == [generate_text(model, tok, p, max_new_tokens=40) for p in prompts]


def test_a_pre_ln_lm_exported_as_gpt2_streams_the_aiayn_text(tmp_path: Path) -> None:
    """nanoGPT's shape (pre-LN, learned positions, GELU) is exported as GPT-2 (test_export holds that), not OPT."""
    text = tmp_path / "small.txt"
    text.write_text(bundled_shakespeare()[:20_000], encoding="utf-8")
    shape = dict(norm="pre", positions="learned", activation="gelu", scale_embeddings=False)
    train_lm(LMTrainConfig(task="lm", data=str(text), out=str(tmp_path / "run"), **LM_TINY, **shape),
             log=lambda m: None)
    model, tok = load_with_tokenizer(tmp_path / "run" / "model")
    engine = CTranslate2LMEngine(model, tok, tmp_path / "run" / "model", "fp32", cache=tmp_path / "cache")
    for prompt in PROMPTS:
        expected = generate_text(model, tok, prompt, max_new_tokens=64)
        assert "".join(engine.stream(prompt, 64, {})) == expected and expected.strip()


def test_the_stream_yields_each_token_as_ctranslate2_makes_it(loaded, ct2) -> None:
    model, tok = loaded
    expected = generate_text(model, tok, PROMPTS[0], max_new_tokens=20)
    pieces = ct2.stream(PROMPTS[0], 20, {})
    assert next(pieces) == expected[:1]  # the first character, before the others are made
    pieces.close()  # a client gone: the search is stopped
    assert "".join(ct2.stream(PROMPTS[0], 20, {})) == expected


def test_sampling_options_reach_ctranslate2_and_a_seed_is_refused(loaded, ct2, serve) -> None:
    model, tok = loaded
    server = serve(ct2)
    greedy = text_of(events(server.url, {"prompt": "KING", "max_new_tokens": 48, "sample": False}))
    top1 = text_of(events(server.url, {"prompt": "KING", "max_new_tokens": 48, "top_k": 1, "temperature": 0.7}))
    assert top1 == greedy  # top_k 1 is sampling_topk 1: the argmax at each step
    nucleus = text_of(events(server.url, {"prompt": "KING", "max_new_tokens": 48, "top_p": 1e-6}))
    assert nucleus == greedy  # the smallest set with probability >= p: the likeliest token alone
    drawn = [text_of(events(server.url, {"prompt": "KING", "max_new_tokens": 48})) for _ in range(2)]
    assert greedy not in drawn and drawn[0] != drawn[1]  # sampling (the default) from the whole vocabulary
    refused = httpx.post(server.url + "/generate", json={"prompt": "KING", "seed": 1}, timeout=60)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error.startswith("--engine ctranslate2 does not take ['seed'] on /generate") and "\n" not in error
    assert "--engine aiayn" in error
    unknown = httpx.post(server.url + "/generate", json={"prompt": "KING", "beam": 4}, timeout=60)
    assert unknown.status_code == 400 and unknown.json()["error"] == "unknown field beam"


def test_every_generate_option_but_the_seed_is_mapped() -> None:
    """/generate's fields today all reach generate_tokens (but seed); one added later is a 400, not ignored."""
    check_ct2_generate_options(sampling_keywords(GenerateRequest(prompt="a", sample=False), False))
    every = GenerateRequest(prompt="a", temperature=0.5, top_k=3, top_p=0.9)
    check_ct2_generate_options(sampling_keywords(every, every.sample))
    with pytest.raises(ValueError, match=r"does not take \['seed'\]"):
        check_ct2_generate_options(sampling_keywords(GenerateRequest(prompt="a", seed=1), True))
    with pytest.raises(ValueError, match=r"does not take \['min_length'\] on /generate: leave it out"):
        check_ct2_generate_options({"do_sample": True, "min_length": 3})


def test_info_names_ctranslate2_and_translate_stays_refused(ct2, serve, lm_run: Path) -> None:
    server = serve(ct2, model=str(lm_run / "model"))
    info = httpx.get(server.url + "/info").json()
    assert (info["engine"], info["precision"], info["kind"]) == ("ctranslate2", "fp32", "decoder_lm")
    assert (info["translator"], info["causal_lm"], info["pair"]) == (False, True, None)
    for path in ("/translate", "/v1/translate"):
        refused = httpx.post(server.url + path, json={"q": "a"}, timeout=60)
        assert refused.status_code == 400 and refused.json()["error"].startswith("this server has a language model")


def test_each_ctranslate2_engine_refuses_the_other_kind(tmp_path: Path) -> None:
    folders = save_models(tmp_path)
    translator, lm = (load_with_tokenizer(folders[k]) for k in ("transformer", "decoder_lm"))
    with pytest.raises(EngineError, match="serve a DecoderLM with serving.ctranslate2_lm.CTranslate2LMEngine"):
        CTranslate2Engine(*lm, folders["decoder_lm"], cache=tmp_path / "cache")
    with pytest.raises(EngineError, match="CTranslate2LMEngine serves DecoderLMs"):
        CTranslate2LMEngine(*translator, folders["transformer"], cache=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # refused before any export


def test_aiayn_serve_an_lm_on_ctranslate2(lm_run: Path, loaded, tmp_path: Path) -> None:
    """The command: starts on a DecoderLM's run folder, streams /generate, writes only into its cache."""
    model, tok = loaded
    before = _files(lm_run / "model")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "AIAYN_CACHE": str(tmp_path / "cache")}
    process = subprocess.Popen([sys.executable, "-m", "aiayn", "serve", str(lm_run), "--engine", "ctranslate2",
                                "--precision", "fp32", "--port", str(port), "--threads", "1"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
                time.sleep(0.2)
        assert httpx.get(url + "/info").json()["engine"] == "ctranslate2"
        body = {"prompt": PROMPTS[1], "max_new_tokens": 40, "sample": False}
        assert text_of(events(url, body)) == generate_text(model, tok, PROMPTS[1], max_new_tokens=40)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        out = process.stdout.read()
        assert f"serving {lm_run / 'model'} (decoder_lm, ctranslate2 fp32" in out, out
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert _files(lm_run / "model") == before  # nothing written into the model folder
    assert list((tmp_path / "cache" / "ctranslate2").glob("*/model.bin"))  # the export: in the cache
