"""What the command line shows: times not clock numbers, no `None`, no 56 KB lines, one-line
errors (JSON ones with --output json), and a --wait summary that is the job's final state."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest
from nacl.signing import SigningKey

from edgebac import textdata
from edgebac.cli import render
from edgebac.cli.job import describe_lines
from edgebac.eventlog.clock import COUNTER_BITS, Hlc
from edgebac.eventlog.view import event_line
from edgebac.textdata import load_json_or_yaml
from tests.announce import announced
from tests.procs import nodes_fixture, run_edgebac
from tests.test_cli_errors import assert_one_line_error

nodes = nodes_fixture()
NOW = 1_800_000_000_000
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"


@pytest.mark.parametrize(
    ("value", "ms"),
    [((NOW << 16) | 7, NOW), (f"{NOW}.3", NOW), (None, None), ("x", None), (True, None)],
)
def test_hlc_values_become_wall_milliseconds(value, ms):
    assert textdata.hlc_ms(value) == ms


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(4, "4 s ago"), (59.6, "60 s ago"), (200, "3 min ago"), (7200, "2 h ago"), (-3, "in 3 s")],
)
def test_ages(seconds, text):
    assert textdata.age(seconds) == text


def test_times_are_local_iso_with_their_age():
    shown = textdata.when((NOW - 90_000) << 16, NOW)
    assert re.fullmatch(ISO + r" \(1 min ago\)", shown), shown
    assert textdata.when(None, NOW) == "-"


def test_execution_lines_say_nothing_twice_and_no_none():
    failed = {"id": "j-1-0-ab", "node": "ab" * 32, "attempt": 0, "status": "failed"}
    line = render.execution_line({**failed, "exit_code": 3, "reason": "exit code 3"})
    assert line == f"j-1-0-ab on {'ab' * 6} (attempt 0): failed, exit 3"
    line = render.execution_line({**failed, "exit_code": None, "reason": "input x: 404"})
    assert line.endswith("failed: input x: 404")
    assert "None" not in line


def test_describe_shows_a_surplus_execution_as_such():
    """After a partition the first `count` results in log order count; describe says which
    did not (the `surplus` of the execution's view)."""
    done = {"node": "ab" * 32, "attempt": 0, "status": "completed", "exit_code": 0}
    counted = {**done, "id": "j-1-0-ab", "surplus": False}
    surplus = {**done, "id": "j-1-1-cd", "node": "cd" * 32, "attempt": 1, "surplus": True}
    assert (
        render.execution_line(counted) == "j-1-0-ab on abababababab (attempt 0): completed, exit 0"
    )
    assert render.execution_line(surplus) == (
        "j-1-1-cd on cdcdcdcdcdcd (attempt 1): completed, exit 0"
        " (surplus: beyond the job's count, its result does not count)"
    )
    view = {
        "id": "j-1",
        "status": "completed",
        "summary": {"executions": {"completed": 2}},
        "spec": {"engine": {"type": "noop"}},
        "executions": {e["id"]: e for e in (counted, surplus)},
    }
    text = describe_lines(view, NOW)
    assert sum("surplus" in line for line in text) == 1
    assert next(line for line in text if "j-1-1-cd" in line).endswith("does not count)")


def test_large_values_are_a_size_and_digest_in_json_and_cut_in_text():
    module = "inline:base64:" + base64.b64encode(bytes(60_000)).decode()
    compacted = render.compact({"engine": {"module": module}, "n": 1})
    assert compacted["n"] == 1
    assert compacted["engine"]["module"]["chars"] == len(module)
    assert len(compacted["engine"]["module"]["sha256"]) == 64
    assert len(render.dumps({"module": module})) < 300
    (line,) = [x for x in render.pretty_spec({"engine": {"module": module}}) if "module" in x]
    assert len(line) < 220
    assert f"{len(module):,} chars" in line


def test_events_sort_in_log_order():
    events = [
        {"hlc": "20.0", "author": "a", "seq": 2},
        {"hlc": "10.5", "author": "b", "seq": 1},
        {"hlc": "10.10", "author": "a", "seq": 1},
    ]
    assert [e["hlc"] for e in render.sorted_events(events)] == ["10.5", "10.10", "20.0"]


def _view(**extra):
    execution = {"id": "j-1-0-ab", "node": "ab" * 32, "attempt": 0, "status": "failed"}
    view = {"status": "failed", "executions": {"j-1-0-ab": execution}, "attempts": []}
    view.update(extra)
    return view


@pytest.mark.parametrize(
    ("view", "done"),
    [
        (_view(), True),
        (_view(status="running"), False),
        (_view(attempts=[{"execution_id": "j-1-1-cd"}]), False),  # its failure not here yet
        (_view(attempts=[{"execution_id": "j-1-0-ab"}]), True),
        (_view(executions={"e": {"status": "running"}}), False),
        (_view(status="canceled", executions={"e": {"status": "running"}}), True),
    ],
)
def test_a_wait_ends_on_a_settled_view(view, done):
    assert render.settled(view) is done


def test_describe_is_for_people():
    view = {
        "id": "j-1",
        "status": "failed",
        "reason": "retry budget spent",
        "summary": {"executions": {"failed": 1}},
        "created_hlc": (NOW - 5000) << 16,
        "ended_hlc": NOW << 16,
        "spec": {"engine": {"type": "noop", "exit_code": 3}, "count": 1, "inputs": []},
        "executions": {
            "j-1-0-ab": {
                "id": "j-1-0-ab",
                "node": "ab" * 32,
                "attempt": 0,
                "status": "failed",
                "exit_code": 3,
                "reason": "exit code 3",
                "reference": None,
                "started_hlc": (NOW - 1000) << 16,
            }
        },
        "events": [
            {"hlc": f"{NOW}.0", "author": "cd" * 32, "seq": 2, "type": "JobFailed"},
            {"hlc": f"{NOW - 5000}.0", "author": "cd" * 32, "seq": 1, "type": "JobCreated"},
        ],
    }
    text = "\n".join(describe_lines(view, NOW))
    assert "None" not in text
    assert str(NOW) not in text
    assert "exit code 3" not in text
    assert "exit 3" in text
    assert "spec:\n  engine:\n    type: noop\n    exit_code: 3\n  count: 1\n  inputs: []" in text
    assert render.pretty_spec({"stdout": "hi\n", "name": ""}) == ['  stdout: "hi\\n"', '  name: ""']
    assert text.index("JobCreated") < text.index("JobFailed")
    assert re.search(r"created: " + ISO + r" \(5 s ago\)", text), text


def test_describe_and_wait_against_a_real_node(nodes, tmp_path):
    node = nodes.start(tmp_path / "node")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"engine": {"type": "noop", "exit_code": 3}, "retries": 1}))
    ran = run_edgebac("job", "run", spec, "--wait", "--api", node.url)
    assert ran.returncode == 1, ran.stderr
    job_id = ran.stdout.splitlines()[0]
    summary = [line.strip() for line in ran.stdout.splitlines()[1:]]
    described = run_edgebac("job", "describe", job_id, "--api", node.url)
    assert described.returncode == 0, described.stderr
    shown = described.stdout
    assert "None" not in ran.stdout + shown
    assert "exit code 3" not in ran.stdout + shown
    assert len(summary) == 2, summary
    assert all(", exit 3" in line for line in summary), summary
    for line in summary:  # the summary is what describe says of each execution
        assert line in shown
    times = re.findall(ISO, shown)
    assert times
    assert "events:" in shown


