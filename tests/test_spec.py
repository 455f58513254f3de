"""Job spec parsing: canonical round trips and validation errors that name the field."""

from __future__ import annotations

import json

import pytest

from edgebac.scheduler.constraints import Constraint, parse_constraint
from edgebac.scheduler.quantities import parse_cpu, parse_size
from edgebac.scheduler.sources import parse_source
from edgebac.scheduler.spec import (
    DockerEngine,
    JobSpec,
    NoopEngine,
    SpecError,
    WasmEngine,
    parse_spec,
    parse_spec_text,
)

CID = "Qm" + "a" * 44

FULL = {
    "name": "resize",
    "type": "batch",
    "count": 3,
    "constraints": ["zone=north", "arch in (arm64, amd64)", "!gpu", "disk exists"],
    "resources": {"cpu": "500m", "memory": "64Mi", "disk": "1G", "gpu": 0},
    "engine": {
        "type": "docker",
        "image": "alpine:3.19",
        "entrypoint": ["sh", "-c"],
        "args": ["ls /in"],
        "env": {"MODE": "fast"},
        "workdir": "/work",
    },
    "inputs": [
        {"source": "s3://bucket/data/", "target": "/in/s3"},
        {"source": "https://example.org/x.csv", "target": "/in/x.csv"},
        {"source": "/srv/data", "target": "/in/local"},
        {"source": CID, "target": "/in/cid"},
        {"source": "inline:hello", "target": "/in/hello.txt"},
    ],
    "outputs": [{"name": "out", "path": "/out"}, {"name": "logs.v1", "path": "/logs"}],
    "publisher": {"type": "s3", "bucket": "results", "prefix": "jobs/"},
    "env": {"A": "1"},
    "timeout_s": 30,
    "network": "full",
    "retries": 0,
    "bid_window_ms": 500,
}


def problems(data: object) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return info.value.problems


def fields(data: object) -> list[str]:
    return [path for path, _ in problems(data)]


def test_full_spec_parses_into_typed_values():
    spec = parse_spec(FULL)
    assert spec.resources.cpu_millis == 500
    assert spec.resources.memory_bytes == 64 << 20
    assert spec.resources.disk_bytes == 10**9
    assert isinstance(spec.engine, DockerEngine)
    assert spec.engine.entrypoint == ("sh", "-c")
    assert [i.source.kind for i in spec.inputs] == ["s3", "http", "file", "ipfs", "inline"]
    assert spec.inputs[2].source.url == "file:///srv/data"
    assert spec.inputs[3].source.url == f"ipfs://{CID}"
    assert spec.publisher.bucket == "results"
    assert spec.constraints[1] == Constraint("arch", "in", ("arm64", "amd64"))


@pytest.mark.parametrize(
    "data",
    [
        FULL,
        {"engine": {"type": "noop"}},
        {"engine": {"type": "noop", "exit_code": 3, "stdout": "x", "duration_ms": 5}},
        {"engine": {"type": "wasm", "module": "inline:base64:AGFzbQ==", "args": ["a"]}},
        {"engine": {"type": "wasm", "module": f"ipfs://{CID}"}, "type": "ops"},
        {"engine": {"type": "docker", "image": "x"}, "timeout_s": 1.5, "publisher": "local"},
    ],
)
def test_canonical_dict_parses_back_to_an_equal_spec(data):
    spec = parse_spec(data)
    canonical = spec.to_dict()
    assert parse_spec(canonical) == spec
    assert parse_spec(json.loads(json.dumps(canonical))).to_dict() == canonical


def test_defaults():
    spec = parse_spec({"engine": {"type": "noop"}})
    assert spec == JobSpec(engine=NoopEngine())
    assert (spec.type, spec.count, spec.retries, spec.network, spec.timeout_s) == (
        "batch",
        1,
        2,
        "none",
        600,
    )
    assert spec.publisher.type == "local"
    assert spec.bid_window_ms is None


def test_yaml_and_json_text():
    yaml_text = "engine:\n  type: wasm\n  module: /opt/m.wasm\ncount: 2\n"
    spec = parse_spec_text(yaml_text)
    assert isinstance(spec.engine, WasmEngine)
    assert spec.engine.module.url == "file:///opt/m.wasm"
    assert parse_spec_text(json.dumps(FULL)) == parse_spec(FULL)
    with pytest.raises(SpecError):
        parse_spec_text("engine: [unclosed")


