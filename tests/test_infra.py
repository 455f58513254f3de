"""The real test infrastructure of tests/infra.py: Docker engine, busybox image, S3 server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_docker_engine_answers(docker_engine):
    assert docker_engine.server_version
    assert docker_engine.storage_driver
    done = docker("version", "--format", "{{.Server.Version}}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == docker_engine.server_version


def test_busybox_image_runs_offline(busybox_image):
    assert busybox_image == "edgebac-test/busybox:1"
    done = docker("run", "--rm", "--network", "none", busybox_image, "sh", "-c", "ls / ; echo hi")
    assert done.returncode == 0, done.stderr
    assert "bin" in done.stdout.split()
    assert done.stdout.endswith("hi\n")
    links = docker("run", "--rm", "--network", "none", busybox_image, "readlink", "/bin/sh")
    assert links.stdout == "busybox\n"  # relative symlinks


def test_container_reads_input_read_only_and_writes_output(busybox_image, tmp_path):
    inputs, outputs = tmp_path / "inputs", tmp_path / "outputs"
    (inputs / "sub").mkdir(parents=True)
    (inputs / "a.txt").write_text("one\ntwo\nthree\n")
    (inputs / "sub" / "b.txt").write_text("four\n")
    outputs.mkdir()
    script = (
        "cd /inputs && find . -type f | sort > /outputs/listing.txt"
        " && cat a.txt sub/b.txt | wc -l > /outputs/lines.txt"
        " && { touch /inputs/new 2>/outputs/ro.err; echo $? > /outputs/ro.rc; }"
        " && echo to-stdout && echo to-stderr >&2 && exit 7"
    )
    done = docker(
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        f"{inputs}:/inputs:ro",
        "-v",
        f"{outputs}:/outputs:rw",
        busybox_image,
        "sh",
        "-c",
        script,
    )
    assert done.returncode == 7
    assert done.stdout == "to-stdout\n"
    assert done.stderr == "to-stderr\n"
    assert (outputs / "listing.txt").read_text() == "./a.txt\n./sub/b.txt\n"
    assert (outputs / "lines.txt").read_text().strip() == "4"
    assert (outputs / "ro.rc").read_text().strip() == "1"
    assert "Read-only file system" in (outputs / "ro.err").read_text()
    assert not (inputs / "new").exists()


def test_container_network_none_has_only_loopback(busybox_image):
    done = docker("run", "--rm", "--network", "none", busybox_image, "ls", "/sys/class/net")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["lo"]


def test_container_memory_limit_is_enforced(docker_engine, busybox_image):
    assert docker_engine.memory_limit, "this Docker engine cannot enforce --memory"
    name = f"edgebac-test-oom-{uuid.uuid4().hex[:8]}"
    # busybox tail buffers /dev/zero (no newline ever) until the cgroup OOM-kills it.
    done = docker("run", "--name", name, "--memory", "32m", busybox_image, "tail", "/dev/zero")
    try:
        state = json.loads(docker("inspect", "--format", "{{json .State}}", name).stdout)
    finally:
        docker("rm", "-f", name)
    assert done.returncode == 137
    assert state["OOMKilled"] is True
    assert state["ExitCode"] == 137


def test_s3_server_lists_a_prefix(s3_server):
    assert s3_server.endpoint_url.startswith("http://127.0.0.1:")
    s3 = s3_server.client()
    bucket = f"edgebac-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    objects = {
        "logs-2023-04-01.txt": b"april first\n",
        "logs-2023-04-02.txt": b"april second\n",
        "logs-2023-04/nested/03.txt": b"nested\n",
        "logs-2023-05-01.txt": b"may\n",
        "other.txt": b"other\n",
    }
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)

    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix="logs-2023-04", PaginationConfig={"PageSize": 2}
    )
    listed = [(o["Key"], o["Size"]) for page in pages for o in page.get("Contents", [])]
    assert listed == [
        ("logs-2023-04-01.txt", 12),
        ("logs-2023-04-02.txt", 13),
        ("logs-2023-04/nested/03.txt", 7),
    ]
    for key, _size in listed:
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == objects[key]
    head = s3.head_object(Bucket=bucket, Key="logs-2023-05-01.txt")
    assert head["ContentLength"] == 4


def test_s3_server_env_configures_child_processes(s3_server):
    bucket = f"edgebac-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=bucket)
    code = (
        "import boto3\n"
        "s3 = boto3.client('s3')\n"
        f"s3.put_object(Bucket='{bucket}', Key='from-child', Body=b'x')\n"
        f"print([o['Key'] for o in s3.list_objects_v2(Bucket='{bucket}')['Contents']])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, **s3_server.env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "['from-child']\n"
