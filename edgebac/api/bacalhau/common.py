"""What the compat routes share: finding a job as Bacalhau names one (id, unique prefix or
Name), query parameters as its clients spell them, paging tokens, and Bacalhau views of jobs."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from aiohttp import web

from edgebac.api import auth
from edgebac.api.bacalhau.links import published
from edgebac.api.bodies import int_param
from edgebac.api.cursor import cursor_key
from edgebac.api.jobs import load_job
from edgebac.api.protocol import ServedNode, served_node
from edgebac.errors import BadRequest, NotFound
from edgebac.eventlog.view import event_json
from edgebac.scheduler.bacalhau_versions import newest
from edgebac.scheduler.bacalhau_view import bacalhau_execution
from edgebac.scheduler.ended import Listing
from edgebac.scheduler.state import Job

MAX_LIMIT = 1000
MAX_EVENTS = 10_000  # of one job's, as GET /api/v1/jobs/{id} reads them
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Check = Callable[[web.Request, Any], None]


def route(app: web.Application, method: str, path: str, handler: Handler, need: str) -> None:
    """Add a route and say to the front door what it needs (`auth.declare`)."""
    app.router.add_route(method, path, handler)
    auth.declare(method, path, need)


def flag(request: web.Request, name: str) -> bool:
    """A boolean as either client sends it: Go `true`/`false`, Python `True`/`False`, or none."""
    text = request.query.get(name, "").strip().lower()
    if text in ("", "false", "0"):
        return False
    if text in ("true", "1"):
        return True
    raise BadRequest(f"query parameter {name!r} must be true or false")


def limit_of(request: web.Request, default: int = 0) -> int:
    """`limit` (0: no limit, as Bacalhau takes it)."""
    return int_param(request, "limit", default, 0, MAX_LIMIT) or MAX_LIMIT


def offset_of(request: web.Request) -> int:
    """The offset a `next_token` of ours stands for (0 without one)."""
    token = request.query.get("next_token", "")
    if not token:
        return 0
    try:
        kind, _, number = base64.urlsafe_b64decode(token.encode() + b"==").decode().partition(":")
        if kind == "offset" and number.isascii() and number.isdigit() and len(number) < 19:
            return int(number)
    except (ValueError, UnicodeDecodeError):
        pass
    raise BadRequest("next_token: not a token this node gave")


def where_from(request: web.Request, asked: Listing) -> Listing:
    """Where a job listing's page starts: after the job a cursor token of ours names (the
    NextToken of a page before: sought by index), or at an offset (a token of the offset
    kind, as earlier releases gave, or none: 0)."""
    text = request.query.get("next_token", "")
    if not text:
        return asked
    try:
        offset_kind = base64.urlsafe_b64decode(text.encode() + b"==").startswith(b"offset:")
    except ValueError:
        offset_kind = False
    if offset_kind:
        return replace(asked, offset=offset_of(request))
    return replace(asked, after=cursor_key(text, asked.order, asked.newest_first, "next_token"))


def token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def page(items: list[Any], request: web.Request, default_limit: int = 0) -> tuple[list, str]:
    """One page of `items` and the token of the next ("" when this is the last)."""
    offset, limit = offset_of(request), limit_of(request, default_limit)
    shown = items[offset : offset + limit]
    return shown, token(offset + limit) if offset + limit < len(items) else ""


async def find_job(request: web.Request, check: Check = auth.check_read) -> Job:
    """The job the path names, by id, unique prefix or Name; `check` says the caller may."""
    node = served_node(request)
    text = request.match_info["job_id"]
    try:
        job = await load_job(node, text)
    except (NotFound, BadRequest) as exc:  # not an id, nor a prefix of one: perhaps a Name
        job = await _job_by_name(request, node, text, exc)
    check(request, job)
    return job


async def _job_by_name(
    request: web.Request, node: ServedNode, name: str, not_an_id: Exception
) -> Job:
    """The newest version of the Name (see `scheduler.bacalhau_versions`) among the caller's
    own jobs, else among those it may read: Bacalhau's names are one job each, its latest."""
    caller = auth.caller_of(request)
    state = node.runner.state
    held = [job for job in state.jobs.values() if _name(job) == name]
    ended = state.evicted.named(name) if name else []  # by index
    named = [job for job in (*held, *ended) if name and caller.may_read(job)]
    mine = [job for job in named if caller.owns(job)] or named
    chosen = newest([(getattr(j, "spec_dict", {}), j.created_hlc, j.id) for j in mine])
    if chosen is None:
        raise not_an_id
    return await load_job(node, chosen)


def _name(job: Any) -> str | None:
    if isinstance(job, Job):
        return job.spec.name if job.spec else None
    return getattr(job, "name", None)


async def job_events(node: ServedNode, job: Job) -> list[dict[str, Any]]:
    return [event_json(event) for event in await node.log.by_job(job.id, limit=MAX_EVENTS)]


def executions_of(request: web.Request, job: Job, view: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's executions as Bacalhau's, in acceptance order."""
    ordered = sorted(job.executions.values(), key=lambda e: (e.accepted_hlc, e.id))
    return [
        bacalhau_execution(view, view["executions"][e.id], published(request, e)) for e in ordered
    ]
