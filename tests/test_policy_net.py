"""Operator policy on real nodes: allow-lists, exec bid hooks and HTTP accept hooks."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tests.netfix import post_json, start_network
from tests.procs import nodes_fixture, run_edgebac, wait_for
from tests.test_cli_errors import assert_one_line_error

nodes = nodes_fixture()

BID_HOOK = """
import json, sys
spec = json.load(sys.stdin)
if "forbidden" in spec.get("name", ""):
    print("jobs named forbidden are not welcome here", file=sys.stderr)
    sys.exit(1)
"""


def submit(node, spec):
    status, body = post_json(node.url + "/api/v1/jobs", spec)
    assert status == 201, body
    return body["job_id"]


def view(node, job_id):
    return node.get_json(f"/api/v1/jobs/{job_id}")[1]


def wait_status(node, job_id, statuses, timeout=20.0):
    return wait_for(
        lambda: (v := view(node, job_id))["status"] in statuses and v, timeout, str(statuses)
    )


def noop(name, **extra):
    return {"name": name, "engine": {"type": "noop"}, **extra}


def test_exec_bid_hook_and_engine_allow_list(nodes, tmp_path):
    hook = tmp_path / "hook.py"
    hook.write_text(BID_HOOK)
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"engines: [noop]\nbid_hook: {{exec: '{sys.executable} {hook}'}}\n")
    (node,) = start_network(nodes, tmp_path, 1, "--policy", str(policy))
    ok = wait_status(node, submit(node, noop("welcome")), {"completed", "failed"})
    assert ok["status"] == "completed"
    refused = submit(node, noop("forbidden-job", timeout_s=2))
    pending = wait_status(node, refused, {"pending"}, timeout=10)
    assert "not welcome" in json.dumps(pending["declines"])
    assert pending["pending_reason"] == "1 node: 1 declined by policy"
    docker = submit(node, {"engine": {"type": "docker", "image": "x"}, "timeout_s": 2})
    failed = wait_status(node, docker, {"failed"})
    assert "engine" in failed["reason"]


class _AcceptHook(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        refuse = body["spec"]["name"] == "reject-me"
        self.send_response(403 if refuse else 200)
        self.end_headers()
        self.wfile.write(b"requester says no" if refuse else b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def accept_hook_url():
    server = HTTPServer(("127.0.0.1", 0), _AcceptHook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/accept"
    server.shutdown()
    server.server_close()


def test_http_accept_hook_decides_which_bids_are_taken(nodes, tmp_path, accept_hook_url):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"accept_hook": {"http": accept_hook_url}}))
    (node,) = start_network(nodes, tmp_path, 1, "--policy", str(policy))
    ok = wait_status(node, submit(node, noop("fine")), {"completed", "failed"})
    assert ok["status"] == "completed"
    rejected = wait_status(node, submit(node, noop("reject-me", timeout_s=2)), {"failed"})
    assert "requester says no" in json.dumps(rejected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour: blue\n", "unknown setting 'colour'"),
        ("engines: noop\n", "engines must be a list of strings"),
        ("bid_hook: {run: x}\n", "bid_hook must be {exec: COMMAND} or {http: URL}"),
        ("network: maybe\n", "network must be true or false"),
        ("engines: [wasm, dockr]\n", "engines: 'dockr' is not an engine (one of docker, wasm"),
        ("paths: [srv/data]\n", "paths: 'srv/data' is not an absolute path"),
        ("cost: cheap\n", "cost: 'cheap' is not a number"),
        ("bid_hook: {exec: x, timeout_s: soon}\n", "bid_hook.timeout_s: 'soon' is not a number"),
    ],
)
def test_bad_policy_files_are_named(tmp_path, text, message):
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    result = run_edgebac(
        "node", "--data-dir", tmp_path / "d", "--listen", "127.0.0.1:0", "--policy", policy
    )
    line = assert_one_line_error(result, str(policy), message)
    assert result.returncode == 1, line
    assert not (tmp_path / "d").exists()  # a start that cannot succeed creates nothing


def test_pull_policy_bids_for_missing_images_and_names_a_failed_pull(
    nodes, tmp_path, docker_engine
):
    """With `pull: true` a missing image is no reason to decline; a pull that fails (here from
    a registry address on loopback where nothing listens) fails the execution, with the why."""
    policy = tmp_path / "policy.yaml"
    policy.write_text("engines: [docker]\npull: true\n")
    (node,) = start_network(nodes, tmp_path, 1, "--policy", str(policy))
    image = "127.0.0.1:9/edgebac/absent:1"
    job_id = submit(node, {"engine": {"type": "docker", "image": image}, "retries": 0})
    failed = wait_status(node, job_id, {"failed"}, timeout=60)
    (execution,) = failed["executions"].values()
    assert execution["reason"].startswith(f"cannot pull {image}")
    assert failed["declines"] == {}
