"""Docker and wasm jobs end to end through a real node process: real Docker engine, real
wasmtime, real S3 server (moto_server), a real HTTP server; results checked on disk."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.httpfix import file_server
from tests.netfix import info, post_json
from tests.procs import Nodes, run_edgebac, wait_for

WASM = Path(__file__).resolve().parent.parent / "fixtures" / "wasm"
README = b"read me, from a URL\n"
LOGS = {
    "logs-2023-04-01.log": b"april one\n",
    "logs-2023-04-02.log": b"april two\n",
    "logs-2023-05-01.log": b"may\n",
}


def inline_module(name: str) -> str:
    return "inline:base64:" + base64.b64encode((WASM / f"{name}.wasm").read_bytes()).decode()


class JobClient:
    """Jobs on one real node, through its API: submit (no retries), view, wait for the end."""

    def __init__(self, node) -> None:
        self.node = node

    def submit(self, spec: dict) -> str:
        status, body = post_json(self.node.url + "/api/v1/jobs", {"retries": 0, **spec})
        assert status == 201, body
        return body["job_id"]

    def view(self, job_id: str) -> dict:
        status, body = self.node.get_json(f"/api/v1/jobs/{job_id}?events=0")
        assert status == 200, body
        return body

    def wait(self, job_id: str, timeout: float = 30.0) -> dict:
        return wait_for(
            lambda: (v := self.view(job_id))["status"] in ("completed", "failed", "canceled") and v,
            timeout,
            f"job {job_id} to end",
        )


class Edge(JobClient):
    """One node with docker and wasm, its S3 bucket, URL server and allowed folder."""

    def __init__(self, node, bucket: str, site: str, allowed: Path, node_key: str) -> None:
        super().__init__(node)
        self.bucket, self.site, self.allowed = bucket, site, allowed
        self.node_key = node_key

    def results(self, execution_id: str) -> Path:
        return self.node.data_dir / "work" / "results" / execution_id

    def containers(self) -> list[str]:
        return docker_ids(f"edgebac.node={self.node_key}")

    def scratch(self) -> list[Path]:
        folder = self.node.data_dir / "work" / "scratch"
        return sorted(folder.iterdir()) if folder.exists() else []


def docker_ids(label: str) -> list[str]:
    done = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={label}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout.split()


def start_node(nodes: Nodes, data_dir: Path, policy: Path, env: dict[str, str]):
    return nodes.start(data_dir, "--policy", str(policy), env=env)


@pytest.fixture(scope="module")
def edge(tmp_path_factory, s3_server, busybox_image):
    tmp = tmp_path_factory.mktemp("edge")
    bucket = f"edge-{uuid.uuid4().hex[:12]}"
    client = s3_server.client()
    client.create_bucket(Bucket=bucket)
    for key, body in LOGS.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    site_root, allowed = tmp / "site", tmp / "allowed"
    site_root.mkdir()
    allowed.mkdir()
    (site_root / "readme.txt").write_bytes(README)
    (tmp / "secret.txt").write_text("not for jobs\n")
    policy = tmp / "policy.yaml"
    policy.write_text(f"engines: [docker, wasm, noop]\npaths: [{allowed}]\nurls: [127.0.0.1]\n")
    nodes = Nodes()
    try:
        with file_server(site_root) as site:
            node = start_node(nodes, tmp / "node", policy, s3_server.env)
            key = info(node)["public_key"]
            yield Edge(node, bucket, site, allowed, key)
    finally:
        nodes.kill_all()


def only_execution(view: dict) -> dict:
    (execution,) = view["executions"].values()
    return execution


def test_docker_job_reads_s3_prefix_and_url_and_writes_an_output_volume(edge, busybox_image):
    script = (
        "cat /s3in/*.log; cat /web/readme.txt >&2; ls /s3in > /out/listing; "
        "touch /s3in/x 2>/dev/null || echo read-only > /out/ro"
    )
    ran = run_edgebac(
        "docker", "run", "--api", edge.node.url, "--wait", "--output", "json", "--timeout", "60",
        "-i", f"s3://{edge.bucket}/logs-2023-04*:/s3in",
        "-i", f"{edge.site}/readme.txt:/web",
        "-o", "apples:/out",
        busybox_image, "sh", "-c", script,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    execution = only_execution(json.loads(ran.stdout))
    results = edge.results(execution["id"])
    assert (results / "stdout").read_bytes() == b"april one\napril two\n"
    assert (results / "stderr").read_bytes() == README
    assert (results / "exitCode").read_text() == "0\n"
    listing = (results / "apples" / "listing").read_text()
    assert listing == "logs-2023-04-01.log\nlogs-2023-04-02.log\n"
    assert (results / "apples" / "ro").read_text() == "read-only\n"
    assert edge.containers() == []


def test_wasm_job_reads_s3_prefix_and_url_and_writes_an_output_volume(edge):
    ran = run_edgebac(
        "wasm", "run", "--api", edge.node.url, "--wait", "--output", "json",
        "-i", f"s3://{edge.bucket}/logs-2023-04*:/inputs",
        "-i", f"{edge.site}/readme.txt:/inputs/web",
        "-o", "apples:/outputs",
        str(WASM / "io.wasm"), "/inputs", "/outputs",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    results = edge.results(only_execution(json.loads(ran.stdout))["id"])
    files = {**LOGS, "web/readme.txt": README}
    del files["logs-2023-05-01.log"]
    total = sum(len(body) for body in files.values())
    assert (results / "stdout").read_text() == f"io: 3 files, {total} bytes\n"
    assert (results / "stderr").read_text() == "io: done\n"
    assert (results / "exitCode").read_text() == "0\n"
    listing = (results / "apples" / "listing.txt").read_text().splitlines()
    assert [line.split()[:2] for line in listing] == [
        [name, str(len(body))] for name, body in sorted(files.items())
    ]
    for name, body in files.items():
        assert (results / "apples" / "copy" / name).read_bytes() == body


def docker_spec(image: str, *args: str, **extra) -> dict:
    return {"engine": {"type": "docker", "image": image, "args": list(args)}, **extra}


def wasm_spec(name: str, *args: str, **extra) -> dict:
    return {"engine": {"type": "wasm", "module": inline_module(name), "args": list(args)}, **extra}


def test_failures_end_with_their_reason_and_leave_nothing_behind(edge, busybox_image):
    before = edge.containers()
    bb = busybox_image
    dd = ("dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
    missing = [{"source": f"s3://{edge.bucket}/nope.log", "target": "/in"}]
    refused = [{"source": f"{edge.allowed}/../secret.txt", "target": "/in"}]
    cases = {
        "docker timeout": (docker_spec(bb, "sleep", "1000", timeout_s=2), "timed out after 2 s"),
        "wasm timeout": (wasm_spec("loop", timeout_s=1), "timed out after 1 s"),
        "docker memory": (docker_spec(bb, *dd, resources={"memory": "16Mi"}), "out of memory"),
        "wasm memory": (wasm_spec("alloc", resources={"memory": "32Mi"}), "out of memory"),
        "docker exit": (docker_spec(bb, "sh", "-c", "echo bye; exit 3"), "exit code 3"),
        "wasm exit": (wasm_spec("exit3"), "exit code 3"),
        "missing key": (
            docker_spec(bb, "true", inputs=missing),
            f"input s3://{edge.bucket}/nope.log: no such key",
        ),
        "refused path": (
            wasm_spec("hello", inputs=refused),
            "outside the paths this node allows",
        ),
    }
    jobs = {name: edge.submit(spec) for name, (spec, _) in cases.items()}
    missing_image = edge.submit(docker_spec("edgebac-test/absent:1", "true", timeout_s=2))
    for name, job_id in jobs.items():
        view = edge.wait(job_id)
        assert view["status"] == "failed", (name, view)
        execution = only_execution(view)
        assert execution["status"] == "failed", (name, execution)
        assert cases[name][1] in execution["reason"], (name, execution["reason"])
    absent = edge.wait(missing_image)
    assert absent["status"] == "failed"
    assert "image not present" in absent["reason"]
    assert absent["executions"] == {}
    exit_view = edge.view(jobs["docker exit"])
    assert (edge.results(only_execution(exit_view)["id"]) / "stdout").read_text() == "bye\n"
    # The node runs on, and nothing leaked.
    hello = edge.wait(edge.submit(wasm_spec("hello", "again")))
    assert hello["status"] == "completed"
    assert edge.containers() == before == []
    wait_for(lambda: edge.scratch() == [], 5, "scratch folders to go")


def test_leftover_containers_are_removed_when_the_node_restarts(tmp_path, s3_server, busybox_image):
    policy = tmp_path / "policy.yaml"
    policy.write_text("engines: [docker]\n")
    nodes = Nodes()
    try:
        node = start_node(nodes, tmp_path / "n", policy, s3_server.env)
        key = info(node)["public_key"]
        spec = docker_spec(busybox_image, "sleep", "1000", timeout_s=300, retries=0)
        status, body = post_json(node.url + "/api/v1/jobs", spec)
        assert status == 201, body
        wait_for(lambda: docker_ids(f"edgebac.node={key}"), 20, "the container")
        node.kill()
        assert len(docker_ids(f"edgebac.node={key}")) == 1
        again = start_node(nodes, tmp_path / "n", policy, s3_server.env)
        assert docker_ids(f"edgebac.node={key}") == []
        wait_for(
            lambda: again.get_json(f"/api/v1/jobs/{body['job_id']}")[1]["status"] == "failed",
            10,
            "the interrupted job to fail",
        )
        assert again.stop(signal.SIGTERM) == 0
    finally:
        nodes.kill_all()


def test_a_node_without_docker_does_not_offer_it_and_says_so(tmp_path):
    nodes = Nodes()
    try:
        node = _node_with_docker_at(nodes, tmp_path, "unix:///nonexistent/docker.sock")
        assert "docker engine not offered: cannot reach a Docker engine" in node.stderr
        assert _announced_executors(node) == ["wasm"]
        status, body = post_json(
            node.url + "/api/v1/jobs", docker_spec("edgebac-test/busybox:1", "true", timeout_s=2)
        )
        assert status == 201
        view = wait_for(
            lambda: (
                (v := node.get_json(f"/api/v1/jobs/{body['job_id']}")[1])["status"] == "failed"
                and v
            ),
            15,
            "the docker job to fail",
        )
        assert "engine disabled" in view["reason"]
    finally:
        nodes.kill_all()


def test_a_docker_engine_that_answers_after_the_node_started_is_offered_then(
    tmp_path, busybox_image
):
    """dockerd often starts after the node (boot order, a restarted engine): the node looks
    for it again, announces docker once it answers and runs the docker job that waited."""
    engine_socket = _docker_socket()
    late = tmp_path / "late" / "docker.sock"  # nothing there yet: the engine "is not up"
    late.parent.mkdir()
    nodes = Nodes()
    try:
        node = _node_with_docker_at(nodes, tmp_path, f"unix://{late}")
        assert "docker jobs will be taken as soon as it answers" in node.stderr
        assert _announced_executors(node) == ["wasm"]
        late.symlink_to(engine_socket)  # the engine comes up
        wait_for(lambda: _announced_executors(node) == ["docker", "wasm"], 20, "docker offered")
        status, body = post_json(
            node.url + "/api/v1/jobs", docker_spec(busybox_image, "echo", "late", timeout_s=30)
        )
        assert status == 201, body
        view = wait_for(
            lambda: (
                (v := node.get_json(f"/api/v1/jobs/{body['job_id']}")[1])["status"]
                in ("completed", "failed")
                and v
            ),
            40,
            "the docker job to end",
        )
        assert view["status"] == "completed", view
    finally:
        nodes.kill_all()


def _node_with_docker_at(nodes: Nodes, tmp_path: Path, docker_host: str):
    """A node offering docker and wasm whose Docker engine is (or will be) at `docker_host`."""
    policy = _write(tmp_path / "p.yaml", "engines: [docker, wasm]\n")
    return start_node(nodes, tmp_path / "n", policy, {"DOCKER_HOST": docker_host})


def _announced_executors(node) -> list[str]:
    _, page = node.get_json("/api/v1/events?type=NodeAnnounced")
    return page["events"][-1]["body"]["executors"]


def _docker_socket() -> Path:
    """The socket of the engine the tests use (DOCKER_HOST if it names one, else the default)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    assert host.startswith("unix://"), f"the tests' engine is not on a unix socket: {host}"
    return Path(host.removeprefix("unix://"))


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
