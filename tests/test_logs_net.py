"""`job logs` across real node processes: a requester-only node proxies the logs of executions
that run on compute nodes (real Docker, real wasmtime), live with --follow and after the end."""

from __future__ import annotations

import base64
import json
import signal
import socket
from pathlib import Path

import pytest

from edgebac.cli.logs import execution_label
from tests.netfix import info, network_key, post_json, wait_converged
from tests.procs import Nodes, edgebac_argv, run_edgebac, wait_for

WASM = Path(__file__).resolve().parent.parent / "fixtures" / "wasm"
COUNTER = "for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.7; done"


@pytest.fixture(scope="module")
def net(tmp_path_factory, busybox_image):
    """A requester-only node and two compute nodes on a private network."""
    tmp = tmp_path_factory.mktemp("logs")
    key = str(network_key(tmp))
    nodes = Nodes()
    try:
        requester = nodes.start(
            tmp / "r", "--network-key", key, "--roles", "requester", listen="127.0.0.2:0"
        )
        seed = requester.url.removeprefix("http://")
        computes = [
            nodes.start(
                tmp / f"c{i}",
                "--network-key",
                key,
                "--peers",
                seed,
                "--roles",
                "compute",
                listen=f"127.0.0.{3 + i}:0",
            )
            for i in range(2)
        ]
        everyone = [requester, *computes]
        wait_converged(everyone, {info(n)["id"]: 1 for n in everyone})
        yield requester, computes, nodes
    finally:
        nodes.kill_all()


def submit(node, spec: dict) -> str:
    status, body = post_json(node.url + "/api/v1/jobs", {"retries": 0, **spec})
    assert status == 201, body
    return body["job_id"]


def view(node, job_id: str) -> dict:
    status, body = node.get_json(f"/api/v1/jobs/{job_id}?events=0")
    assert status == 200, body
    return body


def wait_status(node, job_id: str, statuses: tuple[str, ...], timeout: float = 60.0) -> dict:
    return wait_for(
        lambda: (v := view(node, job_id))["status"] in statuses and v, timeout, str(statuses)
    )


def records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def joined(recs: list[dict], stream: str) -> str:
    return "".join(r["data"] for r in recs if r.get("stream") == stream)


def docker_job(image: str, script: str, **extra) -> dict:
    return {"engine": {"type": "docker", "image": image, "args": ["sh", "-c", script]}, **extra}


def test_follow_streams_a_running_docker_job_live_through_the_requester(net, busybox_image):
    requester, _, nodes = net
    job_id = submit(requester, docker_job(busybox_image, COUNTER, timeout_s=60))
    follower = nodes.process(
        edgebac_argv("job", "logs", job_id, "--follow", "--api", requester.url, "--output", "json")
    )

    def first_line() -> bool:
        return "out1" in joined(records(follower.stdout), "stdout")

    wait_for(first_line, 30, "the first line of stdout")
    assert view(requester, job_id)["status"] == "running", "seen only after the job ended"
    assert "out3" not in follower.stdout
    assert follower.wait(60) == 0, follower.stderr
    recs = records(follower.stdout)
    assert joined(recs, "stdout") == "out1\nout2\nout3\n"
    assert joined(recs, "stderr") == "err1\nerr2\nerr3\n"
    (end,) = [r for r in recs if r.get("end")]
    assert end["status"] == "completed"
    assert end["exit_code"] == 0
    assert end["offsets"] == {"stdout": 15, "stderr": 15}
    assert {r["execution_id"] for r in recs} == {end["execution_id"]}

    # After the end, text mode: stdout to stdout, stderr to stderr, as the job wrote them.
    after = run_edgebac("job", "logs", job_id, "--api", requester.url)
    assert after.returncode == 0, after.stderr
    assert after.stdout == "out1\nout2\nout3\n"
    assert after.stderr == "err1\nerr2\nerr3\n"
    only_err = run_edgebac("job", "logs", job_id, "--stream", "stderr", "--api", requester.url)
    assert (only_err.stdout, only_err.stderr) == ("", "err1\nerr2\nerr3\n")


def test_follow_a_wasm_job_until_it_times_out(net):
    requester, _, nodes = net
    module = "inline:base64:" + base64.b64encode((WASM / "loop.wasm").read_bytes()).decode()
    job_id = submit(requester, {"engine": {"type": "wasm", "module": module}, "timeout_s": 3})
    follower = nodes.process(
        edgebac_argv("job", "logs", job_id, "-f", "--api", requester.url, "--output", "json")
    )
    wait_for(lambda: "looping" in follower.stdout, 30, "the module's first line")
    assert view(requester, job_id)["status"] == "running"
    assert follower.wait(60) == 0, follower.stderr
    (end,) = [r for r in records(follower.stdout) if r.get("end")]
    assert end["status"] == "failed"


