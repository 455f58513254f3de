"""Gossip over HTTP: `POST /gossip/v1` with a sealed body, answered with a sealed body.

Anything that does not open, is stale, replayed, too large or not a protocol message gets a 4xx
in the API's one JSON error shape, is counted, and changes nothing. Bodies, both ways, are read
whole by `bodies.read_body` (a catch-up page is megabytes: far more than one socket buffer).

Every body we send carries the header `X-Edgebac-Inflates: 1` (we read compressed bodies,
envelope format 2); we compress a request only to a peer whose reply said so, and a reply only
when the request was compressed or said so. The header is outside the seal: one who strips it
only makes bodies larger, one who adds it could only break a link it can cut anyway. Bytes on
the wire, both ways, are counted in the gossip stats (`wire_bytes_*`; `wire_bytes_push`: pushes
we sent and their acks), and what we send also by message type and part (`tally`).
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections import Counter
from typing import Any

import aiohttp
import msgpack
from aiohttp import web

from edgebac.gossip.bodies import BodyTooLarge, read_body
from edgebac.gossip.envelope import Envelope, EnvelopeError
from edgebac.gossip.protocol import Gossiper, ProtocolError, TransportError

logger = logging.getLogger(__name__)
PATH = "/gossip/v1"
CONTENT_TYPE = "application/x-edgebac-sealed"
MAX_KNOWN = 4096  # addresses remembered as reading compressed bodies (a view's worth)


INFLATES = "X-Edgebac-Inflates"
SEAL_BYTES = 40  # nonce and MAC: what sealing adds to every body


def tally(stats: Counter[str], message: Any, sealed: int, plain: int) -> None:
    """Where the bytes of one body we sent went, by its message type `t`: `sent_<t>_bodies`,
    `_bytes` (sealed, on the wire), and of those, `_events` (the events' bytes as carried:
    whole, or the deflated part of a delta, gossip/deltas), `_rumours`
    (the peer list, packed), `_seal` (nonce and MAC), `_zlib` (what compression took off,
    negative); the rest is framing: the envelope's sender and time, the message's keys, `to`
    lists, vectors, sums and masks. bench/gossip_net.py prints it."""
    if not isinstance(message, dict):
        return
    kind = f"sent_{message.get('t')}"
    events = message.get("events")
    peers = message.get("peers")
    stats[f"{kind}_bodies"] += 1
    stats[f"{kind}_bytes"] += sealed
    stats[f"{kind}_seal"] += SEAL_BYTES
    stats[f"{kind}_zlib"] += sealed - SEAL_BYTES - plain
    items = message.get("deltas")
    if isinstance(events, list) and isinstance(items, list):
        events = events + [i if isinstance(i, bytes) else i[2] for i in items]
    if isinstance(events, list):
        stats[f"{kind}_events"] += sum(len(raw) for raw in events if isinstance(raw, bytes))
    if peers:
        stats[f"{kind}_rumours"] += len(msgpack.packb(peers, use_bin_type=True))


def _refuse(gossiper: Gossiper, status: int, code: str, message: str) -> web.Response:
    gossiper.stats[f"refused_body_{code}"] += 1
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def gossip_handler(gossiper: Gossiper, envelope: Envelope, max_bytes: int) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > max_bytes:
            return _refuse(gossiper, 413, "too_large", "gossip body is too large")
        try:
            body = await read_body(request.content, max_bytes)
        except BodyTooLarge:
            return _refuse(gossiper, 413, "too_large", "gossip body is too large")
        except ConnectionError:  # the sender went away mid-body; nobody reads the answer
            return _refuse(gossiper, 400, "cut", "gossip body was cut off")
        gossiper.stats["wire_bytes_received"] += len(body)
        try:
            opened = envelope.open(body)
            reply = await gossiper.handle(opened.sender, opened.message)
        except EnvelopeError as exc:
            gossiper.refused_body(request.remote or "?", exc.reason, str(exc))
            return _refuse(gossiper, exc.status, exc.reason, str(exc))
        except ProtocolError as exc:
            return _refuse(gossiper, 400, "bad_message", str(exc))
        compress = opened.compressed or request.headers.get(INFLATES) == "1"
        sealed, plain = envelope.seal_sized(reply, compress)
        gossiper.stats["wire_bytes_sent"] += len(sealed)
        tally(gossiper.stats, reply, len(sealed), plain)
        return web.Response(body=sealed, content_type=CONTENT_TYPE, headers={INFLATES: "1"})

    return handle


def add_gossip_routes(app: web.Application, gossiper: Gossiper, envelope: Envelope) -> None:
    max_bytes = gossiper.config.max_body_bytes
    app.router.add_post(PATH, gossip_handler(gossiper, envelope, max_bytes))


def _refusal(address: str, status: int, data: bytes) -> TransportError:
    """The peer's refusal, with its error code when it answered in the one error shape."""
    try:
        error = json.loads(data)["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return TransportError(f"{address} answered {status}: {data[:200]!r}")
    return TransportError(
        f"{address} answered {status} {code}: {message}", code=code, detail=message
    )


def _why(exc: BaseException) -> str:
    """The OS's words for a failed connection ("Connection refused"), not aiohttp's wrapper."""
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "no answer in time"
    os_error = getattr(exc, "os_error", exc)
    if isinstance(os_error, OSError) and os_error.errno and os_error.errno > 0:
        return os.strerror(os_error.errno)
    if isinstance(os_error, OSError) and os_error.strerror:
        return os_error.strerror
    return str(exc) or type(exc).__name__


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
        self._inflating: set[str] = set()  # addresses whose replies said they read zlib bodies
        self.stats: Counter[str] = Counter()  # the gossiper's, once the service wires it

    async def request(self, address: str, message: dict[str, Any]) -> tuple[bytes, Any]:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=64, limit_per_host=4, use_dns_cache=False, local_addr=self._local_addr
            )
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        body, plain = self._envelope.seal_sized(message, address in self._inflating)
        self.stats["wire_bytes_sent"] += len(body)
        tally(self.stats, message, len(body), plain)
        try:
            async with self._session.post(
                f"http://{address}{PATH}",
                data=io.BytesIO(body),  # sent in chunks: a page of MB must not stall the loop
                headers={"Content-Type": CONTENT_TYPE, INFLATES: "1"},
            ) as response:
                data = await read_body(response.content, self._max_bytes)
                inflating = response.headers.get(INFLATES) == "1"
                if response.status != 200:
                    raise _refusal(address, response.status, data)
        except (aiohttp.ClientConnectionError, TimeoutError, OSError) as exc:
            raise TransportError(f"{address} unreachable: {_why(exc)}", unreachable=True) from None
        except (aiohttp.ClientError, BodyTooLarge, ValueError) as exc:
            raise TransportError(f"{address}: {exc or type(exc).__name__}") from None
        self.stats["wire_bytes_received"] += len(data)
        if message.get("t") == "push":  # what carrying events costs, apart from anti-entropy
            self.stats["wire_bytes_push"] += len(body) + len(data)
        try:
            opened = self._envelope.open(data)
        except EnvelopeError as exc:
            raise TransportError(f"{address}: reply refused: {exc}") from None
        if inflating:
            if len(self._inflating) >= MAX_KNOWN:  # addresses come and go: stay bounded
                self._inflating.clear()
            self._inflating.add(address)
        else:
            self._inflating.discard(address)  # downgraded since: back to format 1
        return opened.sender, opened.message

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
