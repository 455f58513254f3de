"""Bacalhau's own Python clients (`bacalhau-sdk` 1.4.2 over `bacalhau-apiclient` 1.4.1, from
PyPI, unpatched) drive a real 3-node edgebac network over loopback (issue 15): submit docker
and wasm jobs and a count-3 job with the SDK's models, poll them to a terminal state, read
executions (RunOutput.Stdout), results (a .tar.gz whose content is the CID the log records),
list, history, and stop a running job."""

from __future__ import annotations

import base64
import io
import tarfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from bacalhau_apiclient.models.input_source import InputSource
from bacalhau_apiclient.models.job import Job
from bacalhau_apiclient.models.resources_config import ResourcesConfig
from bacalhau_apiclient.models.result_path import ResultPath
from bacalhau_apiclient.models.spec_config import SpecConfig
from bacalhau_apiclient.models.task import Task
from bacalhau_apiclient.models.timeout_config import TimeoutConfig
from bacalhau_sdk.jobs import Jobs, PutJobRequest

from tests.netfix import info, private_network
from tests.procs import wait_for

WASM = Path(__file__).resolve().parent.parent / "fixtures" / "wasm"
TERMINAL = ("Completed", "Failed", "Stopped")


@pytest.fixture(scope="module")
def network(tmp_path_factory, busybox_image):
    """Three nodes of one private network (each a requester and a compute node)."""
    with private_network(tmp_path_factory.mktemp("bacalhau-sdk"), 3) as started:
        yield started


@pytest.fixture
def jobs(network, monkeypatch, tmp_path) -> Jobs:
    """The SDK configured as its users configure it: BACALHAU_API_HOST/PORT, BACALHAU_DIR."""
    host, port = network[0].url.removeprefix("http://").rsplit(":", 1)
    monkeypatch.setenv("BACALHAU_API_HOST", host)
    monkeypatch.setenv("BACALHAU_API_PORT", port)
    monkeypatch.setenv("BACALHAU_DIR", str(tmp_path))
    monkeypatch.delenv("BACALHAU_HTTPS", raising=False)
    return Jobs()


def docker_job(image: str, script: str, count: int = 1, **task: Any) -> Job:
    engine = SpecConfig(
        type="docker",
        params={"Image": image, "Entrypoint": ["/bin/sh"], "Parameters": ["-c", script]},
    )
    return Job(
        name="sdk docker",
        type="batch",
        count=count,
        tasks=[
            Task(
                name="main",
                engine=engine,
                publisher=SpecConfig(type="local"),
                resources=ResourcesConfig(cpu="250m", memory="64Mb"),
                timeouts=TimeoutConfig(execution_timeout=60),
                **task,
            )
        ],
    )


def submit(jobs: Jobs, job: Job) -> str:
    put = jobs.put(PutJobRequest(job=job))
    assert put is not None, "the SDK printed the error"
    assert put.job_id.startswith("j-")
    assert isinstance(put.warnings, list)
    return put.job_id


def wait_terminal(jobs: Jobs, job_id: str, timeout: float = 40.0) -> Any:
    def ended() -> Any:
        got = jobs.get(job_id, include="executions")
        return got if got is not None and got.job.state.state_type in TERMINAL else None

    return wait_for(ended, timeout, f"job {job_id} to end (as the SDK sees it)")


def edgebac_view(node, job_id: str) -> dict[str, Any]:
    status, view = node.get_json(f"/api/v1/jobs/{job_id}?events=0")
    assert status == 200, view
    return view


