"""The front door's refusals, each with its status and code in the API's one error shape."""

from __future__ import annotations

from edgebac.errors import EdgebacError


class Unauthenticated(EdgebacError):
    code = "unauthenticated"
    http_status = 401


class Forbidden(EdgebacError):
    code = "forbidden"
    http_status = 403


class Misdirected(EdgebacError):
    code = "use_the_api_address"
    http_status = 421


class Busy(EdgebacError):
    code = "busy"
    http_status = 503


class NotReady(EdgebacError):
    """The node is still folding its log: an answer about jobs now could be wrong (a job
    acknowledged a minute ago would be 'not found'). 503 with Retry-After; clients wait."""

    code = "not_ready"
    http_status = 503
