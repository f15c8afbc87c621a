"""Serving a model over HTTP (`aiayn serve`): the routes (app), request batching (batching), the engines
(aiayn's decoding or CTranslate2 on an export) and the page. Needs the `serve` extra (FastAPI, uvicorn); the
modules that import them are imported by the command, not here."""

from __future__ import annotations

# the options of inference/options.py's table that `aiayn serve` takes as flags (the server's settings); a
# request sets the others (serving/options.py). Here, not there: the CLI reads it without the serve extra.
SERVER_FLAGS = ("precision", "workers")
MISSING_EXTRA = "`aiayn serve` needs FastAPI and uvicorn: pip install 'aiayn[serve]'"


def missing_extra() -> str | None:
    """The one-line error when FastAPI or uvicorn is not installed, else None."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        return MISSING_EXTRA
    return None
