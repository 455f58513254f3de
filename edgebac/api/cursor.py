"""Keyset paging tokens: where the next page of a job listing starts, as an opaque string.

A token is the sort key of the last job a page showed (`scheduler.ended.sort_key`: its
creation hlc and id, or its id), with the order it was taken in; handed back, the listing
seeks to it by index instead of walking an OFFSET, so a page deep in a long history costs what
the first one does. Not signed: a forged token only names another place to start from, and the
caller's owner filter applies whatever it says.
"""

from __future__ import annotations

import base64
from typing import Any

import msgpack

from edgebac.errors import BadRequest
from edgebac.scheduler.ended import CREATED, ID

_VERSION = 1
_MAX_ID = 200  # characters of a job id in a token


def cursor_token(order: str, newest_first: bool, key: tuple[Any, ...]) -> str:
    packed = msgpack.packb([_VERSION, order, newest_first, *key], use_bin_type=True)
    return base64.urlsafe_b64encode(packed).decode().rstrip("=")


def cursor_key(token: str, order: str, newest_first: bool, name: str) -> tuple[Any, ...]:
    """The sort key `token` names, for a listing in `order` (BadRequest naming the parameter
    `name` if it is not a token of such a listing)."""
    try:
        values = msgpack.unpackb(base64.urlsafe_b64decode(token.encode() + b"=="), raw=False)
    except (ValueError, TypeError, msgpack.UnpackException):
        values = None
    if not isinstance(values, list) or values[:1] != [_VERSION] or len(values) < 4:
        raise BadRequest(f"{name}: not a token this node gave")
    _, took_order, took_desc, *key = values
    if (took_order, took_desc) != (order, newest_first):
        raise BadRequest(f"{name}: a token of a listing in another order")
    if _well_formed(order, key):
        return tuple(key)
    raise BadRequest(f"{name}: not a token this node gave")


def _well_formed(order: str, key: list[Any]) -> bool:
    *hlc, job_id = key
    if not isinstance(job_id, str) or len(job_id) > _MAX_ID:
        return False
    if order == ID:
        return not hlc
    return order == CREATED and len(hlc) == 1 and type(hlc[0]) is int and 0 <= hlc[0] < 1 << 64
