"""edgebac jobs shown as Bacalhau Job / Execution / JobHistory JSON (issue 15): Go's encodings
(strings vs integers, nanosecond and RFC 3339 times, RunOutput's `stderr`), states mapped, and
an echo that translates back to the very spec that was submitted."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings

from edgebac.eventlog.view import event_json, jsonable
from edgebac.scheduler.bacalhau import SERVER_FIELDS, translate
from edgebac.scheduler.bacalhau_history import history_items
from edgebac.scheduler.bacalhau_view import (
    bacalhau_execution,
    bacalhau_job,
    bacalhau_task,
    hlc_ns,
    rfc3339,
    size_text,
)
from edgebac.scheduler.spec import parse_spec
from tests.scheduler_harness import World
from tests.test_bacalhau_spec import DOCKER_OUTPUT_S3, WASM_INLINE, job, jobs

JOB_STATES = {"Undefined", "Pending", "Queued", "Running", "Completed", "Failed", "Stopped"}


def bacalhau_spec(data: dict[str, Any]) -> dict[str, Any]:
    """A Bacalhau job's edgebac spec in canonical form, as JobCreated carries it."""
    return parse_spec(translate(data).spec).to_dict()


def ran(count: int = 2, fail_second: bool = True) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A Bacalhau job of `count` run through the scheduler harness: (its view, its events)."""
    world = World()
    world.announce("req", roles=("requester",))
    for node in ("a", "b"):
        world.announce(node)
    engine = {"Type": "docker", "Params": {"Image": "alpine:latest"}}  # what the nodes hold
    data = job(Count=count, Labels={"team": "x"}, task={"Engine": engine})
    world.submit("req", "j", bacalhau_spec(data))
    world.requester_step("req")
    for node in ("a", "b"):
        world.compute_step(node)
    world.advance(5_000)
    world.requester_step("req")
    first, second = world.xid("j", 0, "a"), world.xid("j", 0, "b")
    world.start("a", first)
    world.publish("a", first)
    world.start("b", second)
    world.fail("b", second, "disk full") if fail_second else world.publish("b", second)
    world.requester_step("req")
    state = world.state.jobs[world.jid("j")]
    events = [event_json(e) for e in world.log if e.job_id == state.id]
    return jsonable(state.to_dict()), events


def test_job_in_go_encodings():
    view, events = ran(fail_second=False)
    shown = bacalhau_job(view, events)
    assert shown["ID"] == view["id"]
    assert shown["Name"] == view["id"]  # a nameless job is named by its id, as in Bacalhau
    assert shown["State"] == {"StateType": "Completed"}
    assert shown["Type"] == "batch"
    assert shown["Count"] == 2
    assert shown["Labels"] == {"team": "x"}
    assert shown["Meta"]["bacalhau.org/requester.id"] == view["requester"]
    assert type(shown["CreateTime"]) is int
    assert shown["ModifyTime"] > shown["CreateTime"] > 1_600_000_000 * 10**9
    assert shown["Revision"] == len(events)
    task = shown["Tasks"][0]
    assert task["Engine"]["Type"] == "docker"
    assert task["Network"] == {"Type": "None"}
    assert all(type(v) is int for v in task["Timeouts"].values())


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("pending", "Queued"),
        ("bidding", "Pending"),
        ("running", "Running"),
        ("completed", "Completed"),
        ("failed", "Failed"),
        ("canceled", "Stopped"),
    ],
)
def test_job_states(status, state):
    view, _ = ran()
    view["status"] = status
    assert bacalhau_job(view)["State"]["StateType"] == state
    assert state in JOB_STATES


def test_executions_in_go_encodings():
    view, _ = ran()
    shown = {e["status"]: bacalhau_execution(view, e) for e in view["executions"].values()}
    done, failed = shown["completed"], shown["failed"]
    assert done["ComputeState"]["StateType"] == 9
    assert done["DesiredState"]["StateType"] == 2
    assert failed["ComputeState"] == {"StateType": 10, "Message": "disk full"}
    assert set(done["RunOutput"]) == {
        "Stdout",
        "StdoutTruncated",
        "stderr",
        "StderrTruncated",
        "ExitCode",
        "ErrorMsg",
    }
    assert done["RunOutput"]["ExitCode"] == 0
    assert failed["RunOutput"]["ErrorMsg"] == "disk full"
    allocated = done["AllocatedResources"]["Tasks"]["main"]
    assert type(allocated["CPU"]) is float
    assert type(allocated["Memory"]) is int
    assert type(done["CreateTime"]) is int
    assert done["ModifyTime"] >= done["CreateTime"]
    assert done["JobID"] == view["id"]
    assert done["PublishedResult"]["Type"] == ""  # the harness records no digest
    url = {"Type": "urlDownload", "Params": {"URL": "http://n/e.tar.gz"}}
    assert bacalhau_execution(view, view["executions"][done["ID"]], url)["PublishedResult"] == url


def test_a_running_execution_has_no_run_output_yet():
    view, _ = ran()
    execution = next(iter(view["executions"].values()))
    execution["status"] = "running"
    shown = bacalhau_execution(view, execution)
    assert shown["RunOutput"] is None
    assert (shown["ComputeState"]["StateType"], shown["DesiredState"]["StateType"]) == (6, 1)


def test_history_items():
    view, events = ran()
    items = history_items(view["id"], events)
    assert [i["SeqNum"] for i in items] == list(range(1, len(events) + 1))
    assert items[0]["Event"]["Topic"] == "Submission"
    assert items[0]["Type"] == "JobLevel"
    assert "ExecutionID" not in items[0]
    failed = [i for i in items if i["Event"].get("Details", {}).get("IsError") == "true"]
    assert any("disk full" in i["Event"]["Message"] for i in failed)
    for item in items:
        assert item["Type"] in ("JobLevel", "ExecutionLevel")
        datetime.fromisoformat(item["Time"].replace("Z", "+00:00"))
        assert item["Time"] == item["Event"]["Timestamp"]
    executions = history_items(view["id"], events, "execution")
    assert executions
    assert all(i["Type"] == "ExecutionLevel" and i["ExecutionID"] for i in executions)
    one = next(iter(view["executions"]))
    assert {i["ExecutionID"] for i in history_items(view["id"], events, "all", one)} == {one}
    assert all(i["Type"] == "JobLevel" for i in history_items(view["id"], events, "job"))


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "1970-01-01T00:00:00.000000000Z"),
        (1_755_000_000_000_000_001, "2025-08-12T12:00:00.000000001Z"),
    ],
)
def test_rfc3339(ns, text):
    assert rfc3339(ns) == text


def test_hlc_nanoseconds_keep_the_counter():
    assert hlc_ns((1_000 << 16) | 3) == 1_000_000_003
    assert hlc_ns(None) == 0


@pytest.mark.parametrize(
    ("n", "text"),
    [(512 * 10**6, "512mb"), (1 << 30, "1gib"), (10**9, "1gb"), (64 << 20, "64mib"), (7, "7")],
)
def test_sizes_as_bacalhau_writes_them(n, text):
    assert size_text(n) == text


def echo(spec: dict[str, Any]) -> dict[str, Any]:
    """The Bacalhau Job the compat API shows for a spec, as a client would send it back."""
    view = {"id": "j-" + "0" * 16, "spec": spec, "status": "completed", "requester": "ab" * 32}
    shown = bacalhau_job(view)
    for name in SERVER_FIELDS:
        shown.pop(name)
    return shown


@pytest.mark.parametrize("text", [DOCKER_OUTPUT_S3, WASM_INLINE])
def test_echo_translates_back_to_the_same_spec(text):
    import yaml

    spec = bacalhau_spec(yaml.safe_load(text))
    assert bacalhau_spec(echo(spec)) == spec


def test_echo_of_an_edgebac_spec():
    spec = parse_spec({"engine": {"type": "docker", "image": "alpine"}, "name": "mine"}).to_dict()
    task = bacalhau_task(spec)
    assert task["Name"] == "main"
    assert task["Engine"] == {"Type": "docker", "Params": {"Image": "alpine", "Parameters": []}}
    assert echo(spec)["Namespace"] == "default"


@settings(max_examples=150, deadline=None)
@given(jobs)
def test_echo_of_any_translated_job_translates_back(data):
    spec = bacalhau_spec(copy.deepcopy(data))
    again = bacalhau_spec(echo(spec))
    if spec["name"] == "":
        again["name"] = ""  # Bacalhau names a nameless job by its id
    assert parse_spec(again) == parse_spec(spec)


def test_a_spec_that_does_not_parse_is_shown_with_a_task():
    """The log keeps what a (possibly compromised) requester wrote: the view must not fail."""
    view, events = ran()
    view["spec"] = {"engine": "junk", "count": "many"}
    shown = bacalhau_job(view, events)
    assert shown["Tasks"][0]["Engine"]["Type"] == "noop"
    execution = next(iter(view["executions"].values()))
    assert bacalhau_execution(view, execution)["JobID"] == view["id"]