def test_several_executions_are_tagged_and_prefixed(net):
    requester, computes, _ = net
    spec = {"engine": {"type": "noop", "stdout": "one\ntwo\n", "stderr": "bad\n"}, "count": 2}
    job_id = submit(requester, spec)
    done = wait_status(requester, job_id, ("completed", "failed"))
    assert done["status"] == "completed"
    ran = run_edgebac("job", "logs", job_id, "--api", requester.url, "--output", "json")
    assert ran.returncode == 0, ran.stderr
    recs = records(ran.stdout)
    executions = set(done["executions"])
    assert {r["execution_id"] for r in recs} == executions
    ends = [r for r in recs if r.get("end")]
    assert sorted(r["node"] for r in ends) == sorted(info(c)["id"] for c in computes)
    for execution_id in executions:
        mine = [r for r in recs if r["execution_id"] == execution_id]
        assert joined(mine, "stdout") == "one\ntwo\n"
    assert len({execution_label(e) for e in executions}) == 2  # node and attempt tell apart
    text = run_edgebac("job", "logs", job_id, "--api", requester.url)
    assert sorted(text.stdout.splitlines()) == sorted(
        f"{execution_label(e)} | {line}" for e in executions for line in ("one", "two")
    )
    bad = sorted(f"{execution_label(e)} | bad" for e in executions)
    assert sorted(text.stderr.splitlines()) == bad
    one = sorted(executions)[0]
    only = run_edgebac(
        "job", "logs", job_id, "--execution", one, "--api", requester.url, "--output", "json"
    )
    assert {r["execution_id"] for r in records(only.stdout)} == {one}
    # The execution route, on any node, proxies to the node that ran it.
    status, body, _ = requester.request(f"/api/v1/executions/{one}/logs?stream=stdout&offset=4")
    assert status == 200
    assert joined(records(body.decode()), "stdout") == "two\n"


def test_noop_streams_are_read_back_whole_from_the_store(net):
    """A noop job's streams never touch a results folder: its logs come from the store its
    results were published to, whole (not only the 1 KiB head the log keeps)."""
    requester, _, _ = net
    stdout = "".join(f"line {i}\n" for i in range(400))
    job_id = submit(requester, {"engine": {"type": "noop", "stdout": stdout, "stderr": "e"}})
    assert wait_status(requester, job_id, ("completed", "failed"))["status"] == "completed"
    ran = run_edgebac("job", "logs", job_id, "--api", requester.url, "--output", "json")
    assert ran.returncode == 0, ran.stderr
    recs = records(ran.stdout)
    assert joined(recs, "stdout") == stdout
    assert joined(recs, "stderr") == "e"
    assert not [r for r in recs if r.get("head_only")]
    status, body, _ = requester.request(f"/api/v1/jobs/{job_id}/logs?stream=stdout&offset=3000")
    assert status == 200
    assert joined(records(body.decode()), "stdout") == stdout[3000:]


def test_bad_requests_get_the_error_shape_and_the_cli_one_line(net):
    requester, computes, _ = net
    job_id = submit(requester, {"engine": {"type": "noop", "stdout": "x"}})
    done = wait_status(requester, job_id, ("completed",))
    (execution_id,) = done["executions"]
    ran_on = next(c for c in computes if info(c)["id"] == done["executions"][execution_id]["node"])
    other = next(c for c in computes if c is not ran_on)
    cases = [
        (requester, f"/api/v1/jobs/{job_id}/logs?stream=both2", 400, "bad_request"),
        (requester, f"/api/v1/jobs/{job_id}/logs?offset=-1", 400, "bad_request"),
        (requester, f"/api/v1/jobs/{job_id}/logs?follow=yes", 400, "bad_request"),
        (requester, "/api/v1/jobs/nope/logs", 404, "not_found"),
        (requester, f"/api/v1/jobs/{job_id}/logs?execution=nope", 404, "not_found"),
        (requester, "/api/v1/executions/nope/logs", 404, "not_found"),
        (other, f"/api/v1/executions/{execution_id}/logs?local=1", 409, "not_here"),
    ]
    for node, path, status, code in cases:
        got, body = node.get_json(path)
        assert (got, body["error"]["code"]) == (status, code), (path, body)
        assert isinstance(body["error"]["message"], str)
    unknown = run_edgebac("job", "logs", "nope", "--api", requester.url)
    assert unknown.returncode == 1
    assert unknown.stderr.strip().count("\n") == 0
    assert "no job 'nope'" in unknown.stderr
    bad = run_edgebac("job", "logs", job_id, "--stream", "all", "--api", requester.url)
    assert bad.returncode == 2
    assert "--stream" in bad.stderr


