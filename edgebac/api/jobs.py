"""The client API for jobs, served by requesters: submit, get, list, cancel.

Answers come from the node's projection of the log, so any node that holds the events can
show a job; only the job's own requester submits and cancels. A job that ended a while ago is
held in the projection only as a summary (enough to list it): showing it folds it again from
its events in the log.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiohttp import web

from edgebac.api.protocol import ServedNode, served_node
from edgebac.errors import BadRequest, EdgebacError, NotFound
from edgebac.eventlog.view import event_json, jsonable
from edgebac.scheduler import events as ev
from edgebac.scheduler import requester
from edgebac.scheduler.reasons import summarize_declines
from edgebac.scheduler.retention import EndedJob
from edgebac.scheduler.spec import SpecError, parse_spec
from edgebac.scheduler.state import Job

MAX_LIST = 1000


class NotRequester(EdgebacError):
    code = "not_requester"
    http_status = 409


async def _job(node: ServedNode, job_id: str) -> Job:
    job = await node.runner.full_job(job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r} is known to this node")
    return job


def job_summary(job: Job | EndedJob) -> dict[str, Any]:
    if isinstance(job, EndedJob):
        return _ended_summary(job)
    executions = list(job.executions.values())
    return {
        "id": job.id,
        "name": job.spec.name if job.spec else "",
        "engine": job.spec_dict.get("engine", {}).get("type"),
        "status": job.status,
        "reason": job.reason,
        "requester": job.requester.hex(),
        "created_ms": job.created_hlc.ms,
        "executions": {
            state: sum(1 for e in executions if e.status == state)
            for state in sorted({e.status for e in executions})
        },
    }


def _ended_summary(job: EndedJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "name": job.name,
        "engine": job.engine,
        "status": job.status,
        "reason": job.reason,
        "requester": job.requester.hex(),
        "created_ms": job.created_hlc.ms,
        "executions": dict(job.execution_counts),
    }


def job_view(job: Job) -> dict[str, Any]:
    view = jsonable(job.to_dict())
    view["pending_reason"] = (
        summarize_declines(job) if job.status in ("pending", "bidding") else None
    )
    view["summary"] = job_summary(job)
    return view


async def submit_job(request: web.Request) -> web.Response:
    node = served_node(request)
    if "requester" not in node.roles:
        raise NotRequester("this node is not a requester: submit jobs to one that is")
    try:
        data = await request.json()
    except ValueError:
        raise BadRequest("the job spec must be JSON") from None
    spec = parse_spec(data)  # SpecError: 400 naming each field at fault
    spec_dict = spec.to_dict()
    job_id = ev.job_id_for(node.identity.public_key, spec_dict, uuid.uuid4().hex)
    await node.log.append([(ev.JOB_CREATED, {"job_id": job_id, "spec": spec_dict})])
    return web.json_response({"job_id": job_id}, status=201)


async def get_job(request: web.Request) -> web.Response:
    """One job; `wait_ms` long-polls until the job has ended (or the time is up)."""
    node = served_node(request)
    job = await _job(node, request.match_info["job_id"])
    try:
        wait_s = min(int(request.query.get("wait_ms", "0")), 60_000) / 1000
    except ValueError:
        raise BadRequest("wait_ms must be an integer") from None
    deadline = asyncio.get_running_loop().time() + wait_s
    while not job.terminal and (left := deadline - asyncio.get_running_loop().time()) > 0:
        changed = await node.runner.wait_job(job.id, left)
        job = changed if changed is not None else await _job(node, job.id)
    view = job_view(job)
    if request.query.get("events", "1") != "0":
        history = await node.log.by_job(job.id, limit=10_000)
        view["events"] = [event_json(event) for event in history]
    return web.json_response(view)


async def list_jobs(request: web.Request) -> web.Response:
    node = served_node(request)
    try:
        limit = min(int(request.query.get("limit", "50")), MAX_LIST)
        offset = int(request.query.get("offset", "0"))
    except ValueError:
        raise BadRequest("limit and offset must be integers") from None
    if limit < 1 or offset < 0:
        raise BadRequest("limit must be at least 1 and offset at least 0")
    state = node.runner.refresh()
    jobs: list[Job | EndedJob] = [*state.jobs.values(), *state.evicted.values()]
    jobs.sort(key=lambda j: (j.created_hlc, j.id), reverse=True)
    page = jobs[offset : offset + limit]
    return web.json_response(
        {"jobs": [job_summary(job) for job in page], "total": len(jobs), "offset": offset}
    )


async def cancel_job(request: web.Request) -> web.Response:
    node = served_node(request)
    job = await _job(node, request.match_info["job_id"])
    if job.requester != node.identity.public_key:
        raise NotRequester(
            f"job {job.id} belongs to requester {job.requester.hex()[:12]}; cancel it there"
        )
    reason = request.query.get("reason", "canceled by the client")
    planned = [] if job.terminal else requester.cancel(node.runner.refresh(), job.id, reason)
    if planned:
        await node.log.append(planned)
    return web.json_response({"job_id": job.id, "canceled": bool(planned), "status": job.status})


async def job_results(request: web.Request) -> web.Response:
    """Where each execution's results are, and which nodes to fetch them from."""
    node = served_node(request)
    job = await _job(node, request.match_info["job_id"])
    results = []
    for execution in job.executions.values():
        if execution.reference is None:
            continue
        digest = execution.digest or execution.reference
        holders = node.holders(digest)
        me = f"http://{node.advertised}"
        if node.content.holds(f"ipfs://{digest}") and me not in holders:
            holders.insert(0, me)
        results.append(
            {
                "execution_id": execution.id,
                "node": execution.node.hex(),
                "status": execution.status,
                "exit_code": execution.exit_code,
                "reference": execution.reference,
                "digest": execution.digest,
                "size": execution.size,
                "holders": holders,
            }
        )
    return web.json_response({"job_id": job.id, "status": job.status, "results": results})


def add_job_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/jobs", submit_job)
    app.router.add_get("/api/v1/jobs", list_jobs)
    app.router.add_get("/api/v1/jobs/{job_id}", get_job)
    app.router.add_post("/api/v1/jobs/{job_id}/cancel", cancel_job)
    app.router.add_get("/api/v1/jobs/{job_id}/results", job_results)


__all__ = ["SpecError", "add_job_routes"]
