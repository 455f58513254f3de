"""Pytest plugin with the real test infrastructure: S3 (moto_server), Docker, the busybox image.

Load it with `pytest_plugins = ["tests.infra"]` (root conftest or a test module). Every
fixture is session-scoped and real: no mocks. The Docker fixtures FAIL (never skip) when the
engine cannot be started: scripts/ci-deps.sh installs what they need.

- `s3_server` -> `tests.s3server.S3Server` (endpoint_url, env, client(), reset()).
- `docker_engine` -> `DockerEngine` facts about the running engine (starts dockerd via
  scripts/docker-engine.sh when `docker info` fails; needs root to start it).
- `busybox_image` -> "edgebac-test/busybox:1", built offline by scripts/build-test-image.sh
  (busybox-static; sh, ls, cat, echo, sleep, wc, head, ... under /bin).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.s3server import S3Server, moto_server

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
BUSYBOX_IMAGE = "edgebac-test/busybox:1"


@dataclass(frozen=True)
class DockerEngine:
    server_version: str
    storage_driver: str
    cgroup_version: str  # "1" or "2"
    memory_limit: bool  # whether --memory is enforced
    cpu_limit: bool  # whether --cpus is enforced (CFS quota)


def _run_script(name: str, *args: str, timeout: float) -> str:
    try:
        done = subprocess.run(
            [str(SCRIPTS / name), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"scripts/{name} did not finish within {timeout}s: {e.stderr}")
    if done.returncode != 0:
        pytest.fail(
            f"scripts/{name} failed with {done.returncode}:\n{done.stdout}{done.stderr}",
            pytrace=False,
        )
    return done.stdout


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> S3Server:
    with moto_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(scope="session")
def docker_engine() -> DockerEngine:
    _run_script("docker-engine.sh", timeout=200)
    info = json.loads(
        subprocess.run(
            ["docker", "info", "--format", "{{json .}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    )
    return DockerEngine(
        server_version=info.get("ServerVersion", ""),
        storage_driver=info.get("Driver", ""),
        cgroup_version=str(info.get("CgroupVersion", "")),
        memory_limit=bool(info.get("MemoryLimit")),
        cpu_limit=bool(info.get("CpuCfsQuota")),
    )


@pytest.fixture(scope="session")
def busybox_image(docker_engine) -> str:
    _run_script("build-test-image.sh", BUSYBOX_IMAGE, timeout=120)
    return BUSYBOX_IMAGE