def test_an_unreachable_compute_node_gives_the_head_the_log_holds_and_says_so(
    tmp_path, nodes_for_unreachable
):
    requester, compute = nodes_for_unreachable
    spec = {"engine": {"type": "noop", "stdout": "out\n", "stderr": "err\n"}}
    job_id = submit(requester, spec)
    wait_status(requester, job_id, ("completed",))
    assert compute.stop() == 0
    ran = run_edgebac("job", "logs", job_id, "--stream", "stdout", "--api", requester.url)
    assert ran.returncode == 1
    assert ran.stdout == "out\n"
    assert ran.stderr.startswith("error: ")
    assert "cannot read logs from node" in ran.stderr
    assert "shown instead: the head of its stdout that the log holds" in ran.stderr
    assert ran.stderr.count("\n") == 1
    as_json = run_edgebac("job", "logs", job_id, "--api", requester.url, "--output", "json")
    *heads, error = records(as_json.stdout)
    assert [(r["stream"], r["data"], r["head_only"]) for r in heads] == [
        ("stdout", "out\n", True),
        ("stderr", "err\n", True),
    ]
    assert error["error"]["code"] == "unreachable"
    assert "head of its stdout and stderr" in error["error"]["message"]


@pytest.fixture
def nodes_for_unreachable(tmp_path):
    key = str(network_key(tmp_path))
    nodes = Nodes()
    try:
        requester = nodes.start(
            tmp_path / "r", "--network-key", key, "--roles", "requester", listen="127.0.0.6:0"
        )
        compute = nodes.start(
            tmp_path / "c", "--network-key", key, "--roles", "compute", "--peers",
            requester.url.removeprefix("http://"), "--policy", str(_noop_policy(tmp_path)),
            listen="127.0.0.7:0",
        )  # fmt: skip
        wait_converged([requester, compute], {info(n)["id"]: 1 for n in (requester, compute)})
        yield requester, compute
    finally:
        nodes.kill_all()


def _noop_policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text("engines: [noop]\n")
    return path


def test_a_follower_that_goes_away_is_no_error_on_either_node(net):
    """Ctrl-C on `job logs -f` (and a raw client that hangs up mid-stream): no traceback on the
    requester nor on the compute node, which count the disconnects and keep answering."""
    requester, computes, nodes = net
    module = "inline:base64:" + base64.b64encode((WASM / "loop.wasm").read_bytes()).decode()
    job_id = submit(requester, {"engine": {"type": "wasm", "module": module}, "timeout_s": 30})
    before = {n.url: len(n.stderr) for n in (requester, *computes)}
    follower = nodes.process(edgebac_argv("job", "logs", job_id, "-f", "--api", requester.url))
    wait_for(lambda: "looping" in follower.stdout, 30, "the module's first lines")
    follower.send(signal.SIGINT)
    assert follower.wait(30) != 0
    assert "Traceback" not in follower.stderr, follower.stderr
    ran_on = view(requester, job_id)["executions"]
    (execution_id,) = ran_on
    compute = next(c for c in computes if info(c)["id"] == ran_on[execution_id]["node"])
    host, port = compute.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), 10) as raw:
        raw.sendall(
            f"GET /api/v1/executions/{execution_id}/logs?follow=1 HTTP/1.1\r\n"
            f"Host: x\r\n\r\n".encode()
        )
        got = [b""]
        wait_for(
            lambda: b"looping" in got[0] or got.__setitem__(0, got[0] + raw.recv(4096)), 30, ""
        )
    gone = {n.url: lambda n=n: info(n)["api"]["clients_gone"] for n in (requester, compute)}
    wait_for(lambda: gone[requester.url]() >= 1, 30, "the requester to count its follower gone")
    wait_for(lambda: gone[compute.url]() >= 2, 30, "the compute node to count both gone")
    for node in (requester, *computes):
        assert "Traceback" not in node.stderr[before[node.url] :], node.stderr[before[node.url] :]
        assert node.returncode is None
    assert view(requester, job_id)["id"] == job_id
