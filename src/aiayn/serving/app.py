"""The HTTP routes: LibreTranslate's POST /translate, the native /v1/translate, /generate, /health, /info, the page.

Every error is one line, {"error": "..."} (LibreTranslate's shape), with a status that says whose fault it
is: 400 a malformed request, 403 a missing or wrong API key, 413 a request over a limit (named), 503 the
queue is full (with Retry-After). FastAPI writes the OpenAPI description (/openapi.json, /docs).
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from ..model.registry import MODEL_TYPES
from ..viz.collect import collect_attention
from ..viz.explorer import explorer_data, render_html
from .batching import Batcher, Overloaded
from .html_text import split_html
from .options import Decoding, OptionError, Sampling, decoding_keywords, sampling_keywords

PAGE = Path(__file__).with_name("page.html")
FORMATS = ("text", "html")  # LibreTranslate's formats of q
T = TypeVar("T")


@dataclass
class Settings:
    """What the server was started with (the `aiayn serve` flags)."""

    model: str = ""
    pair: tuple[str, str] | None = None  # (source, target) language codes, where known
    api_key: str | None = None
    max_chars: int = 10000
    max_sentences: int = 256
    max_new_tokens: int = 512  # /generate's bound
    max_batch_tokens: int = 4000
    batch_wait_ms: float = 5.0
    queue_size: int = 256


class ServeError(HTTPException):
    """An HTTP error with a one-line reason (and optional headers)."""


# -- request bodies --------------------------------------------------------------------------------------
class LibreRequest(BaseModel):
    """LibreTranslate's POST /translate body (JSON or form fields)."""

    model_config = ConfigDict(extra="ignore")  # LibreTranslate clients send fields such as alternatives

    q: str | list[str] = Field(..., description="a text (lines translated one by one) or a list of texts")
    source: str = Field("auto", description="the source language code, or auto")
    target: str | None = Field(None, description="the target language code")
    format: str = Field("text", json_schema_extra={"enum": list(FORMATS)},
                        description="text (a text's lines translated one by one) or html (a fragment: its text "
                                    "translated, one text node at a time, its markup kept as sent)")
    api_key: str | None = Field(None, description="the server's API key, where it has one")


class NativeRequest(Decoding):
    """POST /v1/translate: texts and the decoding options of `aiayn translate`."""

    q: str | list[str] = Field(..., description="a text (lines translated one by one) or a list of texts")
    api_key: str | None = None


class AttentionRequest(BaseModel):
    """POST /v1/attention: one sentence and, optionally, the translation to show attention for."""

    model_config = ConfigDict(extra="forbid")
    q: str
    target: str | None = None
    api_key: str | None = None


class GenerateRequest(Sampling):
    """POST /generate (language models): a prompt and sampling options; the text streams back."""

    prompt: str = Field(..., min_length=1)
    max_new_tokens: int = Field(100, ge=1)
    sample: bool = Field(True, description="sample (the default for a language model); false: greedy search")
    api_key: str | None = None


