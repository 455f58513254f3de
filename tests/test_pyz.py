"""The single-file edgebac, for real: built in this run by zipapp/build.py, copied alone into an
empty folder and run with `env -i python3.11 -I` (no venv, no PATH, no PYTHON* variables), as
on an edge device that has nothing but CPython. Three nodes started from it form a private
network and run a wasm job and a docker job with an S3 input on three distinct nodes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.procs import NodeProcess, Nodes, Process, find_python311, wait_for

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "zipapp" / "build.py"
WASM = REPO / "fixtures" / "wasm"
MAX_BYTES = 23_000_000  # cryptography (TLS certificates, --tls self-signed) added ~3.5 MB
LOGS = {
    "logs-2023-04-01.log": b"april one\n",
    "logs-2023-04-02.log": b"april two\n",
    "logs-2023-04-30.log": b"april thirty\n",
    "logs-2023-05-01.log": b"may\n",
}
APRIL = sorted(key for key in LOGS if key.startswith("logs-2023-04"))

# The first test builds the pyz (a cold wheel cache downloads them): more than the default.
pytestmark = pytest.mark.timeout(600)


def build(out: Path, *args: str) -> Path:
    done = subprocess.run(
        [sys.executable, str(BUILD), "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip().splitlines()[-1])


def python311() -> str:
    """A CPython 3.11 outside any venv: the system's if it is 3.11, else the venv's base."""
    found = find_python311()
    if found is None:
        pytest.fail("no CPython 3.11 found outside the venv")
    return found


@pytest.fixture(scope="session")
def built_pyz(tmp_path_factory) -> Path:
    """Built once per session (the wheel cache under ~/.cache/edgebac-build makes it fast)."""
    return build(tmp_path_factory.mktemp("dist"))


@dataclass(frozen=True)
class Pyz:
    path: Path  # the only file in its folder
    python: str
    cache: Path  # EDGEBAC_PYZ_CACHE of every run

    def argv(self, *args: str | os.PathLike[str], env: dict[str, str] | None = None) -> list[str]:
        variables = {"EDGEBAC_PYZ_CACHE": str(self.cache), **(env or {})}
        assignments = [f"{key}={value}" for key, value in variables.items()]
        return ["env", "-i", *assignments, self.python, "-I", str(self.path), *map(str, args)]

    def run(self, *args: str | os.PathLike[str], env: dict[str, str] | None = None, timeout=60):
        return subprocess.run(
            self.argv(*args, env=env),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.path.parent,
            stdin=subprocess.DEVNULL,
            check=False,
        )


@pytest.fixture(scope="module")
def pyz(built_pyz, tmp_path_factory) -> Pyz:
    folder = tmp_path_factory.mktemp("device")
    shutil.copy(built_pyz, folder / built_pyz.name)
    assert [p.name for p in folder.iterdir()] == [built_pyz.name]
    return Pyz(folder / built_pyz.name, python311(), tmp_path_factory.mktemp("pyzcache"))


def test_name_size_and_contents(built_pyz):
    arch = os.uname().machine
    assert built_pyz.name == f"edgebac-0.1.0-py311-{arch}.pyz"
    assert built_pyz.stat().st_size <= MAX_BYTES
    with zipfile.ZipFile(built_pyz) as archive:
        names = set(archive.namelist())
        pyc = archive.read("site-packages/edgebac/cli/__pycache__/main.cpython-311.pyc")
    site = "site-packages/"
    services = {n.split("/")[3] for n in names if n.startswith(site + "botocore/data/")}
    assert services == {"s3", "sts", "endpoints.json", "partitions.json", "_retry.json",
                        "sdk-default-configuration.json"}  # fmt: skip
    assert not [n for n in names if "/tests/" in n or n.endswith((".pyi", ".c", ".h"))]
    assert not [n for n in names if n.startswith(site + "bin/")]
    sources = [n for n in names if n.endswith(".py") and n.startswith(site)]
    missing = [
        n
        for n in sources
        if f"{n.rsplit('/', 1)[0]}/__pycache__/{n.rsplit('/', 1)[1][:-3]}.cpython-311.pyc"
        not in names
    ]
    assert missing == []
    assert int.from_bytes(pyc[4:8], "little") == 0b01  # hash-based, never checked: reproducible


def test_same_sources_and_wheels_give_the_same_bytes(built_pyz, tmp_path):
    again = build(tmp_path)
    assert again.read_bytes() == built_pyz.read_bytes()


def test_aarch64_build_uses_aarch64_wheels(tmp_path):
    out = build(tmp_path, "--arch", "aarch64")
    assert out.name == "edgebac-0.1.0-py311-aarch64.pyz"
    assert out.stat().st_size <= MAX_BYTES
    with zipfile.ZipFile(out) as archive:
        objects = [n for n in archive.namelist() if n.endswith(".so")]
        assert any("wasmtime" in n for n in objects)
        for name in objects:
            header = archive.open(name).read(20)
            assert header[:4] == b"\x7fELF"
            assert int.from_bytes(header[18:20], "little") == 183, name  # EM_AARCH64


def test_help_with_nothing_but_python_unpacks_once(pyz):
    first = pyz.run("--help")
    assert first.returncode == 0, first.stderr
    assert "Usage: edgebac" in first.stdout
    (unpacked,) = pyz.cache.iterdir()
    assert unpacked.name.startswith("edgebac-0.1.0-")
    assert f"unpacking into {unpacked}" in first.stderr
    assert (unpacked / "site-packages" / "edgebac" / "cli" / "main.py").is_file()
    second = pyz.run("--help")
    assert second.returncode == 0, second.stderr
    assert second.stderr == ""
    assert second.stdout == first.stdout
    assert list(pyz.cache.iterdir()) == [unpacked]


def test_default_cache_is_under_home(pyz, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    argv = pyz.argv("--version", env={"HOME": str(home)})
    argv.remove(f"EDGEBAC_PYZ_CACHE={pyz.cache}")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    (unpacked,) = (home / ".cache" / "edgebac" / "pyz").iterdir()
    assert f"unpacking into {unpacked}" in done.stderr


class PyzNode(NodeProcess):
    """`edgebac node` started from the pyz with `env -i`."""

    def __init__(self, argv: list[str], data_dir: Path) -> None:
        self.data_dir, self.url, self.short_id = data_dir, "", ""
        Process.__init__(self, argv)


@dataclass
class Cluster:
    nodes: list[PyzNode]
    bucket: str
    keys: dict[str, Path]  # node public key -> data dir

    @property
    def api(self) -> str:
        return self.nodes[0].url


@pytest.fixture(scope="module")
def cluster(pyz, tmp_path_factory, s3_server, busybox_image) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("pyznet")
    bucket = f"mybucket-{uuid.uuid4().hex[:8]}"
    client = s3_server.client()
    client.create_bucket(Bucket=bucket)
    for key, body in LOGS.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    key = tmp / "network.key"
    made = pyz.run("network", "init", key)
    assert made.returncode == 0, made.stderr
    nodes = Nodes()
    try:
        started: list[PyzNode] = []
        for index in range(3):
            data_dir = tmp / f"node{index}"
            args = ["node", "--data-dir", data_dir, "--listen", f"127.0.0.{index + 2}:0"]
            args += ["--preset", "fast", "--network-key", key]
            if started:
                args += ["--peers", started[0].url.removeprefix("http://")]
            node = PyzNode(pyz.argv(*args, env=s3_server.env), data_dir)
            nodes.started.append(node)
            started.append(node.wait_listening(60))
        keys = {n.get_json("/api/v1/node")[1]["public_key"]: n.data_dir for n in started}
        wait_for(lambda: _sees_all(started[0], keys), 30, "the first node to know all three")
        yield Cluster(started, bucket, keys)
    finally:
        nodes.kill_all()


def _sees_all(node: PyzNode, keys: dict[str, Path]) -> bool:
    _, body = node.get_json("/api/v1/nodes")
    return len(body["nodes"]) == len(keys)


def _run_job(pyz: Pyz, cluster: Cluster, engine: str, *args: str) -> dict:
    ran = pyz.run(
        engine, "run", "--api", cluster.api, "--wait", "--output", "json", "--concurrency", "3",
        "--timeout", "60", "--retries", "0",
        "-i", f"s3://{cluster.bucket}/logs-2023-04*:/input", "-o", "apples:/output_folder",
        *args, timeout=120,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr + ran.stdout
    view = json.loads(ran.stdout)
    assert view["status"] == "completed", view
    completed = [e for e in view["executions"].values() if e["status"] == "completed"]
    assert len({e["node"] for e in completed}) == 3, view["executions"]
    return view


def _results(pyz: Pyz, cluster: Cluster, view: dict, out: Path) -> list[Path]:
    """`job get` from the pyz: every execution's results, fetched and verified."""
    got = pyz.run("job", "get", view["id"], "--output-dir", out, "--api", cluster.api)
    assert got.returncode == 0, got.stderr
    completed = [i for i, e in view["executions"].items() if e["status"] == "completed"]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(completed)
    return [out / execution_id for execution_id in completed]


