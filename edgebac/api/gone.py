"""A client that goes away mid-request (Ctrl-C on `job logs -f`, a proxy hanging up) is not an
error: the node counts it and logs one line at debug level, never a traceback.

A handler meets the client's absence as a ConnectionError when it writes; the middleware then
answers with `GoneResponse`, which aiohttp's attempt to send takes for the premature
disconnect it is and drops quietly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web

log = logging.getLogger(__name__)


@dataclass
class ApiStats:
    clients_gone: int = 0  # requests whose client left before the answer was whole


STATS_KEY: web.AppKey[ApiStats] = web.AppKey("api_stats", ApiStats)


def client_left(request: web.Request) -> bool:
    """Whether the connection to the client is closed or closing."""
    return request.transport is None or request.transport.is_closing()


class GoneResponse(web.StreamResponse):
    """The answer to a client that left: sending it fails the way a disconnect does."""

    async def prepare(self, request: web.BaseRequest) -> None:
        raise ConnectionResetError("the client went away")

    async def write_eof(self, data: bytes = b"") -> None:
        return None


def count_gone(request: web.Request, exc: BaseException | None) -> GoneResponse:
    request.app[STATS_KEY].clients_gone += 1
    log.debug("client went away during %s %s: %s", request.method, request.path_qs, exc)
    return GoneResponse()
