"""`edgebac job run` with Bacalhau v1 job specs, against real node processes (issue 15): the
spec is recognised by its shape, translated, signed and run; executions see Bacalhau's
BACALHAU_* variables (one partition each); refusals name the Bacalhau field before anything
is sent."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from tests.netfix import info, network_key, start_network, wait_converged
from tests.procs import nodes_fixture, run_edgebac

nodes = nodes_fixture()
ENV_WASM = Path(__file__).resolve().parent.parent / "fixtures" / "wasm" / "env.wasm"


def wasm_spec(count: int) -> str:
    """Lower-case keys, an inline module mounted at /wasm.main, as Bacalhau's testdata has it."""
    module = base64.b64encode(ENV_WASM.read_bytes()).decode()
    return f"""
name: bacalhau env
type: batch
count: {count}
tasks:
  - name: main
    engine:
      type: wasm
      params:
        EntryModule: wasm.main
    env:
      GREETING: hello
    inputSources:
      - target: /wasm.main
        source:
          type: inline
          params:
            url: data:application/wasm;base64,{module}
    timeouts:
      totalTimeout: 60
"""


def environment(stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)


def test_a_bacalhau_wasm_spec_runs_with_its_variables_on_each_partition(nodes, tmp_path):
    key = network_key(tmp_path)
    network = start_network(nodes, tmp_path, 2, "--network-key", str(key))
    wait_converged(network, {info(n)["id"]: 1 for n in network})
    by_id = {info(n)["id"]: n for n in network}
    spec = tmp_path / "job.yaml"
    spec.write_text(wasm_spec(2))
    ran = run_edgebac(
        "job", "run", spec, "--api", network[0].url, "--wait", "--output", "json", timeout=90
    )
    assert ran.returncode == 0, ran.stderr
    view = json.loads(ran.stdout)
    assert view["spec"]["bacalhau"]["task"] == "main"
    executions = list(view["executions"].values())
    assert sorted(e["node"] for e in executions) == sorted(by_id)  # one per node
    seen = []
    for execution in executions:
        folder = by_id[execution["node"]].data_dir / "work" / "results" / execution["id"]
        env = environment((folder / "stdout").read_text())
        assert env["BACALHAU_JOB_ID"] == view["id"]
        assert env["BACALHAU_EXECUTION_ID"] == execution["id"]
        assert env["BACALHAU_JOB_TYPE"] == "batch"
        assert env["BACALHAU_PARTITION_COUNT"] == "2"
        assert env["GREETING"] == "hello"  # the task's Env
        seen.append(env["BACALHAU_PARTITION_INDEX"])
    assert sorted(seen) == ["0", "1"]


def test_a_bacalhau_docker_spec_writes_its_result_path(nodes, tmp_path, busybox_image):
    """PascalCase JSON as the SDK sends it; the ResultPath named `/outputs` is the results
    folder `outputs`, as in Bacalhau's layout."""
    script = "env | grep ^BACALHAU_ | sort > /outputs/env; echo done"
    task = {
        "Name": "main",
        "Engine": {
            "Type": "docker",
            "Params": {
                "Image": busybox_image,
                "Entrypoint": ["/bin/sh"],
                "Parameters": ["-c", script],
            },
        },
        "Publisher": {"Type": "local"},
        "ResultPaths": [{"Name": "/outputs", "Path": "/outputs"}],
        "Resources": {"CPU": "250m", "Memory": "64Mb"},
        "Timeouts": {"ExecutionTimeout": 60},
    }
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps({"Name": "docker env", "Type": "batch", "Tasks": [task]}))
    (node,) = start_network(nodes, tmp_path, 1)
    ran = run_edgebac(
        "job", "run", spec, "--api", node.url, "--wait", "--output", "json", timeout=120
    )
    assert ran.returncode == 0, ran.stderr
    view = json.loads(ran.stdout)
    (execution,) = view["executions"].values()
    folder = node.data_dir / "work" / "results" / execution["id"]
    assert (folder / "stdout").read_text() == "done\n"
    env = environment((folder / "outputs" / "env").read_text())
    assert env == {
        "BACALHAU_EXECUTION_ID": execution["id"],
        "BACALHAU_JOB_ID": view["id"],
        "BACALHAU_JOB_TYPE": "batch",
        "BACALHAU_PARTITION_COUNT": "1",
        "BACALHAU_PARTITION_INDEX": "0",
    }


def test_a_refused_bacalhau_spec_names_its_field_and_sends_nothing(tmp_path):
    spec = tmp_path / "daemon.json"
    spec.write_text(json.dumps({"Type": "daemon", "Tasks": [{"Name": "t", "Engine": {}}]}))
    # Port 9 (discard) answers nothing: any request would fail with a connection error.
    ran = run_edgebac("job", "run", spec, "--api", "http://127.0.0.1:9", timeout=30)
    assert ran.returncode != 0
    assert "Type: daemon jobs (long-running) are not supported" in ran.stderr
    assert "Tasks[0].Engine.Type: is required" in ran.stderr
    assert "connect" not in ran.stderr.lower()
