"""The OpenAPI document: valid, complete (every client route of the real app, and nothing more),
served by the node, and true to what real nodes answer; one error shape for every error."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate

from edgebac.api.bacalhau import is_compat
from edgebac.node.config import GOSSIP_PRESETS, PRESETS, HostPort, NodeConfig
from edgebac.node.process import Node
from tests.netfix import network_key, post_json, wait_converged
from tests.procs import NodeProcess, nodes_fixture, run_edgebac, wait_for

DOC_PATH = Path(__file__).resolve().parent.parent / "edgebac" / "api" / "openapi.json"
DOC = json.loads(DOC_PATH.read_text())
NOT_CLIENT_ROUTES = {"/gossip/v1"}  # sealed msgpack between nodes
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
nodes = nodes_fixture()


def test_the_document_is_valid_openapi_3_1():
    validate(DOC)
    assert DOC["openapi"].startswith("3.1")


def documented() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in DOC["paths"].items()
        for method in item
        if method in METHODS
    }


async def test_every_route_of_the_real_app_is_documented_and_nothing_else(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("engines: [noop]\n")
    config = NodeConfig(
        data_dir=tmp_path / "node",
        listen=HostPort("127.0.0.1", 0),
        timing=PRESETS["fast"],
        gossip=GOSSIP_PRESETS["fast"],
        policy=policy,
    )
    node = Node(config, say=lambda line: None)
    await node.start()
    try:
        assert node._runner is not None
        routes = list(node._runner.app.router.routes())
    finally:
        await node.stop()
    get_handlers = {r.resource.canonical: r.handler for r in routes if r.method == "GET"}
    served = set()
    for route in routes:
        path = route.resource.canonical
        if path in NOT_CLIENT_ROUTES:
            continue
        if is_compat(path):  # Bacalhau's API (edgebac/api/bacalhau), not edgebac's: not in it
            continue
        if route.method == "HEAD" and get_handlers.get(path) is route.handler:
            continue  # the HEAD aiohttp adds beside each GET: said once in the document's info
        served.add((route.method, path))
    assert served - documented() == set(), "routes without documentation"
    assert documented() - served == set(), "documented routes the node does not serve"


def test_every_error_response_is_the_one_error_schema():
    responses = DOC["components"]["responses"]
    for path, item in DOC["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) < 400 or method == "head":
                    continue
                if "$ref" in response:
                    response = responses[response["$ref"].rsplit("/", 1)[1]]
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, status)
            assert "500" in operation["responses"] or method == "head", (path, method)


# ----- against real nodes ------------------------------------------------------------------------


def schema_of(name: str) -> dict[str, Any]:
    """A component schema, with the document's components to resolve its $refs."""
    return {"$ref": f"#/components/schemas/{name}", "components": DOC["components"]}


def check(body: Any, schema: dict[str, Any]) -> None:
    jsonschema.validate(body, {**schema, "components": DOC["components"]})


def response_schema(path: str, method: str = "get", status: str = "200") -> dict[str, Any]:
    response = DOC["paths"][path][method]["responses"][status]
    return response["content"]["application/json"]["schema"]


