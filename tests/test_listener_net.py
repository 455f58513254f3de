"""A real node's listener against hostile sockets: slowloris, trickled bodies, descriptors running
out under `prlimit --nofile=1024`; and what must not be cut (long polls, streamed logs)."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from edgebac.node.config import ConnectionLimits, HostPort, NodeConfig
from edgebac.node.listener import open_listeners, runner_options, watch_requests
from tests.netfix import post_json
from tests.procs import LISTENING, Nodes, Process, edgebac_argv, nodes_fixture, wait_for

nodes = nodes_fixture()
WASM = Path(__file__).resolve().parent.parent / "fixtures" / "wasm"
HEADER_S = 1.0
BODY_S = 2.0
IDLE_S = 2.0
FAST = {
    "EDGEBAC_TEST_HEADER_TIMEOUT_S": str(HEADER_S),
    "EDGEBAC_TEST_BODY_TIMEOUT_S": str(BODY_S),
    "EDGEBAC_TEST_IDLE_TIMEOUT_S": str(IDLE_S),
}


def noop_policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text("engines: [noop]\n")
    return path


def host_port(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("http://").rpartition(":")
    return host, int(port)


_OPEN: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    """Every socket a test opened is closed after it, whatever it asserted."""
    yield
    while _OPEN:
        _OPEN.pop().close()


def open_from(source: str, address: tuple[str, int], blocking: bool = True) -> socket.socket:
    sock = socket.socket()
    _OPEN.append(sock)
    sock.bind((source, 0))
    if blocking:
        sock.settimeout(5)
        sock.connect(address)
    else:
        sock.setblocking(False)
        sock.connect_ex(address)
    return sock


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the node has closed this socket (EOF or reset), without blocking."""
    try:
        return sock.recv(4096, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def trickle(socks: list[socket.socket], byte: bytes, until: float) -> dict[int, float]:
    """Send `byte` on every open socket every 0.2 s until `until`; when each one was closed."""
    start = time.monotonic()
    closed: dict[int, float] = {}
    while time.monotonic() < until and len(closed) < len(socks):
        for index, sock in enumerate(socks):
            if index in closed:
                continue
            if closed_by_peer(sock):
                closed[index] = time.monotonic() - start
                continue
            try:
                sock.send(byte)
            except OSError:
                closed[index] = time.monotonic() - start
        time.sleep(0.2)
    return closed


def get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read()


def test_slowloris_sockets_are_closed_within_the_header_timeout(nodes, tmp_path):
    node = nodes.start(tmp_path / "a", "--policy", str(noop_policy(tmp_path)), env=FAST)
    address = host_port(node.url)
    # 4 sources of 50: under the per-source cap, so every one is admitted and must time out
    socks = [open_from(f"127.0.0.{20 + i % 4}", address) for i in range(200)]
    for sock in socks:
        sock.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    closed = trickle(socks, b"a", time.monotonic() + HEADER_S + 3)
    assert len(closed) == 200, f"{200 - len(closed)} slow sockets still open"
    assert max(closed.values()) < HEADER_S + 1.5, sorted(closed.values())[-5:]
    assert min(closed.values()) > HEADER_S * 0.5  # admitted, then cut: not refused outright
    assert get(node.url + "/healthz")[0] == 200
    assert "Traceback" not in node.stderr, node.stderr[-3000:]


def test_kept_alive_connections_idle_then_get_the_header_timeout(nodes, tmp_path):
    node = nodes.start(tmp_path / "a", "--policy", str(noop_policy(tmp_path)), env=FAST)
    idle, slow = (open_from("127.0.0.1", host_port(node.url)) for _ in range(2))
    for sock in (idle, slow):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b" 200 " in sock.recv(4096)
    answered = time.monotonic()
    time.sleep(0.5)
    slow.send(b"GET /healthz HTTP/1.1\r\n")  # the next request starts, and stalls
    stalled = time.monotonic()
    closed = trickle([idle, slow], b"", answered + IDLE_S + 2)
    assert 1 in closed, "a stalled keep-alive request held its connection"
    assert HEADER_S * 0.8 < closed[1] < HEADER_S + 1.0, closed  # from its first byte
    assert 0 in closed, "an idle keep-alive connection was never closed"
    assert IDLE_S * 0.8 < closed[0] + stalled - answered < IDLE_S + 1.0, closed


def test_a_trickled_body_is_cut_at_the_body_timeout(nodes, tmp_path):
    node = nodes.start(tmp_path / "a", "--policy", str(noop_policy(tmp_path)), env=FAST)
    sock = open_from("127.0.0.1", host_port(node.url))
    sock.send(b"POST /gossip/v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
    closed = trickle([sock], b"z", time.monotonic() + BODY_S + 3)
    assert 0 in closed, "a trickled gossip body held the connection"
    assert BODY_S * 0.8 < closed[0] < BODY_S + 1.5  # past the header timeout, cut at the body's
    assert "Traceback" not in node.stderr, node.stderr[-3000:]


def test_long_polls_and_log_streams_are_not_cut(nodes, tmp_path):
    node = nodes.start(tmp_path / "a", env=FAST)
    started = time.monotonic()
    status, body = get(node.url + "/api/v1/events?after=1000000&wait_ms=3000")
    assert (status, json.loads(body)["events"]) == (200, [])
    assert time.monotonic() - started > 2.5  # answered at the poll's end, not cut at 1 s

    module = "inline:base64:" + base64.b64encode((WASM / "loop.wasm").read_bytes()).decode()
    spec = {"engine": {"type": "wasm", "module": module}, "timeout_s": 4, "retries": 0}
    status, created = post_json(node.url + "/api/v1/jobs", spec)
    assert status == 201, created
    started = time.monotonic()
    url = f"{node.url}/api/v1/jobs/{created['job_id']}/logs?follow=1"
    with urllib.request.urlopen(url, timeout=30) as response:
        records = [json.loads(line) for line in response]
    assert time.monotonic() - started > HEADER_S + BODY_S  # a stream that outlived both
    assert records[-1].get("end"), records[-3:]  # and ended with the job, not with a cut
    assert "Traceback" not in node.stderr, node.stderr[-3000:]


async def test_a_client_that_reads_nothing_of_an_answer_is_cut(tmp_path):
    """In-process, on a real loopback socket: a 64 MiB answer to a client that never reads."""
    chunk = b"x" * (1 << 16)
    ended: list[tuple[str, float]] = []

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            for _ in range(1024):
                await response.write(chunk)
        except ConnectionError:
            ended.append(("cut", time.monotonic()))
            raise
        ended.append(("sent", time.monotonic()))
        return response

    app = web.Application()
    app.router.add_get("/big", big)
    app.middlewares.insert(0, watch_requests)
    runner = web.AppRunner(app, shutdown_timeout=1.0, **runner_options())
    await runner.setup()
    limits = ConnectionLimits(header_timeout_s=HEADER_S, body_timeout_s=BODY_S)
    config = NodeConfig(listen=HostPort("127.0.0.1", 0), limits=limits)
    (listener,) = open_listeners(runner.server, config, None, print)
    try:
        sock = open_from("127.0.0.1", ("127.0.0.1", listener.address.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.send(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        for _ in range(100):
            if ended:
                break
            await asyncio.sleep(0.1)
        assert [what for what, _ in ended] == ["cut"]
        assert ended[0][1] - started < BODY_S + 2.0
    finally:
        await listener.close()
        await runner.cleanup()


def start_limited(nodes: Nodes, tmp_path: Path, env: dict[str, str]) -> tuple[Process, str]:
    """A node whose process may hold 1,024 descriptors at most."""
    argv = edgebac_argv(
        "node",
        "--data-dir",
        tmp_path / "a",
        "--listen",
        "127.0.0.1:0",
        "--preset",
        "fast",
        "--policy",
        noop_policy(tmp_path),
    )
    proc = nodes.process(["prlimit", "--nofile=1024", "--", *argv], env={**FAST, **env})
    return proc, proc.wait_for_line(LISTENING, 20).group(2)


def flood(address: tuple[str, int]) -> list[socket.socket]:
    """1,100 silent sockets from 11 loopback sources (127.0.0.50-60)."""
    return [open_from(f"127.0.0.{50 + i % 11}", address, blocking=False) for i in range(1100)]


def healthy(url: str) -> bool:
    try:
        return get(url + "/healthz", timeout=2)[0] == 200
    except OSError:
        return False


def descriptor_warnings(proc: Process) -> int:
    return proc.stderr.count("out of file descriptors")


@pytest.mark.parametrize(
    ("env", "held"),
    [
        ({}, 11 * 64),  # the per-source cap holds: 64 from each of the 11 sources
        ({"EDGEBAC_TEST_MAX_PER_SOURCE": "1000"}, 768),  # the cap in all (1,024 - 256) holds
    ],
    ids=["per-source cap", "cap in all"],
)
def test_a_flood_leaves_the_node_answering_others(nodes, tmp_path, env, held):
    slow = {"EDGEBAC_TEST_HEADER_TIMEOUT_S": "6"}  # the flood stays while we look
    proc, url = start_limited(nodes, tmp_path, env | slow)
    socks = flood(host_port(url))

    def refused() -> int:
        return sum(closed_by_peer(sock) for sock in socks)

    wait_for(lambda: refused() >= len(socks) - held, 4, f"all but {held} sockets refused")
    started = time.monotonic()
    assert healthy(url)  # from 127.0.0.1: a socket still silent gives way to it if need be
    assert time.monotonic() - started < 1.0
    assert refused() <= len(socks) - held + 1  # the rest are held (one gave way, at most)
    for sock in socks:
        sock.close()
    assert healthy(url)
    assert descriptor_warnings(proc) == 0
    assert len(proc.stderr.encode()) < 20_000, proc.stderr[-2000:]


def test_descriptors_running_out_pause_accepting_with_one_warning(nodes, tmp_path):
    # both caps lifted past the descriptor limit: accept itself fails with EMFILE
    lifted = {"EDGEBAC_TEST_MAX_PER_SOURCE": "100000", "EDGEBAC_TEST_MAX_CONNECTIONS": "100000"}
    proc, url = start_limited(nodes, tmp_path, lifted)
    socks = flood(host_port(url))
    try:
        wait_for(lambda: descriptor_warnings(proc) >= 1, 10, "the descriptor warning")
        # silent sockets time out, so descriptors come back and the node answers again
        wait_for(lambda: healthy(url), HEADER_S + 8, "/healthz while flooded")
        time.sleep(1.0)  # more failed accepts: still the one warning
    finally:
        for sock in socks:
            sock.close()
    wait_for(lambda: healthy(url), 10, "/healthz after the flood")
    assert descriptor_warnings(proc) == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.encode()) < 20_000, proc.stderr[-2000:]
