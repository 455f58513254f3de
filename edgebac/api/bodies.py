"""Client input, parsed in one place: JSON bodies and query parameters.

Whatever a client sends may end up in a signed event, and the event encoder refuses (by raising)
what msgpack cannot say once: NaN and infinities, integers outside 64 bits, strings that are not
Unicode (lone UTF-16 surrogates). So every JSON body is read by `read_json` and nothing else: it
refuses those values, nesting deeper than any request needs, duplicate keys and bodies over
the limit, each with a specific 4xx naming what and where, before any handler sees the data.
Query integers are ASCII digits in a stated range (`int(" ١٢")` would take Arabic digits).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from typing import Any

from aiohttp import web

from edgebac.errors import BadRequest, EdgebacError

MAX_BODY_BYTES = 4 << 20  # the app's client_max_size: a job spec with a 512 KiB inline module fits
MAX_DEPTH = 32  # a job spec nests 5 deep; the JSON parser itself gives up near 1,000
INT_MIN, INT_MAX = -(1 << 63), (1 << 64) - 1  # what msgpack (and so an event) can hold
MAX_TEXT_PARAM = 1000
THREAD_ABOVE_BYTES = 256 << 10


class BadJson(BadRequest):
    """A body that is not JSON the node can take; the message says what and where."""


class TooLarge(EdgebacError):
    code = "too_large"
    http_status = 413


class _Refused(Exception):
    """A value the JSON parser met that no event can hold (raised from its hooks)."""


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not a number JSON allows (nor can an event hold it)")


def _int(text: str) -> int:
    if len(text) <= 18:  # nearly every integer: fits whatever its sign
        return int(text)
    # Checked before int(): 10**5000 would cost time, and Python refuses 4,300+ digits anyway.
    if len(text.lstrip("-")) > 20 or not INT_MIN <= (value := int(text)) <= INT_MAX:
        shown = text if len(text) <= 40 else f"{text[:20]}... ({len(text)} digits)"
        raise _Refused(f"integer {shown} does not fit 64 bits")
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"{text[:40]} is out of range for a 64-bit float")
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):  # json.loads would keep the last: refuse the ambiguity
        twice = next(key for key, n in Counter(key for key, _ in pairs).items() if n > 1)
        raise _Refused(f"key {twice!r} appears twice in one object")
    return value


def _check(value: Any, depth: int) -> None:
    """Refuse lone surrogates (in keys too) and nesting past MAX_DEPTH; raises _Where."""
    if type(value) is str:
        _check_text(value)
        return
    if type(value) is not dict and type(value) is not list:
        return
    if depth >= MAX_DEPTH:
        raise _Where(f"nested deeper than {MAX_DEPTH} levels")
    if type(value) is dict:
        if _flat_ok(list(value)) and _flat_ok(list(value.values())):
            return
        items: Any = value.items()
    else:
        if _flat_ok(value):
            return
        items = enumerate(value)
    for key, item in items:
        try:
            if type(key) is str:
                _check_text(key)
            _check(item, depth + 1)
        except _Where as exc:
            exc.path.insert(0, f".{key}" if type(key) is str else f"[{key}]")
            raise


def _check_text(text: str) -> None:
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError as exc:
            bad = text[exc.start]
            raise _Where(f"lone UTF-16 surrogate \\u{ord(bad):04x} is not text") from None


_LEAVES = frozenset({int, float, bool, type(None)})


def _flat_ok(items: list[Any]) -> bool:
    """Whether these are all numbers, booleans, nulls or ASCII text (C loops, no call per item:
    a 4 MiB body of a million numbers is checked in milliseconds)."""
    kinds = set(map(type, items))
    if kinds <= _LEAVES:
        return True
    return kinds == {str} and "".join(items).isascii()


class _Where(Exception):
    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path: list[str] = []


def check_value(value: Any, what: str) -> None:
    """Refuse what `parse_json` refuses in data that came another way (a parsed spec)."""
    try:
        _check(value, 0)
    except _Where as exc:
        where = "".join(exc.path).lstrip(".") or "the top"
        raise BadJson(f"{what}: at {where}: {exc.problem}") from None


def parse_json(data: bytes, what: str = "the body") -> Any:
    """The JSON value in `data`, or BadJson saying what is wrong with it, and where."""
    if not data.strip():
        raise BadJson(f"{what} is empty: send JSON")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadJson(f"{what} is not UTF-8 (byte {exc.start} is {data[exc.start]:#04x})") from None
    try:
        value = json.loads(
            text,
            parse_constant=_constant,
            parse_int=_int,
            parse_float=_float,
            object_pairs_hook=_object,
        )
    except _Refused as exc:
        raise BadJson(f"{what}: {exc}") from None
    except RecursionError:
        raise BadJson(f"{what}: nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise BadJson(
            f"{what} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    check_value(value, what)
    return value


async def read_json(request: web.Request, what: str, max_bytes: int = MAX_BODY_BYTES) -> Any:
    """The request's JSON body, read whole (at most `max_bytes`) and parsed by `parse_json`."""
    too_large = TooLarge(f"{what} is larger than {max_bytes} bytes, the most this route accepts")
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large
    try:
        data = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None
    if len(data) > max_bytes:
        raise too_large
    if len(data) > THREAD_ABOVE_BYTES:  # up to a second of CPU: the loop keeps running meanwhile
        return await asyncio.to_thread(parse_json, data, what)
    return parse_json(data, what)


def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter from `low` to `high` (ASCII digits only)."""
    text = request.query.get(name)
    if text is None:
        return default
    digits = text.removeprefix("-") if low < 0 else text
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 20:
        raise BadRequest(f"query parameter {name!r} must be an integer from {low} to {high}")
    value = int(text)
    if not low <= value <= high:
        raise BadRequest(f"query parameter {name!r} must be an integer from {low} to {high}")
    return value


def text_param(
    request: web.Request, name: str, default: str, max_chars: int = MAX_TEXT_PARAM
) -> str:
    """A free-text query parameter bound for an event: Unicode text of a bounded length."""
    text = request.query.get(name, default)
    if len(text) > max_chars:
        raise BadRequest(f"query parameter {name!r} is longer than {max_chars} characters")
    check_value(text, f"query parameter {name!r}")
    return text
