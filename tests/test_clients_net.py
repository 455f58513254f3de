"""Who asked, on real nodes: a compute node runs only the clients its policy names, whatever
the requester accepted, and refuses jobs a requester vouched for when told to."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from edgebac.api.access import new_token, token_sha256
from tests.netfix import host_port, post_json
from tests.procs import NodeProcess, nodes_fixture, run_edgebac, wait_for

nodes = nodes_fixture()
SLOW = 60.0  # the machine is shared: generous deadlines, never fixed sleeps


def keygen(path: Path) -> str:
    made = run_edgebac("client", "keygen", "--client-key", path)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def signed_run(node: NodeProcess, spec_file: Path, key: Path) -> str:
    ran = run_edgebac("job", "run", spec_file, "--client-key", key, "--api", node.url)
    assert ran.returncode == 0, ran.stderr
    return ran.stdout.strip()


def view(node: NodeProcess, job_id: str) -> dict:
    return node.get_json(f"/api/v1/jobs/{job_id}?events=0")[1]


def spec_file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"name": name, "engine": {"type": "noop"}, "timeout_s": 300}))
    return path


def declined_for(node: NodeProcess, job_id: str, reason: str) -> dict:
    def seen() -> dict | None:
        shown = view(node, job_id)
        said = [d["reason"] for d in shown.get("declines", {}).values()]
        return shown if reason in said else None

    return wait_for(seen, SLOW, f"{job_id} declined: {reason}")


def test_a_compute_node_never_runs_a_client_its_policy_does_not_name(nodes, tmp_path):
    a_key, b_key = tmp_path / "a.key", tmp_path / "b.key"
    a_id, b_id = keygen(a_key), keygen(b_key)
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"engines: [noop]\nclients: [{a_id}]\n")
    requester = nodes.start(tmp_path / "r", "--roles", "requester", listen="127.0.0.2:0")
    compute = nodes.start(
        tmp_path / "c",
        *("--roles", "compute", "--policy", str(policy), "--peers", host_port(requester)),
        listen="127.0.0.3:0",
    )
    theirs = signed_run(requester, spec_file(tmp_path, "b-job"), b_key)  # the requester takes B
    mine = signed_run(requester, spec_file(tmp_path, "a-job"), a_key)
    done = wait_for(
        lambda: (v := view(requester, mine))["status"] in ("completed", "failed") and v,
        SLOW,
        "A's job ends",
    )
    assert done["status"] == "completed", done
    assert done["client"] == a_id
    pending = declined_for(requester, theirs, "client not allowed")
    assert pending["client"] == b_id
    assert pending["status"] == "pending"
    assert pending["executions"] == {}
    assert pending["pending_reason"] == "1 node: 1 client not allowed"
    (decline,) = pending["declines"].values()
    assert b_id[:12] in decline["detail"]
    assert view(compute, theirs)["executions"] == {}  # and the compute node agrees


def test_a_node_that_takes_no_vouched_jobs_declines_an_unsigned_submission(nodes, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("engines: [noop]\nvouched: false\n")
    node = nodes.start(tmp_path / "n", "--policy", str(policy), listen="127.0.0.2:0")
    status, body = post_json(node.url + "/api/v1/jobs", {"engine": {"type": "noop"}})
    assert status == 201, body  # curl-style: the requester vouches for it
    unsigned = declined_for(node, body["job_id"], "vouched jobs not allowed")
    assert (unsigned["client"], unsigned["vouched"]) == (None, "unsigned")
    assert unsigned["executions"] == {}
    key = tmp_path / "client.key"
    keygen(key)
    signed = signed_run(node, spec_file(tmp_path, "signed"), key)
    wait_for(lambda: view(node, signed)["status"] == "completed", SLOW, "the signed job completes")


def token_submit(node: NodeProcess, token: str, spec: dict[str, Any]) -> str:
    request = urllib.request.Request(
        node.url + "/api/v1/jobs",
        data=json.dumps(spec).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201
        return json.loads(response.read())["job_id"]


def test_a_compute_policy_names_a_token_client_by_its_requester(nodes, tmp_path):
    """The requester vouches for a token caller as `token:NAME@<its id>`: a compute node whose
    policy names `token:ci@<requester id>` runs ci's jobs, not another token's."""
    tokens = {name: new_token() for name in ("ci", "other")}
    access = tmp_path / "access.yaml"
    access.write_text(
        "clients:\n"
        + "".join(
            f"  {name}: {{token_sha256: {token_sha256(t)}, can: [read, submit]}}\n"
            for name, t in tokens.items()
        )
    )
    requester = nodes.start(
        tmp_path / "r", "--roles", "requester", "--access", str(access), listen="127.0.0.2:0"
    )
    requester_id = requester.get_json("/healthz")[1]["id"]
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"engines: [noop]\nclients: ['token:ci@{requester_id}']\n")
    compute = nodes.start(
        tmp_path / "c",
        *("--roles", "compute", "--policy", str(policy), "--peers", host_port(requester)),
        listen="127.0.0.3:0",
    )
    spec = {"engine": {"type": "noop"}, "timeout_s": 300}
    theirs = token_submit(requester, tokens["other"], {**spec, "name": "other"})
    mine = token_submit(requester, tokens["ci"], {**spec, "name": "ci"})
    done = wait_for(
        lambda: (v := view(compute, mine)).get("status") in ("completed", "failed") and v,
        SLOW,
        "ci's job ends",
    )
    assert done["status"] == "completed", done
    assert (done["client"], done["vouched"]) == (None, f"token:ci@{requester_id}")
    pending = declined_for(compute, theirs, "client not allowed")
    assert pending["vouched"] == f"token:other@{requester_id}"
    assert (pending["status"], pending["executions"]) == ("pending", {})


def held_accepts(tmp_path: Path) -> tuple[Path, Path]:
    """A requester policy whose accept hook says yes only once `go` exists (at most 9 s):
    the test decides when bids are accepted."""
    go, hook = tmp_path / "go", tmp_path / "hold.py"
    hook.write_text(
        "import pathlib, sys, time\n"
        f"go = pathlib.Path({str(go)!r})\n"
        "end = time.monotonic() + 9\n"
        "while not go.exists() and time.monotonic() < end:\n"
        "    time.sleep(0.02)\n"
        "sys.exit(0 if go.exists() else 1)\n"
    )
    policy = tmp_path / "requester.yaml"
    policy.write_text(f"accept_hook: {{exec: '{sys.executable} {hook}'}}\n")
    return policy, go


def test_an_accepted_bid_does_not_run_a_client_the_policy_no_longer_names(nodes, tmp_path):
    """The compute node bids on B's job while it takes any client; before the requester
    accepts, it restarts with a policy naming only A. The acceptance is the requester's word,
    not this node's: it never starts B's job, and fails the execution for the requester."""
    a_key, b_key = tmp_path / "a.key", tmp_path / "b.key"
    a_id, b_id = keygen(a_key), keygen(b_key)
    accepts, go = held_accepts(tmp_path)
    requester = nodes.start(
        tmp_path / "r", "--roles", "requester", "--policy", str(accepts), listen="127.0.0.2:0"
    )
    policy = tmp_path / "policy.yaml"
    policy.write_text("engines: [noop]\n")
    args = ("--roles", "compute", "--policy", str(policy), "--peers", host_port(requester))
    compute = nodes.start(tmp_path / "c", *args, listen="127.0.0.3:0")
    compute_id = compute.get_json("/healthz")[1]["id"]
    theirs = signed_run(requester, spec_file(tmp_path, "b-job"), b_key)
    wait_for(lambda: view(requester, theirs).get("bids"), SLOW, "the compute node's bid")
    compute.stop()
    policy.write_text(f"engines: [noop]\nclients: [{a_id}]\n")
    compute = nodes.start(tmp_path / "c", *args, listen="127.0.0.3:0")
    go.touch()

    def refused() -> dict | None:
        shown = view(requester, theirs)
        failed = [e for e in shown.get("executions", {}).values() if e["status"] == "failed"]
        return shown if failed else None

    shown = wait_for(refused, SLOW, "the accepted execution refused")
    (execution,) = shown["executions"].values()
    assert execution["node"] == compute_id
    assert execution["reason"].startswith("client not allowed: client ")
    assert b_id[:12] in execution["reason"]
    assert (execution["started_hlc"], execution["exit_code"]) == (None, None)
    assert shown["client"] == b_id
    mine = signed_run(requester, spec_file(tmp_path, "a-job"), a_key)  # A's still run there
    wait_for(lambda: view(requester, mine)["status"] == "completed", SLOW, "A's job completes")
    assert view(compute, theirs)["executions"][execution["id"]]["started_hlc"] is None
