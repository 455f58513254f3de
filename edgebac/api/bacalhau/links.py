"""Where Bacalhau's clients download an execution's results: links to a `.tar.gz` on a node that
holds them, signed by the node that hands them out (see `results`). Signing and checking a
link are pure functions, tested directly."""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from edgebac.api import auth
from edgebac.api.protocol import ServedNode, served_node
from edgebac.errors import EdgebacError
from edgebac.eventlog.clock import wall_clock_ms
from edgebac.scheduler.state import Execution

RESULTS_PATH = "/api/v1/bacalhau/results/{execution_id}.tar.gz"
SHARED_PATH = "/api/v1/bacalhau/shared/{execution_id}.tar.gz"
CONTEXT = b"edgebac/bacalhau-results/v1\x00"  # apart from what a node key signs otherwise
TTL_MS = 3_600_000
SKEW_MS = 300_000  # another node's clock may be this far ahead


class BadLink(EdgebacError):
    code = "bad_link"
    http_status = 403


def link_message(execution_id: str, until_ms: int) -> bytes:
    return CONTEXT + execution_id.encode() + b"\x00" + str(until_ms).encode()


def sign_link(key: SigningKey, execution_id: str, until_ms: int) -> str:
    """The query of a shared link to an execution's results, signed by a node's key."""
    sig = key.sign(link_message(execution_id, until_ms)).signature
    return urlencode({"by": key.verify_key.encode().hex(), "until": until_ms, "sig": sig.hex()})


def link_problem(
    members: Container[bytes], execution_id: str, query: Mapping[str, str], now_ms: int
) -> str | None:
    """Why a shared link does not open (None: it does). Pure."""
    until_text = query.get("until", "")
    if not (until_text.isascii() and until_text.isdigit() and len(until_text) <= 16):
        return "until: a time in ms since the epoch"
    try:
        by, sig = bytes.fromhex(query.get("by", "")), bytes.fromhex(query.get("sig", ""))
    except ValueError:
        return "by and sig are hex digits"
    if len(by) != 32 or len(sig) != 64:
        return "the link needs by (a node key) and sig (its signature)"
    until = int(until_text)
    if by not in members:
        return "the link is not signed by a member node"
    if until < now_ms:
        return "the link has expired: ask for the job's results again"
    if until > now_ms + TTL_MS + SKEW_MS:
        return "the link is valid for longer than a node signs links for"
    try:
        VerifyKey(by).verify(link_message(execution_id, until), sig)
    except BadSignatureError:
        return "the link's signature does not match it"
    return None


def shared_link(node: ServedNode, base: str, execution_id: str) -> str:
    query = sign_link(node.identity.key, execution_id, wall_clock_ms() + TTL_MS)
    return base + SHARED_PATH.format(execution_id=execution_id) + "?" + query


def results_url(request: web.Request, execution: Execution) -> str | None:
    """Where Bacalhau's `job get` downloads an execution's results: a `.tar.gz` from a node
    that holds them (this one if it does, else the one that published them)."""
    node = served_node(request)
    if not execution.digest or (execution.reference or "").startswith("s3://"):
        return None
    if node.content.holds(f"ipfs://{execution.digest}"):
        scheme = "https" if request.app[auth.GUARD_KEY].tls else "http"
        base = f"{scheme}://{node.advertised}"
    else:
        holders = node.holders(execution.digest)
        if not holders:
            return None
        base = holders[0]
    return shared_link(node, base, execution.id)


def published(request: web.Request, execution: Execution) -> dict[str, Any] | None:
    url = results_url(request, execution)
    return {"Type": "urlDownload", "Params": {"URL": url}} if url else None
