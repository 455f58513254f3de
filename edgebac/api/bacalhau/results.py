"""An execution's results as a gzipped tar, in the layout Bacalhau's `job get` merges into its
output folder (`stdout`, `stderr`, `exitCode`, one folder per output):

- `GET /api/v1/bacalhau/results/{execution}.tar.gz`: for a caller who may read the job (member
  nodes: any), with the usual credentials.
- `GET /api/v1/bacalhau/shared/{execution}.tar.gz?by=&until=&sig=`: a link signed by a member
  node, valid for an hour, like an S3 presigned URL. Bacalhau's downloaders send no
  credentials, so the `urlDownload` PublishedResult the compat routes show a caller who may
  read the job is this link (any node holding the result serves it, checking the signature
  against the signer's key in the log). A member can fetch any content anyway, so a link it
  signs grants nothing it does not have.

Built from this node's content store as it is sent (verified block by block, compressed in
batches: memory stays bounded whatever the size); 404 unless this node holds the whole result.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from edgebac.api import auth
from edgebac.api.bacalhau.common import route
from edgebac.api.bacalhau.links import RESULTS_PATH, SHARED_PATH, BadLink, link_problem
from edgebac.api.protocol import ServedNode, served_node
from edgebac.errors import NotFound
from edgebac.eventlog.clock import wall_clock_ms
from edgebac.scheduler.state import Execution
from edgebac.sinks.cid import CID
from edgebac.sinks.errors import BadCid, ContentNotFound
from edgebac.sinks.exporter import gzipped
from edgebac.sinks.serve import stream_chunks


async def download(request: web.Request) -> web.StreamResponse:
    """For a caller with credentials who may read the job."""
    node = served_node(request)
    execution_id = request.match_info["execution_id"]
    execution = _execution(node, execution_id)
    if not auth.caller_of(request).node:
        state = node.runner.state
        job = state.jobs.get(execution.job_id) or state.evicted.get(execution.job_id)
        if job is None:
            raise NotFound(f"no job of execution {execution_id[:80]!r} is known to this node")
        auth.check_read(request, job)
    return await _send(request, node, execution)


async def shared(request: web.Request) -> web.StreamResponse:
    """For anyone holding a link a member node signed (see the module docstring)."""
    node = served_node(request)
    if not node.ready:
        raise auth.not_ready()
    execution_id = request.match_info["execution_id"]
    members = node.runner.refresh().nodes
    problem = link_problem(members, execution_id, request.query, wall_clock_ms())
    if problem is not None:
        raise BadLink(problem)
    return await _send(request, node, _execution(node, execution_id))


def _execution(node: ServedNode, execution_id: str) -> Execution:
    execution = node.runner.refresh().executions.get(execution_id)
    if execution is None:
        raise NotFound(f"no execution {execution_id[:80]!r} is known to this node")
    return execution


async def _send(request: web.Request, node: ServedNode, execution: Execution) -> web.StreamResponse:
    execution_id = execution.id
    try:
        root = CID.parse(execution.digest or "")
    except BadCid:
        raise NotFound(f"execution {execution_id} has no results in a content store") from None
    store = node.content.store
    if not await asyncio.to_thread(store.holds, root):
        raise ContentNotFound(f"this node does not hold the results of {execution_id}")
    headers = {"X-Content-Cid": str(root)}
    disposition = f'attachment; filename="{execution_id}.tar.gz"'
    headers["Content-Disposition"] = disposition
    return await stream_chunks(
        request, gzipped(store.export_tar(root)), "application/gzip", None, headers
    )


def add_routes(app: web.Application) -> None:
    route(app, "GET", RESULTS_PATH, download, auth.EXECUTION)
    route(app, "GET", SHARED_PATH, shared, auth.PUBLIC)
