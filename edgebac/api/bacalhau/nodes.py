"""Bacalhau's node routes: `GET /api/v1/orchestrator/nodes`, `GET /nodes/{id}` (a unique
prefix), and `PUT /nodes/{id}` (approve/reject/delete), which is refused: admission in edgebac
is a NodeAdmitted/NodeRevoked event signed by the network's authority key, which no node holds
(`edgebac network admit|revoke`).

Each node is a Bacalhau NodeState: what it announced in the log (roles, labels, engines,
resources, version) and its liveness from gossip (`alive` is CONNECTED). The list carries both
`Nodes` (Go CLI) and `nodes` (the Python apiclient), one node both `Node` and `node`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from edgebac import __version__
from edgebac.api import auth
from edgebac.api.bacalhau.common import page, route
from edgebac.api.protocol import ServedNode, served_node
from edgebac.errors import BadRequest, EdgebacError, NotFound
from edgebac.eventlog.clock import wall_clock_ms
from edgebac.scheduler.bacalhau_view import rfc3339
from edgebac.scheduler.state import NodeInfo

NODES = "/api/v1/orchestrator/nodes"
NODE = "/api/v1/orchestrator/nodes/{node_id}"
MIN_PREFIX = 4
PUBLISHERS = ["local", "s3"]
STORAGES = ["urlDownload", "s3", "ipfs", "localDirectory", "inline"]


class NoAuthority(EdgebacError):
    code = "no_authority_on_nodes"
    http_status = 501


def version_info() -> dict[str, Any]:
    """Bacalhau's BuildVersionInfo, for edgebac (its CLI prints GitVersion)."""
    major, minor, *_ = [*__version__.split("."), "0", "0"]
    return {
        "Major": major,
        "Minor": minor,
        "GitVersion": f"edgebac-v{__version__}",
        "GitCommit": "",
        "BuildDate": "1970-01-01T00:00:00Z",
        "GOOS": "linux",
        "GOARCH": "",
    }


def _capacity(resources: dict[str, int]) -> dict[str, Any]:
    return {
        "CPU": resources.get("cpu_millis", 0) / 1000,
        "Memory": resources.get("memory_bytes", 0),
        "Disk": resources.get("disk_bytes", 0),
        "GPU": resources.get("gpu", 0),
    }


def node_info(node_id: str, info: NodeInfo | None, running: int = 0) -> dict[str, Any]:
    """Bacalhau's NodeInfo for a node's announcement (None: not announced yet)."""
    roles = info.roles if info else []
    capacity = _capacity(info.resources if info else {})
    shown: dict[str, Any] = {
        "NodeID": node_id,
        "NodeType": "Compute" if "compute" in roles else "Requester",
        "Labels": dict(info.labels) if info else {},
        "SupportedProtocols": [],
        "BacalhauVersion": version_info(),
    }
    if "compute" in roles:
        shown["ComputeNodeInfo"] = {
            "ExecutionEngines": list(info.executors) if info else [],
            "Publishers": PUBLISHERS,
            "StorageSources": STORAGES,
            "MaxCapacity": capacity,
            "QueueCapacity": {},
            "AvailableCapacity": capacity,  # what it announced: edgebac gossips no usage
            "MaxJobRequirements": capacity,
            "RunningExecutions": running,
            "EnqueuedExecutions": 0,
        }
    return shown


def node_state(node: ServedNode, row: dict[str, Any], now_ms: int) -> dict[str, Any]:
    state = node.runner.state
    key = bytes.fromhex(row["id"])
    running = len(state.active_on(key))  # accepted or running: held jobs' only
    connected = row.get("liveness") in ("self", "alive")
    heard_ms = now_ms - (row.get("silent_ms") or 0)
    status = "CONNECTED" if connected else "DISCONNECTED"
    return {
        "Info": node_info(row["id"], state.nodes.get(key), running),
        "Membership": "APPROVED",
        "Connection": status,
        "ConnectionState": {
            "Status": status,
            "LastHeartbeat": rfc3339(heard_ms * 1_000_000),
            "ConnectedSince": "0001-01-01T00:00:00Z",
            "DisconnectedSince": "0001-01-01T00:00:00Z",
        },
    }


async def _states(node: ServedNode) -> list[dict[str, Any]]:
    now = wall_clock_ms()
    rows = [row for row in await node.known_nodes() if row.get("id")]
    return [node_state(node, row, now) for row in sorted(rows, key=lambda r: r["id"])]


async def list_nodes(request: web.Request) -> web.Response:
    """Filters: `filter-status` connected/disconnected, `filter-approval` (all are approved)."""
    states = await _states(served_node(request))
    status = request.query.get("filter-status", "").upper()
    if status:
        states = [s for s in states if s["ConnectionState"]["Status"] == status]
    approval = request.query.get("filter-approval", "") or request.query.get("filter_approval", "")
    if approval and approval.upper() != "APPROVED":
        states = []
    items, next_token = page(states, request)
    return web.json_response({"Nodes": items, "nodes": items, "NextToken": next_token})


async def get_node(request: web.Request) -> web.Response:
    text = request.match_info["node_id"].lower()
    if len(text) < MIN_PREFIX:
        raise BadRequest(f"node id {text[:80]!r} is too short: give at least {MIN_PREFIX} digits")
    found = [s for s in await _states(served_node(request)) if s["Info"]["NodeID"].startswith(text)]
    if not found:
        raise NotFound(f"no node {text[:80]!r} is known to this node")
    if len(found) > 1:
        raise BadRequest(f"node id {text[:80]!r} is ambiguous: {len(found)} nodes start so")
    return web.json_response({"Node": found[0], "node": found[0]})


async def update_node(request: web.Request) -> web.Response:
    raise NoAuthority(
        "edgebac admits and revokes nodes with events signed by the network's authority key, "
        "which no node holds: run `edgebac network admit|revoke` where that key is"
    )


def add_routes(app: web.Application) -> None:
    route(app, "GET", NODES, list_nodes, auth.ANY)
    route(app, "GET", NODE, get_node, auth.ANY)
    route(app, "PUT", NODE, update_node, auth.ADMIN)
