"""Request fields -> decoding keywords: the one place serve maps what a client asks for to translate()'s options.

The fields come from inference/options.py's table: every option `aiayn serve` has there (`for_command("serve")`)
is a field of POST /v1/translate with the table's type, default, bounds and help, except SERVER_FLAGS, which
the server is started with (--precision, --workers; cli/serve.py makes them from the same table). So a decoding
option declared for serve reaches the API without editing this package. A field keeps the HTTP name it has
always had where that differs from the library's keyword (FIELD_NAMES, docs/serving.md); a new option is a
field under its keyword. LIMITS is a server's cap on what one request may ask for, not a property of the option.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..inference.options import OPTIONS, Option, for_command, keywords, validate
from . import SERVER_FLAGS

FIELD_NAMES = {"beam_size": "beam", "do_sample": "sample", "return_scores": "scores"}  # keyword -> HTTP field
LIMITS = {"beam_size": 64, "n_best": 64}  # rows per sentence one request may ask for
SAMPLING = ("temperature", "top_k", "top_p", "seed")  # POST /generate's options besides sample


def request_options() -> list[Option]:
    """The decoding options a request may set, in the table's order."""
    return [o for o in for_command("serve") if o.name not in SERVER_FLAGS]


def field_name(option: Option) -> str:
    """An option's name in a request."""
    return FIELD_NAMES.get(option.name, option.name)


def _bounds(bounds: str | None) -> dict[str, Any]:
    """The table's bounds (">= 1", "> 0", "(0, 1]", "[a, b]") as pydantic's ge / gt / le / lt."""
    if not bounds:
        return {}
    if bounds[0] in "[(":
        low, high = (_number(x) for x in bounds[1:-1].split(","))
        return {"ge" if bounds[0] == "[" else "gt": low, "le" if bounds[-1] == "]" else "lt": high}
    op, number = bounds.split()
    return {"ge" if op == ">=" else "gt": _number(number)}


def _number(text: str) -> int | float:
    """A bound's number: an int where it is one."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def field(option: Option, default: Any = ...) -> tuple[Any, Any]:
    """A pydantic field for an option: its type (None allowed where the table allows it), default, bounds, help."""
    kind: Any = Literal[option.choices] if option.choices is not None else option.kind
    limits = _bounds(option.bounds)
    if option.name in LIMITS:
        limits["le"] = LIMITS[option.name]
    default = option.default_for("serve") if default is ... else default
    return (kind | None if option.none else kind), Field(default, description=option.help_for("serve"), **limits)


def _model(name: str, doc: str, options: list[Option]) -> type[BaseModel]:
    """A request model whose fields are these options under their HTTP names."""
    return create_model(name, __config__=ConfigDict(extra="forbid"), __doc__=doc,
                        **{field_name(o): field(o) for o in options})


Decoding = _model("Decoding", "The decoding fields of a native request (each optional; defaults from "
                              "inference/options.py, as `aiayn translate`'s).", request_options())
Sampling = _model("Sampling", "The sampling fields of POST /generate (defaults from inference/options.py).",
                  [OPTIONS[name] for name in SAMPLING])


class OptionError(ValueError):
    """Fields that do not go together, or a value the table refuses; the message names the fields."""


def decoding_keywords(fields: BaseModel) -> dict[str, Any]:
    """translate()'s keyword options for the request's decoding fields (the table's keywords() for serve)."""
    values = {o.name: getattr(fields, field_name(o)) for o in request_options()}
    beam, n_best = 1 if values.get("greedy") else values["beam_size"], values["n_best"]
    if n_best > beam:
        raise OptionError(f"n_best ({n_best}) must be at most beam ({beam})")
    if values["do_sample"] and n_best > 1:
        raise OptionError("n_best > 1 needs beam search: leave out sample")
    try:
        checked = validate(values, "serve")
    except ValueError as error:  # the message names the keyword: say the field instead
        message = str(error)
        for keyword, name in FIELD_NAMES.items():
            message = message.replace(keyword, name)
        raise OptionError(message) from None
    options = keywords(checked, "serve")
    if n_best > 1:
        options["return_scores"] = True
    return options


def sampling_keywords(fields: BaseModel, sample: bool) -> dict[str, Any]:
    """A DecoderLM's keyword options for POST /generate: the sampling fields when sampling, else greedy."""
    if not sample:
        return {}
    values = {name: getattr(fields, name) for name in SAMPLING}
    return {"do_sample": True, **{name: value for name, value in values.items() if value is not None}}