def test_wasm_job_on_three_nodes_from_the_pyz(pyz, cluster, tmp_path):
    view = _run_job(pyz, cluster, "wasm", str(WASM / "io.wasm"), "/input", "/output_folder")
    total = sum(len(LOGS[name]) for name in APRIL)
    for results in _results(pyz, cluster, view, tmp_path / "got"):
        listing = (results / "apples" / "listing.txt").read_text().splitlines()
        assert [line.split()[:2] for line in listing] == [[n, str(len(LOGS[n]))] for n in APRIL]
        assert (results / "stdout").read_text() == f"io: {len(APRIL)} files, {total} bytes\n"
        assert (results / "stderr").read_text() == "io: done\n"
        assert (results / "exitCode").read_text() == "0\n"


def test_docker_job_on_three_nodes_from_the_pyz(pyz, cluster, busybox_image, tmp_path):
    script = "ls /input > /output_folder/file.txt"
    view = _run_job(pyz, cluster, "docker", busybox_image, "sh", "-c", script)
    for results in _results(pyz, cluster, view, tmp_path / "got"):
        listing = (results / "apples" / "file.txt").read_text().splitlines()
        assert listing == APRIL
        assert (results / "stdout").read_bytes() == b""
        assert (results / "stderr").read_bytes() == b""
        assert (results / "exitCode").read_text() == "0\n"


def test_a_pyz_node_makes_and_serves_a_self_signed_certificate(pyz, tmp_path):
    """cryptography's native half loads from the unpacked pyz: the node makes its certificate,
    serves it, and the pyz's own CLI pins it by the printed fingerprint."""
    data_dir = tmp_path / "tls"
    args = ["node", "--data-dir", data_dir, "--listen", "127.0.0.9:0", "--preset", "fast"]
    nodes = Nodes()
    try:
        node = PyzNode(pyz.argv(*args, "--tls", "self-signed"), data_dir)
        nodes.started.append(node)
        node.wait_listening(60)
        line = node.wait_for_line(re.compile(r"fingerprint sha256:([0-9a-f]{64})"), 10)
        api = node.url.replace("http://", "https://")
        listed = pyz.run("node", "list", "--api", api, "--tls-fingerprint", line.group(1))
        assert listed.returncode == 0, listed.stderr
        assert node.short_id in listed.stdout
    finally:
        nodes.kill_all()
