"""A job's executions, history and results, as Bacalhau's clients list them.

History: every event of the job's, as `scheduler.bacalhau_history` words it. Its NextToken stays
non-empty until the job has ended and every item was sent (the same token again while nothing
is new), which is how the Go CLI's `job run --wait` knows to stop polling.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from edgebac.api import auth
from edgebac.api.bacalhau.common import (
    executions_of,
    find_job,
    job_events,
    limit_of,
    offset_of,
    page,
    published,
    route,
    token,
)
from edgebac.api.jobs import job_view
from edgebac.api.protocol import served_node
from edgebac.errors import BadRequest
from edgebac.scheduler.bacalhau_history import EVENT_TYPES, history_items
from edgebac.scheduler.bacalhau_view import bacalhau_execution

JOB = "/api/v1/orchestrator/jobs/{job_id}"


async def list_executions(request: web.Request) -> web.Response:
    job = await find_job(request)
    items, next_token = page(executions_of(request, job, job_view(job)), request)
    return web.json_response({"Items": items, "NextToken": next_token})


async def list_history(request: web.Request) -> web.Response:
    """`event_type` all/job/execution, `execution_id`, `limit`, `next_token`."""
    node = served_node(request)
    event_type = request.query.get("event_type", "") or "all"
    if event_type not in EVENT_TYPES:
        raise BadRequest(f"event_type: {event_type[:40]!r} is not all, job or execution")
    job = await find_job(request)
    events = await job_events(node, job)
    items = history_items(job.id, events, event_type, request.query.get("execution_id", ""))
    start, limit = offset_of(request), limit_of(request)
    shown = items[start : start + limit]
    at = start + len(shown)
    done = job.terminal and at >= len(items)
    return web.json_response({"Items": shown, "NextToken": "" if done else token(at)})


async def list_results(request: web.Request) -> web.Response:
    """Where each completed execution's results download from (`urlDownload` of a .tar.gz
    from a node holding them; an S3 publisher's location as Bacalhau describes it)."""
    job = await find_job(request)
    view = job_view(job)
    items = []
    for execution in sorted(job.executions.values(), key=lambda e: (e.accepted_hlc, e.id)):
        if execution.status != "completed" or execution.reference is None:
            continue
        result = await _presigned(request, execution.reference) or published(request, execution)
        if result is None:  # S3, or no node known to hold it: what the view says
            shown = bacalhau_execution(view, view["executions"][execution.id])
            result = shown["PublishedResult"]
        items.append(result)
    return web.json_response({"Items": items, "NextToken": ""})


async def _presigned(request: web.Request, reference: str) -> dict[str, Any] | None:
    """An S3 archive's `s3PreSigned` result, as Bacalhau's requester signs one when it has S3
    credentials (its `job get` downloads and unpacks the URL); None for anything else."""
    if not (reference.startswith("s3://") and reference.endswith(".tar.gz")):
        return None
    bucket, _, key = reference.removeprefix("s3://").partition("/")
    url = await asyncio.to_thread(served_node(request).content.presigned, bucket, key)
    if url is None:
        return None
    source = {"Bucket": bucket, "Key": key, "Filter": "", "Region": "", "Endpoint": ""}
    source |= {"VersionID": "", "ChecksumSHA256": ""}
    params = {"SourceSpec": source, "PreSignedURL": url, "Managed": False}
    return {"Type": "s3PreSigned", "Params": params}


def add_routes(app: web.Application) -> None:
    route(app, "GET", JOB + "/executions", list_executions, auth.READ)
    route(app, "GET", JOB + "/history", list_history, auth.READ)
    route(app, "GET", JOB + "/results", list_results, auth.READ)
