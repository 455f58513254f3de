"""The client API for jobs, served by requesters: submit, get, list, cancel.

Answers come from the node's projection of the log, so any node that holds the events can
show a job; only the job's own requester submits and cancels. A job that ended a while ago is
kept only as a summary row (in SQLite on a node: enough to list it, by index): showing it folds
it again from its events in the log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from aiohttp import web

from edgebac.api import clientsig
from edgebac.api.auth import READ, Caller, caller_of, check_cancel, check_read
from edgebac.api.bodies import TooLarge, check_value, int_param, read_json, text_param
from edgebac.api.cursor import cursor_key, cursor_token
from edgebac.api.protocol import ServedNode, served_node
from edgebac.errors import BadRequest, EdgebacError, NotFound
from edgebac.eventlog.clock import wall_clock_ms
from edgebac.eventlog.encoding import EncodingError
from edgebac.eventlog.view import event_json, jsonable
from edgebac.scheduler import events as ev
from edgebac.scheduler import requester
from edgebac.scheduler.ended import Listing, Owner, sort_key
from edgebac.scheduler.reasons import waiting_reason
from edgebac.scheduler.retention import EndedJob
from edgebac.scheduler.spec import SpecError
from edgebac.scheduler.state import Job

MAX_LIST = 1000
MIN_ID_PREFIX = 4  # hex digits after "j-": fewer would name a different job as the log grows
MAX_OFFSET = 1 << 62
MAX_WAIT_MS = 60_000


class NotRequester(EdgebacError):
    code = "not_requester"
    http_status = 409


class AmbiguousId(BadRequest):
    code = "ambiguous_id"


def match_job_id(ids: Iterable[str], text: str) -> str | None:
    """The one id that is `text` or starts with it (like node ids, a job is named by a unique
    prefix, with or without its `j-`); None if no id does. Too short or ambiguous: BadRequest."""
    prefix = "j-" + text.removeprefix("j-")
    if len(prefix) - 2 < MIN_ID_PREFIX:
        raise BadRequest(
            f"job id {text!r} is too short: give at least {MIN_ID_PREFIX} characters after 'j-'"
        )
    found = sorted({job_id for job_id in ids if job_id.startswith(prefix)})
    if prefix in found:
        return prefix
    if len(found) > 1:
        shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
        raise AmbiguousId(f"job id {text!r} is ambiguous: {len(found)} jobs start so ({shown})")
    return found[0] if found else None


def ids_like(state: Any, text: str) -> list[str]:
    """The held and ended job ids that start as `text` may name one (by index)."""
    prefix = "j-" + text.removeprefix("j-")
    return [i for i in state.jobs if i.startswith(prefix)] + state.evicted.with_prefix(prefix)


def owner_of(caller: Caller) -> Owner:
    """Whose jobs `caller` may read, as a listing filters them (`Caller.may_read`)."""
    if not caller.may(READ):
        return Owner(everyone=False)
    return Owner(caller.scope_all, caller.key, caller.vouch_as)


async def load_job(node: ServedNode, job_id: str) -> Job:
    state = node.runner.refresh()
    if job_id not in state.jobs and job_id not in state.evicted:
        if len(job_id.removeprefix("j-")) < MIN_ID_PREFIX:
            match_job_id((), job_id)  # says it is too short
        job_id = match_job_id(ids_like(state, job_id), job_id) or job_id
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
    view["pending_reason"] = waiting_reason(job) if job.status in ("pending", "bidding") else None
    view["summary"] = job_summary(job)
    return view


async def submit_job(request: web.Request) -> web.Response:
    """A signed submission (`{"spec", "nonce", "client", "signature"}`) or a bare spec, which
    this requester vouches for. The same signed request again names the same job: answered
    with it (200), not created twice."""
    node = served_node(request)
    if "requester" not in node.roles:
        raise NotRequester("this node is not a requester: submit jobs to one that is")
    body = await read_json(request, "the job spec")
    caller = caller_of(request)
    try:  # SpecError names each field; what parsing made of it must be signable too
        asked = clientsig.submission(node.identity.public_key, body, caller.vouch_as or "unsigned")
        _check_signer(caller, asked)
        check_value(asked.spec, "the job spec")
        created = await create_once(node, asked)
    except EncodingError as exc:
        raise unsignable(exc, "job spec") from None
    return web.json_response(
        {"job_id": asked.job_id, "created": created}, status=201 if created else 200
    )


def _check_signer(caller: Any, asked: clientsig.Submission) -> None:
    """A call signed by one client carries a submission signed by that client (a captured
    signed submission of another's cannot be passed off under one's own credentials)."""
    if caller.key is not None and asked.client is not None and asked.client != caller.key:
        raise clientsig.NotTheJobsClient(
            f"the submission is signed by client {asked.client.hex()[:12]}, the call by "
            f"{caller.key.hex()[:12]}: sign both with one key"
        )


_CREATING: dict[bytes, dict[str, asyncio.Event]] = {}  # node -> job ids being appended now


async def create_once(node: ServedNode, asked: clientsig.Submission) -> bool:
    """Append the job's JobCreated unless the log has it or is getting it (a client retrying):
    a second JobCreated for one id would count as evidence against this very requester."""
    creating = _CREATING.setdefault(node.identity.public_key, {})
    while (busy := creating.get(asked.job_id)) is not None:
        await busy.wait()
    state = node.runner.refresh()
    if asked.job_id in state.jobs or asked.job_id in state.evicted:
        return False
    creating[asked.job_id] = done = asyncio.Event()
    try:
        body = {**asked.body(), "wall_ms": wall_clock_ms()}  # wall_ms: see jobfold
        await node.log.append([(ev.JOB_CREATED, body)])
    finally:
        del creating[asked.job_id]
        done.set()
    return True


def unsignable(exc: EncodingError, what: str) -> EdgebacError:
    """What the event encoder still refuses of client input is the client's error."""
    if exc.reason == "too_large":
        return TooLarge(
            f"the {what} makes an event too large for the log ({exc.detail}): "
            "pass large inputs by URL or content id, not inline"
        )
    return BadRequest(f"the {what} cannot be signed into an event: {exc.detail}")


