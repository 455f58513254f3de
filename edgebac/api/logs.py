"""Logs of executions: stdout and stderr, streamed as JSON lines from the node that runs them.

- `GET /api/v1/executions/{execution_id}/logs`: one execution. The node that runs it reads its
  results folder; any other node proxies the request to that node (with `local=1`, which is
  never proxied again), so a client needs to reach only one node.
- `GET /api/v1/jobs/{job_id}/logs`: every execution of a job (or `execution=ID`), each
  record tagged with its execution. Without `follow` executions come one after the other;
  with it they are interleaved, and executions that start later (retries) join in until the
  job ends.

Query: `stream=stdout|stderr|both` (default both), `offset=N` (bytes to skip in each
stream), `follow=1` (keep going as the files grow until the execution ends). The answer is
`application/x-ndjson`, one record a line:

    {"execution_id": E, "stream": "stdout", "offset": N, "data": "text"}
    {"execution_id": E, "end": true, "node": hex, "status": "completed", "exit_code": 0,
     "offsets": {"stdout": N, "stderr": M}}
    {"execution_id": E, "error": {"code": "unreachable", "message": "..."}}

When the node that ran an execution cannot be reached, the head of each stream that its
ResultPublished carries stands in (records marked `"head_only": true`), followed by the error
record, which says that what came was a head.

`offset` is the byte offset of a chunk in its stream; `data` is UTF-8 decoded (bad bytes
replaced; a character cut between chunks is held back until it is whole). Errors found
before the first byte is sent have the API's one error shape; afterwards they are records.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from yarl import URL

from edgebac.api.auth import caller_of, check_read
from edgebac.api.bodies import int_param
from edgebac.api.protocol import ServedNode, served_node
from edgebac.errors import BadRequest, EdgebacError, NotFound
from edgebac.eventlog.callsig import HEADER, sign_call
from edgebac.eventlog.clock import wall_clock_ms
from edgebac.scheduler.state import ACTIVE, Execution

STREAMS = ("stdout", "stderr")
POLL_S = 0.1  # how often a follower looks at the files and the execution's status
CHUNK = 16 << 10  # bytes per record: escaped as JSON it stays well under a line reader's limit
PROXIED_WAIT_S = 5.0  # a compute node may learn of an execution after its requester did
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0  # without follow, the other node answers at once
NDJSON = "application/x-ndjson"
MAX_OFFSET = 1 << 62
ENDED_GRACE_S = 10.0  # after the job ended, how long its executions' last records may take
Gone = Callable[[], bool]


class NotHere(EdgebacError):
    code = "not_here"
    http_status = 409


@dataclass(frozen=True)
class LogQuery:
    streams: tuple[str, ...]
    offset: int
    follow: bool

    def params(self) -> dict[str, str]:
        stream = self.streams[0] if len(self.streams) == 1 else "both"
        return {"stream": stream, "offset": str(self.offset), "follow": "1" if self.follow else "0"}


def parse_query(request: web.Request) -> LogQuery:
    stream = request.query.get("stream", "both")
    if stream not in (*STREAMS, "both"):
        raise BadRequest(f"stream must be stdout, stderr or both, not {stream!r}")
    offset = int_param(request, "offset", 0, 0, MAX_OFFSET)  # bytes; seek() takes 63 bits
    follow = request.query.get("follow", "0")
    if follow not in ("0", "1"):
        raise BadRequest("follow must be 0 or 1")
    streams = STREAMS if stream == "both" else (stream,)
    return LogQuery(streams, offset, follow == "1")


# ----- reading a stream's file -------------------------------------------------------------------


class _Tail:
    """What has been read of one stream's file, and the decoder holding a cut character."""

    def __init__(self, path: Path, offset: int) -> None:
        self.path = path
        self.pos = offset
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.stored: bytes | None = None  # the whole stream, once read from the store

    def read(self) -> bytes:
        """The next bytes past `pos` (at most CHUNK); b"" when there are none yet."""
        if self.stored is not None:
            return self.stored[self.pos : self.pos + CHUNK]
        try:
            with self.path.open("rb") as stream:
                stream.seek(self.pos)
                return stream.read(CHUNK)
        except FileNotFoundError:
            return b""


def _record(execution_id: str, stream: str, offset: int, data: str) -> dict[str, Any]:
    return {"execution_id": execution_id, "stream": stream, "offset": offset, "data": data}


def _end(execution: Execution | None, execution_id: str, tails: dict[str, _Tail]) -> dict:
    end: dict[str, Any] = {"execution_id": execution_id, "end": True}
    if execution is not None:
        end |= {
            "node": execution.node.hex(),
            "status": execution.status,
            "exit_code": execution.exit_code,
        }
    end["offsets"] = {name: tail.pos for name, tail in tails.items()}
    return end


