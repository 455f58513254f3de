"""The client's key and what it signs: `client keygen/id`, the default key made once on first
use, signed submissions and cancels in a real node's log, and `job get` writing only inside its
output folder whatever the API says."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from edgebac.eventlog.signed import CANCEL, SUBMIT, request_valid
from tests.netfix import post_json
from tests.procs import NodeProcess, clean_env, edgebac_argv, nodes_fixture, run_edgebac

nodes = nodes_fixture()
WASM = Path(__file__).resolve().parent.parent / "fixtures" / "wasm" / "hello.wasm"
NOOP = {"engine": {"type": "noop"}}


def ok(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = run_edgebac(*args, env=env)
    assert done.returncode == 0, done.stderr
    return done


def events(node: NodeProcess, job_id: str, kind: str) -> list[dict]:
    history = node.get_json(f"/api/v1/jobs/{job_id}")[1]["events"]
    return [event for event in history if event["type"] == kind]


def signed_by(event: dict, kind: str, requester: str, fields: dict) -> bool:
    body = event["body"]
    client, sig = bytes.fromhex(body["client"]), bytes.fromhex(body["client_sig"])
    return request_valid(client, sig, kind, bytes.fromhex(requester), fields)


def test_keygen_and_id(tmp_path):
    key = tmp_path / "me.key"
    made = ok("client", "keygen", "--client-key", key)
    client_id = made.stdout.strip()
    assert len(client_id) == 64
    assert int(client_id, 16) >= 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert ok("client", "id", "--client-key", key).stdout.strip() == client_id
    shown = json.loads(ok("client", "id", "--client-key", key, "--output", "json").stdout)
    assert shown == {"id": client_id, "key_file": str(key)}
    again = run_edgebac("client", "keygen", "--client-key", key)
    assert again.returncode == 1
    assert "already exists" in again.stderr
    assert ok("client", "id", env={"EDGEBAC_CLIENT_KEY": str(key)}).stdout.strip() == client_id
    missing = run_edgebac("client", "id", "--client-key", tmp_path / "none.key")
    assert missing.returncode == 1
    assert "edgebac client keygen" in missing.stderr


def test_the_default_key_is_made_on_first_use_and_said_once(nodes, tmp_path):
    node = nodes.start(tmp_path / "node")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(NOOP))
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    first = ok("job", "run", spec, "--api", node.url, env=env)
    default = tmp_path / "config" / "edgebac" / "client.key"
    assert first.stderr.count("created a client key") == 1
    assert str(default) in first.stderr
    second = ok("job", "run", spec, "--api", node.url, env=env)
    assert "created a client key" not in second.stderr
    client_id = ok("client", "id", env=env).stdout.strip()
    assert client_id in first.stderr
    for ran in (first, second):
        job = node.get_json(f"/api/v1/jobs/{ran.stdout.strip()}?events=0")[1]
        assert job["client"] == client_id


def test_every_submitting_command_signs_for_the_node_it_asks(nodes, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("engines: [noop]\n")  # the docker and wasm jobs need not run
    node = nodes.start(tmp_path / "node", "--policy", str(policy))
    requester = node.get_json("/api/v1/node")[1]["public_key"]
    key = tmp_path / "client.key"
    client_id = ok("client", "keygen", "--client-key", key).stdout.strip()
    spec = tmp_path / "spec.yaml"
    spec.write_text("engine: {type: noop}\ntimeout_s: 30\n")  # shorthand: signed once parsed
    submitted = [
        ok("job", "run", spec, "--client-key", key, "--api", node.url),
        ok("docker", "run", "--client-key", key, "--api", node.url, "busybox:1", "true"),
        ok("wasm", "run", "--client-key", key, "--api", node.url, WASM),
    ]
    for ran in submitted:
        (created,) = events(node, ran.stdout.strip(), "JobCreated")
        body = created["body"]
        assert body["client"] == client_id
        assert "vouched" not in body
        assert signed_by(created, SUBMIT, requester, {"spec": body["spec"], "nonce": body["nonce"]})
        assert not signed_by(
            created, SUBMIT, "00" * 32, {"spec": body["spec"], "nonce": body["nonce"]}
        )
    job_id = submitted[0].stdout.strip()
    described = ok("job", "describe", job_id, "--api", node.url).stdout
    assert f"client: {client_id}" in described


def test_cancel_is_signed_by_the_jobs_client_only(nodes, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("engines: [wasm]\n")  # nothing can run the noop job: it stays pending
    node = nodes.start(tmp_path / "node", "--policy", str(policy))
    requester = node.get_json("/api/v1/node")[1]["public_key"]
    mine, other = tmp_path / "mine.key", tmp_path / "other.key"
    client_id = ok("client", "keygen", "--client-key", mine).stdout.strip()
    ok("client", "keygen", "--client-key", other)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**NOOP, "timeout_s": 300}))
    job_id = ok("job", "run", spec, "--client-key", mine, "--api", node.url).stdout.strip()
    stranger = run_edgebac("job", "cancel", job_id, "--client-key", other, "--api", node.url)
    assert stranger.returncode == 1
    assert "only its own client may cancel it" in stranger.stderr
    status, body = post_json(f"{node.url}/api/v1/jobs/{job_id}/cancel", {})
    assert (status, body["error"]["code"]) == (403, "not_the_jobs_client"), body
    prefix = job_id[:8]
    canceled = ok(
        "job",
        "cancel",
        prefix,
        "--reason",
        "no longer needed",
        "--client-key",
        mine,
        "--api",
        node.url,
    )
    assert canceled.stdout.strip() == f"{job_id}: canceled"
    (event,) = events(node, job_id, "JobCanceled")
    assert event["body"]["client"] == client_id
    assert event["body"]["reason"] == "no longer needed"
    fields = {"job_id": job_id, "nonce": event["body"]["nonce"], "reason": "no longer needed"}
    assert signed_by(event, CANCEL, requester, fields)
    vouched = post_json(node.url + "/api/v1/jobs", {**NOOP, "timeout_s": 300})[1]["job_id"]
    status, body = post_json(f"{node.url}/api/v1/jobs/{vouched}/cancel", {})
    assert (status, body["canceled"]) == (200, True)  # unsigned job, unsigned cancel: for now


# ----- job get: ids from the API are data, never paths ----------------------------------------

FULL_ID = "j-0123456789abcdef"


class _FakeApi(BaseHTTPRequestHandler):
    """Answers every results query with execution ids that are paths."""

    execution_ids: ClassVar[list[str]] = []

    def do_GET(self):
        results = [
            {
                "execution_id": execution_id,
                "node": "ab" * 32,
                "status": "completed",
                "exit_code": 0,
                "reference": "ipfs://bafkqaaa",
                "digest": "bafkqaaa",
                "size": 0,
                "holders": [],
            }
            for execution_id in self.execution_ids
        ]
        answer = {"job_id": FULL_ID, "status": "completed", "results": results}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_api() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _FakeApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def tree(root: Path) -> dict[str, bytes | None]:
    return {
        str(path.relative_to(root)): path.read_bytes() if path.is_file() else None
        for path in sorted(root.rglob("*"))
    }


def test_job_get_writes_and_deletes_nothing_outside_its_folder(fake_api, tmp_path):
    victim = tmp_path / "x"  # what ../x names from the output folder
    victim.mkdir()
    (victim / "keep.txt").write_bytes(b"mine")
    absolute = tmp_path / "abs"
    absolute.mkdir()
    (absolute / "keep.txt").write_bytes(b"mine too")
    _FakeApi.execution_ids = ["../x", str(absolute), "..", "a/b", ""]
    before = tree(tmp_path)
    out = tmp_path / "out"
    got = run_edgebac("job", "get", "j-0123", "--output-dir", out, "--api", fake_api)
    assert got.returncode == 1
    assert got.stderr.count("warning: skipped a result") == 5, got.stderr
    assert "'../x' is not a safe file name" in got.stderr
    assert "none of its 5 results has a safe id" in got.stderr
    after = tree(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("out")} == before
    assert [p.name for p in out.iterdir()] == []


def test_job_get_names_its_folder_after_the_full_job_id(fake_api, tmp_path):
    _FakeApi.execution_ids = ["../x"]
    argv = edgebac_argv("job", "get", "j-0123", "--api", fake_api)
    got = subprocess.run(
        argv, cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert got.returncode == 1, got.stderr
    assert sorted(os.listdir(tmp_path)) == [FULL_ID]


def test_job_get_of_a_prefix_on_a_real_node(nodes, tmp_path):
    node = nodes.start(tmp_path / "node")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"engine": {"type": "noop", "stdout": "hi"}}))
    job_id = ok("job", "run", spec, "--wait", "--api", node.url).stdout.splitlines()[0]
    work = tmp_path / "work"
    work.mkdir()
    argv = edgebac_argv("job", "get", job_id[:8], "--api", node.url)
    got = subprocess.run(
        argv, cwd=work, env=clean_env(), capture_output=True, text=True, timeout=120, check=False
    )
    assert got.returncode == 0, got.stderr
    assert os.listdir(work) == [job_id]
    (execution,) = os.listdir(work / job_id)
    assert execution.startswith(job_id)
