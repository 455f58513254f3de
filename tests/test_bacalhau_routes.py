"""The compat routes' table (issue 15): every Bacalhau route is declared to the front door with
the capability it needs (a route missing from the table would be refused by the middleware;
one with the wrong need would serve what it should not), and no edgebac route is taken for
Bacalhau's (its errors would change shape)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from aiohttp.test_utils import make_mocked_request
from nacl.signing import SigningKey

from edgebac.api import auth
from edgebac.api.app import make_app
from edgebac.api.bacalhau import is_compat
from edgebac.api.bacalhau.links import SKEW_MS, TTL_MS, link_problem, sign_link

ORC = "/api/v1/orchestrator"
EXPECTED = {
    ("PUT", f"{ORC}/jobs"): auth.SUBMIT,
    ("POST", f"{ORC}/jobs"): auth.SUBMIT,
    ("GET", f"{ORC}/jobs"): auth.READ,
    ("GET", f"{ORC}/jobs/{{job_id}}"): auth.READ,
    ("DELETE", f"{ORC}/jobs/{{job_id}}"): auth.CANCEL,
    ("GET", f"{ORC}/jobs/{{job_id}}/executions"): auth.READ,
    ("GET", f"{ORC}/jobs/{{job_id}}/history"): auth.READ,
    ("GET", f"{ORC}/jobs/{{job_id}}/results"): auth.READ,
    ("GET", f"{ORC}/jobs/{{job_id}}/logs"): auth.READ,
    ("GET", f"{ORC}/nodes"): auth.ANY,
    ("GET", f"{ORC}/nodes/{{node_id}}"): auth.ANY,
    ("PUT", f"{ORC}/nodes/{{node_id}}"): auth.ADMIN,
    ("GET", "/api/v1/bacalhau/results/{execution_id}.tar.gz"): auth.EXECUTION,
    ("GET", "/api/v1/bacalhau/shared/{execution_id}.tar.gz"): auth.PUBLIC,  # a signed link
    ("GET", "/api/v1/agent/alive"): auth.PUBLIC,
    ("GET", "/api/v1/agent/version"): auth.ANY,
    ("GET", "/api/v1/agent/node"): auth.ANY,
    ("GET", "/api/v1/agent/config"): auth.ANY,
    ("GET", "/api/v1/auth"): auth.PUBLIC,
    ("POST", "/api/v1/auth/{method}"): auth.PUBLIC,
}
SAMPLES = {"{job_id}": "j-1234", "{node_id}": "abcd", "{execution_id}": "e-1", "{method}": "x"}


def concrete(path: str) -> str:
    for name, value in SAMPLES.items():
        path = path.replace(name, value)
    return path


async def need(app, method: str, path: str) -> str | None:
    """What the front door reads for this request (routed as aiohttp routes it)."""
    request = make_mocked_request(method, path, app=app)
    request._match_info = await app.router.resolve(request)  # what aiohttp's handler does
    return auth.need_of(request)


async def test_every_compat_route_is_declared_with_its_need():
    app = make_app(node=None)  # type: ignore[arg-type]  # routes only: nothing is served
    routes = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None and is_compat(r.resource.canonical) and r.method != "HEAD"
    }
    assert routes == set(EXPECTED)
    for (method, path), want in EXPECTED.items():
        assert await need(app, method, concrete(path)) == want, (method, path)


async def test_edgebac_routes_are_not_compat_routes():
    app = make_app(node=None)  # type: ignore[arg-type]
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if (route.method, path) in auth.NEEDS:
            assert not is_compat(path), path
    assert not is_compat("/api/v1/authors/{author}/head")
    assert is_compat("/api/v1/auth")


# ----- signed links to results (pure) -----------------------------------------------------------


def link_query(key: SigningKey, execution_id: str, until: int) -> dict[str, str]:
    return dict(parse_qsl(sign_link(key, execution_id, until)))


def test_a_signed_link_opens_only_as_signed_by_a_member_and_in_time():
    member, stranger = SigningKey.generate(), SigningKey.generate()
    members = {bytes(member.verify_key)}
    now = 1_800_000_000_000
    good = link_query(member, "e-1", now + TTL_MS)
    assert link_problem(members, "e-1", good, now) is None
    assert "signature" in link_problem(members, "e-2", good, now)  # another execution
    assert "member" in link_problem(members, "e-1", link_query(stranger, "e-1", now + 1), now)
    assert "expired" in link_problem(members, "e-1", good, now + TTL_MS + 1)
    too_long = link_query(member, "e-1", now + TTL_MS + SKEW_MS + 1)
    assert "longer" in link_problem(members, "e-1", too_long, now)
    moved = {**good, "until": str(now + 5)}
    assert "signature" in link_problem(members, "e-1", moved, now)
    for broken in ({}, {**good, "sig": "zz"}, {**good, "until": "-1"}, {**good, "until": "\u0661"}):
        assert link_problem(members, "e-1", broken, now) is not None
