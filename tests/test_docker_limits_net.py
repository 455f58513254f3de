"""Docker jobs cannot hurt the host: the limits and privileges of a real running job container,
as `docker inspect` shows them, and jobs that try to escape (mount) or exhaust the host (a fork
bomb) through a real node, which answers and runs the next job afterwards; a raw socket (ping)
fails on a node with the default policy and works where the policy adds NET_RAW."""

from __future__ import annotations

import json
import subprocess

import pytest

from edgebac.errors import ConfigError
from edgebac.node.policy import load_policy
from edgebac.runtime.docker_executor import (
    BASE_CAPABILITIES,
    DEFAULT_CPU_MILLIS,
    DEFAULT_MEMORY_BYTES,
    PIDS_LIMIT,
)
from tests.netfix import info, post_json
from tests.procs import Nodes, nodes_fixture, wait_for
from tests.test_executors_net import JobClient, docker_ids, docker_spec, only_execution

USER = "65534:65534"
nodes = nodes_fixture()


def inspect(container: str) -> dict:
    done = subprocess.run(
        ["docker", "inspect", container], capture_output=True, text=True, check=True, timeout=30
    )
    return json.loads(done.stdout)[0]


def cpu_limits() -> bool:
    done = subprocess.run(
        ["docker", "info", "--format", "{{json .CPUCfsQuota}}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout.strip() == "true"


class Node(JobClient):
    def __init__(self, node, key: str) -> None:
        super().__init__(node)
        self.key = key

    def container_of(self, job_id: str) -> dict:
        found = wait_for(lambda: docker_ids(f"edgebac.job={job_id}"), 20, "the job's container")
        return inspect(found[0])

    def cancel(self, job_id: str) -> None:
        status, body = post_json(self.node.url + f"/api/v1/jobs/{job_id}/cancel", {})
        assert status in (200, 202), body


@pytest.fixture(scope="module")
def node(tmp_path_factory, s3_server, busybox_image):
    tmp = tmp_path_factory.mktemp("limits")
    policy = tmp / "policy.yaml"
    policy.write_text(f'engines: [docker]\ncapabilities: [cap_net_raw]\nuser: "{USER}"\n')
    nodes, key = Nodes(), None
    try:
        started = nodes.start(tmp / "node", "--policy", str(policy), env=s3_server.env)
        key = info(started)["public_key"]
        yield Node(started, key)
    finally:
        nodes.kill_all()
        left = docker_ids(f"edgebac.node={key}") if key else []
        if left:  # a test that failed half-way must not leave a fork bomb running
            subprocess.run(["docker", "rm", "-f", *left], capture_output=True, timeout=60)


def test_a_running_job_container_is_unprivileged_and_limited(node, busybox_image):
    out = [{"name": "out", "path": "/out"}]
    plain = node.submit(docker_spec(busybox_image, "sleep", "1000", timeout_s=120, outputs=out))
    sized = node.submit(
        docker_spec(
            busybox_image,
            "sleep",
            "1000",
            timeout_s=120,
            resources={"cpu": "250m", "memory": "64Mi"},
        )
    )
    for job_id, cpu, memory in (
        (plain, DEFAULT_CPU_MILLIS, DEFAULT_MEMORY_BYTES),
        (sized, 250, 64 * 1024 * 1024),
    ):
        container = node.container_of(job_id)
        host = container["HostConfig"]
        assert host["SecurityOpt"] == ["no-new-privileges"]
        assert host["CapDrop"] == ["ALL"]
        assert sorted(host["CapAdd"]) == sorted((*BASE_CAPABILITIES, "NET_RAW"))
        assert host["PidsLimit"] == PIDS_LIMIT
        assert host["Memory"] == host["MemorySwap"] == memory
        assert host["NanoCpus"] == (cpu * 1_000_000 if cpu_limits() else 0)
        assert host["Privileged"] is False
        assert container["Config"]["User"] == USER
        mounts = [(m["Type"], m["Destination"], m["RW"]) for m in container["Mounts"]]
        assert mounts == ([("bind", "/out", True)] if job_id == plain else [])
    for job_id in (plain, sized):
        node.cancel(job_id)
    for job_id in (plain, sized):
        assert node.wait(job_id)["status"] == "canceled"


def test_escapes_and_fork_bombs_fail_and_the_node_runs_on(node, busybox_image):
    bomb = node.submit(docker_spec(busybox_image, "sh", "-c", "f() { f | f & }; f; sleep 1000"))
    mount = node.submit(docker_spec(busybox_image, "mount", "-t", "tmpfs", "none", "/mnt"))
    container = node.container_of(bomb)
    wait_for(
        lambda: _pids(container["Id"]) >= PIDS_LIMIT - 8, 30, "the fork bomb to reach its limit"
    )
    assert _pids(container["Id"]) <= PIDS_LIMIT
    assert node.wait(mount)["status"] == "failed"
    assert "exit code" in only_execution(node.view(mount))["reason"]
    node.cancel(bomb)
    assert node.wait(bomb)["status"] == "canceled"
    # The node answers and runs the next job, as the policy's user, writing its output.
    assert info(node.node)["public_key"] == node.key
    out = [{"name": "out", "path": "/out"}]
    after = node.wait(
        node.submit(docker_spec(busybox_image, "sh", "-c", "id -u > /out/uid", outputs=out))
    )
    assert after["status"] == "completed", after
    results = node.node.data_dir / "work" / "results" / only_execution(after)["id"]
    assert (results / "out" / "uid").read_text() == "65534\n"
    # A fork bomb's 512 processes take a while to reap on a loaded machine.
    wait_for(lambda: docker_ids(f"edgebac.node={node.key}") == [], 60, "containers to go")


def test_a_raw_socket_fails_under_the_default_policy_and_works_with_net_raw(
    nodes, tmp_path, busybox_image
):
    """ping opens a raw ICMP socket: root in a job container without NET_RAW may not."""
    ping = docker_spec(busybox_image, "busybox", "ping", "-c", "1", "-W", "2", "127.0.0.1")
    default = JobClient(nodes.start(tmp_path / "default"))  # no --policy
    refused = default.wait(default.submit(ping))
    assert refused["status"] == "failed", refused
    execution = only_execution(refused)
    assert "exit code 1" in execution["reason"], execution["reason"]
    results = default.node.data_dir / "work" / "results" / execution["id"]
    assert "permission denied" in (results / "stderr").read_text()
    assert "packets received" not in (results / "stdout").read_text()
    policy = tmp_path / "policy.yaml"
    policy.write_text("capabilities: [NET_RAW]\n")  # root, as the image runs it
    granted = JobClient(nodes.start(tmp_path / "raw", "--policy", str(policy)))
    pinged = granted.wait(granted.submit(ping))
    assert pinged["status"] == "completed", pinged
    results = granted.node.data_dir / "work" / "results" / only_execution(pinged)["id"]
    assert "1 packets received" in (results / "stdout").read_text()


def _pids(container: str) -> int:
    """Processes in the container's cgroup, as the engine counts them."""
    done = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{.PIDs}}", container],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return int(done.stdout.strip() or 0)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("capabilities: [NET_BIND]", "capabilities: 'NET_BIND' is not a Linux capability"),
        ("capabilities: NET_RAW", "capabilities must be a list of strings"),
        ('user: "a b"', "user: 'a b' is not a user"),
        ('user: "1000:"', "user: '1000:' is not a user"),
        ("user: [root]", "user: ['root'] is not a user"),
    ],
)
def test_the_policy_refuses_unknown_capabilities_and_malformed_users(tmp_path, text, problem):
    path = tmp_path / "policy.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as raised:
        load_policy(path)
    assert str(raised.value).startswith(f"{path}: {problem}")


def test_the_policy_names_capabilities_as_docker_does_and_users_as_given(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("capabilities: [cap_sys_ptrace, NET_RAW]\nuser: 1000\n")
    node = load_policy(path).node
    assert (node.capabilities, node.user) == (("SYS_PTRACE", "NET_RAW"), "1000")
