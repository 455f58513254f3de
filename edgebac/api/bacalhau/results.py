"""`GET /api/v1/bacalhau/results/{execution}.tar.gz`: an execution's results as a gzipped tar, in
the layout Bacalhau's `job get` merges into its output folder (`stdout`, `stderr`, `exitCode`,
one folder per output), for the `urlDownload` PublishedResult the compat routes show.

Built from this node's content store as it is sent (verified block by block, compressed in
batches: memory stays bounded whatever the size); 404 unless this node holds the whole result.
A caller may download the results of a job it may read; member nodes may fetch any.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterator

from aiohttp import web

from edgebac.api import auth
from edgebac.api.bacalhau.common import RESULTS_PATH, route
from edgebac.api.protocol import served_node
from edgebac.errors import NotFound
from edgebac.sinks.cid import CID
from edgebac.sinks.errors import BadCid, ContentNotFound
from edgebac.sinks.serve import _stream

GZIP = 31  # zlib's wbits for a gzip wrapper


def gzipped(chunks: Iterator[bytes], level: int = 6) -> Iterator[bytes]:
    """The gzip stream of `chunks`, compressed as they come."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, GZIP)
    for chunk in chunks:
        if out := compressor.compress(chunk):
            yield out
    yield compressor.flush()


async def download(request: web.Request) -> web.StreamResponse:
    node = served_node(request)
    execution_id = request.match_info["execution_id"]
    state = node.runner.refresh()
    execution = state.executions.get(execution_id)
    if execution is None:
        raise NotFound(f"no execution {execution_id[:80]!r} is known to this node")
    if not auth.caller_of(request).node:
        job = state.jobs.get(execution.job_id) or state.evicted.get(execution.job_id)
        if job is None:
            raise NotFound(f"no job of execution {execution_id[:80]!r} is known to this node")
        auth.check_read(request, job)
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
    return await _stream(
        request, gzipped(store.export_tar(root)), "application/gzip", None, headers
    )


def add_routes(app: web.Application) -> None:
    route(app, "GET", RESULTS_PATH, download, auth.EXECUTION)