# -- the app ---------------------------------------------------------------------------------------------
def create_app(engine: Any, settings: Settings) -> FastAPI:
    """The FastAPI app serving `engine` (serving.engines) with `settings`; the batcher runs in its lifespan."""
    batcher = Batcher(engine.search, engine.count, settings.max_batch_tokens, settings.batch_wait_ms,
                      settings.queue_size, parallel=max(getattr(engine, "workers", 1), 1))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="aiayn serve", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,  # CDN pages
                  description="A translation server for an aiayn model: LibreTranslate's POST /translate, a native "
                              "/v1/translate with the decoding options, and a page at /.")
    app.state.batcher, app.state.engine, app.state.settings = batcher, engine, settings
    libre_options = decoding_keywords(Decoding())  # LibreTranslate's requests: the defaults, built once

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code,
                            headers=getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _one_line(error.errors())}, status_code=400)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Whether the server is up and how many requests wait."""
        return {"status": "ok", "queued": batcher.queued}

    @app.get("/info")
    async def info() -> dict[str, Any]:
        """The model, engine, precision and language pair, the limits, and batching counters."""
        stats = batcher.stats
        return {"model": settings.model, "engine": engine.name, "precision": engine.precision,
                "kind": engine.kind, "translator": MODEL_TYPES[engine.kind].translator,
                "causal_lm": MODEL_TYPES[engine.kind].causal_lm, "pair": list(settings.pair) if settings.pair else None,
                "workers": getattr(engine, "workers", 1), "api_key_required": settings.api_key is not None,
                "limits": {"max_chars": settings.max_chars, "max_sentences": settings.max_sentences,
                           "max_batch_tokens": settings.max_batch_tokens, "batch_wait_ms": settings.batch_wait_ms,
                           "queue_size": settings.queue_size},
                "batching": {"batches": stats.batches, "sentences": stats.sentences,
                             "largest_batch": stats.largest_batch, "dropped_requests": stats.dropped_jobs,
                             "refused_requests": stats.refused_jobs, "queued": batcher.queued}}

    @app.get("/languages")
    async def languages() -> list[dict[str, Any]]:
        """LibreTranslate's GET /languages: the model's source language and its one target."""
        if settings.pair is None:
            return []
        source, target = settings.pair
        return [{"code": source, "name": source, "targets": [target]}]

    @app.post("/translate", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": LibreRequest.model_json_schema()},
        "application/x-www-form-urlencoded": {"schema": LibreRequest.model_json_schema()}}}})
    async def libre_translate(request: Request) -> dict[str, Any]:
        """LibreTranslate's POST /translate: {"q", "source", "target", "format"} -> {"translatedText"} (a list for a
        list); format html translates a fragment's text runs in the same batches and keeps its markup."""
        body = _validated(LibreRequest, await _fields(request))
        _check_key(settings, request, body.api_key)
        if body.format not in FORMATS:
            raise ServeError(400, f"format {body.format!r} is not supported: send format \"text\" or \"html\"")
        _check_pair(settings, body.source, body.target)
        texts, join = (_split_html if body.format == "html" else _split)(body.q, settings)
        outputs = await _translate(request, batcher, texts, libre_options)
        translated = join([hyps[0].text for hyps in outputs])
        if body.source == "auto" and settings.pair is not None:  # LibreTranslate's answer to auto: one language
            detected = {"confidence": 100.0, "language": settings.pair[0]}
            return {"detectedLanguage": detected if isinstance(body.q, str) else [detected] * len(body.q),
                    "translatedText": translated}
        return {"translatedText": translated}

    @app.post("/v1/translate")
    async def native_translate(body: NativeRequest, request: Request) -> dict[str, Any]:
        """Translate with `aiayn translate`'s decoding options; n_best hypotheses with scores on request."""
        _check_key(settings, request, body.api_key)
        try:
            options = decoding_keywords(body)
        except OptionError as error:
            raise ServeError(400, str(error)) from None
        texts, join = _split(body.q, settings)
        key = object() if options.get("seed") is not None else None  # seeded draws: alone, as offline
        outputs = await _translate(request, batcher, texts, options, key)
        lines = join([hyps[0].text for hyps in outputs])
        result: dict[str, Any] = {"translatedText": lines}
        if options.get("return_scores"):
            result["hypotheses"] = [[{"text": h.text, "score": h.score} for h in hyps] for hyps in outputs]
        return result

    @app.post("/v1/attention")
    async def attention(body: AttentionRequest, request: Request) -> dict[str, Any]:
        """One sentence's attention weights (aiayn.viz: every kind, layer and head) and the explorer page."""
        _check_key(settings, request, body.api_key)
        if not body.q.strip():
            raise ServeError(400, "q is empty: give the sentence to show attention for")
        _limit_chars(len(body.q) + len(body.target or ""), settings)
        if not MODEL_TYPES[engine.kind].translator:
            raise ServeError(400, f"attention pictures here are for translators; this model is "
                                  f"{MODEL_TYPES[engine.kind].described}")
        loop = asyncio.get_running_loop()
        try:
            record = await loop.run_in_executor(None, lambda: collect_attention(engine.model, engine.tokenizer,
                                                                               body.q, body.target))
        except ValueError as error:
            raise ServeError(400, str(error)) from None
        return {"data": explorer_data(record, decimals=3), "html": render_html(record)}

    @app.post("/generate")
    async def generate(body: GenerateRequest, request: Request) -> StreamingResponse:
        """A DecoderLM's continuation of the prompt, streamed as server-sent events ({"text"} pieces, then [DONE])."""
        _check_key(settings, request, body.api_key)
        if not MODEL_TYPES[engine.kind].causal_lm or not hasattr(engine, "stream"):
            raise ServeError(400, f"/generate is for language models; this server has a {engine.kind} on "
                                  f"{engine.name}: use /translate")
        _limit_chars(len(body.prompt), settings)
        if body.max_new_tokens > settings.max_new_tokens:
            raise ServeError(413, f"max_new_tokens {body.max_new_tokens} is over this server's limit of "
                                  f"{settings.max_new_tokens}")
        try:  # an engine that checks the options before streaming (CTranslate2's) refuses them here
            pieces = engine.stream(body.prompt, body.max_new_tokens, sampling_keywords(body, body.sample))
        except ValueError as error:
            raise ServeError(400, str(error)) from None
        return StreamingResponse(_events(request, pieces), media_type="text/event-stream")

    return app


