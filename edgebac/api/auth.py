"""Who is calling, and may they: the API's front door, one middleware before every route.

A caller is known by a signed call (`edgebac.eventlog.callsig`: edgebac's CLI signs every
request with its client key, member nodes with their node key), or by an API token
(`Authorization: Bearer`), against the access rules (`edgebac.api.access`). Without access rules
the node serves loopback callers only (each as an admin); `--insecure-open-api` serves anyone.
Each route needs one capability (`NEEDS`, a table; routes of other modules `declare` theirs):
a route the node serves that has no rule is refused at runtime, whoever calls (500
`no_access_rule`, logged once per route), so a new route cannot ship unprotected. What a
route shows of jobs is then limited to the caller's own unless its scope is `all`
(`Caller.may_read`, used by the job routes).

Content and blocks: a member node may fetch any (it needs them to run and replicate jobs); a
client only the results of a job it may read, named by `?job=ID` for blocks inside them.
Unknown callers get 401, callers without the capability 403, in the API's one error shape.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from edgebac.api.access import Access
from edgebac.api.clientsig import UNSIGNED
from edgebac.api.content_access import DagIndex, allow_content
from edgebac.api.protocol import served_node
from edgebac.api.refusals import Busy, Forbidden, Misdirected, NotReady, Unauthenticated
from edgebac.errors import BadRequest, EdgebacError
from edgebac.eventlog.callsig import (
    DIGEST_HEADER,
    HEADER,
    CallRefused,
    NonceCache,
    check_call,
    parse_header,
)
from edgebac.eventlog.clock import wall_clock_ms
from edgebac.scheduler.ended import Owner

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PUBLIC = "public"  # liveness and the API document
SEALED = "sealed"  # gossip: sealed by the network key, not a client route
ANY = "any"  # any known caller (a client needs the node's key to sign for it)
READ, SUBMIT, CANCEL, ADMIN = "read", "submit", "cancel", "admin"
READ_ALL = "read_all"  # the raw log holds every job's spec: admins, or readers of all jobs
CONTENT = "content"  # member nodes, or readers of the job whose results these are
EXECUTION = "execution"  # an execution's logs: member nodes (relaying) or the job's readers
NO_RULE = "no_rule"  # a route the node serves that no table names: refused (fail closed)
ALL_CAPABILITIES = frozenset({READ, SUBMIT, CANCEL, ADMIN})
# What answers from the projection, so waits for the node to be ready.
NEEDS_STATE = frozenset({READ, SUBMIT, CANCEL, CONTENT, EXECUTION})

NEEDS: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/api/v1/openapi.json"): PUBLIC,
    ("GET", "/api/v1/node"): ANY,
    ("GET", "/api/v1/nodes"): ANY,
    ("GET", "/api/v1/events"): READ_ALL,
    ("POST", "/api/v1/events"): ADMIN,
    ("GET", "/api/v1/authors/{author}/head"): ADMIN,
    ("GET", "/api/v1/jobs"): READ,
    ("POST", "/api/v1/jobs"): SUBMIT,
    ("POST", "/api/v1/content"): SUBMIT,  # a client's upload (api/uploads.py)
    ("GET", "/api/v1/jobs/{job_id}"): READ,
    ("POST", "/api/v1/jobs/{job_id}/cancel"): CANCEL,
    ("GET", "/api/v1/jobs/{job_id}/results"): READ,
    ("GET", "/api/v1/jobs/{job_id}/logs"): READ,
    ("GET", "/api/v1/executions/{execution_id}/logs"): EXECUTION,
    ("GET", "/api/v1/content/{cid}"): CONTENT,
    ("HEAD", "/api/v1/content/{cid}"): CONTENT,
    ("GET", "/api/v1/blocks/{cid}"): CONTENT,
    ("HEAD", "/api/v1/blocks/{cid}"): CONTENT,
    ("POST", "/gossip/v1"): SEALED,  # gossip/http.py: its bodies are sealed by the network key
}
# What a member node may call on another's node listener when the client API has its own
# address (`--api-listen`): replication and relaying, nothing of the client API.
PEER_NEEDS = frozenset({CONTENT, EXECUTION, PUBLIC, SEALED})


@dataclass(frozen=True)
class Caller:
    """Who a request is from, and what the rules let it do."""

    name: str
    can: frozenset[str]
    scope_all: bool
    key: bytes | None = None  # the key that signed the call (a client's or a node's)
    vouch_as: str | None = None  # the name an unsigned submission is vouched for as
    node: bool = False  # a member node

    def may(self, capability: str) -> bool:
        return capability in self.can

    def owns(self, job: Any) -> bool:
        """A job it asked for: signed with its key, or vouched for under its name."""
        return Owner(False, self.key, self.vouch_as).owns(job)

    def may_read(self, job: Any) -> bool:
        return READ in self.can and (self.scope_all or self.owns(job))

    def may_cancel(self, job: Any) -> bool:
        return CANCEL in self.can and (self.scope_all or self.owns(job))


CALLER_KEY: web.RequestKey[Caller] = web.RequestKey("caller", Caller)  # aiohttp warns on str


def caller_of(request: web.Request) -> Caller:
    return request[CALLER_KEY]


def check_read(request: web.Request, job: Any) -> None:
    """403 unless the caller may read `job` (its own, or scope all)."""
    caller = caller_of(request)
    if not caller.may_read(job):
        raise Forbidden(f"job {job.id} is not one of {caller.name}'s jobs (scope: own)")


def check_cancel(request: web.Request, job: Any) -> None:
    caller = caller_of(request)
    if not caller.may_cancel(job):
        if not caller.may(CANCEL):
            raise Forbidden(f"{caller.name} may not cancel jobs (no cancel capability)")
        raise Forbidden(f"job {job.id} is not one of {caller.name}'s jobs (scope: own)")


class Guard:
    """The node's front-door state: its rules (replaced on reload), nonces, the DAG index."""

    def __init__(
        self,
        access: Access | None = None,
        *,
        open_api: bool = False,
        window_ms: int = 300_000,
        tls: bool = False,
        body_timeout_s: float = 60.0,
        min_body_rate: int = 16 << 10,
    ) -> None:
        self.access = access
        self.open_api = open_api
        self.window_ms = window_ms
        self.tls = tls
        self.body_timeout_s = body_timeout_s
        self.min_body_rate = min_body_rate  # a body moving this fast has more time
        # When the client API has its own listener (`--api-listen`): its URL, and which
        # listener a request came in on ("api" or "node"), as the node's listeners know.
        self.api_url: str | None = None
        self.listener_of: Callable[[web.Request], str] = lambda request: "api"
        self.nonces = NonceCache(window_ms)
        self.dags = DagIndex()
        self.refused: dict[str, int] = {}  # by error code, for GET /api/v1/node
        self.unruled: set[tuple[str, str]] = set()  # routes without a rule, logged once each

    def describe(self) -> dict[str, Any]:
        mode = "open" if self.open_api else "rules" if self.access else "loopback"
        info: dict[str, Any] = {"mode": mode, "refused": dict(sorted(self.refused.items()))}
        info["nonces"] = len(self.nonces)  # signed calls remembered within the clock window
        if self.access is not None:
            info["clients"] = len(self.access.clients)
        if self.open_api:
            info["warning"] = "--insecure-open-api: every caller is served as an admin"
        return info