@pytest.mark.parametrize(
    ("patch", "field", "words"),
    [
        ({"engine": {"type": "podman"}}, "engine.type", "not an engine"),
        ({"engine": "docker"}, "engine", "not a map"),
        ({"engine": None}, "engine", "required"),
        ({"engine": {"type": "docker"}}, "engine.image", "required"),
        ({"engine": {"type": "docker", "image": 5}}, "engine.image", "not a string"),
        ({"engine": {"type": "docker", "image": "x", "args": "a"}}, "engine.args", "list"),
        ({"engine": {"type": "docker", "image": "x", "tty": True}}, "engine.tty", "unknown"),
        ({"engine": {"type": "docker", "image": "x", "workdir": "w"}}, "engine.workdir", "abs"),
        ({"engine": {"type": "wasm"}}, "engine.module", "required"),
        ({"engine": {"type": "wasm", "module": "ftp://x"}}, "engine.module", "scheme"),
        ({"engine": {"type": "noop", "exit_code": 300}}, "engine.exit_code", "255"),
        ({"type": "service"}, "type", "batch or ops"),
        ({"count": -1}, "count", "less than 1"),
        ({"count": 0}, "count", "less than 1"),
        ({"count": "2"}, "count", "not an integer"),
        ({"count": True}, "count", "not an integer"),
        ({"retries": -1}, "retries", "less than 0"),
        ({"timeout_s": 0}, "timeout_s", "not more than 0"),
        ({"timeout_s": "1h"}, "timeout_s", "number"),
        ({"network": "host"}, "network", "none or full"),
        ({"bid_window_ms": 0}, "bid_window_ms", "less than 1"),
        ({"resources": {"memory": "12Q"}}, "resources.memory", "size like 512Mi or 1G"),
        ({"resources": {"disk": -5}}, "resources.disk", "size"),
        ({"resources": {"memory": 64}}, "resources.memory", "64 bytes, less than the 6Mi"),
        ({"resources": {"memory": "64"}}, "resources.memory", "write 64Mi for 64 MiB"),
        ({"resources": {"memory": "5Mi"}}, "resources.memory", "less than the 6Mi"),
        ({"resources": {"cpu": "lots"}}, "resources.cpu", "CPU amount like 500m or 2"),
        ({"resources": {"gpu": "one"}}, "resources.gpu", "not an integer"),
        ({"resources": {"ram": "1G"}}, "resources.ram", "unknown field"),
        ({"resources": "big"}, "resources", "not a map"),
        ({"constraints": ["zone ~ north"]}, "constraints[0]", "not a constraint"),
        ({"constraints": ["a=b", "x in ()"]}, "constraints[1]", "bad value list"),
        ({"constraints": [5]}, "constraints[0]", "not a string"),
        ({"constraints": "a=b"}, "constraints", "a list"),
        ({"inputs": [{"source": "nope", "target": "/in"}]}, "inputs[0].source", "not a source"),
        ({"inputs": [{"source": "/d", "target": "in"}]}, "inputs[0].target", "absolute"),
        ({"inputs": [{"source": "/d"}]}, "inputs[0].target", "required"),
        ({"inputs": [{"source": "s3://", "target": "/i"}]}, "inputs[0].source", "bucket"),
        ({"inputs": [{"source": "ipfs://xyz", "target": "/i"}]}, "inputs[0].source", "content"),
        ({"outputs": [{"name": "a b", "path": "/o"}]}, "outputs[0].name", "name of"),
        # an output folder named ".." would be the results folder's parent
        ({"outputs": [{"name": "..", "path": "/o"}]}, "outputs[0].name", "name of"),
        ({"outputs": [{"name": ".", "path": "/o"}]}, "outputs[0].name", "name of"),
        ({"outputs": [{"name": "stdout", "path": "/o"}]}, "outputs[0].name", "results file"),
        (
            {"inputs": [{"source": "inline:x", "target": "/i", "name": "../x"}]},
            "inputs[0].name",
            "file name",
        ),
        (
            {"inputs": [{"source": "inline:x", "target": "/i", "name": ".."}]},
            "inputs[0].name",
            "file name",
        ),
        (
            {"inputs": [{"source": "/d", "target": "/i", "name": "x.csv"}]},
            "inputs[0].name",
            "inline",
        ),
        (
            {"outputs": [{"name": "o", "path": "/o"}, {"name": "o", "path": "/p"}]},
            "outputs[1].name",
            "used twice",
        ),
        ({"publisher": {"type": "ftp"}}, "publisher.type", "not a publisher"),
        ({"publisher": {"type": "s3"}}, "publisher.bucket", "required"),
        ({"publisher": {"type": "local", "bucket": "b"}}, "publisher.bucket", "s3 publisher"),
        ({"publisher": {"type": "local", "format": "tar.gz"}}, "publisher.format", "s3 publisher"),
        (
            {"publisher": {"type": "s3", "bucket": "b", "format": "zip"}},
            "publisher.format",
            "'zip' is not files or tar.gz",
        ),
        ({"env": {"A": 1}}, "env", "strings"),
        ({"env": {"1BAD": "x"}}, "env.1BAD", "environment variable"),
        ({"colour": "red"}, "colour", "unknown field"),
    ],
)
def test_invalid_field_is_named(patch, field, words):
    data = {"engine": {"type": "noop"}, **patch}
    found = problems(data)
    assert any(path == field and words in message for path, message in found), found


