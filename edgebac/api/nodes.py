"""Routes about the node itself and its log: health, identity, members, events, the API doc."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from edgebac.api.auth import GUARD_KEY, not_ready
from edgebac.api.bodies import int_param, read_json
from edgebac.api.gone import STATS_KEY
from edgebac.api.protocol import ServedNode, served_node
from edgebac.errors import BadRequest
from edgebac.eventlog.view import event_json

MAX_PAGE = 1000


async def healthz(request: web.Request) -> web.Response:
    node = served_node(request)
    return web.json_response({"status": "ok", "id": node.identity.node_id})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: 200 once the node has folded its log and schedules (`/healthz` is liveness)."""
    node = served_node(request)
    if not node.ready:
        raise not_ready()
    return web.json_response({"status": "ready", "id": node.identity.node_id})


async def node_info(request: web.Request) -> web.Response:
    node = served_node(request)
    info = await node.describe()
    info["api"] = {"clients_gone": request.app[STATS_KEY].clients_gone}
    info["access"] = request.app[GUARD_KEY].describe()
    info["ready"] = node.ready
    if request.query.get("state_hash") == "1":  # costs a pass over the whole projection
        info["state_hash"] = node.runner.refresh().state_hash()
    return web.json_response(info)


async def list_events(request: web.Request) -> web.Response:
    """Events in local arrival order, paged by `after` (a pos); filter by `type` or `job_id`.

    `wait_ms` makes it a long poll: the answer comes as soon as anything is stored past `after`.
    """
    node = served_node(request)
    after = int_param(request, "after", 0, 0, 2**62)
    limit = max(1, int_param(request, "limit", 100, 0, MAX_PAGE))
    wait_s = int_param(request, "wait_ms", 0, 0, 60_000) / 1000
    if wait_s:
        await node.log.wait_past(after, wait_s)
    rows = await node.log.since(after, limit)
    type_, job_id = request.query.get("type"), request.query.get("job_id")
    raw = request.query.get("raw") == "1"
    events: list[dict[str, Any]] = [
        event_json(event, pos) | ({"raw": event.raw.hex()} if raw else {})
        for pos, event in rows
        if (type_ is None or event.type == type_) and (job_id is None or event.job_id == job_id)
    ]
    next_after = rows[-1][0] if rows else after
    return web.json_response({"events": events, "next": next_after, "more": len(rows) == limit})


async def list_nodes(request: web.Request) -> web.Response:
    """Every node this one knows: announcements from the log, liveness from gossip; with what
    each announced it runs on (engines, resources, version: absent until it announced)."""
    node = served_node(request)
    rows = await node.known_nodes()
    for row in rows:
        row.update(await _announced(node, row["id"]))
    return web.json_response({"nodes": rows})


async def _announced(node: ServedNode, node_id: str) -> dict[str, Any]:
    try:
        author = bytes.fromhex(node_id)
    except (TypeError, ValueError):  # None: a configured peer that never answered
        return {}
    event = await node.log.latest(author, "NodeAnnounced")
    body = event.body if event is not None else {}
    return {
        "engines": list(body.get("executors", [])),
        "resources": dict(body.get("resources", {})),
        "version": body.get("version"),
    }


def _author_param(request: web.Request) -> bytes:
    try:
        author = bytes.fromhex(request.match_info["author"])
    except ValueError:
        author = b""
    if len(author) != 32:
        raise BadRequest("author must be a public key: 64 hex digits")
    return author


async def author_head(request: web.Request) -> web.Response:
    """The newest event held of an author: what a client signing as that author builds on."""
    node = served_node(request)
    head = node.log.head(_author_param(request))
    if head is None:
        return web.json_response({"seq": 0, "id": None, "hlc": 0})
    return web.json_response({"seq": head.seq, "id": head.id.hex(), "hlc": head.hlc.pack()})


async def post_events(request: web.Request) -> web.Response:
    """Signed events from a client (an authority's admissions): `{"events": [hex, ...]}`."""
    node = served_node(request)
    payload = await read_json(request, "the body")
    items = payload.get("events") if isinstance(payload, dict) else None
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise BadRequest('the body must be {"events": [hex-encoded signed events]}')
    try:
        raws = [bytes.fromhex(item) for item in items]
    except ValueError:
        raise BadRequest("each event must be hex digits (an even number of them)") from None
    report = await node.gossip.ingest(raws)
    return web.json_response(
        {
            "accepted": [event.id.hex() for event in report.accepted],
            "rejected": [{"reason": str(r.reason), "detail": r.detail} for r in report.errors],
        }
    )


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI document of this API (kept in the repo as edgebac/api/openapi.json)."""
    from importlib.resources import files

    text = files("edgebac.api").joinpath("openapi.json").read_text()
    return web.Response(text=text, content_type="application/json")


def add_node_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/v1/node", node_info)
    app.router.add_get("/api/v1/events", list_events)
    app.router.add_post("/api/v1/events", post_events)
    app.router.add_get("/api/v1/nodes", list_nodes)
    app.router.add_get("/api/v1/authors/{author}/head", author_head)
    app.router.add_get("/api/v1/openapi.json", openapi)