GUARD_KEY: web.AppKey[Guard] = web.AppKey("guard", Guard)


def need_of(request: web.Request) -> str | None:
    """The route's need; NO_RULE for a route no table names; None only for a request no route
    matched (its 404/405 goes through, as nothing is served)."""
    route = request.match_info.route
    resource = route.resource
    if resource is None or request.match_info.http_exception is not None:
        return None
    method = route.method if route.method != "*" else request.method
    path = resource.canonical
    if (method, path) in NEEDS:
        return NEEDS[(method, path)]
    if method == "HEAD" and ("GET", path) in NEEDS:
        return NEEDS[("GET", path)]
    return EXTRA_NEEDS.get((method, path), NO_RULE)


class NoAccessRule(EdgebacError):
    """A route the node serves has no access rule: a bug of the node's, so 500, and refused
    whoever calls rather than served to anyone (the tables are the only place rules live)."""

    code = "no_access_rule"
    http_status = 500


EXTRA_NEEDS: dict[tuple[str, str], str] = {}  # routes of other modules (gossip, compat API)
# Routes whose body the handler streams (uploads, past the app's 4 MiB body limit): a signed
# call signs the sha256 it names in DIGEST_HEADER instead, and the handler refuses a body that
# does not hash to it.
STREAMED = frozenset({("POST", "/api/v1/content")})
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def declare(method: str, path: str, need: str) -> None:
    """Say what a route outside this table needs (call where the route is added)."""
    EXTRA_NEEDS[(method.upper(), path)] = need


