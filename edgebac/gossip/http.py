"""Gossip over HTTP: `POST /gossip/v1` with a sealed body, answered with a sealed body.

Anything that does not open, is stale, replayed, too large or not a protocol message gets a 4xx
in the API's one JSON error shape, is counted, and changes nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from aiohttp import web

from edgebac.gossip.envelope import Envelope, EnvelopeError
from edgebac.gossip.protocol import Gossiper, ProtocolError, TransportError

logger = logging.getLogger(__name__)
PATH = "/gossip/v1"
CONTENT_TYPE = "application/x-edgebac-sealed"


def _refuse(gossiper: Gossiper, status: int, code: str, message: str) -> web.Response:
    gossiper.stats[f"refused_body_{code}"] += 1
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def gossip_handler(gossiper: Gossiper, envelope: Envelope, max_bytes: int) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > max_bytes:
            return _refuse(gossiper, 413, "too_large", "gossip body is too large")
        try:
            body = await request.content.read(max_bytes + 1)
            opened = envelope.open(body)
            reply = await gossiper.handle(opened.sender, opened.message)
        except EnvelopeError as exc:
            return _refuse(gossiper, exc.status, exc.reason, str(exc))
        except ProtocolError as exc:
            return _refuse(gossiper, 400, "bad_message", str(exc))
        return web.Response(body=envelope.seal(reply), content_type=CONTENT_TYPE)

    return handle


def add_gossip_routes(app: web.Application, gossiper: Gossiper, envelope: Envelope) -> None:
    max_bytes = gossiper.config.max_body_bytes
    app.router.add_post(PATH, gossip_handler(gossiper, envelope, max_bytes))


class HttpTransport:
    """Requests to peers over one pooled client session (keep-alive keeps pushes fast)."""

    def __init__(
        self, envelope: Envelope, timeout_s: float, max_bytes: int, local_host: str | None = None
    ) -> None:
        self._envelope = envelope
        # Speak from the address we listen on: peers (and firewalls) see who we really are.
        self._local_addr = (local_host, 0) if local_host else None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_bytes = max_bytes
        self._session: aiohttp.ClientSession | None = None

    async def request(self, address: str, message: dict[str, Any]) -> tuple[bytes, Any]:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=64, limit_per_host=4, use_dns_cache=False, local_addr=self._local_addr
            )
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        body = self._envelope.seal(message)
        try:
            async with self._session.post(
                f"http://{address}{PATH}", data=body, headers={"Content-Type": CONTENT_TYPE}
            ) as response:
                data = await response.content.read(self._max_bytes + 1)
                if response.status != 200:
                    raise TransportError(f"{address} answered {response.status}: {data[:200]!r}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransportError(f"{address}: {exc or type(exc).__name__}") from None
        try:
            opened = self._envelope.open(data)
        except EnvelopeError as exc:
            raise TransportError(f"{address}: reply refused: {exc}") from None
        return opened.sender, opened.message

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
