"""Malformed client input against a real node: every row is a 4xx in the one error shape, the
node logs no traceback and keeps answering; and `parse_json`'s rules, tested directly."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgebac.api.bodies import MAX_DEPTH, BadJson, parse_json
from edgebac.api.jobs import match_job_id
from edgebac.errors import BadRequest
from tests.procs import NodeProcess, Nodes, run_edgebac, wait_for

NOOP = b'{"engine": {"type": "noop"}'
BIG = 10**24
JOBS, EVENTS = "/api/v1/jobs", "/api/v1/events"


def spec(rest: bytes) -> bytes:
    """A noop job spec with `rest` (raw JSON members) after its engine."""
    return NOOP + b", " + rest + b"}"


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# (method, path, body, status, error code, words the message must hold)
ROWS = [
    ("POST", JOBS, spec(b'"timeout_s": NaN'), 400, "bad_request", "NaN is not a number"),
    ("POST", JOBS, spec(b'"count": Infinity'), 400, "bad_request", "Infinity"),
    ("POST", JOBS, spec(b'"timeout_s": -Infinity'), 400, "bad_request", "-Infinity"),
    ("POST", JOBS, spec(b'"timeout_s": 1e400'), 400, "bad_request", "out of range"),
    ("POST", JOBS, spec(b'"timeout_s": 1e300'), 400, "bad_request", "timeout_s: integer 1000"),
    ("POST", JOBS, spec(b'"name": "\\ud800"'), 400, "bad_request", "at name: lone UTF-16"),
    (
        "POST",
        JOBS,
        b'{"engine": {"type": "noop", "stdout": "a\\udc00"}}',
        400,
        "bad_request",
        "at engine.stdout: lone UTF-16 surrogate \\udc00",
    ),
    ("POST", JOBS, spec(b'"env": {"A": "\\udbff"}'), 400, "bad_request", "at env.A"),
    ("POST", JOBS, spec(b'"env": {"\\ud800": "x"}'), 400, "bad_request", "lone UTF-16"),
    ("POST", JOBS, spec(b'"count": %d' % BIG), 400, "bad_request", "does not fit 64 bits"),
    ("POST", JOBS, spec(b'"timeout_s": %d' % BIG), 400, "bad_request", "does not fit 64 bits"),
    ("POST", JOBS, spec(b'"retries": %d' % -(2**63 + 1)), 400, "bad_request", "64 bits"),
    ("POST", JOBS, spec(b'"resources": {"gpu": %d}' % 2**64), 400, "bad_request", "64 bits"),
    (
        "POST",
        JOBS,
        spec(b'"bid_window_ms": 1' + b"0" * 5000),
        400,
        "bad_request",
        "(5001 digits) does not fit",
    ),
    ("POST", JOBS, spec(b'"env": ' + nested(1000)), 400, "bad_request", "nested deeper"),
    ("POST", JOBS, nested(100_000), 400, "bad_request", "nested deeper"),
    ("POST", JOBS, spec(b'"inputs": ' + nested(MAX_DEPTH + 2)), 400, "bad_request", "nested"),
    (
        "POST",
        JOBS,
        json.dumps({"engine": {"type": "noop", "stdout": "x" * (1100 << 10)}}).encode(),
        413,
        "too_large",
        "too large for the log",
    ),
    ("POST", JOBS, b" " * (5 << 20), 413, "too_large", "larger than 4194304 bytes"),
    ("POST", JOBS, b'{"engine": {"type": "noop", "stdout": "\xff"}}', 400, "bad_request", "UTF-8"),
    ("POST", JOBS, b"", 400, "bad_request", "empty"),
    ("POST", JOBS, b'{"engine": {"type": ', 400, "bad_request", "not JSON"),
    ("POST", JOBS, spec(b'"count": 1, "count": 2'), 400, "bad_request", "'count' appears twice"),
    ("POST", EVENTS, b'{"events": ' + nested(5000) + b"}", 400, "bad_request", "nested"),
    ("POST", EVENTS, b'{"events": [NaN]}', 400, "bad_request", "NaN"),
    ("POST", EVENTS, b'{"events": [%d]}' % BIG, 400, "bad_request", "64 bits"),
    ("POST", EVENTS, b'{"events": ["\\ud800"]}', 400, "bad_request", "at events[0]"),
    ("POST", EVENTS, b'{"events": ["abc"]}', 400, "bad_request", "hex digits"),
    ("POST", EVENTS, b'{"events": "00"}', 400, "bad_request", '{"events": [hex'),
    ("GET", f"/api/v1/jobs?offset={BIG}", None, 400, "bad_request", "'offset'"),
    ("GET", "/api/v1/jobs?limit=%EF%BC%91", None, 400, "bad_request", "'limit'"),
    ("GET", "/api/v1/events?after=%D9%A1", None, 400, "bad_request", "'after'"),
    ("GET", "/api/v1/jobs/{job}?wait_ms=-1", None, 400, "bad_request", "'wait_ms'"),
    ("GET", "/api/v1/jobs/{job}/logs?offset=" + str(BIG), None, 400, "bad_request", "'offset'"),
    ("POST", "/api/v1/jobs/{job}/cancel?reason=" + "r" * 5000, b"{}", 400, "bad_request", "longer"),
    ("GET", "/api/v1/content/bafy%ED%A0%80", None, 400, "bad_cid", "base32"),
    ("GET", "/api/v1/blocks/" + "b" * 4000, None, 400, "bad_cid", "CID"),
]


def send(node: NodeProcess, method: str, path: str, body: bytes | None) -> tuple[int, bytes, str]:
    request = urllib.request.Request(node.url + path, data=body, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read(), response.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(), exc.headers.get_content_type()


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("input")
    (tmp / "policy.yaml").write_text("engines: [noop]\n")
    nodes = Nodes()
    try:
        yield nodes.start(tmp / "n", "--policy", str(tmp / "policy.yaml"), listen="127.0.0.2:0")
    finally:
        nodes.kill_all()


def test_every_malformed_input_is_a_4xx_in_the_error_shape_and_the_node_keeps_going(node):
    status, body, _ = send(node, "POST", JOBS, b'{"engine": {"type": "noop", "stdout": "ok"}}')
    assert status == 201, body
    job = json.loads(body)["job_id"]
    wrong = []
    for method, path, data, want_status, want_code, words in ROWS:
        status, raw, ctype = send(node, method, path.format(job=job), data)
        answer = json.loads(raw) if ctype == "application/json" else raw[:200]
        error = answer.get("error") if isinstance(answer, dict) else None
        shaped = (
            isinstance(error, dict)
            and set(answer) == {"error"}
            and set(error) <= {"code", "message", "fields"}
            and isinstance(error.get("message"), str)
            and "\n" not in error["message"]
        )
        got = (status, error.get("code") if shaped else answer)
        if got != (want_status, want_code) or words not in error["message"]:  # type: ignore
            wrong.append(
                (method, path[:60], data[:60] if data else None, status, str(answer)[:300])
            )
    assert wrong == [], "\n".join(map(str, wrong))
    assert node.returncode is None
    assert "Traceback" not in node.stderr, node.stderr[-3000:]
    status, body, _ = send(node, "POST", JOBS, b'{"engine": {"type": "noop", "stdout": "after"}}')
    assert status == 201, body
    job = json.loads(body)["job_id"]

    def completed() -> bool:
        return (
            json.loads(send(node, "GET", f"/api/v1/jobs/{job}", None)[1])["status"] == "completed"
        )

    wait_for(completed, 60, "a good job after the bad input to complete")


# ----- parse_json itself -------------------------------------------------------------------------

ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
floats = st.floats(allow_nan=False, allow_infinity=False)
text = st.text(st.characters(blacklist_categories=("Cs",)))
values = st.recursive(
    st.none() | st.booleans() | ints | floats | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)


@given(values)
def test_every_value_an_event_can_hold_parses_back_equal(value):
    assert parse_json(json.dumps(value).encode()) == value
    assert parse_json(json.dumps(value, ensure_ascii=False).encode()) == value


@given(st.integers(min_value=2**64, max_value=10**1000) | st.integers(max_value=-(2**63) - 1))
def test_integers_outside_64_bits_are_refused(number):
    with pytest.raises(BadJson, match="does not fit 64 bits"):
        parse_json(b'{"a": [%d]}' % number)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"[NaN]", "NaN"),
        (b"1e309", "out of range"),
        (b'"\\udfff"', "at the top: lone UTF-16 surrogate \\udfff"),
        (b'{"k\\ud800": 1}', "lone UTF-16"),
        (nested(MAX_DEPTH + 1), "nested deeper"),
        (b'{"a": 1, "a": 1}', "'a' appears twice"),
        (b"  ", "empty"),
    ],
)
def test_refused(data, words):
    with pytest.raises(BadJson, match=words.replace("\\", "\\\\").replace("[", "\\[")):
        parse_json(data)


def test_limits_are_exact():
    assert parse_json(nested(MAX_DEPTH)) == json.loads(nested(MAX_DEPTH))
    assert parse_json(b"[%d, %d]" % (-(2**63), 2**64 - 1)) == [-(2**63), 2**64 - 1]
    assert parse_json('"\\ud83d\\ude00 \U0001f600"'.encode()) == "\U0001f600 \U0001f600"
    assert math.isfinite(parse_json(b"1.7976931348623157e308"))


# ----- short job ids -----------------------------------------------------------------------------

IDS = ["j-0081342b00000001", "j-0081342b00000002", "j-00813f0000000003", "j-abcd000000000004"]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("j-0081342b00000001", "j-0081342b00000001"),  # whole
        ("j-00813f", "j-00813f0000000003"),  # unique prefix
        ("00813f", "j-00813f0000000003"),  # without its j-
        ("j-abcd", "j-abcd000000000004"),  # the shortest allowed
        ("j-ffff", None),
        ("nope", None),
    ],
)
def test_a_job_is_named_by_its_id_or_a_unique_prefix(text, found):
    assert match_job_id(IDS, text) == found


@pytest.mark.parametrize(
    ("text", "code", "words"),
    [
        ("j-0081342b", "ambiguous_id", "2 jobs start so (j-0081342b00000001, j-0081342b00000002)"),
        ("j-0081", "ambiguous_id", "3 jobs"),
        ("j-abc", "bad_request", "too short: give at least 4 characters after 'j-'"),
        ("j-", "bad_request", "too short"),
        ("ab", "bad_request", "too short"),
    ],
)
def test_a_short_or_ambiguous_prefix_is_refused(text, code, words):
    with pytest.raises(BadRequest) as refused:
        match_job_id(IDS, text)
    assert refused.value.code == code
    assert words in str(refused.value)


def test_every_job_route_and_the_cli_take_a_unique_prefix(node):
    status, body, _ = send(node, "POST", JOBS, b'{"engine": {"type": "noop", "stdout": "hi"}}')
    assert status == 201, body
    job = json.loads(body)["job_id"]
    wait_for(
        lambda: json.loads(send(node, "GET", f"{JOBS}/{job}", None)[1])["status"] == "completed",
        60,
        "the job",
    )
    _, raw, _ = send(node, "GET", f"{JOBS}?limit=1000", None)
    others = [j["id"] for j in json.loads(raw)["jobs"] if j["id"] != job]
    short = next(
        job[:n] for n in range(6, len(job) + 1) if not any(o.startswith(job[:n]) for o in others)
    )
    for path in ("", "/results", "/logs"):
        status, raw, _ = send(node, "GET", f"{JOBS}/{short}{path}", None)
        assert status == 200, (path, raw)
    assert json.loads(send(node, "GET", f"{JOBS}/{short}", None)[1])["id"] == job
    status, raw, _ = send(node, "POST", f"{JOBS}/{short}/cancel", b"{}")
    assert (status, json.loads(raw)["job_id"]) == (200, job)
    described = run_edgebac("job", "describe", short, "--api", node.url, "--output", "json")
    assert described.returncode == 0, described.stderr
    assert json.loads(described.stdout)["id"] == job
    logs = run_edgebac("job", "logs", short, "--api", node.url)
    assert (logs.returncode, logs.stdout) == (0, "hi"), logs.stderr
    refused = run_edgebac("job", "describe", "j-0", "--api", node.url)
    assert refused.returncode == 1
    assert "too short" in refused.stderr
