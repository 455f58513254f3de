"""Bacalhau's job routes: submit (PUT/POST), list, describe (with executions and history), stop.

Submitting is edgebac's own submission with a translation in front: the Bacalhau Job is turned
into an edgebac spec (`scheduler.bacalhau.translate_submission`), and this requester vouches
for it under the caller's name, as for an unsigned `POST /api/v1/jobs`; every check that path
makes still holds (the spec parses, the event can be signed, one JobCreated per job).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from edgebac.api import auth, clientsig
from edgebac.api.bacalhau.common import (
    executions_of,
    find_job,
    flag,
    job_events,
    limit_of,
    route,
    where_from,
)
from edgebac.api.bodies import check_value, read_json, text_param
from edgebac.api.cursor import cursor_token
from edgebac.api.jobs import NotRequester, create_once, job_view, load_job, owner_of, unsignable
from edgebac.api.protocol import served_node
from edgebac.errors import BadRequest
from edgebac.eventlog.encoding import EncodingError
from edgebac.scheduler import requester
from edgebac.scheduler.bacalhau import translate_submission
from edgebac.scheduler.bacalhau_history import history_items
from edgebac.scheduler.bacalhau_meta import DEFAULT_NAMESPACE
from edgebac.scheduler.bacalhau_versions import newest, next_version, version_of
from edgebac.scheduler.bacalhau_view import bacalhau_job
from edgebac.scheduler.constraints import all_match, parse_constraint
from edgebac.scheduler.ended import CREATED, ID, Listing, sort_key
from edgebac.scheduler.state import Job

JOBS = "/api/v1/orchestrator/jobs"
JOB = "/api/v1/orchestrator/jobs/{job_id}"
ORDERS = ("", "created_at", "id")
INCLUDES = frozenset({"", "executions", "history"})
MAX_JOBS = 100  # listed at once: the Go CLI asks for 10, the SDK for 5
SCAN_MAX = 100  # jobs one list request looks at (see list_jobs)


async def put_job(request: web.Request) -> web.Response:
    """`{"Job": {...}, ...}` -> `{"JobID", "EvaluationID", "Warnings"}` (200, as Bacalhau)."""
    node = served_node(request)
    if "requester" not in node.roles:
        raise NotRequester("this node is not a requester: submit jobs to one that is")
    body = await read_json(request, "the job")
    translation = translate_submission(body)  # SpecError: a 400 naming each Job.<field>
    warnings = list(translation.warnings)
    if not translation.spec.get("name"):
        job_id = await _submit(request, translation.spec)
    else:  # one at a time per node: two updates of one Name must not both be version N+1
        async with _NAMING.setdefault(node.identity.public_key, asyncio.Lock()):
            job_id, replaced = await _submit_named(request, translation.spec, translation.force)
        if replaced is not None:
            warnings.append(f"job {replaced} of this name was stopped: {job_id} replaces it")
    return web.json_response({"JobID": job_id, "EvaluationID": "", "Warnings": warnings})


_NAMING: dict[bytes, asyncio.Lock] = {}  # node -> the lock of its named submissions


async def _submit(request: web.Request, spec: dict[str, Any]) -> str:
    node, caller = served_node(request), auth.caller_of(request)
    try:
        asked = clientsig.submission(
            node.identity.public_key, spec, caller.vouch_as or clientsig.UNSIGNED
        )
        check_value(asked.spec, "the job")
        await create_once(node, asked)
    except EncodingError as exc:
        raise unsignable(exc, "job") from None
    return asked.job_id


async def _submit_named(
    request: web.Request, spec: dict[str, Any], force: bool
) -> tuple[str, str | None]:
    """A Name the caller's job here already has is Bacalhau's job update (see
    `scheduler.bacalhau_versions`): the new version, then the old one stopped."""
    node = served_node(request)
    previous = _previous_version(request, spec)
    if previous is None or previous.spec is None:
        return await _submit(request, spec), None
    spec = next_version(spec, previous.spec.to_dict(), previous.id, force)  # or NoChanges
    job_id = await _submit(request, spec)
    reason = f"Job update requested by user: version {version_of(spec)} is job {job_id}"
    state = node.runner.refresh()
    held = state.jobs.get(previous.id)  # gone from the held jobs: it ended meanwhile
    if held is not None and not held.terminal:
        planned = requester.cancel(state, previous.id, reason)
        await node.log.append([(kind, body) for kind, body in planned])
    return job_id, previous.id


def _previous_version(request: web.Request, spec: dict[str, Any]) -> Job | None:
    """The newest job of this Name and namespace that the caller submitted to this requester
    (another's job of the same Name is not the caller's to update)."""
    node, caller = served_node(request), auth.caller_of(request)
    namespace = (spec.get("bacalhau") or {}).get("namespace", DEFAULT_NAMESPACE)
    mine = {
        job.id: job
        for job in node.runner.refresh().jobs.values()
        if job.spec is not None
        and job.spec.name == spec["name"]
        and _namespace(job) == namespace
        and job.requester == node.identity.public_key
        and job.client is None  # vouched for, as this route submits: this requester stops it
        and caller.owns(job)
    }
    chosen = newest([(j.spec_dict, j.created_hlc, j.id) for j in mine.values()])
    return mine[chosen] if chosen is not None else None


async def get_job(request: web.Request) -> web.Response:
    """`{"Job"}`, plus `Executions` and `History` as `include=executions,history` asks."""
    node = served_node(request)
    include = {part.strip() for part in request.query.get("include", "").split(",")}
    if unknown := include - INCLUDES:
        raise BadRequest(f"include: {sorted(unknown)[0]!r} is not executions or history")
    job = await find_job(request)
    view, events = job_view(job), await job_events(node, job)
    answer: dict[str, Any] = {"Job": bacalhau_job(view, events)}
    if "executions" in include:
        answer["Executions"] = {"Items": executions_of(request, job, view), "NextToken": ""}
    if "history" in include:
        answer["History"] = {"Items": history_items(job.id, events), "NextToken": ""}
    return web.json_response(answer)


async def list_jobs(request: web.Request) -> web.Response:
    """`{"Items": [Job], "NextToken"}`: the caller's jobs (all, for scope all), oldest first
    unless `reverse`; `labels` is a selector over the jobs' Labels (`a=b,c!=d`); `namespace`
    one namespace (none or `*`: all). Labels live in the spec, which a job that ended a while
    ago has only in the log: a request examines at most SCAN_MAX jobs, and its NextToken
    says where the next one goes on (so a selector matching nothing costs bounded work): the
    sort key of the last job looked at, which the next request seeks to by index."""
    node = served_node(request)
    order = request.query.get("order_by", "")
    if order not in ORDERS:
        raise BadRequest(f"order_by: {order!r} is not one of created_at, id")
    selector = _selector(request.query.get("labels", ""))
    namespace = request.query.get("namespace", "")
    limit = min(limit_of(request), MAX_JOBS)
    caller = auth.caller_of(request)
    state = node.runner.refresh()
    by = ID if order == "id" else CREATED
    asked = where_from(
        request, Listing(by, flag(request, "reverse"), owner_of(caller), 0, SCAN_MAX)
    )
    page = state.evicted.listing(state.jobs.values(), asked)  # ended ones by index
    items: list[dict[str, Any]] = []
    looked = 0
    for summary in page.items:
        if len(items) >= limit:
            break
        job = await load_job(node, summary.id)
        looked += 1
        if _listed(job, selector, namespace):
            items.append(bacalhau_job(job_view(job), await job_events(node, job)))
    next_token = ""
    if looked and (looked < len(page.items) or page.more):  # goes on after the last looked at
        last = sort_key(by, page.items[looked - 1])
        next_token = cursor_token(by, asked.newest_first, last)
    return web.json_response({"Items": items, "NextToken": next_token})


def _listed(job: Job, selector: tuple[Any, ...], namespace: str) -> bool:
    if namespace not in ("", "*") and _namespace(job) != namespace:
        return False
    meta = job.spec.bacalhau if job.spec is not None else None
    return all_match(selector, meta.labels if meta else {})


def _namespace(job: Job) -> str:
    meta = job.spec.bacalhau if job.spec is not None else None
    return meta.namespace if meta else DEFAULT_NAMESPACE


def _selector(text: str) -> tuple[Any, ...]:
    """A k8s-style label selector (`a=b, c != true`) as edgebac constraints."""
    try:
        return tuple(parse_constraint(part.strip()) for part in _split(text) if part.strip())
    except ValueError as exc:
        raise BadRequest(f"labels: {exc}") from None


def _split(text: str) -> list[str]:
    """Commas outside parentheses (`k in (a,b), c=d`)."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


