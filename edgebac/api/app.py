"""The node's HTTP API: thin handlers over the node, one JSON error shape for every error.

Every error response is `{"error": {"code": str, "message": str}}` with a fitting status; a
client that went away is counted, not reported (see `gone`).
The routes reach the node only through `protocol.ServedNode`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from edgebac.api.auth import GUARD_KEY, Guard, auth_middleware
from edgebac.api.bacalhau import add_bacalhau_routes
from edgebac.api.gone import STATS_KEY, ApiStats, client_left, count_gone
from edgebac.api.jobs import add_job_routes
from edgebac.api.logs import add_log_routes
from edgebac.api.nodes import add_node_routes
from edgebac.api.protocol import NODE_KEY, ServedNode
from edgebac.api.uploads import add_upload_routes
from edgebac.errors import EdgebacError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except EdgebacError as exc:
        response = error_response(exc.http_status, exc.code, str(exc))
        if exc.http_status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="edgebac"'
        if exc.http_status == 503:  # not ready, or busy: both pass within a second or so
            response.headers["Retry-After"] = "1"
        problems = getattr(exc, "problems", None)
        if problems:  # a bad job spec: every field at fault, for scripts
            body = {"code": exc.code, "message": str(exc)}
            body["fields"] = [{"field": f, "message": m} for f, m in problems]
            response = web.json_response({"error": body}, status=exc.http_status)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        return error_response(exc.status, code, exc.reason)
    except ConnectionError as exc:
        if client_left(request):  # not ours to report: count it (see api/gone.py)
            return count_gone(request, exc)
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error; see the node's log")
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error; see the node's log")


def make_app(
    node: ServedNode, guard: Guard | None = None, first: Sequence[Middleware] = ()
) -> web.Application:
    """The API app; `first` run before the front door (the node holds requests in them until
    it has announced itself, which the front door's member check reads)."""
    middlewares = [errors_middleware, *first, auth_middleware]
    app = web.Application(middlewares=middlewares, client_max_size=4 << 20)
    app[GUARD_KEY] = guard or Guard()
    app[NODE_KEY] = node
    app[STATS_KEY] = ApiStats()
    add_node_routes(app)
    add_job_routes(app)
    add_log_routes(app)
    add_upload_routes(app)
    add_bacalhau_routes(app)
    return app
