"""What a connection's first bytes say, before TLS or HTTP takes it: whether it opens with a
TLS handshake (one port may serve both), and the plain-HTTP answer an HTTPS-only port gives."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket

from edgebac.node.config import HostPort

TLS_RECORD = 0x16  # a TLS handshake record: the first byte of every ClientHello
PLAIN_HEAD_MAX = 16 << 10  # of a plain request's head read before the https_only answer


async def answer_https_only(sock: socket.socket, address: HostPort) -> None:
    """Answer a plain HTTP request on an HTTPS-only port with a 400 that says which scheme to
    use (as a browser or curl would otherwise show only a reset connection). The request's
    head is read first, so closing does not reset the connection before the answer is read."""
    loop = asyncio.get_running_loop()
    with contextlib.suppress(OSError):
        head = b""
        while b"\r\n\r\n" not in head and len(head) < PLAIN_HEAD_MAX:
            chunk = await loop.sock_recv(sock, PLAIN_HEAD_MAX)
            if not chunk:
                return
            head += chunk
        await loop.sock_sendall(sock, https_only_answer(address))
        sock.shutdown(socket.SHUT_WR)


def https_only_answer(address: HostPort) -> bytes:
    body = json.dumps(
        {
            "error": {
                "code": "https_only",
                "message": f"this port speaks HTTPS only: use https://{address}/ "
                "(the CLI: --api https://..., with --ca or --tls-fingerprint)",
            }
        }
    ).encode()
    head = (
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def first_byte(sock: socket.socket) -> int:
    """The connection's first byte, left in the socket (MSG_PEEK); EOFError if it closed."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            data = sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            readable: asyncio.Future[None] = loop.create_future()
            loop.add_reader(sock.fileno(), _settle, readable)
            try:
                await readable
            finally:
                loop.remove_reader(sock.fileno())
            continue
        if not data:
            raise EOFError("closed before its first byte")
        return data[0]


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