def _error(execution_id: str, code: str, message: str) -> dict[str, Any]:
    return {"execution_id": execution_id, "error": {"code": code, "message": message}}


async def _drain(execution_id: str, name: str, tail: _Tail, final: bool) -> AsyncIterator[dict]:
    while data := await asyncio.to_thread(tail.read):
        start = tail.pos
        tail.pos += len(data)
        text = tail.decoder.decode(data)
        if text:
            yield _record(execution_id, name, start, text)
    if final and (rest := tail.decoder.decode(b"", final=True)):
        yield _record(execution_id, name, tail.pos, rest)


async def local_records(
    node: ServedNode, execution_id: str, query: LogQuery, gone: Gone | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Records of an execution this node runs (or ran), from its results folder."""
    folder = node.runner.results_dir(execution_id)
    tails = {name: _Tail(folder / name, query.offset) for name in query.streams}
    while True:
        # The status first: once it says ended, the files it was read before are complete.
        execution = node.runner.refresh().executions.get(execution_id)
        ended = execution is None or execution.status not in ACTIVE
        final = ended or not query.follow
        for name, tail in tails.items():
            async for record in _drain(execution_id, name, tail, final):
                yield record
        if final or (gone is not None and gone()):
            break
        await asyncio.sleep(POLL_S)
    if ended and execution is not None and not folder.exists():
        # No folder (results kept in memory until published, or cleared): the node's store
        # has the results it published, else the log keeps a head of each stream.
        stored = await asyncio.to_thread(_stored_streams, node, execution, query.streams)
        if stored is None:
            for record in _heads(execution, query):
                yield record
        else:
            for name, tail in tails.items():
                tail.stored = stored[name]
                async for record in _drain(execution_id, name, tail, True):
                    yield record
    yield _end(execution, execution_id, tails)


def _stored_streams(
    node: ServedNode, execution: Execution, names: tuple[str, ...]
) -> dict[str, bytes] | None:
    """The streams of a published execution read back from this node's store (an absent
    stream is empty); None if the store does not have them. Blocks on disk reads."""
    from edgebac.sinks.cid import CID
    from edgebac.sinks.errors import BadCid, BadContent, ContentNotFound, CorruptBlock

    if not execution.digest:
        return None
    try:
        root = CID.parse(execution.digest)
        return {name: node.content.store.read_entry(root, name) or b"" for name in names}
    except (BadCid, BadContent, ContentNotFound, CorruptBlock, ValueError):
        return None


def _heads(execution: Execution, query: LogQuery) -> list[dict[str, Any]]:
    heads = {"stdout": execution.stdout_head, "stderr": execution.stderr_head}
    return [
        _record(execution.id, name, 0, heads[name]) | {"head_only": True}
        for name in query.streams
        if heads[name] and query.offset == 0
    ]


# ----- another node's execution ------------------------------------------------------------------


async def remote_records(
    node: ServedNode, execution: Execution, query: LogQuery
) -> AsyncIterator[dict[str, Any]]:
    """Records of an execution another node runs, proxied from that node's API. When that node
    cannot be reached before it sent anything, the head of each stream that the log holds (in
    ResultPublished) stands in, marked `head_only`, and the error record says so."""
    info = node.runner.state.nodes.get(execution.node)
    addresses = info.addresses if info is not None else []
    who = f"node {execution.node.hex()[:12]}"
    if not addresses:
        async for record in _unreachable(execution, query, f"{who} has no address"):
            yield record
        return
    sent = False
    try:
        async for record in _proxied(node, execution, query, addresses[0]):
            sent = True
            yield record
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        problem = f"cannot read logs from {who} at {addresses[0]}: {str(exc) or type(exc).__name__}"
        if sent:
            yield _error(execution.id, "unreachable", problem)
        else:
            async for record in _unreachable(execution, query, problem):
                yield record


async def _proxied(
    node: ServedNode, execution: Execution, query: LogQuery, address: str
) -> AsyncIterator[dict[str, Any]]:
    params = urlencode({**query.params(), "local": "1"})
    path = f"/api/v1/executions/{execution.id}/logs?{params}"
    url = URL(f"http://{address}{path}", encoded=True)  # sent as signed, not re-quoted
    signed = {HEADER: sign_call(node.identity.key, "GET", path, b"", wall_clock_ms())}
    timeout = aiohttp.ClientTimeout(
        total=None,
        sock_connect=CONNECT_TIMEOUT_S,
        sock_read=None if query.follow else READ_TIMEOUT_S,
    )
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(url, headers=signed) as resp,
    ):
        if resp.status != 200:
            yield _error(execution.id, *await _remote_error(resp))
            return
        buffer = b""
        async for piece in resp.content.iter_any():
            buffer += piece
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    yield json.loads(line)


async def _unreachable(
    execution: Execution, query: LogQuery, problem: str
) -> AsyncIterator[dict[str, Any]]:
    heads = _heads(execution, query)
    for record in heads:
        yield record
    if heads:
        names = " and ".join(record["stream"] for record in heads)
        problem += f"; shown instead: the head of its {names} that the log holds (at most 1 KiB)"
    yield _error(execution.id, "unreachable", problem)


async def _remote_error(resp: aiohttp.ClientResponse) -> tuple[str, str]:
    try:
        error = (await resp.json(content_type=None))["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError, aiohttp.ClientError):
        return "unreachable", f"the compute node answered {resp.status}"


def execution_records(
    node: ServedNode, execution: Execution, query: LogQuery, gone: Gone | None = None
) -> AsyncIterator[dict[str, Any]]:
    if execution.node == node.identity.public_key:
        return local_records(node, execution.id, query, gone)
    return remote_records(node, execution, query)


# ----- handlers ----------------------------------------------------------------------------------


async def _prepare(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": NDJSON, "Cache-Control": "no-store"})
    await response.prepare(request)
    return response


async def _send(response: web.StreamResponse, record: dict[str, Any]) -> None:
    await response.write(json.dumps(record).encode() + b"\n")


def _gone(request: web.Request) -> Gone:
    """Whether the client went away (a quiet follower writes nothing that would tell us)."""
    return lambda: request.transport is None or request.transport.is_closing()


async def _find_execution(node: ServedNode, execution_id: str, wait_s: float) -> Execution | None:
    deadline = asyncio.get_running_loop().time() + wait_s
    while (execution := node.runner.refresh().executions.get(execution_id)) is None:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            return None
        await node.runner.wait_folded(min(left, POLL_S))
    return execution


async def execution_logs(request: web.Request) -> web.StreamResponse:
    node = served_node(request)
    query = parse_query(request)
    execution_id = request.match_info["execution_id"]
    local = request.query.get("local") == "1"
    execution = await _find_execution(node, execution_id, PROXIED_WAIT_S if local else 0)
    if execution is None:
        raise NotFound(f"no execution {execution_id!r} is known to this node")
    if local and execution.node != node.identity.public_key:
        raise NotHere(f"execution {execution_id} runs on node {execution.node.hex()[:12]}")
    if not caller_of(request).node:  # a member relaying for its client: that client was checked
        state = node.runner.state
        job = state.jobs.get(execution.job_id) or state.evicted.get(execution.job_id)
        if job is None:
            raise NotFound(f"no job of execution {execution_id!r} is known to this node")
        check_read(request, job)
    response = await _prepare(request)
    async for record in execution_records(node, execution, query, _gone(request)):
        await _send(response, record)
    await response.write_eof()
    return response


async def job_logs(request: web.Request) -> web.StreamResponse:
    from edgebac.api.jobs import load_job

    node = served_node(request)
    query = parse_query(request)
    job = await load_job(node, request.match_info["job_id"])
    check_read(request, job)
    only = request.query.get("execution")
    if only is not None and only not in job.executions:
        raise NotFound(f"job {job.id} has no execution {only!r}")
    response = await _prepare(request)
    if query.follow:
        await follow_job(request, response, node, job.id, only, query)
    else:
        for execution in sorted(job.executions.values(), key=lambda e: (e.accepted_hlc, e.id)):
            if only is None or execution.id == only:
                async for record in execution_records(node, execution, query):
                    await _send(response, record)
    await response.write_eof()
    return response


async def follow_job(
    request: web.Request,
    response: web.StreamResponse,
    node: ServedNode,
    job_id: str,
    only: str | None,
    query: LogQuery,
) -> None:
    """Every execution's records as they come, until the job has ended and all are sent."""
    from edgebac.api.jobs import load_job

    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=256)
    pumps: dict[str, asyncio.Task[None]] = {}
    gone = _gone(request)
    loop = asyncio.get_running_loop()
    ended_at: float | None = None

    async def pump(execution: Execution) -> None:
        async for record in execution_records(node, execution, query, gone):
            await queue.put(record)

    try:
        while not gone():
            job = await load_job(node, job_id)
            for execution in job.executions.values():
                if execution.id not in pumps and only in (None, execution.id):
                    pumps[execution.id] = asyncio.create_task(pump(execution))
            if job.terminal:
                ended_at = ended_at or loop.time()
                done = all(p.done() for p in pumps.values())
                if queue.empty() and (done or loop.time() - ended_at > ENDED_GRACE_S):
                    break
            with contextlib.suppress(TimeoutError):
                await _send(response, await asyncio.wait_for(queue.get(), POLL_S * 2))
    finally:
        for task in pumps.values():
            task.cancel()
        await asyncio.gather(*pumps.values(), return_exceptions=True)


def add_log_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/executions/{execution_id}/logs", execution_logs)
    app.router.add_get("/api/v1/jobs/{job_id}/logs", job_logs)