# -- helpers ---------------------------------------------------------------------------------------------
async def _fields(request: Request) -> dict[str, Any]:
    """A request's fields: a JSON object, or form fields (LibreTranslate's clients send either); else 400."""
    raw = await request.body()
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
        if kind == "multipart/form-data":
            form = await request.form()
            return {k: form.getlist(k) if len(form.getlist(k)) > 1 else form[k] for k in form}
        values = parse_qs(raw.decode("utf-8", errors="replace"), keep_blank_values=True)
        return {k: v if len(v) > 1 else v[0] for k, v in values.items()}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise ServeError(400, f"the body is not valid JSON ({error}): send a JSON object such as "
                              f"{{\"q\": \"text\", \"source\": \"en\", \"target\": \"es\"}}") from None
    if not isinstance(data, dict):
        raise ServeError(400, "the body must be a JSON object with a field q")
    return data


def _validated(model: type[T], data: dict[str, Any]) -> T:
    """data checked against a request model; the first problem as a 400 one-liner."""
    try:
        return model.model_validate(data)  # type: ignore[attr-defined]
    except ValidationError as error:
        raise ServeError(400, _one_line(error.errors())) from None


def _one_line(errors: Any) -> str:
    """The first validation error as "field: what is wrong" (FastAPI's 422 list, in one line)."""
    errors = list(errors)
    if not errors:
        return "the request is invalid"
    first = errors[0]
    where = [str(part) for part in first.get("loc", ()) if part not in ("body",)]
    kind = first.get("type", "")
    if kind == "json_invalid":
        return "the body is not valid JSON: send a JSON object such as {\"q\": \"text\"}"
    if where and where[0] == "q" and kind in ("string_type", "list_type") or where[:1] == ["q"] and len(where) > 1:
        return "q must be a string or a list of strings"
    if kind == "missing":
        return f"{'.'.join(where) or 'the body'} is missing" + (": give the text to translate as q"
                                                               if where == ["q"] else "")
    if kind == "extra_forbidden":
        return f"unknown field {'.'.join(where)}"
    return f"{'.'.join(where) or 'the body'}: {first.get('msg', 'invalid')}"


def _check_key(settings: Settings, request: Request, body_key: str | None) -> None:
    """403 unless the server has no key or the request carries it (api_key field, X-API-Key or Bearer)."""
    if settings.api_key is None:
        return
    given = body_key or request.headers.get("x-api-key") or ""
    auth = request.headers.get("authorization", "")
    if not given and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    if not hmac.compare_digest(given.encode("utf-8"), settings.api_key.encode("utf-8")):
        raise ServeError(403, "invalid or missing API key: send it as api_key, an X-API-Key header or "
                              "Authorization: Bearer KEY")


def _check_pair(settings: Settings, source: str, target: str | None) -> None:
    """400 when source or target names another language than the model's pair (where the pair is known)."""
    if settings.pair is None:
        return
    src, tgt = settings.pair
    if source not in ("auto", src):
        raise ServeError(400, f"source {source!r} is not this model's: it translates {src} -> {tgt}")
    if target is not None and target != tgt:
        raise ServeError(400, f"target {target!r} is not this model's: it translates {src} -> {tgt}")


def _limit_chars(count: int, settings: Settings) -> None:
    """413 over --max-chars."""
    if count > settings.max_chars:
        raise ServeError(413, f"the request has {count} characters; this server's limit (--max-chars) is "
                              f"{settings.max_chars}")