def test_a_named_inline_input_keeps_its_name_and_others_stay_as_they_were():
    item = {"source": "inline:a,b", "target": "/in", "name": "data.csv"}
    spec = parse_spec(
        {"engine": {"type": "noop"}, "inputs": [item, {"source": "/d", "target": "/d"}]}
    )
    assert spec.inputs[0].name == "data.csv"
    assert spec.to_dict()["inputs"] == [item, {"source": "file:///d", "target": "/d"}]
    assert parse_spec(spec.to_dict()) == spec


def test_smallest_memory_claims_that_can_run():
    assert parse_spec({"engine": {"type": "noop"}, "resources": {"memory": "6Mi"}})
    assert parse_spec({"engine": {"type": "noop"}, "resources": {"memory": 0}})


def test_every_problem_is_reported_at_once():
    data = {
        "engine": {"type": "docker"},
        "count": -1,
        "resources": {"memory": "12Q", "cpu": "x"},
        "constraints": ["a ~ b"],
    }
    assert fields(data) == [
        "engine.image",
        "count",
        "constraints[0]",
        "resources.cpu",
        "resources.memory",
    ]
    assert "resources.memory: '12Q' is not a size like 512Mi or 1G" in str(
        SpecError(problems(data))
    )


def test_not_a_map():
    assert fields([1, 2]) == ["spec"]
    assert SpecError([("a", "b")]).code == "bad_spec"


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (512, 512),
        ("1024", 1024),
        ("64Mi", 64 << 20),
        ("1G", 10**9),
        ("1.5Gi", 3 << 29),
        ("2k", 2000),
        ("10KiB", 10 << 10),
        ("12Q", None),
        ("-1", None),
        ("", None),
        (1.5, None),
        (True, None),
    ],
)
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "millis"),
    [("500m", 500), ("2", 2000), (2, 2000), (0.5, 500), ("0.25", 250), ("x", None), (-1, None)],
)
def test_cpu(text, millis):
    assert parse_cpu(text) == millis


@pytest.mark.parametrize(
    ("text", "labels", "matches"),
    [
        ("zone=north", {"zone": "north"}, True),
        ("zone==north", {"zone": "north"}, True),
        ("zone=north", {"zone": "south"}, False),
        ("zone=north", {}, False),
        ("zone!=north", {"zone": "south"}, True),
        ("zone!=north", {}, True),
        ("zone!=north", {"zone": "north"}, False),
        ("arch in (arm64,amd64)", {"arch": "amd64"}, True),
        ("arch in (arm64,amd64)", {"arch": "riscv"}, False),
        ("arch notin (arm64, amd64)", {"arch": "riscv"}, True),
        ("arch notin (arm64)", {"arch": "arm64"}, False),
        ("gpu exists", {"gpu": "a100"}, True),
        ("gpu exists", {}, False),
        ("!gpu", {}, True),
        ("!gpu", {"gpu": "a100"}, False),
    ],
)
def test_constraint_matching(text, labels, matches):
    constraint = parse_constraint(text)
    assert constraint.matches(labels) is matches
    assert parse_constraint(str(constraint)) == constraint


@pytest.mark.parametrize("text", ["", "a b", "=x", "a in b", "a in (x y)", "a exists b", "!"])
def test_bad_constraints(text):
    with pytest.raises(ValueError, match=r"constraint|value list"):
        parse_constraint(text)


def test_sources():
    assert parse_source("/a/b").url == "file:///a/b"
    assert parse_source("file:///a").kind == "file"
    assert parse_source("ipfs://" + CID).url == "ipfs://" + CID
    assert parse_source("inline:base64:aGk=").inline_bytes() == b"hi"
    assert parse_source("inline:hi").inline_bytes() == b"hi"
    for bad in ("file://host/a", "relative/path", "http://", "inline:base64:!!"):
        with pytest.raises(ValueError, match=r"source|file|host|base64"):
            parse_source(bad)


def test_an_s3_archive_publisher_round_trips_and_files_stay_as_they_were():
    archive = {"type": "s3", "bucket": "b", "prefix": "p/", "format": "tar.gz"}
    spec = parse_spec({"engine": {"type": "noop"}, "publisher": archive})
    assert spec.publisher.to_dict() == archive
    files = {"type": "s3", "bucket": "b", "prefix": "p/"}  # no "format": job ids of old specs
    assert parse_spec({"engine": {"type": "noop"}, "publisher": files}).publisher.to_dict() == files