def test_wait_json_does_not_dump_an_inline_module(nodes, tmp_path):
    node = nodes.start(tmp_path / "node")
    module = "inline:base64:" + base64.b64encode(bytes(60_000)).decode()
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps({"engine": {"type": "noop"}, "inputs": [{"source": module, "target": "/in"}]})
    )
    ran = run_edgebac("job", "run", spec, "--wait", "--output", "json", "--api", node.url)
    assert ran.returncode == 0, ran.stderr
    assert len(ran.stdout) < 20_000
    view = json.loads(ran.stdout)
    assert view["spec"]["inputs"][0]["source"]["chars"] == len(module)


def test_a_log_line_shows_a_local_time_and_its_age_not_the_hlc():
    event = announced(SigningKey.generate(), Hlc(NOW - 90_000, 3))
    line = event_line(event, NOW, pos=7)
    assert re.fullmatch(
        r"\s+7 " + ISO + r" \(1 min ago\) [0-9a-f]{12}#1\s+NodeAnnounced id=[0-9a-f]{12}", line
    ), line
    assert str(NOW - 90_000) not in line
    assert textdata.COUNTER_BITS == COUNTER_BITS  # the copy that keeps textdata off eventlog


def test_log_show_has_times_and_its_json_no_inline_module(nodes, tmp_path):
    node = nodes.start(tmp_path / "node")
    module = "inline:base64:" + base64.b64encode(bytes(60_000)).decode()
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps({"engine": {"type": "noop"}, "inputs": [{"source": module, "target": "/in"}]})
    )
    ran = run_edgebac("job", "run", spec, "--wait", "--api", node.url)
    assert ran.returncode == 0, ran.stderr
    data_dir = ("--data-dir", str(node.data_dir))
    shown = run_edgebac("log", "show", *data_dir)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert any("JobCreated" in line for line in lines), lines
    for line in lines:
        assert re.match(r"\s+\d+ " + ISO + r" \((\d+ s|\d+ min) ago\) ", line), line
        assert not re.search(r"\d{13}", line), line  # no hybrid-clock milliseconds
    dumped = run_edgebac("log", "show", *data_dir, "--output", "json", "--type", "JobCreated")
    assert dumped.returncode == 0, dumped.stderr
    (line,) = dumped.stdout.splitlines()
    assert len(line) < 10_000
    source = json.loads(line)["body"]["spec"]["inputs"][0]["source"]
    assert source["chars"] == len(module)
    assert source["sha256"] == hashlib.sha256(module.encode()).hexdigest()


def test_a_yaml_error_is_one_line_naming_the_file(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("engine:\n  type: wasm\n module: x\n")
    result = run_edgebac("job", "run", spec, "--api", "http://127.0.0.1:9")
    line = assert_one_line_error(result, str(spec), "line 3, column 2")
    assert "unicode string" not in line
    as_json = run_edgebac("job", "run", spec, "--output", "json", "--api", "http://127.0.0.1:9")
    assert as_json.returncode == 1
    assert as_json.stderr == ""
    error = json.loads(as_json.stdout)["error"]
    assert error["code"] == "bad_request"
    assert str(spec) in error["message"]


def test_usage_errors_are_one_line_and_json_when_asked():
    result = run_edgebac("job", "list", "--limit", "0")
    line = assert_one_line_error(result, "--limit")
    assert result.returncode == 2
    assert line.startswith("error: ")
    as_json = run_edgebac("job", "list", "--limit", "0", "--output", "json")
    assert json.loads(as_json.stdout)["error"]["code"] == "usage"
    down = run_edgebac("job", "list", "--output", "json", "--api", "http://127.0.0.1:9")
    assert "cannot reach" in json.loads(down.stdout)["error"]["message"]


def test_yaml_messages_are_one_line():
    with pytest.raises(ValueError, match="line 1, column 13") as caught:
        load_json_or_yaml("a: [unclosed")
    assert "\n" not in str(caught.value)
    assert "line 1, column 13" in str(caught.value)
