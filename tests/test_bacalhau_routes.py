"""The compat routes' table (issue 15): every Bacalhau route is declared to the front door with
the capability it needs (a route missing from the table would be refused by the middleware;
one with the wrong need would serve what it should not), and no edgebac route is taken for
Bacalhau's (its errors would change shape). Also the pure pieces of those routes: signed result
links, log frames, gzip, paging tokens, selectors, booleans, the error shape."""

from __future__ import annotations

import gzip
import json
from urllib.parse import parse_qsl

import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from edgebac.api import auth
from edgebac.api.app import make_app
from edgebac.api.bacalhau import is_compat
from edgebac.api.bacalhau.common import flag, offset_of, token
from edgebac.api.bacalhau.errors import from_edgebac
from edgebac.api.bacalhau.jobs import _split
from edgebac.api.bacalhau.links import SKEW_MS, TTL_MS, link_problem, sign_link
from edgebac.api.bacalhau.logs import frame
from edgebac.errors import BadRequest
from edgebac.scheduler.spec import SpecError
from edgebac.sinks.exporter import gzipped

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


# ----- the pure pieces of the compat routes -----------------------------------------------------


@pytest.mark.parametrize(
    ("record", "frame_"),
    [
        ({"execution_id": "e", "stream": "stdout", "offset": 0, "data": "hi\n"},
         {"value": {"Type": 1, "Line": "hi\n"}}),
        ({"execution_id": "e", "stream": "stderr", "offset": 3, "data": "oops"},
         {"value": {"Type": 2, "Line": "oops"}}),
        ({"execution_id": "e", "stream": "stdout", "offset": 0, "data": ""}, None),
        ({"execution_id": "e", "end": True, "offsets": {"stdout": 3}}, None),
        ({"execution_id": "e", "error": {"code": "unreachable", "message": "gone"}},
         {"error": "execution e: gone"}),
    ],
)  # fmt: skip
def test_log_records_become_bacalhau_frames(record, frame_):
    assert frame(record) == frame_


@given(st.lists(st.binary(max_size=3000), max_size=20))
def test_gzipped_is_the_gzip_of_the_chunks(chunks):
    assert gzip.decompress(b"".join(gzipped(iter(chunks)))) == b"".join(chunks)


@given(st.integers(0, 10**15))
def test_a_next_token_stands_for_its_offset(offset):
    request = make_mocked_request("GET", f"/x?next_token={token(offset)}")
    assert offset_of(request) == offset


@pytest.mark.parametrize("text", ["zz", token(1)[:-1] + "!", "b2Zmc2V0Oi0x", "cGFnZTox"])
def test_a_token_not_ours_is_refused(text):
    with pytest.raises(BadRequest):
        offset_of(make_mocked_request("GET", f"/x?next_token={text}"))


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("", [""]),
        ("a=b", ["a=b"]),
        ("bacalhau_canary != true", ["bacalhau_canary != true"]),
        ("k in (a,b), c=d", ["k in (a,b)", " c=d"]),
    ],
)
def test_selectors_split_at_commas_outside_parentheses(text, parts):
    assert _split(text) == parts


@pytest.mark.parametrize(
    ("given_", "value"), [("", False), ("False", False), ("true", True), ("True", True)]
)
def test_booleans_as_either_client_spells_them(given_, value):
    assert flag(make_mocked_request("GET", f"/x?reverse={given_}"), "reverse") is value


def test_a_bad_spec_names_every_field_in_details():
    response = from_edgebac(SpecError([("Job.Count", "-1 is less than 0"), ("Job.X", "unknown")]))
    body = json.loads(response.body)
    assert response.status == body["Status"] == 400
    assert body["Code"] == "ValidationError"
    assert body["Details"] == {
        "edgebac_code": "bad_spec",
        "Job.Count": "-1 is less than 0",
        "Job.X": "unknown",
    }
    assert set(body) == {"Status", "Message", "RequestID", "Code", "Component", "Details"}