def _split(q: str | list[str], settings: Settings) -> tuple[list[str], Callable[[list[str]], Any]]:
    """The sentences of q (a text's lines, or a list's items' lines) and how to put translations back together.

    Empty q is 400; over --max-chars or --max-sentences is 413.
    """
    items = _items(q, settings)
    counts = [len(item.split("\n")) for item in items]
    sentences = [line for item in items for line in item.split("\n")]
    _limit_sentences(len(sentences), "lines", settings)

    def join(lines: list[str]) -> Any:
        out, start = [], 0
        for count in counts:
            out.append("\n".join(lines[start:start + count]))
            start += count
        return out[0] if isinstance(q, str) else out

    return sentences, join


def _split_html(q: str | list[str], settings: Settings) -> tuple[list[str], Callable[[list[str]], Any]]:
    """The text runs of q's HTML fragments (serving/html_text.py) and how to put the translated fragments back.

    The limits are those of text: --max-chars counts the fragments as sent, markup included, and
    --max-sentences the text runs that will be searched.
    """
    fragments = [split_html(item) for item in _items(q, settings)]
    runs = [text for fragment in fragments for text in fragment.texts]
    _limit_sentences(len(runs), "text runs between tags", settings)

    def join(translations: list[str]) -> Any:
        out, start = [], 0
        for fragment in fragments:
            out.append(fragment.rebuild(translations[start:start + len(fragment.texts)]))
            start += len(fragment.texts)
        return out[0] if isinstance(q, str) else out

    return runs, join


def _items(q: str | list[str], settings: Settings) -> list[str]:
    """q as a list of texts; 400 when there is nothing but whitespace, 413 over --max-chars."""
    items = [q] if isinstance(q, str) else list(q)
    if not items or not any(item.strip() for item in items):
        raise ServeError(400, "q is empty: give the text to translate")
    _limit_chars(sum(len(item) for item in items), settings)
    return items


def _limit_sentences(count: int, what: str, settings: Settings) -> None:
    """413 over --max-sentences; what says what a sentence is here (lines, text runs)."""
    if count > settings.max_sentences:
        raise ServeError(413, f"the request has {count} sentences ({what}); this server's limit "
                              f"(--max-sentences) is {settings.max_sentences}")


async def _translate(request: Request, batcher: Batcher, texts: list[str], options: dict[str, Any],
                     key: Any = None) -> list[Any]:
    """The batcher's results for texts; the job is dropped if the client goes away first (then 499)."""
    if not MODEL_TYPES[request.app.state.engine.kind].translator:
        raise ServeError(400, "this server has a language model: POST /generate {\"prompt\": ...} continues a text")
    cost = 1 if options.get("do_sample") else max(int(options.get("beam_size", 4)), 1)  # rows per sentence
    try:
        job = batcher.enqueue(texts, options, key, cost)
    except Overloaded as error:
        raise ServeError(503, str(error), headers={"Retry-After": str(error.retry_after)}) from None
    try:
        return await _unless_disconnected(request, job.future)
    except _Disconnected:
        batcher.cancel(job)
        raise ServeError(499, "the client closed the request") from None
    except ValueError as error:  # the search refused an option (e.g. top_k with beams)
        raise ServeError(400, str(error)) from None


class _Disconnected(Exception):
    """The client closed the connection while its request waited."""


async def _unless_disconnected(request: Request, work: asyncio.Future) -> Any:
    """The result of work, or _Disconnected as soon as the client is gone (work itself is left running)."""
    watcher = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if work.done():
        return work.result()
    raise _Disconnected


async def _disconnect(request: Request) -> None:
    """Return when the client closes the connection.

    The body has been read, so the server's next ASGI message is http.disconnect (as Starlette's
    StreamingResponse listens for it): one wait per request, where polling is_disconnected() woke the
    event loop 20 times a second for every request waiting.
    """
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _events(request: Request, pieces: Any) -> AsyncIterator[str]:
    """Server-sent events from a blocking iterator of text pieces (read in a thread); stops if the client goes."""
    loop = asyncio.get_running_loop()
    done = object()
    try:
        while True:
            piece = await loop.run_in_executor(None, next, pieces, done)
            if piece is done:
                break
            yield f"data: {json.dumps({'text': piece}, ensure_ascii=False)}\n\n"
            if await request.is_disconnected():
                return
        yield "data: [DONE]\n\n"
    except ValueError as error:
        yield f"data: {json.dumps({'error': str(error)})}\n\n"
    finally:
        pieces.close()


__all__ = ["Settings", "create_app"]
