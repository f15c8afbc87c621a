"""The library's log lines go through the standard `logging` module, to the logger "aiayn" and its children.

An application silences them with `logging.getLogger("aiayn").setLevel(logging.WARNING)`, or redirects them by
configuring logging (a handler on the root logger, e.g. `logging.basicConfig`): they then reach its handlers in
its format. Until it does, the console handler installed here prints each message as a plain line on stderr,
as the command line does always (`aiayn` calls `print_always()`).
"""

from __future__ import annotations

import logging
import sys

LOGGER_NAME = "aiayn"


class ConsoleHandler(logging.Handler):
    """Each message as a plain line on the current sys.stderr; quiet while the root logger has handlers of its own
    (the application's logging prints the line then) unless `always`."""

    def __init__(self) -> None:
        """Quiet while the application configures logging; print_always() makes it print regardless."""
        super().__init__()
        self.always = False

    def emit(self, record: logging.LogRecord) -> None:
        """Print the message (sys.stderr is looked up each time, so a replaced stream is followed)."""
        if not self.always and logging.getLogger().handlers:
            return
        try:
            print(self.format(record), file=sys.stderr, flush=True)
        except Exception:  # noqa: BLE001 - logging's own contract: a failing handler reports, never raises
            self.handleError(record)


def console_handler() -> ConsoleHandler:
    """The console handler of the "aiayn" logger, installed (with level INFO on that logger) on first use."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in logger.handlers:
        if isinstance(handler, ConsoleHandler):
            return handler
    handler = ConsoleHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:  # progress lines are INFO; an application's own level stays
        logger.setLevel(logging.INFO)
    return handler


def print_always() -> None:
    """The command line's setting: every message of the "aiayn" logger printed on stderr, as plain lines."""
    console_handler().always = True


def get_logger(name: str) -> logging.Logger:
    """The logger "aiayn.<name>" (the console handler installed on "aiayn" first)."""
    console_handler()
    return logging.getLogger(f"{LOGGER_NAME}.{name}")
