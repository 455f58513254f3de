"""The node's listening sockets: its own accept loop, so that it can say no.

aiohttp's TCPSite leaves accepting to asyncio, which caps nothing, never times out a request
whose headers trickle in (slowloris), and logs a traceback for every failed accept once
descriptors run out (63 MB in 30 s). Here each listener accepts by itself and hands sockets to
aiohttp's `web.Server` (a protocol factory) through `loop.connect_accepted_socket`:

- caps in all and per source (`connlimits.Admission`); over a cap a socket is accepted and
  closed at once, so nothing piles up in the backlog;
- a watchdog per connection (`connlimits.Phases`): headers within the header timeout of the
  connection opening or of the next request's first byte (kept alive, a connection idles
  the idle timeout at most), a body within the body timeout of its headers; answers (long
  polls, log streams) are never cut, unless the client reads nothing of them for the body
  timeout while they wait to be sent;
- out of descriptors, accepting pauses briefly with one warning a minute at most;
- one port for TLS and plain HTTP: with TLS on the clients' port, the first byte of each
  connection says which (0x16 opens a TLS handshake), so peers keep dialling `http://`.

The watchdog learns of a request's start from `watch_requests` (the app's first middleware)
and of its answer's end from `AnswerEnded` (aiohttp's access-log hook, called once the last
byte is written).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import resource
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_protocol import RequestHandler

from edgebac.errors import ConfigError
from edgebac.node.config import ConnectionLimits, HostPort, NodeConfig
from edgebac.node.connlimits import (
    Admission,
    Phases,
    RateLimited,
    default_max_connections,
    source_key,
)
from edgebac.node.sniff import TLS_RECORD, answer_https_only, first_byte

ACCEPT_BATCH = 64  # accepts per wakeup: fair to the rest of the loop under a flood
BACKLOG = 1024
PAUSE_S = 0.25  # out of descriptors: try again this soon (closing connections free some)
WARN_EVERY_S = 60.0
_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE})
_LIVE: dict[RequestHandler, Connection] = {}  # aiohttp's handler -> our connection

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def listener_of(request: web.BaseRequest) -> str:
    """Which listener a request came in on: "api" (`--api-listen`) or "node" (`--listen`,
    which also serves clients when there is no `--api-listen`)."""
    connection = _LIVE.get(request.protocol)
    return connection.listener if connection is not None else "node"


@web.middleware
async def watch_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """First of the app's middlewares: the request's headers are in, its body may not be."""
    connection = _LIVE.get(request.protocol)
    if connection is not None:
        connection.request_started(request)
    return await handler(request)


class AnswerEnded(AbstractAccessLogger):
    """aiohttp calls its access logger once an answer is written whole (or the client left):
    the moment the next request's header timeout starts."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        connection = _LIVE.get(request.protocol)
        if connection is not None:
            connection.answered()


def runner_options() -> dict[str, Any]:
    """`web.AppRunner` options the listener relies on (its answer hook; keep-alive is ours)."""
    return {
        "access_log_class": AnswerEnded,
        "access_log": logging.getLogger(__name__),
        "keepalive_timeout": 3600.0,  # idle keep-alive ends at our header timeout instead
    }


