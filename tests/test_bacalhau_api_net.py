"""Bacalhau's compat routes on real nodes (issue 15), checked against the Go model notes of
BACALHAU.md §2 (what the Go CLI's strict decoder takes: enum types, times, key spelling), the
WebSocket logs with aiohttp's client, the history's NextToken that `job run --wait` follows,
refusals of bad jobs in Bacalhau's error shape that store nothing, and the front door's rules
on these routes (tokens, own jobs only, the login handshake)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edgebac.api.access import new_token, token_sha256
from tests.netfix import info, private_network, wait_converged
from tests.procs import nodes_fixture, wait_for
from tests.test_auth_net import send

nodes = nodes_fixture()
WASM = Path(__file__).resolve().parent.parent / "fixtures" / "wasm"
ORC = "/api/v1/orchestrator"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
JOB_STATES = {"Undefined", "Pending", "Queued", "Running", "Completed", "Failed", "Stopped"}
RUN_OUTPUT = {"Stdout", "StdoutTruncated", "stderr", "StderrTruncated", "ExitCode", "ErrorMsg"}
NS_2020 = 1_577_836_800 * 10**9


def call(node, method: str, path: str, body: Any = None, token: str | None = None):
    data = json.dumps(body).encode() if body is not None else b""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return send(node.url, method, path, data, headers)


def wasm_job(**job: Any) -> dict[str, Any]:
    """A Bacalhau job as the Go CLI sends it (server fields empty, PascalCase)."""
    module = base64.b64encode((WASM / "hello.wasm").read_bytes()).decode()
    task = {
        "Name": "main",
        "Engine": {"Type": "wasm", "Params": {"EntryModule": "/wasm.main"}},
        "InputSources": [
            {
                "Target": "/wasm.main",
                "Source": {"Type": "inline", "Params": {"URL": f"data:;base64,{module}"}},
            }
        ],
        "Publisher": {"Type": "local"},
    }
    body = {"Name": "", "Namespace": "default", "Type": "batch", "Count": 1, "Tasks": [task]}
    body |= {"ID": "", "State": {"StateType": "Undefined"}, "Version": 0}
    return {"Namespace": "", "Credential": None, "IdempotencyToken": "", "Force": False} | {
        "Job": body | job
    }


def docker_job(image: str, script: str) -> dict[str, Any]:
    engine = {"Type": "docker", "Params": {"Image": image, "Parameters": ["sh", "-c", script]}}
    return {"Job": {"Type": "batch", "Tasks": [{"Name": "main", "Engine": engine}]}}


def submit(node, body: dict[str, Any], token: str | None = None) -> str:
    status, answer = call(node, "PUT", f"{ORC}/jobs", body, token)
    assert status == 200, answer
    assert set(answer) == {"JobID", "EvaluationID", "Warnings"}
    return answer["JobID"]


def wait_state(node, job_id: str, states=("Completed", "Failed", "Stopped"), token=None):
    def reached():
        status, got = call(
            node, "GET", f"{ORC}/jobs/{job_id}?include=executions,history", None, token
        )
        return got if status == 200 and got["Job"]["State"]["StateType"] in states else None

    return wait_for(reached, 40, f"job {job_id} to reach {states}")


# ----- shapes of every route --------------------------------------------------------------------


def is_int(value: Any) -> bool:
    return type(value) is int


def check_job(job: dict[str, Any]) -> None:
    for key in ("ID", "Name", "Namespace", "Type"):
        assert type(job[key]) is str, key
    for key in ("Priority", "Count", "Version", "Revision", "CreateTime", "ModifyTime"):
        assert is_int(job[key]), key
    assert job["CreateTime"] > NS_2020  # int64 nanoseconds
    assert job["ModifyTime"] >= job["CreateTime"]
    assert job["State"]["StateType"] in JOB_STATES
    assert all(type(v) is str for v in {**job["Meta"], **job["Labels"]}.values())
    (task,) = job["Tasks"]
    assert type(task["Engine"]["Type"]) is str
    assert isinstance(task["Engine"]["Params"], dict)
    assert type(task["Publisher"]["Type"]) is str
    assert all(type(v) is str for v in task["Resources"].values())
    assert type(task["Network"]["Type"]) is str
    assert all(is_int(v) for v in task["Timeouts"].values())
    for source in task["InputSources"]:
        assert set(source) == {"Alias", "Target", "Source"}
        assert type(source["Source"]["Type"]) is str


def check_execution(execution: dict[str, Any], job_id: str) -> None:
    assert execution["JobID"] == job_id
    assert execution["ID"].startswith(job_id)
    assert is_int(execution["ComputeState"]["StateType"])  # Go: an int, not a string
    assert is_int(execution["DesiredState"]["StateType"])
    assert is_int(execution["CreateTime"])
    assert execution["CreateTime"] > NS_2020
    assert set(execution["RunOutput"]) == RUN_OUTPUT  # `stderr` lower-case, as Go's tag
    assert is_int(execution["RunOutput"]["ExitCode"])
    for allocated in execution["AllocatedResources"]["Tasks"].values():
        assert type(allocated["CPU"]) is float
        assert all(is_int(allocated[k]) for k in ("Memory", "Disk", "GPU"))
    assert set(execution["PublishedResult"]) <= {"Type", "Params"}


def check_history(items: list[dict[str, Any]], job_id: str) -> None:
    assert [item["SeqNum"] for item in items] == list(range(1, len(items) + 1))
    for item in items:
        assert item["Type"] in ("JobLevel", "ExecutionLevel")
        assert item["JobID"] == job_id
        assert RFC3339.match(item["Time"]), item["Time"]
        assert RFC3339.match(item["Event"]["Timestamp"])
        assert type(item["Event"]["Message"]) is str
        assert type(item["Event"]["Topic"]) is str
        assert ("ExecutionID" in item) == (item["Type"] == "ExecutionLevel")


def check_node_state(state: dict[str, Any]) -> None:
    assert state["Info"]["NodeType"] in ("Compute", "Requester")
    assert type(state["Membership"]) is str
    assert state["ConnectionState"]["Status"] in ("CONNECTED", "DISCONNECTED")
    assert RFC3339.match(state["ConnectionState"]["LastHeartbeat"])
    capacity = state["Info"]["ComputeNodeInfo"]["MaxCapacity"]
    assert type(capacity["CPU"]) is float
    assert is_int(capacity["Memory"])
    assert type(state["Info"]["BacalhauVersion"]["GitVersion"]) is str


@pytest.fixture(scope="module")
def pair(tmp_path_factory, docker_engine):
    with private_network(tmp_path_factory.mktemp("bacalhau-api"), 2) as network:
        yield network


def test_every_route_answers_in_go_shapes(pair):
    a, b = pair
    job_id = submit(a, wasm_job(Name="shape-check", Labels={"team": "x"}))
    got = wait_state(a, job_id)
    check_job(got["Job"])
    assert got["Job"]["State"]["StateType"] == "Completed"
    (execution,) = got["Executions"]["Items"]
    check_execution(execution, job_id)
    assert execution["ComputeState"]["StateType"] == 9
    assert execution["RunOutput"]["Stdout"].startswith("hello from wasm\n")
    check_history(got["History"]["Items"], job_id)
    _, plain = call(a, "GET", f"{ORC}/jobs/{job_id}")
    assert set(plain) == {"Job"}
    _, on_b = call(b, "GET", f"{ORC}/jobs/{job_id[:10]}")  # any node, a unique prefix
    assert on_b["Job"]["ID"] == job_id
    _, by_name = call(b, "GET", f"{ORC}/jobs/shape-check")  # or its Name, as Bacalhau's
    assert by_name["Job"]["ID"] == job_id

    _, executions = call(
        a, "GET", f"{ORC}/jobs/{job_id}/executions?limit=5&reverse=False&order_by="
    )
    assert [e["ID"] for e in executions["Items"]] == [execution["ID"]]
    _, history = call(a, "GET", f"{ORC}/jobs/{job_id}/history?event_type=all&limit=10")
    check_history(history["Items"], job_id)
    _, results = call(a, "GET", f"{ORC}/jobs/{job_id}/results")
    assert results["Items"][0]["Type"] == "urlDownload"
    link = results["Items"][0]["Params"]["URL"]
    assert f"/api/v1/bacalhau/shared/{execution['ID']}.tar.gz?by=" in link

    _, listed = call(a, "GET", f"{ORC}/jobs?labels=bacalhau_canary+%21%3D+true&limit=10")
    assert job_id in [j["ID"] for j in listed["Items"]]
    for job in listed["Items"]:
        check_job(job)
    _, selected = call(a, "GET", f"{ORC}/jobs?labels=team%3Dy")
    assert job_id not in [j["ID"] for j in selected["Items"]]
    status, posted = call(a, "POST", f"{ORC}/jobs", wasm_job())  # POST is PUT's twin
    assert (status, set(posted)) == (200, {"JobID", "EvaluationID", "Warnings"})
    paged, next_token = [], ""
    while True:  # one job a page, as far as the tokens go
        _, one_page = call(a, "GET", f"{ORC}/jobs?limit=1&next_token={next_token}")
        paged += [j["ID"] for j in one_page["Items"]]
        next_token = one_page["NextToken"]
        if not next_token:
            break
    assert job_id in paged
    assert len(paged) == len(set(paged)) >= 2
    _, reverse = call(a, "GET", f"{ORC}/jobs?reverse=true&limit=100")
    assert [j["ID"] for j in reverse["Items"]] == paged[::-1]

    _, node_list = call(a, "GET", f"{ORC}/nodes")
    assert node_list["Nodes"] == node_list["nodes"]  # Go reads Nodes, the apiclient nodes
    assert {s["Info"]["NodeID"] for s in node_list["Nodes"]} == {info(a)["id"], info(b)["id"]}
    for state in node_list["Nodes"]:
        check_node_state(state)
    _, one = call(a, "GET", f"{ORC}/nodes/{info(b)['id'][:8]}")
    assert one["Node"] == one["node"]
    assert one["Node"]["Info"]["NodeID"] == info(b)["id"]

    assert call(a, "GET", "/api/v1/agent/alive") == (200, {"Status": "OK"})
    _, version = call(a, "GET", "/api/v1/agent/version")
    assert {"Major", "Minor", "GitVersion", "GitCommit", "BuildDate", "GOOS", "GOARCH"} <= set(
        version
    )
    _, agent_node = call(a, "GET", "/api/v1/agent/node")
    assert agent_node["NodeID"] == info(a)["id"]
    _, config = call(a, "GET", "/api/v1/agent/config")
    assert config["config"]["Compute"]["Enabled"] is True


def test_errors_have_bacalhaus_shape(pair):
    a, _ = pair
    job_id = submit(a, wasm_job())
    cases = [
        ("GET", f"{ORC}/jobs/j-0000ffff", None, 404, "NotFound"),
        ("GET", f"{ORC}/jobs?next_token=zz", None, 400, "BadRequest"),
        ("GET", f"{ORC}/jobs?order_by=colour", None, 400, "BadRequest"),
        ("GET", f"{ORC}/nodes/ffffffffff", None, 404, "NotFound"),
        ("PUT", f"{ORC}/nodes/{info(a)['id']}", {"Action": "approve"}, 501, "NotImplemented"),
        ("GET", "/api/v1/bacalhau/results/e-nope.tar.gz", None, 404, "NotFound"),
        ("GET", f"{ORC}/jobs?limit=-1", None, 400, "BadRequest"),
        ("GET", f"{ORC}/jobs?limit=99999999999999999999999", None, 400, "BadRequest"),
        ("GET", f"{ORC}/jobs?reverse=maybe", None, 400, "BadRequest"),
        ("GET", f"{ORC}/jobs?labels=a+in+%28", None, 400, "BadRequest"),
        ("GET", f"{ORC}/jobs/{job_id}?include=everything", None, 400, "BadRequest"),
        ("GET", f"{ORC}/jobs/{job_id}/history?event_type=x", None, 400, "BadRequest"),
        ("GET", f"{ORC}/nodes/ab", None, 400, "BadRequest"),
        ("POST", "/api/v1/auth/ClientKey", {"MethodData": "%%%"}, 400, "BadRequest"),
        ("POST", "/api/v1/auth/ClientKey", {"MethodData": "W1tbW1s="}, 400, "BadRequest"),
        ("PATCH", f"{ORC}/jobs", {}, 405, "BadRequest"),
        ("GET", f"{ORC}/jobs/{job_id}/versions", None, 404, "NotFound"),
    ]
    for method, path, body, status, code in cases:
        got_status, error = call(a, method, path, body)
        assert (got_status, error["Code"]) == (status, code), (path, error)
        assert error["Status"] == status
        assert type(error["Message"]) is str
        assert error["Component"] == "edgebac"
    status, raw, _ = a.request(f"{ORC}/jobs", method="PUT")  # no body at all
    assert status == 400
    assert json.loads(raw)["Code"] == "BadRequest"


# ----- logs -------------------------------------------------------------------------------------


async def frames(url: str) -> tuple[list[dict[str, Any]], int | None]:
    """Every text frame of a logs WebSocket until the server closes it, and its close code."""
    got = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        async for message in ws:
            assert message.type == aiohttp.WSMsgType.TEXT, message
            got.append(json.loads(message.data))
        return got, ws.close_code


async def test_logs_come_as_websocket_frames(pair, busybox_image):
    a, b = pair
    script = "echo one; sleep 1; echo two >&2; echo three"
    job_id = submit(a, docker_job(busybox_image, script))
    wait_state(a, job_id, ("Running", "Completed"))
    ws_url = b.url.replace("http://", "ws://") + f"{ORC}/jobs/{job_id}/logs?follow=true"
    followed, code = await frames(ws_url)  # from the other node: proxied, followed to the end
    assert code == 1000
    assert all(set(f) == {"value"} and set(f["value"]) == {"Type", "Line"} for f in followed)
    assert streams(followed) == ("one\nthree\n", "two\n")
    again, _ = await frames(a.url.replace("http://", "ws://") + f"{ORC}/jobs/{job_id}/logs")
    assert streams(again) == ("one\nthree\n", "two\n")  # ended: read whole, not followed
    unknown, _ = await frames_or_status(a, f"{ORC}/jobs/{job_id}/logs?execution_id=e-nope")
    assert unknown == 404


def streams(got: list[dict[str, Any]]) -> tuple[str, str]:
    """(stdout, stderr) as the Go CLI would print them, from Type 1 and Type 2 frames."""
    lines = {1: "", 2: ""}
    for item in got:
        lines[item["value"]["Type"]] += item["value"]["Line"]
    return lines[1], lines[2]


async def frames_or_status(node, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(node.url.replace("http://", "ws://") + path):
                return 101, None
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status, None


# ----- history as `job run --wait` reads it, and stop -------------------------------------------


def test_history_token_holds_until_the_job_ended_and_stop_takes_the_body_reason(
    pair, busybox_image
):
    a, _ = pair
    job_id = submit(a, docker_job(busybox_image, "sleep 30"))
    wait_state(a, job_id, ("Running",))
    seen, next_token = [], ""
    for _ in range(3):  # as the Go CLI polls: same token again while nothing is new
        path = f"{ORC}/jobs/{job_id}/history?event_type=all&limit=10&next_token={next_token}"
        _, page = call(a, "GET", path)
        seen += page["Items"]
        assert page["NextToken"] != ""  # running: more to come
        next_token = page["NextToken"]
    stop_body = {"Namespace": "", "Credential": None, "IdempotencyToken": "", "reason": "by go"}
    assert call(a, "DELETE", f"{ORC}/jobs/{job_id}", stop_body) == (200, {"EvaluationID": ""})

    def drained():
        nonlocal next_token
        path = f"{ORC}/jobs/{job_id}/history?event_type=all&limit=10&next_token={next_token}"
        _, page = call(a, "GET", path)
        seen.extend(page["Items"])
        next_token = page["NextToken"]
        return next_token == ""

    wait_for(drained, 30, "the history to end")
    check_history(seen, job_id)  # every item once, in order
    assert seen[-1]["Event"]["Topic"] == "State Update"
    assert "by go" in seen[-1]["Event"]["Message"]
    _, got = call(a, "GET", f"{ORC}/jobs/{job_id}")
    assert got["Job"]["State"]["StateType"] == "Stopped"


# ----- a Name submitted again: Bacalhau's job update ---------------------------------------------


def named(image: str, script: str, name: str, **extra: Any) -> dict[str, Any]:
    body = docker_job(image, script)
    body["Job"] |= {"Name": name, "Namespace": "default"}
    return body | extra


def test_a_name_submitted_again_is_the_next_version_and_stops_the_last(pair, busybox_image):
    """As Bacalhau's SubmitJob: the same spec again is refused (unless Force), a changed one
    updates the job (here a new job, version 2, and the running version 1 stopped); the Name
    then means the newest version."""
    a, b = pair
    name = "nightly-report"
    first = submit(a, named(busybox_image, "sleep 30", name))
    wait_state(a, first, ("Running",))
    before = event_count(a)
    status, refused = call(a, "PUT", f"{ORC}/jobs", named(busybox_image, "sleep 30", name))
    assert status == 409, refused
    assert refused["Message"] == (
        f"no changes detected for new job spec. Job Name: '{name}', Job Id: '{first}'"
    )
    assert refused["Hint"] == "Use the --force flag to override this warning"
    assert event_count(a) == before  # nothing stored

    status, answer = call(a, "PUT", f"{ORC}/jobs", named(busybox_image, "echo v2", name))
    assert status == 200, answer
    second = answer["JobID"]
    assert second != first
    assert any(first in w and "stopped" in w for w in answer["Warnings"]), answer
    old = wait_state(a, first, ("Stopped",))
    assert "Job update requested by user" in old["Job"]["State"]["Message"]
    new = wait_state(a, second, ("Completed",))
    assert new["Job"]["Version"] == 2
    assert {e["JobVersion"] for e in new["Executions"]["Items"]} == {2}
    wait_converged([a, b])
    for node in (a, b):  # the Name is the newest version, on every node (from the log)
        status, got = call(node, "GET", f"{ORC}/jobs/{name}")
        assert status == 200, got
        assert (got["Job"]["ID"], got["Job"]["Version"]) == (second, 2)

    status, forced = call(
        a, "PUT", f"{ORC}/jobs", named(busybox_image, "echo v2", name, Force=True)
    )
    assert status == 200, forced
    third = wait_state(a, forced["JobID"], ("Completed",))
    assert third["Job"]["Version"] == 3
    assert call(a, "GET", f"{ORC}/jobs/{name}")[1]["Job"]["ID"] == forced["JobID"]


# ----- bad jobs ---------------------------------------------------------------------------------


def event_count(node) -> int:
    return info(node)["events"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"Colour": "blue"}, "Job.Colour"),
        ({"Priority": "high"}, "Job.Priority"),
        ({"Count": -1}, "Job.Count"),
        ({"Type": "daemon"}, "Job.Type"),
    ],
)
def test_a_bad_job_is_a_400_naming_its_field_and_stores_nothing(pair, change, field):
    a, b = pair
    before = event_count(a), event_count(b)
    status, error = call(a, "PUT", f"{ORC}/jobs", wasm_job(**change))
    assert status == 400, error
    assert error["Code"] == "ValidationError"
    assert field in error["Details"], error
    assert field in error["Message"]
    assert (event_count(a), event_count(b)) == before


# ----- the front door on these routes -----------------------------------------------------------


def test_tokens_own_jobs_and_the_login_handshake(nodes, tmp_path):
    tokens = {name: new_token() for name in ("alice", "bob")}
    rules = tmp_path / "access.yaml"
    lines = [
        f"  {name}: {{token_sha256: {token_sha256(t)}, can: [read, submit, cancel]}}"
        for name, t in tokens.items()
    ]
    rules.write_text("clients:\n" + "\n".join(lines) + "\n")
    node = nodes.start(tmp_path / "a", "--access", str(rules), listen="127.0.0.4:0")
    alice, bob = tokens["alice"], tokens["bob"]

    status, error = call(node, "GET", f"{ORC}/jobs")
    assert (status, error["Code"]) == (401, "Unauthorized")
    assert "BACALHAU_API_KEY" in error["Hint"]
    job_id = submit(node, wasm_job(), alice)
    got = wait_state(node, job_id, token=alice)
    (execution,) = got["Executions"]["Items"]
    link = execution["PublishedResult"]["Params"]["URL"].removeprefix(node.url)
    path = f"/api/v1/bacalhau/results/{execution['ID']}.tar.gz"  # with credentials
    assert call(node, "GET", f"{ORC}/jobs/{job_id}", token=bob)[1]["Code"] == "Forbidden"
    assert job_id not in [j["ID"] for j in call(node, "GET", f"{ORC}/jobs", token=bob)[1]["Items"]]
    assert job_id in [j["ID"] for j in call(node, "GET", f"{ORC}/jobs", token=alice)[1]["Items"]]
    assert call(node, "DELETE", f"{ORC}/jobs/{job_id}", {}, bob)[0] == 403
    assert call(node, "GET", path, token=bob)[0] == 403
    assert call(node, "GET", path)[0] == 401
    assert call(node, "GET", path, token=alice)[0] == 200
    status, body, ctype = node.request(link)  # the signed link, as Go's downloader fetches it
    assert (status, ctype) == (200, "application/gzip")
    assert len(body) > 20
    other = link.replace(execution["ID"], execution["ID"] + "x")
    tampered = link.replace("until=", "until=9")
    for bad in (other, tampered, link.split("?")[0]):
        status, error = call(node, "GET", bad)
        assert (status, error["Code"]) == (403, "Forbidden"), bad

    _, offered = call(node, "GET", "/api/v1/auth")
    assert offered["Methods"]["token"]["type"] == "ask"
    login = {"Name": "token", "MethodData": base64.b64encode(b'{"token": "nope"}').decode()}
    _, refused = call(node, "POST", "/api/v1/auth/token", login)
    assert refused["Authentication"]["success"] is False
    login["MethodData"] = base64.b64encode(json.dumps({"token": alice}).encode()).decode()
    _, accepted = call(node, "POST", "/api/v1/auth/token", login)
    assert accepted["Authentication"] == {"success": True, "token": alice}
    assert call(node, "POST", "/api/v1/auth/ClientKey", login)[0] == 404  # not offered here


def test_without_rules_the_client_key_login_serves_loopback(pair):
    a, _ = pair
    _, offered = call(a, "GET", "/api/v1/auth")
    challenge = offered["Methods"]["ClientKey"]
    assert challenge["type"] == "challenge"
    assert len(base64.b64decode(challenge["params"]["InputPhrase"])) == 32
    data = base64.b64encode(b'{"PhraseSignature": "x", "PublicKey": "y"}').decode()
    _, answer = call(a, "POST", "/api/v1/auth/ClientKey", {"Name": "ClientKey", "MethodData": data})
    token = answer["Authentication"]["token"]
    assert call(a, "GET", f"{ORC}/jobs", token=token)[0] == 200