def test_a_docker_job_through_the_sdk(jobs, network, busybox_image):
    script = "echo hello from bacalhau; echo oops >&2; echo 42 > /outputs/answer"
    outputs = [ResultPath(name="outputs", path="/outputs")]
    job_id = submit(jobs, docker_job(busybox_image, script, result_paths=outputs))
    got = wait_terminal(jobs, job_id)
    assert got.job.state.state_type == "Completed", got.job.state
    assert got.job.tasks[0].engine.type == "docker"
    (execution,) = got.executions.items
    assert execution.run_output.stdout == "hello from bacalhau\n"
    assert execution.run_output.stderr == "oops\n"
    assert execution.run_output.exit_code == 0
    assert execution.compute_state.state_type == 9  # Completed, an integer as Go sends it
    listed = jobs.executions(job_id)
    assert [e.id for e in listed.items] == [execution.id]

    results = jobs.results(job_id)
    (result,) = results.items
    assert result.type == "urlDownload"
    with urllib.request.urlopen(result.params["URL"], timeout=10) as response:
        cid, body = response.headers["X-Content-Cid"], response.read()
    files = untar(body)
    assert files == {
        "stdout": b"hello from bacalhau\n",
        "stderr": b"oops\n",
        "exitCode": b"0\n",
        "outputs/answer": b"42\n",  # one folder per output, as Bacalhau's layout has it
    }
    recorded = edgebac_view(network[0], job_id)["executions"][execution.id]
    assert cid == recorded["digest"]
    holder = result.params["URL"].split("/api/")[0]  # the content the log names, as edgebac
    with urllib.request.urlopen(f"{holder}/api/v1/content/{cid}?format=tar", timeout=10) as got:
        assert untar(got.read(), "r:") == files  # serves it (verified block by block)

    assert job_id in [j.id for j in jobs.list(limit=100).items]
    history = jobs.history(job_id, event_type="all")
    topics = [item.event.topic for item in history.items]
    assert topics[0] == "Submission"
    assert "Publishing Results" in topics
    assert history.next_token == ""  # ended, everything sent
    execution_level = jobs.history(job_id)  # the SDK's default: execution events only
    assert {item.execution_id for item in execution_level.items} == {execution.id}


def untar(body: bytes, mode: str = "r:gz") -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(body), mode=mode) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_a_wasm_job_with_an_inline_module(jobs):
    module = base64.b64encode((WASM / "hello.wasm").read_bytes()).decode()
    source = SpecConfig(type="inline", params={"URL": f"data:application/wasm;base64,{module}"})
    task = Task(
        name="main",
        engine=SpecConfig(type="wasm", params={"EntryModule": "/wasm.main", "Parameters": ["one"]}),
        input_sources=[InputSource(target="/wasm.main", source=source)],
        env={"EDGEBAC_GREETING": "hi"},
        publisher=SpecConfig(),
    )
    job_id = submit(jobs, Job(name="sdk wasm", type="batch", tasks=[task]))
    got = wait_terminal(jobs, job_id)
    assert got.job.state.state_type == "Completed", got.job.state
    (execution,) = got.executions.items
    assert execution.run_output.stdout.startswith("hello from wasm\n")
    assert "argv[1]=one\n" in execution.run_output.stdout
    assert "EDGEBAC_GREETING=hi\n" in execution.run_output.stdout


def test_a_count_3_job_runs_one_partition_on_each_node(jobs, network, busybox_image):
    script = "echo $BACALHAU_PARTITION_INDEX of $BACALHAU_PARTITION_COUNT"
    job_id = submit(jobs, docker_job(busybox_image, script, count=3))
    got = wait_terminal(jobs, job_id, timeout=50)
    assert got.job.state.state_type == "Completed", got.job.state
    assert got.job.count == 3
    outputs = sorted(e.run_output.stdout for e in got.executions.items)
    assert outputs == ["0 of 3\n", "1 of 3\n", "2 of 3\n"]
    ids = {info(node)["id"] for node in network}
    assert {e.node_id for e in got.executions.items} == ids
    results = jobs.results(job_id)
    assert len(results.items) == 3


def test_stop_a_running_job(jobs, network, busybox_image):
    job_id = submit(jobs, docker_job(busybox_image, "echo started; sleep 60"))
    wait_for(lambda: jobs.get(job_id).job.state.state_type == "Running", 30, "the job to run")
    started = time.monotonic()
    stopped = jobs.stop(job_id, reason="enough of that")
    assert stopped is not None
    assert stopped.evaluation_id == ""
    got = wait_terminal(jobs, job_id, timeout=30)
    assert got.job.state.state_type == "Stopped"
    assert "enough of that" in got.job.state.message
    assert time.monotonic() - started < 30
    assert edgebac_view(network[0], job_id)["status"] == "canceled"
