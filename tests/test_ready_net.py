"""Ready means ready: a node still folding a long log is alive (`/healthz`) but not ready
(`/readyz`, `ready` in GET /api/v1/node); until it is, calls that answer about jobs get 503
`not_ready` with Retry-After, never a wrong "no such job", and the CLI waits for it."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from edgebac.api.clientsig import submission
from edgebac.eventlog.clock import HybridClock, wall_clock_ms
from edgebac.eventlog.identity import read_key_file
from edgebac.eventlog.store import EventLog
from edgebac.scheduler import events as ev
from tests.procs import clean_env, edgebac_argv, nodes_fixture, run_edgebac, wait_for

nodes = nodes_fixture()
JOBS = 30_000  # two events each: a fold of some seconds here


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


async def write_history(data_dir: Path, jobs: int) -> str:
    """`jobs` jobs this node asked for and canceled, appended to its own log while it is
    stopped: history a restart must fold. The last job's id."""
    identity = read_key_file(data_dir / "node.key")
    log = await EventLog.open(data_dir / "events.db", HybridClock(5_000), identity.key)
    job_id = ""
    try:
        for start in range(0, jobs, 1000):
            batch = []
            for index in range(start, min(jobs, start + 1000)):
                spec = {"engine": {"type": "noop", "stdout": f"job {index}"}}
                asked = submission(identity.public_key, spec)
                job_id = asked.job_id
                batch.append((ev.JOB_CREATED, {**asked.body(), "wall_ms": wall_clock_ms()}))
                batch.append((ev.JOB_CANCELED, {"job_id": job_id, "reason": "history"}))
            await log.append(batch)
    finally:
        await log.close()
    return job_id


def get(url: str) -> tuple[int, dict, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), json.loads(exc.read())


def alive(url: str) -> bool:
    try:
        return get(url + "/healthz")[0] == 200
    except (urllib.error.URLError, ConnectionError):
        return False  # not listening yet


def test_a_node_folding_a_long_log_is_alive_not_ready_and_the_cli_waits(nodes, tmp_path):
    host = "127.0.0.5"
    port = free_port(host)
    data_dir = tmp_path / "node"
    first = nodes.start(data_dir, listen=f"{host}:{port}")
    first.stop()
    last_job = asyncio.run(write_history(data_dir, JOBS))

    node = nodes.spawn(data_dir, listen=f"{host}:{port}")
    url = f"http://{host}:{port}"
    wait_for(lambda: alive(url), 60, "liveness")
    status, headers, body = get(url + "/readyz")
    assert (status, body["error"]["code"]) == (503, "not_ready")
    assert headers["Retry-After"] == "1"
    status, _, body = get(f"{url}/api/v1/jobs/{last_job}")
    assert (status, body["error"]["code"]) == (503, "not_ready")  # not a wrong 404
    assert get(url + "/api/v1/node")[2]["ready"] is False

    started = time.monotonic()
    describe = subprocess.run(
        edgebac_argv("job", "describe", last_job, "--api", url, "--output", "json"),
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
    )
    assert describe.returncode == 0, describe.stderr
    assert f"waiting for the node at {url} to be ready" in describe.stderr
    assert json.loads(describe.stdout)["status"] == "canceled"
    assert get(url + "/readyz")[0] == 200
    assert get(url + "/api/v1/node")[2]["ready"] is True
    node.wait_listening(5)  # the listening line comes once it is ready
    assert time.monotonic() - started < 120


def test_an_acknowledged_job_is_visible_to_the_next_read(nodes, tmp_path):
    node = nodes.start(tmp_path / "n")
    for index in range(50):
        request = urllib.request.Request(
            node.url + "/api/v1/jobs",
            data=json.dumps({"engine": {"type": "noop", "stdout": str(index)}}).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201
            job_id = json.loads(response.read())["job_id"]
        assert node.get_json(f"/api/v1/jobs/{job_id}?events=0")[0] == 200


def test_a_node_stopped_while_it_folds_a_long_log_stops_at_once_and_loses_nothing(nodes, tmp_path):
    """A stop does not wait for the start-up fold (so stop time does not grow with history),
    and keeps no checkpoint of a fold it did not finish."""
    host = "127.0.0.6"
    port = free_port(host)
    data_dir = tmp_path / "node"
    first = nodes.start(data_dir, listen=f"{host}:{port}")
    first.stop()
    asyncio.run(write_history(data_dir, JOBS))
    node = nodes.spawn(data_dir, listen=f"{host}:{port}")
    url = f"http://{host}:{port}"
    wait_for(lambda: alive(url), 60, "liveness")
    assert get(url + "/readyz")[0] == 503  # folding
    asked = time.monotonic()
    node.send(signal.SIGTERM)
    assert node.wait(30) == 0, node.stderr
    assert time.monotonic() - asked < 5  # the fold takes longer than that here
    assert "stopping (it had not finished starting)" in node.stderr
    verified = run_edgebac("log", "verify", "--data-dir", data_dir)
    assert verified.returncode == 0, verified.stderr
    again = nodes.spawn(data_dir, listen=f"{host}:{port}").wait_listening(120)
    # Its checkpoint is still the first run's: none was kept of the half fold.
    started = re.search(r"checkpoint: started from log position \d+, folded (\d+)", again.stderr)
    assert started is None or int(started.group(1)) >= 2 * JOBS, again.stderr
