"""Errors on the compat routes in Bacalhau's shape, which its clients parse (`APIError`):

    {"Status": 400, "Message": "...", "RequestID": "", "Code": "ValidationError",
     "Component": "edgebac", "Hint": "...", "Details": {"Job.Count": "...", "edgebac_code": ...}}

The Go CLI shows `Message`, `Hint` and `Details`; the Python SDK prints the body. A bad job names
every field at fault in `Details` (field -> problem) and in `Message`. Statuses are edgebac's,
which are the ones Bacalhau uses for the same cases (400, 401, 403, 404, 409, 413, 503).
Rendered by one middleware for every path under the compat prefixes (the front door's own
refusals included), so nothing there answers in edgebac's shape.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from edgebac.errors import EdgebacError
from edgebac.scheduler.spec import SpecError

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Paths that are Bacalhau's API, not edgebac's (the results downloads are ours, for its CLI).
PREFIXES = ("/api/v1/orchestrator/", "/api/v1/agent/", "/api/v1/auth/", "/api/v1/bacalhau/")
ROOTS = frozenset(prefix.rstrip("/") for prefix in PREFIXES)
# bacerrors.ErrorCode by HTTP status (pkg/bacerrors/codes.go).
CODES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound"}
CODES |= {405: "BadRequest", 409: "ResourceInUse", 413: "ResourceExhausted"}
CODES |= {421: "BadRequest", 429: "TooManyRequests", 500: "InternalError"}
CODES |= {501: "NotImplemented", 503: "ServiceUnavailable"}
HINTS = {
    401: "set BACALHAU_API_KEY to a token in the node's access rules (the SDK cannot send one: "
    "call a node from its own machine, or through a proxy that adds it)",
    503: "the node is starting or busy: retry in a moment",
}


def is_compat(path: str) -> bool:
    return path in ROOTS or path.startswith(PREFIXES)


def api_error(
    status: int,
    message: str,
    code: str | None = None,
    hint: str | None = None,
    details: dict[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {
        "Status": status,
        "Message": message,
        "RequestID": "",
        "Code": code or CODES.get(status, "UnknownError"),
        "Component": "edgebac",
    }
    if hint := hint or HINTS.get(status):
        body["Hint"] = hint
    if details:
        body["Details"] = details
    response = web.json_response(body, status=status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="edgebac"'
    if status == 503:
        response.headers["Retry-After"] = "1"
    return response


def from_edgebac(exc: EdgebacError) -> web.Response:
    details = {"edgebac_code": exc.code}
    code = None
    if isinstance(exc, SpecError):
        code = "ValidationError"
        details |= {path or "Job": message for path, message in exc.problems}
    return api_error(exc.http_status, str(exc), code, getattr(exc, "hint", None), details)


@web.middleware
async def bacalhau_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bacalhau's error shape under the compat prefixes; edgebac's everywhere else."""
    if not is_compat(request.path):
        return await handler(request)
    try:
        return await handler(request)
    except EdgebacError as exc:
        return from_edgebac(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return api_error(exc.status, exc.reason)
    except ConnectionError:
        raise  # a client that left: the app's own middleware counts it (api/gone.py)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return api_error(500, "internal error; see the node's log")
