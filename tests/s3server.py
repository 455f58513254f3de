"""A real S3 endpoint for tests: moto's server (`moto[server]`) as a subprocess on loopback.

    with moto_server(tmp_path) as s3:
        client = s3.client()                 # boto3 S3 client bound to the endpoint
        subprocess.run(cmd, env={**os.environ, **s3.env})  # for child processes

The server binds 127.0.0.1 port 0 (the kernel picks a free port, so no race); the real port
is read from its "Running on http://127.0.0.1:PORT" log line. It does not check
signatures: any access key works, the fake ones in `S3Server.env` included. State lives in the
server process; `S3Server.reset()` empties it (moto's `POST /moto-api/reset`).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3

REGION = "us-east-1"
ACCESS_KEY = "edgebac-test-access-key"
SECRET_KEY = "edgebac-test-secret-key"  # fake: moto accepts any key
_RUNNING_ON = re.compile(rb"Running on (http://127\.0\.0\.1:(\d+))")


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    # Environment for processes that should use this endpoint (boto3 reads AWS_ENDPOINT_URL).
    env: dict[str, str]
    log_path: Path
    pid: int

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def reset(self) -> None:
        """Delete every bucket and object on the server."""
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()


def credentials_env(endpoint_url: str) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_EC2_METADATA_DISABLED": "true",
        # Never read the developer's real AWS config or credentials.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            resp.read()
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is serving
    except OSError:
        return False
    return True


@contextmanager
def moto_server(log_dir: Path | None = None, timeout: float = 30.0) -> Iterator[S3Server]:
    """Start moto_server on 127.0.0.1, yield it once it answers, stop it on exit."""
    if log_dir is None:
        log_dir = Path(tempfile.mkdtemp(prefix="edgebac-moto-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "moto_server.log"
    env = {**os.environ, **credentials_env("http://127.0.0.1")}
    env.pop("AWS_ENDPOINT_URL")
    with open(log_path, "wb") as log:
        # The log is a file, not a pipe: moto logs every request and must never block on it.
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "--host", "127.0.0.1", "--port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        endpoint = _wait_ready(proc, log_path, timeout)
        yield S3Server(endpoint, credentials_env(endpoint), log_path, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(proc: subprocess.Popen, log_path: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    endpoint = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"moto_server exited with {proc.returncode} before answering; log:\n"
                + log_path.read_text(errors="replace")[-2000:]
            )
        if endpoint is None:
            match = _RUNNING_ON.search(log_path.read_bytes())
            if match:
                endpoint = match.group(1).decode()
        if endpoint is not None and _answers(endpoint + "/"):
            return endpoint
        time.sleep(0.05)
    raise RuntimeError(
        f"moto_server did not answer within {timeout}s; log:\n"
        + log_path.read_text(errors="replace")[-2000:]
    )