def _streamed(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    return resource is not None and (request.method, resource.canonical) in STREAMED


def claimed_digest(request: web.Request) -> bytes:
    """The sha256 a streamed body must have, from DIGEST_HEADER (an empty body's without it)."""
    text = request.headers.get(DIGEST_HEADER, EMPTY_SHA256)
    if len(text) != 64 or text.strip("0123456789abcdef"):
        raise CallRefused("bad_signature", f"{DIGEST_HEADER}: the body's sha256, 64 lowercase hex")
    return bytes.fromhex(text)


def _loopback(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


def _on_node_listener(request: web.Request, guard: Guard) -> bool:
    return guard.api_url is not None and guard.listener_of(request) == "node"


async def _body(request: web.Request, guard: Guard) -> bytes:
    if not request.body_exists:
        return b""
    declared = request.content_length or 0  # the app caps it (client_max_size)
    allowed = guard.body_timeout_s + declared / guard.min_body_rate
    try:
        async with asyncio.timeout(allowed):
            return await request.read()
    except TimeoutError:
        raise BadRequest(f"the body did not arrive within {allowed:g} s") from None


async def identify(request: web.Request, guard: Guard) -> Caller:
    """The caller, or Unauthenticated saying what credentials this node takes."""
    node = served_node(request)
    signed = request.headers.get(HEADER)
    if signed is not None:
        call = parse_header(signed)
        now = wall_clock_ms()
        if _streamed(request):  # the route checks the body as it streams it
            body, digest = b"", claimed_digest(request)
        else:
            body, digest = await _body(request, guard), None
        check_call(
            call, request.method, request.raw_path, body, now, guard.window_ms, digest=digest
        )
        caller = _signed_caller(request, guard, call.key, node)  # before its nonce is kept:
        guard.nonces.admit(call.key, call.nonce, call.ts_ms, now)  # strangers cannot fill it
        return caller
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("Authorization: this node takes `Bearer <token>` only")
        if guard.tls and not request.secure and not _loopback(request):
            raise Forbidden("a token travels only over TLS here: call the https:// address")
        return _token_caller(request, guard, token.strip())
    if guard.open_api:
        return Caller("open", ALL_CAPABILITIES, True, vouch_as=UNSIGNED)
    if guard.access is None and _loopback(request):
        return Caller("local", ALL_CAPABILITIES, True, vouch_as=UNSIGNED)
    raise Unauthenticated(_credentials_needed(guard))


def _credentials_needed(guard: Guard) -> str:
    if guard.access is None:
        return (
            "this node serves only loopback clients (it has no --access rules): call it from "
            "its own machine, or ask its operator for access"
        )
    return (
        "this node's API needs credentials: a signed call (edgebac's CLI signs with your "
        "client key: give the operator `edgebac client id`) or Authorization: Bearer TOKEN"
    )


def _signed_caller(request: web.Request, guard: Guard, key: bytes, node: Any) -> Caller:
    client = guard.access.client_of_key(key) if guard.access is not None else None
    if client is not None:
        return Caller(client.name, client.can, client.scope_all, key, client.name)
    if key in node.runner.state.nodes:
        return Caller(f"node {key.hex()[:12]}", frozenset(), False, key, node=True)
    if not node.ready:  # perhaps a member whose announcement is not folded yet
        raise not_ready()
    if guard.open_api:
        return Caller("open", ALL_CAPABILITIES, True, key, UNSIGNED)
    if guard.access is None and _loopback(request):
        return Caller("local", ALL_CAPABILITIES, True, key, UNSIGNED)
    if guard.access is None:
        raise Unauthenticated(_credentials_needed(guard))
    raise Unauthenticated(
        f"client {key.hex()[:12]} is not in this node's access rules: give its operator your "
        f"id ({key.hex()}) to add"
    )


def _token_caller(request: web.Request, guard: Guard, token: str) -> Caller:
    client = guard.access.client_of_token(token) if guard.access is not None else None
    if client is not None:
        # Vouched for as `token:<name>@<this requester's id>`: a compute policy can name it,
        # and a compute node checks the id is the job's requester (no other can claim it).
        vouch = f"token:{client.name}@{served_node(request).identity.public_key.hex()}"
        return Caller(client.name, client.can, client.scope_all, client.key, vouch)
    if guard.open_api:
        return Caller("open", ALL_CAPABILITIES, True, vouch_as=UNSIGNED)
    if guard.access is None and _loopback(request):
        return Caller("local", ALL_CAPABILITIES, True, vouch_as=UNSIGNED)
    raise Unauthenticated("this token is not in this node's access rules (revoked, or a typo?)")


async def allow(request: web.Request, guard: Guard, caller: Caller, need: str) -> None:
    """Raise Forbidden unless `caller` may make this request."""
    if need == ANY:
        return
    if need in (READ, SUBMIT, CANCEL, ADMIN):
        if not caller.may(need):
            raise Forbidden(f"{caller.name} may not {_verbs[need]} (no {need} capability)")
        return
    if need == READ_ALL:
        if caller.may(ADMIN) or (caller.may(READ) and caller.scope_all):
            return
        raise Forbidden(f"{caller.name} may not read the raw log (admin, or read with scope: all)")
    if caller.node or (caller.may(READ) and caller.scope_all):
        return
    if not caller.may(READ):
        raise Forbidden(f"{caller.name} may not read jobs or their results (no read capability)")
    if need == EXECUTION:
        return  # the route checks the execution's job (it knows executions, this does not)
    await allow_content(request, guard.dags, caller)


_verbs = {READ: "read jobs", SUBMIT: "submit jobs", CANCEL: "cancel jobs", ADMIN: "do that"}


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    guard = request.app[GUARD_KEY]
    need = need_of(request)
    if need is None:
        return await handler(request)
    if need in (PUBLIC, SEALED):
        return await handler(request)
    try:
        if need == NO_RULE:
            raise _no_rule(request, guard)
        if _on_node_listener(request, guard) and need not in PEER_NEEDS:
            raise Misdirected(
                f"this is the node's peer address; the client API is at {guard.api_url}"
            )
        try:
            caller = await identify(request, guard)
        except CallRefused as exc:
            raise _refusal(exc) from None
        if need in NEEDS_STATE and not served_node(request).ready:
            raise not_ready()
        await allow(request, guard, caller, need)
    except EdgebacError as exc:
        guard.refused[exc.code] = guard.refused.get(exc.code, 0) + 1
        raise
    request[CALLER_KEY] = caller
    return await handler(request)


def _no_rule(request: web.Request, guard: Guard) -> NoAccessRule:
    resource = request.match_info.route.resource
    route = (request.method, resource.canonical if resource is not None else request.path)
    said = f"{route[0]} {route[1]} has no access rule: refused until auth.NEEDS names one"
    if route not in guard.unruled:
        guard.unruled.add(route)
        log.error("%s (a bug of this node's build)", said)
    return NoAccessRule(said)


def not_ready() -> NotReady:
    return NotReady("the node is starting: it is folding its log; retry in a moment")


def _refusal(exc: CallRefused) -> EdgebacError:
    error: EdgebacError = Busy(str(exc)) if exc.code == "busy" else Unauthenticated(str(exc))
    error.code = exc.code
    return error
