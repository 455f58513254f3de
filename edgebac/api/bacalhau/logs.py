"""`GET /api/v1/orchestrator/jobs/{id}/logs`: a WebSocket of the job's stdout and stderr, as
Bacalhau's `job logs` reads it: text frames `{"value": {"Type": 1|2, "Line": "..."}}` (1 stdout,
2 stderr), `{"error": "..."}` for an error, then a normal close (1000).

The records are edgebac's own (`edgebac.api.logs`: read from the results folder on the node
that runs an execution, proxied from it by any other, its head from the log when it cannot be
reached); this module only frames them. Query: `execution_id`, `follow=true`; `tail` and
`job_version` are accepted and mean nothing here (a job has one version, a log is sent whole).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from edgebac.api import auth
from edgebac.api.bacalhau.common import find_job, flag, route
from edgebac.api.logs import STREAMS, LogQuery, execution_records, follow_job
from edgebac.api.protocol import served_node
from edgebac.errors import NotFound

TYPES = {"stdout": 1, "stderr": 2}  # models.ExecutionLogType


def frame(record: dict[str, Any]) -> dict[str, Any] | None:
    """The WebSocket frame for one of edgebac's log records (None: nothing to say)."""
    if "error" in record:
        error = record["error"]
        message = error.get("message") if isinstance(error, dict) else str(error)
        return {"error": f"execution {record.get('execution_id')}: {message}"}
    if record.get("stream") in TYPES and record.get("data"):
        return {"value": {"Type": TYPES[record["stream"]], "Line": record["data"]}}
    return None


class _Frames:
    """Stands in for the NDJSON response `edgebac.api.logs` writes to: each line it is given
    goes out as one frame."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws

    async def write(self, data: bytes) -> None:
        await self.send(json.loads(data))

    async def send(self, record: dict[str, Any]) -> None:
        said = frame(record)
        if said is not None:
            await self.ws.send_json(said)


async def job_logs(request: web.Request) -> web.StreamResponse:
    node = served_node(request)
    job = await find_job(request)  # refused before the upgrade, in Bacalhau's error shape
    only = request.query.get("execution_id") or None
    if only is not None and only not in job.executions:
        raise NotFound(f"job {job.id} has no execution {only[:80]!r}")
    query = LogQuery(STREAMS, 0, flag(request, "follow"))
    flag(request, "tail")
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    frames = _Frames(ws)
    try:
        if query.follow:
            await follow_job(request, frames, node, job.id, only, query)  # type: ignore[arg-type]
        else:
            ordered = sorted(job.executions.values(), key=lambda e: (e.accepted_hlc, e.id))
            for execution in ordered:
                if only in (None, execution.id):
                    async for record in execution_records(node, execution, query):
                        await frames.send(record)
    except ConnectionError:
        return ws  # the client left
    await ws.close()
    return ws


def add_routes(app: web.Application) -> None:
    route(app, "GET", "/api/v1/orchestrator/jobs/{job_id}/logs", job_logs, auth.READ)
