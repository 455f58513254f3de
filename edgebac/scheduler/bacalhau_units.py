"""Bacalhau's small formats, read as its Go code reads them: keys (encoding/json), sizes
(go-humanize), CPU amounts (k8s quantities), `data:` URLs and result names. Pure functions.
"""

from __future__ import annotations

import base64
import binascii
import re
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import unquote_to_bytes

from edgebac.scheduler.fieldcheck import Checker, join
from edgebac.scheduler.ids import is_file_name

# go-humanize's ParseBytes table: the unit is matched lower-cased, so `512Mb`, `512MB` and
# `512mb` are all 512 * 10^6 bytes; an `i` makes it binary (`1GiB`, `1gi`); no unit is bytes.
_HUMANIZE_UNITS = {"": 1, "b": 1}
for _power, _letter in enumerate("kmgtpe", start=1):
    _HUMANIZE_UNITS[_letter] = _HUMANIZE_UNITS[_letter + "b"] = 1000**_power
    _HUMANIZE_UNITS[_letter + "i"] = _HUMANIZE_UNITS[_letter + "ib"] = 1024**_power
_HUMANIZE_RE = re.compile(r"^([0-9][0-9.,]*)\s*([A-Za-z]*)$")
_CPU_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?|\.[0-9]+)(m?)$")
_DATA_URL_RE = re.compile(r"^data:([^,]*?),(.*)$", re.DOTALL)
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
NOT_YET = "is not supported by edgebac yet"
MAX_AMOUNT = 1 << 63  # what an event's msgpack integer (and Go's int64/uint64) can hold


def normalized_amount(text: str) -> str:
    """As Bacalhau's ResourcesConfig.Normalize: lower case, no spaces or newlines."""
    return text.lower().replace(" ", "").replace("\n", "")


def parse_humanize_bytes(text: str) -> int | None:
    """Bytes in a go-humanize size (`512Mb`, `1Gb`, `100mb`, `1GiB`, `1,000kb`), or None."""
    match = _HUMANIZE_RE.match(text.strip())
    if match is None:
        return None
    number, unit = match.group(1).replace(",", ""), match.group(2).lower()
    scale = _HUMANIZE_UNITS.get(unit)
    if scale is None:
        return None
    try:
        size = int(Decimal(number) * scale)
    except InvalidOperation:
        return None
    return size if size < MAX_AMOUNT else None  # as go-humanize: "too large"


def parse_k8s_cpu(text: str) -> int | None:
    """Millicores in a k8s CPU amount (`500m`, `0.25`, `2`), or None."""
    match = _CPU_RE.match(normalized_amount(text))
    if match is None:
        return None
    number = Decimal(match.group(1))
    millis = number if match.group(2) == "m" else number * 1000
    if millis != millis.to_integral_value() or millis >= MAX_AMOUNT:
        return None
    return int(millis)


def data_url(text: str) -> tuple[str, bytes] | None:
    """(media type, content) of a `data:` URL (RFC 2397, base64 or percent-encoded), or None.

    Whitespace inside base64 data is ignored, as Go's decoder does: YAML block scalars wrap
    long inline modules over many lines."""
    match = _DATA_URL_RE.match(text.strip())
    if match is None:
        return None
    params, payload = match.group(1).split(";"), match.group(2)
    media = params[0].strip().lower() or "text/plain"
    if params[-1].strip().lower() == "base64":
        try:
            return media, base64.b64decode("".join(payload.split()), validate=True)
        except (binascii.Error, ValueError):
            return None
    return media, unquote_to_bytes(payload)


def result_name(name: str) -> str:
    """A Bacalhau ResultPath Name (`/outputs`, `my results`) as the folder its results get:
    Bacalhau joins it to the results folder, so `/outputs` is `outputs`; characters a file
    name cannot hold become `_`."""
    cleaned = _NAME_CHARS.sub("_", name.strip().strip("/")).lstrip(".")
    cleaned = cleaned[:128] or "output"
    return cleaned if is_file_name(cleaned) else "output"


def fold(c: Checker, value: Any, path: str, fields: tuple[str, ...]) -> dict[str, Any]:
    """`value`'s keys as the Go struct with `fields` decodes them: exact or case-insensitive
    match, the later spelling wins, JSON null is absent; an unknown key is a problem."""
    if not isinstance(value, dict):
        c.add(path or "Job", f"{_short(value)} is not a map")
        return {}
    by_lower = {name.lower(): name for name in fields}
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = key if key in fields else by_lower.get(str(key).lower())
        if name is None:
            c.add(join(path, str(key)), "unknown field")
        elif item is not None:
            out[name] = item
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def go_int(c: Checker, d: dict[str, Any], key: str, path: str, minimum: int, default: int) -> int:
    """`d[key]` as Go decodes an int64 field: an integer from `minimum` up to 2^63 - 1."""
    value = c.integer(d, key, path, minimum, default)
    if value >= MAX_AMOUNT:
        c.add(join(path, key), f"{value} is more than an int64 holds")
        return default
    return value