async def stop_job(request: web.Request) -> web.Response:
    """Stop (cancel) a job: the reason from the body (`reason`, any case) or the query."""
    node = served_node(request)
    job = await find_job(request, auth.check_cancel)
    if job.requester != node.identity.public_key:
        raise NotRequester(
            f"job {job.id} belongs to requester {job.requester.hex()[:12]}; stop it there"
        )
    reason = await _reason(request)
    fields = clientsig.cancel_fields(node.identity.public_key, job.id, job.client, {}, reason)
    planned = [] if job.terminal else requester.cancel(node.runner.refresh(), job.id, reason)
    if planned:
        try:
            await node.log.append([(kind, {**body, **fields}) for kind, body in planned])
        except EncodingError as exc:
            raise unsignable(exc, "stop reason") from None
    return web.json_response({"EvaluationID": ""})


async def _reason(request: web.Request) -> str:
    default = text_param(request, "reason", "") or "stopped by the user"
    if not request.body_exists:
        return default
    body = await read_json(request, "the stop request")
    if not isinstance(body, dict):
        raise BadRequest("the stop request must be a JSON object")
    said = [v for k, v in body.items() if isinstance(k, str) and k.lower() == "reason"]
    return clientsig.cancel_reason({"reason": said[-1]}, default) if said and said[-1] else default


def add_routes(app: web.Application) -> None:
    route(app, "PUT", JOBS, put_job, auth.SUBMIT)
    route(app, "POST", JOBS, put_job, auth.SUBMIT)
    route(app, "GET", JOBS, list_jobs, auth.READ)
    route(app, "GET", JOB, get_job, auth.READ)
    route(app, "DELETE", JOB, stop_job, auth.CANCEL)
