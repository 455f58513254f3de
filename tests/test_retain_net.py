"""Retention on real nodes: `--retain` sweeps results folders and content of executions that
ended before its horizon while the node runs, keeping recent results and uploads (pins) made
or made again within it; `edgebac node gc` does the same to a stopped node's data dir,
`--dry-run` only saying what would go."""

from __future__ import annotations

import json
import time
import urllib.request

from tests.procs import nodes_fixture, run_edgebac, wait_for
from tests.test_executors_net import JobClient

nodes = nodes_fixture()
WITH_FOLDER = {"outputs": [{"name": "out", "path": "/outputs"}]}


def run(node, text: str) -> dict:
    """A noop job with an output volume (so a results folder), run to completion: its
    execution."""
    jobs = JobClient(node)
    view = jobs.wait(jobs.submit({"engine": {"type": "noop", "stdout": text}, **WITH_FOLDER}))
    assert view["status"] == "completed", view
    return next(iter(view["executions"].values()))


def upload(node, data: bytes) -> str:
    request = urllib.request.Request(node.url + "/api/v1/content", data=data, method="POST")
    request.add_header("Content-Type", "application/octet-stream")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["cid"]


def held(node, cid: str) -> bool:
    return node.request(f"/api/v1/content/{cid}", "HEAD")[0] == 200


def test_a_running_node_sweeps_what_ended_before_its_horizon(nodes, tmp_path):
    node = nodes.start(tmp_path / "n", "--retain", "3s")
    results = tmp_path / "n" / "work" / "results"
    pinned = upload(node, b"a module a client put here")
    forgotten = upload(node, b"an upload nobody put here again")
    old = run(node, "old")
    assert (results / old["id"]).is_dir()
    assert held(node, old["digest"])
    wait_for(lambda: not (results / old["id"]).exists(), 15, "the old results folder to go")
    wait_for(lambda: not held(node, old["digest"]), 10, "the old results' content to go")
    assert upload(node, b"a module a client put here") == pinned  # uploaded again: young
    recent = run(node, "recent")
    time.sleep(1.5)  # a sweep or more, within the retention
    assert (results / recent["id"]).is_dir()
    assert held(node, recent["digest"])
    assert held(node, pinned)  # its pin is younger than the retention: kept
    assert not held(node, forgotten)  # its pin older than the retention: let go of, and swept
    logs = run_edgebac("job", "logs", old["job_id"], "--api", node.url)
    assert logs.returncode == 0, logs.stderr  # the log's head of each stream stands in
    assert "old" in logs.stdout
    info = node.get_json("/api/v1/node")[1]["retention"]
    assert info["retain_s"] == 3.0
    assert info["last_sweep"]["results_folders"] >= 0


def test_node_gc_sweeps_a_stopped_node_and_dry_run_changes_nothing(nodes, tmp_path):
    data_dir = tmp_path / "n"
    node = nodes.start(data_dir)
    done = run(node, "kept until gc")
    node.stop()
    folder = data_dir / "work" / "results" / done["id"]
    assert folder.is_dir()
    time.sleep(1.2)
    dry = run_edgebac("node", "gc", "--data-dir", data_dir, "--retain", "1s", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("would remove 1 results folders, 1 content DAGs"), dry.stdout
    assert folder.is_dir()
    done_gc = run_edgebac(
        "node", "gc", "--data-dir", data_dir, "--retain", "1s", "--output", "json"
    )
    assert done_gc.returncode == 0, done_gc.stderr
    answer = json.loads(done_gc.stdout)
    assert answer["results_folders"] == 1
    assert answer["blocks"] >= 1
    assert not folder.exists()
    again = run_edgebac("node", "gc", "--data-dir", data_dir, "--retain", "1s", "--dry-run")
    assert again.stdout.startswith("would remove 0 results folders, 0 content DAGs and 0 blocks")
    bad = run_edgebac("node", "gc", "--data-dir", data_dir, "--retain", "soon")
    assert bad.returncode != 0
    assert "--retain: 'soon' is not a duration" in bad.stderr
