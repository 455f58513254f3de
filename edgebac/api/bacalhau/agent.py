"""Bacalhau's agent routes (`/api/v1/agent/alive|version|node|config`) and the login handshake
its Go CLI makes when it has no API key (`GET /api/v1/auth`, `POST /api/v1/auth/{method}`).

The handshake grants nothing the node's front door would not: with access rules the one method
offered is `token` (the CLI asks its user for an API token; the node checks it against the
rules and hands it back as the bearer token), and a wrong token is refused. Without rules the
node serves loopback callers only, so `ClientKey` (the CLI's default, a challenge signed with its
RSA key) succeeds for loopback callers with a token that means nothing elsewhere; any other
caller is refused, as on every route. `BACALHAU_API_KEY=<token>` skips the handshake.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import secrets
from typing import Any

from aiohttp import web

from edgebac.api import auth
from edgebac.api.bacalhau.common import route
from edgebac.api.bacalhau.nodes import node_info, version_info
from edgebac.api.bodies import parse_json, read_json
from edgebac.api.protocol import served_node
from edgebac.errors import BadRequest, NotFound

TOKEN_METHOD, KEY_METHOD = "token", "ClientKey"
TOKEN_SCHEMA = {
    "type": "object",
    "properties": {"token": {"type": "string", "writeOnly": True}},
    "required": ["token"],
}
LOOPBACK_TOKEN = "edgebac-loopback"  # nothing to guard: without rules only loopback is served


async def alive(request: web.Request) -> web.Response:
    return web.json_response({"Status": "OK"})


async def version(request: web.Request) -> web.Response:
    return web.json_response(version_info())


async def agent_node(request: web.Request) -> web.Response:
    node = served_node(request)
    key = node.identity.public_key
    return web.json_response(node_info(key.hex(), node.runner.state.nodes.get(key)))


async def agent_config(request: web.Request) -> web.Response:
    """What a Bacalhau config would say of this node: roles, labels, address; no secrets."""
    node = served_node(request)
    host, _, port = node.advertised.rpartition(":")
    announced = node.runner.state.nodes.get(node.identity.public_key)
    config: dict[str, Any] = {
        "API": {"Host": host, "Port": int(port) if port.isdigit() else 0},
        "NameProvider": "edgebac",
        "Orchestrator": {"Enabled": "requester" in node.roles},
        "Compute": {"Enabled": "compute" in node.roles},
        "Labels": dict(announced.labels) if announced else {},
    }
    return web.json_response({"config": config})


def _rules(request: web.Request) -> bool:
    guard = request.app[auth.GUARD_KEY]
    return guard.access is not None and not guard.open_api


def _loopback(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


async def methods(request: web.Request) -> web.Response:
    if _rules(request):
        method = {"type": "ask", "params": TOKEN_SCHEMA}
        return web.json_response({"Methods": {TOKEN_METHOD: method}})
    phrase = base64.b64encode(secrets.token_bytes(32)).decode()
    challenge = {"type": "challenge", "params": {"InputPhrase": phrase}}
    return web.json_response({"Methods": {KEY_METHOD: challenge}})


def _answer(success: bool, token: str = "", reason: str = "") -> web.Response:
    authentication: dict[str, Any] = {"success": success}
    if token:
        authentication["token"] = token
    if reason:
        authentication["reason"] = reason
    return web.json_response({"Authentication": authentication})


async def authenticate(request: web.Request) -> web.Response:
    method = request.match_info["method"]
    body = await read_json(request, "the login", max_bytes=64 << 10)
    data = _method_data(body)
    guard = request.app[auth.GUARD_KEY]
    if method == TOKEN_METHOD and _rules(request):
        given = data.get("token") if isinstance(data, dict) else None
        client = guard.access.client_of_token(given) if isinstance(given, str) else None
        if client is None:
            return _answer(False, reason="this token is not in the node's access rules")
        return _answer(True, token=given)  # type: ignore[arg-type]
    if method == KEY_METHOD and not _rules(request):
        if guard.open_api or _loopback(request):
            return _answer(True, token=LOOPBACK_TOKEN)
        raise auth.Unauthenticated(
            "this node serves only loopback clients (it has no --access rules)"
        )
    raise NotFound(f"this node offers no login method {method[:40]!r} (GET /api/v1/auth)")


def _method_data(body: Any) -> Any:
    """`MethodData`: base64 of JSON, as Go encodes []byte (any key case)."""
    if not isinstance(body, dict):
        raise BadRequest("the login must be a JSON object")
    raw = next((v for k, v in body.items() if str(k).lower() == "methoddata"), None)
    if raw is None:
        return None
    try:
        data = base64.b64decode(str(raw), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("MethodData: not base64") from None
    return parse_json(data, "MethodData")


def add_routes(app: web.Application) -> None:
    route(app, "GET", "/api/v1/agent/alive", alive, auth.PUBLIC)
    route(app, "GET", "/api/v1/agent/version", version, auth.ANY)
    route(app, "GET", "/api/v1/agent/node", agent_node, auth.ANY)
    route(app, "GET", "/api/v1/agent/config", agent_config, auth.ANY)
    route(app, "GET", "/api/v1/auth", methods, auth.PUBLIC)
    route(app, "POST", "/api/v1/auth/{method}", authenticate, auth.PUBLIC)