class Connection(asyncio.Protocol):
    """One accepted socket: aiohttp's protocol inside, our deadlines around it."""

    def __init__(self, listener: str, guard: ConnectionGuard) -> None:
        self.inner: RequestHandler  # made when the socket is handed over (`attach`)
        self.listener = listener
        self._guard = guard
        self._loop = asyncio.get_running_loop()
        limits = guard.limits
        self.phases = Phases(
            limits.header_timeout_s,
            limits.body_timeout_s,
            limits.idle_timeout_s,
            limits.min_body_rate,
        )
        self.phases.opened(self._loop.time())
        self.transport: asyncio.Transport | None = None
        self.opening: asyncio.Task[None] | None = None
        self._request: web.BaseRequest | None = None
        self._timer: asyncio.TimerHandle | None = None

    def attach(self, inner: RequestHandler) -> Connection:
        """aiohttp's protocol, made only for admitted sockets (a flood costs no parsers)."""
        self.inner = inner
        return self

    # ----- asyncio.Protocol, passed on to aiohttp's handler -----------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        _LIVE[self.inner] = self
        self.inner.connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.phases.received(self._loop.time(), len(data)):
            self._arm()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.phases.writes_paused(self._loop.time())
        self._arm()
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.phases.writes_resumed()
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        _LIVE.pop(self.inner, None)
        self.released()
        self.inner.connection_lost(exc)

    # ----- the watchdog --------------------------------------------------------------------------

    def request_started(self, request: web.BaseRequest) -> None:
        self._request = request
        self.phases.request(self._loop.time(), request.content.is_eof())
        self._guard.admission.waiting(self, False)
        self._arm()

    def answered(self) -> None:
        self._request = None
        self.phases.answered(self._loop.time())
        self._guard.admission.waiting(self, True)
        self._arm()

    def _arm(self) -> None:
        """A timer at the deadline; one already due sooner stays (it re-arms when it fires):
        no timer churn for each request of a kept-alive connection."""
        deadline = self.phases.next_check
        if deadline is None or self.transport is None:
            return
        if self._timer is not None:
            if self._timer.when() <= deadline:
                return
            self._timer.cancel()
        self._timer = self._loop.call_at(deadline, self._check)

    def _check(self) -> None:
        self._timer = None
        request = self._request
        body_whole = request is None or request.content.is_eof()
        if self.phases.expired(self._loop.time(), body_whole):
            self.cut()
        else:
            self._arm()

    def cut(self) -> None:
        """Close now: a deadline passed, or a newcomer needs the slot of one still silent."""
        if self.transport is not None:
            self.transport.abort()
        elif self.opening is not None:
            self.opening.cancel()

    def released(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._guard.admission.release(self)


class ConnectionGuard:
    """What every listener of a node shares: the caps and the descriptor warning."""

    def __init__(self, limits: ConnectionLimits, warn: Callable[[str], None]) -> None:
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if nofile == resource.RLIM_INFINITY:
            nofile = -1
        self.limits = limits
        self.max_connections = limits.max_connections or default_max_connections(nofile)
        self.admission: Admission[Connection] = Admission(
            self.max_connections, limits.max_per_source
        )
        self.nofile = nofile
        self._warn = warn
        self._warning = RateLimited(WARN_EVERY_S)

    def warn_accept_failed(self, exc: OSError, now: float) -> None:
        held = self._warning.allow(now)
        if held is None:
            return
        what = "out of file descriptors" if exc.errno in _OUT_OF_DESCRIPTORS else "accept failed"
        more = f" ({held} more since the last warning)" if held else ""
        self._warn(
            f"{what} ({exc.strerror}; descriptor limit {self.nofile}): not accepting "
            f"connections for {PAUSE_S} s; {self.admission.total} connections open{more}"
        )


class Listener:
    """One listening socket: accepts, admits, sniffs TLS, and hands over to aiohttp."""

    def __init__(
        self,
        name: str,
        server: web.Server,
        guard: ConnectionGuard,
        address: HostPort,
        tls: ssl.SSLContext | None,
        sniff: bool,
    ) -> None:
        self.name = name
        self._server = server
        self._guard = guard
        self._tls = tls
        self._sniff = sniff  # TLS and plain on one port (else TLS only, when there is TLS)
        self._loop = asyncio.get_running_loop()
        self._sock = _bind(address)
        host, port = self._sock.getsockname()[:2]
        self.address = HostPort(host, port)
        self._opening: set[asyncio.Task[None]] = set()
        self._paused: asyncio.TimerHandle | None = None
        self._loop.add_reader(self._sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, peer = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue  # that client gave up between its handshake and our accept
                self._pause(exc)
                return
            self._admit(sock, peer[0])

    def _pause(self, exc: OSError) -> None:
        """Out of descriptors (or memory, or another accept failure): stop reading the
        listening socket for a moment instead of spinning on it; say so once a minute at most."""
        self._guard.warn_accept_failed(exc, self._loop.time())
        self._loop.remove_reader(self._sock.fileno())
        self._paused = self._loop.call_later(PAUSE_S, self._resume)

    def _resume(self) -> None:
        self._paused = None
        self._loop.add_reader(self._sock.fileno(), self._accept)

    def _admit(self, sock: socket.socket, host: str) -> None:
        connection = Connection(self.name, self._guard)
        admitted, evicted = self._guard.admission.admit(connection, source_key(host))
        if not admitted:
            sock.close()
            return
        if evicted is not None:
            evicted.cut()
        sock.setblocking(False)
        task = self._loop.create_task(self._open(sock, connection))
        connection.opening = task
        self._opening.add(task)
        task.add_done_callback(self._opening.discard)

    async def _open(self, sock: socket.socket, connection: Connection) -> None:
        """Sniff and shake hands within the header deadline, then let aiohttp have it."""
        deadline = connection.phases.deadline
        assert deadline is not None
        try:
            async with asyncio.timeout_at(deadline):
                tls = self._tls
                if tls is not None and await first_byte(sock) != TLS_RECORD:
                    if not self._sniff:  # HTTPS only: say so in plain HTTP, then hang up
                        await answer_https_only(sock, self.address)
                        raise EOFError
                    tls = None
                left = max(deadline - self._loop.time(), 0.001)
                await self._loop.connect_accepted_socket(
                    lambda: connection.attach(self._server()),
                    sock,
                    ssl=tls,
                    ssl_handshake_timeout=left if tls is not None else None,
                )
        except (OSError, TimeoutError, asyncio.CancelledError, EOFError):
            sock.close()  # idempotent: a transport that took it closes the same object
            if connection.transport is None:
                connection.released()
        finally:
            connection.opening = None

    def close_now(self) -> None:
        """Stop accepting (handshakes under way go on to end or fail: see `close`)."""
        if self._paused is not None:
            self._paused.cancel()
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    async def close(self) -> None:
        """Stop accepting; the connections already open are aiohttp's to shut down."""
        self.close_now()
        for task in list(self._opening):
            task.cancel()
        await asyncio.gather(*self._opening, return_exceptions=True)


def _bind(address: HostPort) -> socket.socket:
    """A listening socket on the first address `address.host` resolves to."""
    infos = socket.getaddrinfo(
        address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, _, _, _, sockaddr = infos[0]
    sock = socket.create_server(sockaddr[:2], family=family, backlog=BACKLOG)
    sock.setblocking(False)
    return sock


def open_listeners(
    server: web.Server,
    config: NodeConfig,
    tls: ssl.SSLContext | None,
    warn: Callable[[str], None],
) -> list[Listener]:
    """`--listen` first, then `--api-listen` if given (which then has the TLS, if any, and
    `--listen` stays plain); errors name the flag."""
    guard = ConnectionGuard(config.limits, warn)
    api = config.api_listen
    wanted = [("node", "--listen", config.listen, tls if api is None else None)]
    if api is not None:
        wanted.append(("api", "--api-listen", api, tls))
    opened: list[Listener] = []
    for name, flag, address, context in wanted:
        try:
            opened.append(Listener(name, server, guard, address, context, sniff=name == "node"))
        except OSError as exc:
            for listener in opened:
                listener.close_now()
            raise ConfigError(f"{flag} {address}: cannot listen: {exc.strerror}") from None
    return opened


def source_host(listen_host: str) -> str | None:
    """The address to send from: the one we listen on, unless that is every address."""
    try:
        address = ipaddress.ip_address(listen_host)
    except ValueError:
        return None  # a name: let the kernel choose
    return None if address.is_unspecified else listen_host
