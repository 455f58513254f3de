"""Bacalhau's API (v1.9.3, as its Python SDK 1.4.2 and Go CLI call it) served by an edgebac node,
beside edgebac's own, so Bacalhau's clients work against an edgebac network unmodified.

Served (shapes and encodings of `/work/shared/BACALHAU.md` §2-3, module by module):
- `jobs`: `PUT|POST /api/v1/orchestrator/jobs` (a Bacalhau Job, translated and submitted as
  edgebac's own unsigned submission, vouched for under the caller's name), `GET .../jobs`
  (`limit`, `next_token`, `order_by`, `reverse`, `labels`, `namespace`), `GET .../jobs/{id}`
  (`include=executions,history`; id, unique prefix or Name), `DELETE .../jobs/{id}` (stop).
- `parts`: `.../jobs/{id}/executions`, `/history` (NextToken empty only once the job ended and
  every item was sent), `/results` (`urlDownload` of a `.tar.gz`).
- `logs`: `.../jobs/{id}/logs`, a WebSocket of `{"value": {"Type", "Line"}}` frames.
- `results`: `GET /api/v1/bacalhau/results/{execution}.tar.gz` from the content store.
- `nodes`: `GET /api/v1/orchestrator/nodes`, `/nodes/{id}`.
- `agent`: `/api/v1/agent/alive|version|node|config`, the login handshake `/api/v1/auth`.

Refused, saying why: daemon and service jobs and the rest `scheduler.bacalhau` cannot
translate (400 naming each `Job.<field>`); `PUT /nodes/{id}` (admission takes the authority's
key; 501); job versions, diff and rerun, `agent/debug` (not routed: 404). Every route is declared
to the front door (`auth.declare`): reads need `read`, submitting `submit`, stopping `cancel`,
and a caller sees only the jobs it may read. Errors on these paths are Bacalhau's `APIError`
shape (`errors`), rendered by a middleware this registers after the app's own error renderer.
"""

from __future__ import annotations

from aiohttp import web

from edgebac.api.bacalhau import agent, jobs, logs, nodes, parts, results
from edgebac.api.bacalhau.errors import PREFIXES, bacalhau_errors, is_compat

__all__ = ["PREFIXES", "add_bacalhau_routes", "is_compat"]


def add_bacalhau_routes(app: web.Application) -> None:
    """Add the compat routes, and their error renderer just inside the app's own (so the front
    door's refusals on these paths come in Bacalhau's shape too). Call before the app starts."""
    app.middlewares.insert(1, bacalhau_errors)
    for module in (jobs, parts, logs, results, nodes, agent):
        module.add_routes(app)
