"""Read a whole HTTP body, up to a limit: the one way gossip and content fetches read bodies.

aiohttp's `StreamReader.read(n)` returns what is buffered *now*, not n bytes: a body larger
than a socket buffer comes back cut off. Bodies are read here, chunk by chunk, until the end
of the stream, and refused as soon as they pass the limit (so a peer cannot make us buffer
more than we would accept). `batches` cuts what we send so that it fits the peer's limit.
"""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp


class BodyTooLarge(ValueError):
    """The body passed the limit; what was read of it is dropped."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body is larger than {limit} bytes")
        self.limit = limit


async def read_body(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """Every byte of `stream` until its end; BodyTooLarge past `limit` bytes.

    A connection lost before the end raises what aiohttp raises (a ClientPayloadError on a
    response, a ConnectionResetError on a request), never a short body.
    """
    body = bytearray()
    while chunk := await stream.readany():
        if len(body) + len(chunk) > limit:
            raise BodyTooLarge(limit)
        body += chunk
    return bytes(body)


def batches(raws: Sequence[bytes], max_events: int, max_bytes: int) -> list[list[bytes]]:
    """`raws` in order, cut as a sync page is cut (so each batch fits a body): at most
    `max_events` a batch and `max_bytes` of events, except that an event larger than that
    makes a batch alone. A burst of big local events is pushed as several bodies, not one
    that the peer must refuse."""
    out: list[list[bytes]] = []
    size = 0
    for raw in raws:
        if not out or len(out[-1]) >= max_events or size + len(raw) > max_bytes:
            out.append([])
            size = 0
        out[-1].append(raw)
        size += len(raw)
    return out