async def get_job(request: web.Request) -> web.Response:
    """One job; `wait_ms` long-polls until the job has ended (or the time is up)."""
    node = served_node(request)
    wait_s = int_param(request, "wait_ms", 0, 0, MAX_WAIT_MS) / 1000
    job = await load_job(node, request.match_info["job_id"])
    check_read(request, job)
    deadline = asyncio.get_running_loop().time() + wait_s
    while not job.terminal and (left := deadline - asyncio.get_running_loop().time()) > 0:
        changed = await node.runner.wait_job(job.id, left)
        job = changed if changed is not None else await load_job(node, job.id)
    view = job_view(job)
    if request.query.get("events", "1") != "0":
        history = await node.log.by_job(job.id, limit=10_000)
        view["events"] = [event_json(event) for event in history]
    return web.json_response(view)


async def list_jobs(request: web.Request) -> web.Response:
    """Newest first, `limit` at a time: from `offset`, or right after where the page before
    ended (`next`: its answer's `next`, sought by index however deep the page is)."""
    node = served_node(request)
    limit = int_param(request, "limit", 50, 1, MAX_LIST)
    offset = int_param(request, "offset", 0, 0, MAX_OFFSET)
    token = request.query.get("next", "")
    asked = Listing(owner=owner_of(caller_of(request)), offset=offset, limit=limit)
    if token:
        if offset:
            raise BadRequest("give 'offset' or 'next', not both")
        after = cursor_key(token, asked.order, asked.newest_first, "next")
        asked = replace(asked, after=after)
    state = node.runner.refresh()
    page = state.evicted.listing(state.jobs.values(), asked)
    answer: dict[str, Any] = {"jobs": [job_summary(job) for job in page.items]}
    answer["total"] = page.total
    if not token:
        answer["offset"] = offset
    last = sort_key(asked.order, page.items[-1]) if page.more else None
    answer["next"] = cursor_token(asked.order, asked.newest_first, last) if last else None
    return web.json_response(answer)


async def cancel_job(request: web.Request) -> web.Response:
    """Cancel a job of this requester's: signed by its client (`{"reason"?, "nonce", "client",
    "signature"}`, carried into JobCanceled), or unsigned for a job it vouched for."""
    node = served_node(request)
    job = await load_job(node, request.match_info["job_id"])
    check_cancel(request, job)
    if job.requester != node.identity.public_key:
        raise NotRequester(
            f"job {job.id} belongs to requester {job.requester.hex()[:12]}; cancel it there"
        )
    body = await _optional_json(request, "the cancel request")
    reason = clientsig.cancel_reason(body, text_param(request, "reason", "canceled by the client"))
    signed = clientsig.cancel_fields(node.identity.public_key, job.id, job.client, body, reason)
    planned = [] if job.terminal else requester.cancel(node.runner.refresh(), job.id, reason)
    planned = [(kind, {**fields, **signed}) for kind, fields in planned]
    if planned:
        try:
            await node.log.append(planned)
        except EncodingError as exc:
            raise unsignable(exc, "cancel reason") from None
    return web.json_response({"job_id": job.id, "canceled": bool(planned), "status": job.status})


async def _optional_json(request: web.Request, what: str) -> dict[str, Any]:
    """A JSON object body, or {} when there is none (`curl -X POST` sends nothing)."""
    if not request.body_exists:
        return {}
    body = await read_json(request, what)
    if not isinstance(body, dict):
        raise BadRequest(f"{what} must be a JSON object")
    return body


async def job_results(request: web.Request) -> web.Response:
    """Where each execution's results are, and which nodes to fetch them from."""
    node = served_node(request)
    job = await load_job(node, request.match_info["job_id"])
    check_read(request, job)
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
