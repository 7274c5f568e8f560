"""Checks every HTTP request body passes before a server acts on it, shared by the feature
server and the model server: the body's size, UTF-8, JSON (no NaN or Infinity literals),
nesting depth, and each value against its declared column type. A request that fails gets a
4xx naming the field, so no input reaches code that would answer 500.

Values as the declared types accept them (``None`` is checked by the caller):

- ``bool``: ``true`` or ``false`` only, never 0/1;
- ``int8`` .. ``int64``: integers within the type's range;
- ``float32`` / ``float64``: finite numbers within the type's range;
- ``string``: text of at most ``max_string`` characters, valid UTF-8 (no lone surrogates);
- ``date`` / ``timestamp`` / ``timestamp_ntz``: ISO text.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

# (status, message, kind) -> the exception the server raises (each server has its own).
Fail = Callable[[int, str, str], Exception]

_INT_RANGES = {f"int{b}": (-(2 ** (b - 1)), 2 ** (b - 1) - 1) for b in (8, 16, 32, 64)}
_FLOAT_MAX = {"float32": 3.4028234663852886e38, "float64": 1.7976931348623157e308}
_TIME_TYPES = ("date", "timestamp", "timestamp_ntz")
_MAX_TIME_TEXT = 64


@dataclass(frozen=True)
class Limits:
    """What one request may hold; over a limit answers 413 (size, counts) or 422 (text)."""

    max_body_bytes: int = 1 << 20
    max_items: int = 1000  # entries in any list or object of the request
    max_string: int = 1024  # characters of any string value
    max_depth: int = 8  # nesting of lists and objects


def raise_(fail: Fail, status: int, message: str, kind: str) -> NoReturn:
    """Raise ``fail``'s exception (a helper so that checks read as one line)."""
    raise fail(status, message, kind)


async def read_body(request: Any, limits: Limits, fail: Fail) -> bytes:
    """The request's body, refused with 413 as soon as it is over ``max_body_bytes``: by
    its Content-Length before reading, and by the bytes read (a wrong or absent length)."""
    limit = limits.max_body_bytes
    length = request.headers.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise_(fail, 400, "Content-Length is not a number.", "bad_json")
        if int(length) > limit:
            raise_(fail, 413, f"The body is {int(length)} bytes, over the limit of {limit}.",
                   "too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise_(fail, 413, f"The body is over the limit of {limit} bytes.", "too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON; send null for a missing value")


# Built once: json.loads with a keyword argument builds a decoder per call.
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def parse_json(raw: bytes, limits: Limits, fail: Fail) -> Any:
    """The body as JSON: 400 ``bad_json`` for bytes that are not UTF-8, not JSON, carry NaN
    or Infinity, or nest deeper than ``max_depth`` (deep enough to exhaust the parser's
    recursion is the same 400)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise_(fail, 400, f"The body is not UTF-8 (bad byte at offset {exc.start}).", "bad_json")
    try:
        body = _DECODER.decode(text)
    except RecursionError:
        raise_(fail, 400, f"The body nests deeper than {limits.max_depth} levels.", "bad_json")
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, an integer of > 4300 digits
        why = "a number has too many digits" if "digits" in str(exc) else str(exc)
        raise_(fail, 400, f"The body is not JSON: {why}.", "bad_json")
    # Depth can be no more than the number of brackets: counted in C, walked only if needed.
    if raw.count(b"[") + raw.count(b"{") > limits.max_depth:
        check_depth(body, limits.max_depth, fail)
    return body


def check_depth(body: Any, max_depth: int, fail: Fail) -> None:
    """400 if lists and objects in ``body`` nest deeper than ``max_depth``."""
    stack = [(body, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise_(fail, 400, f"The body nests deeper than {max_depth} levels.", "bad_json")
        for child in (node.values() if type(node) is dict else node):
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1))


def show(value: Any, limit: int = 40) -> str:
    """``value`` for an error message: ASCII, cut to about ``limit`` characters, so that a
    huge or hostile value is never echoed whole."""
    if isinstance(value, (dict, list)):
        return type(value).__name__
    if isinstance(value, str) and len(value) > limit:
        return ascii(value[:limit]) + f"... ({len(value)} characters)"
    text = ascii(value)
    return text if len(text) <= limit else text[:limit] + "..."


def label(name: Any) -> str:
    """A field name for an error message: as it is when it is short printable text,
    else :func:`show`'s cut-down form."""
    if type(name) is str and len(name) <= 100 and name.isprintable() and check_string(name, 100):
        return name
    return show(name)


def safe_text(text: str) -> str:
    """``text`` that encodes as UTF-8 (lone surrogates escaped): messages built from
    request values go into JSON responses and logs."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def check_string(value: Any, max_string: int) -> bool:
    """Whether ``value`` is a str of at most ``max_string`` characters that is UTF-8."""
    if type(value) is not str or len(value) > max_string:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \\ud800 escape
        return False
    return True


def value_error(value: Any, type_name: str, max_string: int) -> str | None:
    """None if ``value`` (not None) is a valid ``type_name`` value, else what it must be."""
    kind = type(value)
    if type_name == "string":
        return None if check_string(value, max_string) else \
            f"text of at most {max_string} characters"
    if type_name in _INT_RANGES:
        lo, hi = _INT_RANGES[type_name]
        return None if kind is int and lo <= value <= hi else \
            f"an integer from {lo} to {hi}"
    if type_name in _FLOAT_MAX:
        if kind is float:
            ok = math.isfinite(value) and abs(value) <= _FLOAT_MAX[type_name]
        else:  # ints compared as ints: float() of a huge one overflows
            ok = kind is int and abs(value) <= _FLOAT_MAX[type_name]
        return None if ok else f"a finite number (at most {_FLOAT_MAX[type_name]:.4g} in size)"
    if type_name == "bool":
        return None if kind is bool else "true or false"
    if type_name in _TIME_TYPES:
        return None if parse_time(value) is not None else "an ISO date or time text"
    # A type without a rule: any JSON scalar that is safe to store and echo.
    if kind in (int, float, bool):
        return value_error(value, "float64" if kind is float else "int64", max_string) \
            if kind is not bool else None
    return None if check_string(value, max_string) else \
        f"a number, true/false or text of at most {max_string} characters"


def parse_time(value: Any) -> dt.datetime | None:
    """An ISO time text (or epoch seconds) as an aware datetime (UTC if it has no zone);
    None if it is not one."""
    if type(value) in (int, float):
        try:
            return dt.datetime.fromtimestamp(value, dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if type(value) is not str or len(value) > _MAX_TIME_TEXT:
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