def call(node: NodeProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(node.url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:  # not JSON: json.loads fails the test
            return exc.code, json.loads(exc.read())


@pytest.fixture
def pair(nodes, tmp_path):
    """Two nodes of one private network that have seen each other."""
    key = str(network_key(tmp_path))
    a = nodes.start(tmp_path / "a", "--network-key", key, listen="127.0.0.2:0")
    b = nodes.start(
        tmp_path / "b", "--network-key", key, "--peers", a.url.removeprefix("http://"),
        listen="127.0.0.3:0",
    )  # fmt: skip
    wait_converged([a, b])
    return a, b


def test_real_errors_have_the_one_shape(pair):
    a, b = pair
    status, created = call(a, "POST", "/api/v1/jobs", {"engine": {"type": "noop"}})
    assert status == 201, created
    job_id = created["job_id"]
    wait_for(lambda: call(b, "GET", f"/api/v1/jobs/{job_id}")[0] == 200, 20, "b to know the job")
    cases = [
        ("GET", "/api/v1/nope", None, 404, "not_found"),
        ("DELETE", "/api/v1/jobs", None, 405, "method_not_allowed"),
        ("POST", "/api/v1/jobs", {"engine": {"type": "docker"}, "count": 0}, 400, "bad_spec"),
        ("POST", "/api/v1/jobs", None, 400, "bad_request"),
        ("GET", "/api/v1/jobs/j-unknown", None, 404, "not_found"),
        ("GET", "/api/v1/jobs?limit=x", None, 400, "bad_request"),
        ("GET", "/api/v1/events?after=-1", None, 400, "bad_request"),
        ("GET", "/api/v1/authors/zz/head", None, 400, "bad_request"),
        ("POST", f"/api/v1/jobs/{job_id}/cancel", {}, 409, "not_requester"),
        ("GET", f"/api/v1/jobs/{job_id}/logs?stream=x", None, 400, "bad_request"),
        ("GET", "/api/v1/blocks/not-a-cid", None, 400, "bad_cid"),
    ]
    for method, path, body, want_status, want_code in cases:
        node = b if path.endswith("/cancel") else a
        status, error = call(node, method, path, body)
        assert (status, error["error"]["code"]) == (want_status, want_code), (path, error)
        check(error, schema_of("Error"))
        assert set(error["error"]) <= {"code", "message", "fields"}
        assert isinstance(error["error"]["message"], str)
        assert "\n" not in error["error"]["message"]
    _, bad_spec = call(a, "POST", "/api/v1/jobs", {"engine": {"type": "docker"}, "count": 0})
    fields = {item["field"] for item in bad_spec["error"]["fields"]}
    assert {"engine.image", "count"} <= fields, bad_spec


def test_answers_match_the_document_and_the_node_serves_it(pair):
    a, _ = pair
    status, served = call(a, "GET", "/api/v1/openapi.json")
    assert (status, served) == (200, DOC)
    status, created = post_json(a.url + "/api/v1/jobs", {"engine": {"type": "noop", "stdout": "x"}})
    check(created, response_schema("/api/v1/jobs", "post", "201"))
    job_id = created["job_id"]
    wait_for(lambda: call(a, "GET", f"/api/v1/jobs/{job_id}")[1]["status"] == "completed", 20, "")
    _, node = call(a, "GET", "/api/v1/node")
    gets = {
        "/healthz": "/healthz",
        "/api/v1/node": "/api/v1/node?state_hash=1",
        "/api/v1/nodes": "/api/v1/nodes",
        "/api/v1/events": "/api/v1/events?limit=5&raw=1",
        "/api/v1/jobs": "/api/v1/jobs",
        "/api/v1/jobs/{job_id}": f"/api/v1/jobs/{job_id}",
        "/api/v1/jobs/{job_id}/results": f"/api/v1/jobs/{job_id}/results",
        "/api/v1/authors/{author}/head": f"/api/v1/authors/{node['id']}/head",
    }
    for template, path in gets.items():
        status, body = call(a, "GET", path)
        assert status == 200, (path, body)
        check(body, response_schema(template))
    status, body = call(a, "POST", f"/api/v1/jobs/{job_id}/cancel", {})
    check(body, response_schema("/api/v1/jobs/{job_id}/cancel", "post"))
    _, raw, ctype = a.request(f"/api/v1/jobs/{job_id}/logs")
    assert ctype == "application/x-ndjson"
    record_schema = DOC["paths"]["/api/v1/jobs/{job_id}/logs"]["get"]["responses"]["200"]
    for line in raw.decode().splitlines():
        check(json.loads(line), record_schema["content"]["application/x-ndjson"]["schema"])


def test_node_list_shows_what_each_node_announced(pair):
    """Engines, resources and version come from each node's NodeAnnounced, seen across the pair."""
    a, b = pair
    _, mine = call(b, "GET", "/api/v1/node")
    _, listed = call(a, "GET", "/api/v1/nodes")
    check(listed, response_schema("/api/v1/nodes"))
    row = next(r for r in listed["nodes"] if r["id"] == mine["id"])
    assert row["version"] == mine["version"]
    assert "noop" in row["engines"]
    assert row["resources"]["cpu_millis"] >= 1000
    assert row["resources"]["memory_bytes"] > 0
    shown = run_edgebac("node", "list", "--api", a.url)
    assert shown.returncode == 0, shown.stderr
    header, *lines = shown.stdout.splitlines()
    assert header.split() == [
        "NODE", "LIVENESS", "ADDRESS", "ROLES", "ENGINES", "RESOURCES", "VERSION", "LABELS"
    ]  # fmt: skip
    line = next(line for line in lines if line.startswith(mine["id"][:12]))
    assert ",".join(row["engines"]) in line
    assert f"{row['resources']['cpu_millis'] / 1000:g} cpu, " in line
    assert " mem, " in line
    assert " disk " in line
    assert f"  {mine['version']}  " in line
