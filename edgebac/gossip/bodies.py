"""Read a whole HTTP body, up to a limit: the one way gossip and content fetches read bodies.

aiohttp's `StreamReader.read(n)` returns what is buffered *now*, not n bytes: a body larger
than a socket buffer comes back cut off. Bodies are read here, chunk by chunk, until the end
of the stream, and refused as soon as they pass the limit (so a peer cannot make us buffer
more than we would accept).
"""

from __future__ import annotations

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
