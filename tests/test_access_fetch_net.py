"""Peers fetch blocks with their node identity between nodes that have access rules: a compute
node stages an `ipfs://` input only the requester holds (its block fetches are signed with its
node key, which the holder serves as a member's), while the same block and content fetches,
anonymous or signed by a key that is not a member's, get 401 from the holder."""

from __future__ import annotations

import hashlib
import json
import secrets

from edgebac.eventlog.callsig import DIGEST_HEADER, HEADER, sign_call
from edgebac.eventlog.clock import wall_clock_ms
from edgebac.eventlog.identity import create_key_file, read_key_file
from tests.procs import nodes_fixture, wait_for
from tests.test_auth_net import Client, Site, error_code, send, write_spec
from tests.test_executors_net import inline_module
from tests.test_uploads_net import upload

nodes = nodes_fixture()


def content_routes(cid: str) -> list[tuple[str, str]]:
    return [
        (method, f"/api/v1/{kind}/{cid}")
        for kind in ("blocks", "content")
        for method in ("GET", "HEAD")
    ]


def test_a_compute_node_stages_a_cid_only_the_requester_holds_and_strangers_get_401(
    nodes, tmp_path
):
    site = Site(nodes, tmp_path)
    data = f"held by a only {secrets.token_hex(8)}\n".encode() * 100
    path = "/api/v1/content?name=data.txt"
    digest = hashlib.sha256(data).digest()
    alice = site.keys["alice"]
    headers = {
        HEADER: sign_call(alice.key, "POST", path, b"", wall_clock_ms(), digest=digest),
        DIGEST_HEADER: digest.hex(),
        "Content-Type": "application/octet-stream",
    }
    status, answer = upload(site.a, data, headers, "?name=data.txt")
    assert status == 201, answer
    cid = answer["cid"]
    node_a = read_key_file(site.a.data_dir / "node.key")
    node_b = read_key_file(site.b.data_dir / "node.key")
    as_a = Client(site.b.url, key=node_a)
    assert as_a.call("HEAD", f"/api/v1/content/{cid}")[0] == 404  # b does not hold it yet

    spec = {
        "engine": {"type": "wasm", "module": inline_module("io"), "args": ["/in", "/out"]},
        "inputs": [{"source": f"ipfs://{cid}", "target": "/in"}],
        "outputs": [{"name": "out", "path": "/out"}],
        "constraints": ["zone=b"],
        "retries": 0,
    }
    ran = site.cli("alice", "job", "run", "--output", "json", str(write_spec(tmp_path, "io", spec)))
    assert ran.returncode == 0, ran.stderr
    job_id = json.loads(ran.stdout)["job_id"]
    view = wait_for(
        lambda: (
            (v := site.client("alice").call("GET", f"/api/v1/jobs/{job_id}?events=0")[1])["status"]
            in ("completed", "failed")
            and v
        ),
        60,
        "the job to end",
    )
    assert view["status"] == "completed", view
    (execution,) = view["executions"].values()
    assert execution["node"] == node_b.node_id
    copied = site.b.data_dir / "work" / "results" / execution["id"] / "out" / "copy"
    assert (copied / "data.txt").read_bytes() == data
    assert as_a.call("HEAD", f"/api/v1/content/{cid}")[0] == 200  # b fetched it from a

    stranger = Client(site.a.url, key=create_key_file(tmp_path / "stranger.key"))
    member = Client(site.a.url, key=node_b)
    for method, route in content_routes(cid):
        what = f"{method} {route}"
        if method == "HEAD":
            assert send(site.a.url, method, route, b"", {})[0] == 401, what
            assert stranger.call(method, route)[0] == 401, what
        else:
            anonymous = error_code(send(site.a.url, method, route, b"", {}))
            assert anonymous == (401, "unauthenticated"), what
            assert error_code(stranger.call(method, route)) == (401, "unauthenticated"), what
        assert member.call(method, route)[0] == 200, what  # the same call, signed by b
