"""Bacalhau v1 jobs translated into edgebac specs (issue 15): Bacalhau's own example shapes,
every field, keys in any case, refusals that name their field, Bacalhau's units, partitions,
and a property: whatever translates parses, and round-trips through the canonical form."""

from __future__ import annotations

import base64
import contextlib
import copy
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebac.eventlog.clock import Hlc
from edgebac.eventlog.encoding import canonical_body
from edgebac.scheduler.bacalhau import looks_like_bacalhau, translate
from edgebac.scheduler.bacalhau_env import bacalhau_env, execution_spec, partition_index
from edgebac.scheduler.bacalhau_units import (
    data_url,
    parse_humanize_bytes,
    parse_k8s_cpu,
    result_name,
)
from edgebac.scheduler.constraints import parse_constraint
from edgebac.scheduler.spec import SpecError, parse_spec
from edgebac.scheduler.state import Execution, Job

CID = "Qm" + "a" * 44
WASM_BYTES = b"\x00asm\x01\x00\x00\x00"
WASM_B64 = base64.b64encode(WASM_BYTES).decode()
IPFS = {"Type": "ipfs", "Params": {"CID": CID}}

# The shapes of Bacalhau's testdata/jobs/*.yaml and its docs' examples (written here again).
DOCKER_HELLO = """
name: A Simple Docker Job
type: batch
count: 1
tasks:
  - name: My main task
    engine:
      type: docker
      params:
        Image: busybox:1.37.0
        Entrypoint: [/bin/sh]
        Parameters: [-c, echo Hello Bacalhau!]
"""
DOCKER_OUTPUT_S3 = """
Name: Docker Job with Output
Type: batch
Namespace: default
Count: 1
Tasks:
  - Name: main
    Engine:
      Type: docker
      Params:
        Image: busybox:1.37.0
        Entrypoint: [/bin/sh]
        Parameters: [-c, ls /input_custom > /outputs/listing]
    InputSources:
      - Alias: input_custom
        Target: /input_custom
        Source:
          Type: s3
          Params:
            Bucket: bacalhau-test-datasets
            Key: integration-tests-do-not-delete/set1/
    Publisher:
      Type: local
    ResultPaths:
      - Name: /outputs
        Path: /outputs
"""
WASM_INLINE = f"""
Name: Wasm Job
Type: batch
Count: 1
Tasks:
  - Name: main
    Engine:
      Type: wasm
      Params:
        EntryModule: wasm.main
        Entrypoint: _start
    InputSources:
      - Target: /wasm.main
        Source:
          Type: inline
          Params:
            URL: |-
              data:application/wasm;base64,{WASM_B64[:8]}
              {WASM_B64[8:]}
"""
PARTITIONED = """
Name: partitioned
Type: batch
Count: 3
Tasks:
  - Name: main
    Engine: {Type: docker, Params: {Image: "busybox:1.37.0",
             Parameters: [sh, -c, "echo $BACALHAU_PARTITION_INDEX"]}}
    Resources: {CPU: 250m, Memory: 256Mb}
    Timeouts: {TotalTimeout: 120}
"""


def job(**fields: Any) -> dict[str, Any]:
    """A minimal valid Bacalhau docker job with `fields` merged in (Task fields under task)."""
    task = {"Name": "main", "Engine": {"Type": "docker", "Params": {"Image": "busybox:1"}}}
    task.update(fields.pop("task", {}))
    return {"Type": "batch", "Tasks": [task], **fields}


def docker(**params: Any) -> dict[str, Any]:
    """A job whose docker engine has `params` (Image `a` unless given)."""
    return job(task={"Engine": {"Type": "docker", "Params": {"Image": "a", **params}}})


def s3_publisher(**params: Any) -> dict[str, Any]:
    return job(task={"Publisher": {"Type": "s3", "Params": {"Bucket": "b", "Key": "k", **params}}})


def spec_of(data: Any, **kwargs: Any) -> dict[str, Any]:
    return translate(data, **kwargs).spec


def problems(data: Any, **kwargs: Any) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as caught:
        translate(data, **kwargs)
    return caught.value.problems


def test_docker_hello_lowercase_keys():
    spec = spec_of(yaml.safe_load(DOCKER_HELLO))
    assert spec["name"] == "A Simple Docker Job"
    assert spec["engine"] == {
        "type": "docker",
        "image": "busybox:1.37.0",
        "entrypoint": ["/bin/sh"],
        "args": ["-c", "echo Hello Bacalhau!"],
        "env": {},
    }
    assert spec["bacalhau"]["task"] == "My main task"
    assert spec["network"] == "none"  # Default: the node decides, and edgebac nodes say none
    assert parse_spec(spec).engine.image == "busybox:1.37.0"


def test_docker_with_s3_input_and_output_named_like_a_path():
    translation = translate(yaml.safe_load(DOCKER_OUTPUT_S3))
    spec = translation.spec
    assert spec["inputs"] == [
        {
            "source": "s3://bacalhau-test-datasets/integration-tests-do-not-delete/set1/",
            "target": "/input_custom",
        }
    ]
    assert spec["outputs"] == [{"name": "outputs", "path": "/outputs"}]
    assert spec["bacalhau"]["names"] == {"outputs": "/outputs"}
    assert spec["bacalhau"]["aliases"] == {"/input_custom": "input_custom"}
    assert spec["publisher"] == {"type": "local"}
    assert translation.warnings == ()


def test_wasm_entry_module_is_the_inline_source_mounted_there():
    spec = spec_of(yaml.safe_load(WASM_INLINE))
    # The data URL wrapped over two YAML lines still decodes; the module is not also an input.
    assert spec["engine"]["module"] == "inline:base64:" + WASM_B64
    assert spec["engine"]["entrypoint"] == "_start"
    assert spec["inputs"] == []
    assert parse_spec(spec).engine.module.inline_bytes() == WASM_BYTES


def test_partitioned_batch_with_resources_and_timeout():
    spec = spec_of(yaml.safe_load(PARTITIONED))
    assert spec["count"] == 3
    assert spec["resources"] == {"cpu": "250m", "memory": 256_000_000}
    assert spec["timeout_s"] == 120
    assert "entrypoint" not in spec["engine"]


@pytest.mark.parametrize(
    ("fields", "key", "expected"),
    [
        ({"Name": "n"}, "name", "n"),
        ({}, "name", ""),
        ({"Type": "ops"}, "type", "ops"),
        ({"Type": "ops", "Count": 0}, "count", 1),
        ({}, "count", 1),  # absent Count is 1
        ({"Count": 4}, "count", 4),
        (
            {"Constraints": [{"Key": "zone", "Operator": "=", "Values": ["eu"]}]},
            "constraints",
            ["zone=eu"],
        ),
        (
            {"Constraints": [{"Key": "zone", "Operator": "==", "Values": ["eu"]}]},
            "constraints",
            ["zone=eu"],
        ),
        (
            {"Constraints": [{"Key": "zone", "Operator": "!=", "Values": ["eu"]}]},
            "constraints",
            ["zone!=eu"],
        ),
        (
            {"Constraints": [{"Key": "arch", "Operator": "in", "Values": ["arm64", "amd64"]}]},
            "constraints",
            ["arch in (arm64,amd64)"],
        ),
        (
            {"Constraints": [{"Key": "arch", "Operator": "notin", "Values": ["x86"]}]},
            "constraints",
            ["arch notin (x86)"],
        ),
        ({"Constraints": [{"Key": "gpu", "Operator": "exists"}]}, "constraints", ["gpu exists"]),
        ({"Constraints": [{"Key": "gpu", "Operator": "!"}]}, "constraints", ["!gpu"]),
        (
            {"Constraints": [{"Key": "cores", "Operator": "gt", "Values": ["4"]}]},
            "constraints",
            ["cores gt 4"],
        ),
        (
            {"Constraints": [{"Key": "cores", "Operator": "lt", "Values": ["16"]}]},
            "constraints",
            ["cores lt 16"],
        ),
        ({"task": {"Env": {"MODE": "fast"}}}, "env", {"MODE": "fast"}),
        (
            {"task": {"Resources": {"CPU": "500m", "Memory": "512Mb", "Disk": "1Gb", "GPU": "1"}}},
            "resources",
            {"cpu": "500m", "memory": 512_000_000, "disk": 10**9, "gpu": 1},
        ),
        (
            {"task": {"Resources": {"CPU": "0.25", "Memory": "100mb", "Disk": "1GiB"}}},
            "resources",
            {"cpu": "250m", "memory": 100_000_000, "disk": 1 << 30},
        ),
        ({"task": {"Resources": {"CPU": "", "Memory": ""}}}, "resources", {}),
        ({"task": {"Network": {"Type": "None"}}}, "network", "none"),
        ({"task": {"Network": {"Type": "Default"}}}, "network", "none"),
        ({"task": {"Network": {"Type": "full"}}}, "network", "full"),
        ({"task": {"Network": {"Type": "Host"}}}, "network", "full"),
        ({"task": {"Network": {"Type": "Bridge"}}}, "network", "full"),
        ({"task": {"Timeouts": {"TotalTimeout": 300}}}, "timeout_s", 300),
        ({"task": {"Timeouts": {"ExecutionTimeout": 60, "QueueTimeout": 30}}}, "timeout_s", 90),
        ({"task": {"Publisher": {}}}, "publisher", {"type": "local"}),
        ({"task": {"Publisher": {"Type": "noop"}}}, "publisher", {"type": "local"}),
        ({"task": {"Publisher": {"Type": "ipfs"}}}, "publisher", {"type": "local"}),
    ],
)
def test_each_field(fields, key, expected):
    spec = spec_of(job(**fields))
    assert spec.get(key, None) == expected
    parse_spec(spec)


def test_s3_publisher_key_placeholders():
    spec = spec_of(s3_publisher(Key="r/{jobID}/{executionID}", Encoding="plain"))
    assert spec["publisher"] == {"type": "s3", "bucket": "b", "prefix": "r/{job_id}/{execution_id}"}


@pytest.mark.parametrize("encoding", [{}, {"Encoding": "gzip"}, {"Encoding": ""}])
def test_an_s3_publisher_uploads_one_archive_unless_plain(encoding):
    """Bacalhau's S3 publisher writes one .tar.gz per execution unless Encoding is plain."""
    spec = spec_of(s3_publisher(Key="r/{executionID}.tar.gz", **encoding))
    assert spec["publisher"] == {
        "type": "s3",
        "bucket": "b",
        "prefix": "r/{execution_id}.tar.gz",
        "format": "tar.gz",
    }
    assert parse_spec(spec).publisher.format == "tar.gz"


def test_absent_timeouts_keep_edgebac_default():
    assert "timeout_s" not in spec_of(job())
    assert parse_spec(spec_of(job())).timeout_s == 600


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            {"Type": "s3", "Params": {"Bucket": "b", "Key": "logs/2023-*"}},
            {"source": "s3://b/logs/2023-*", "target": "/in"},
        ),
        (
            {"Type": "urlDownload", "Params": {"URL": "https://example.org/x.csv"}},
            {"source": "https://example.org/x.csv", "target": "/in"},
        ),
        (
            {"Type": "urldownload", "Params": {"url": "http://example.org/x"}},
            {"source": "http://example.org/x", "target": "/in"},
        ),
        ({"Type": "ipfs", "Params": {"CID": CID}}, {"source": f"ipfs://{CID}", "target": "/in"}),
        (
            {"Type": "localDirectory", "Params": {"SourcePath": "/srv/data", "ReadWrite": False}},
            {"source": "file:///srv/data", "target": "/in"},
        ),
        (
            {"Type": "local", "Params": {"SourcePath": "/srv/data/../x"}},
            {"source": "file:///srv/x", "target": "/in"},
        ),
    ],
)
def test_input_sources(source, expected):
    spec = spec_of(job(task={"InputSources": [{"Source": source, "Target": "/in"}]}))
    assert spec["inputs"] == [expected]


def test_inline_input_is_a_file_at_its_target():
    data = "data:text/plain;base64," + base64.b64encode(b"hello\n").decode()
    plain = "data:,a%20b"
    spec = spec_of(
        job(
            task={
                "InputSources": [
                    {
                        "Source": {"Type": "inline", "Params": {"URL": data}},
                        "Target": "/inputs/hello.txt",
                    },
                    {
                        "Source": {"Type": "inline", "Params": {"URL": plain}},
                        "Target": "/other/ab.txt",
                    },
                ]
            }
        )
    )
    (hello, ab) = parse_spec(spec).inputs
    assert (hello.target, hello.name, hello.source.inline_bytes()) == (
        "/inputs",
        "hello.txt",
        b"hello\n",
    )
    assert (ab.target, ab.name, ab.source.inline_bytes()) == ("/other", "ab.txt", b"a b")


@pytest.mark.parametrize(
    ("mount", "entry", "module"),
    [
        (
            {"Type": "localDirectory", "Params": {"SourcePath": "/srv/mods"}},
            "/mods/m.wasm",
            "file:///srv/mods/m.wasm",
        ),
        ({"Type": "ipfs", "Params": {"CID": CID}}, "mods/m.wasm", f"ipfs://{CID}/m.wasm"),
        (
            {"Type": "urlDownload", "Params": {"URL": "https://h/x/m.wasm"}},
            "/mods/m.wasm",
            "https://h/x/m.wasm",
        ),
        (
            {"Type": "s3", "Params": {"Bucket": "b", "Key": "wasm/"}},
            "/mods/m.wasm",
            "s3://b/wasm/m.wasm",
        ),
        (
            {"Type": "urlDownload", "Params": {"URL": "https://h/x/m.wasm"}},
            "/mods",
            "https://h/x/m.wasm",
        ),
    ],
)
def test_entry_module_inside_a_mounted_source(mount, entry, module):
    engine = {"Type": "wasm", "Params": {"EntryModule": entry, "Parameters": ["a"]}}
    spec = spec_of(
        job(task={"Engine": engine, "InputSources": [{"Source": mount, "Target": "/mods"}]})
    )
    assert spec["engine"]["module"] == module
    assert spec["engine"]["args"] == ["a"]
    exact = entry == "/mods"
    assert len(spec["inputs"]) == (0 if exact else 1)  # the module's own mount is not an input


def test_docker_engine_params():
    params = {
        "image": "alpine:3",
        "entrypoint": [],
        "parameters": ["ls"],
        "environmentVariables": ["A=1", "B=x=y", "http_proxy=p"],
        "workingDirectory": "/work",
    }
    engine = spec_of(job(task={"Engine": {"type": "DOCKER", "params": params}}))["engine"]
    assert engine == {
        "type": "docker",
        "image": "alpine:3",
        "args": ["ls"],
        "env": {"A": "1", "B": "x=y", "http_proxy": "p"},
        "workdir": "/work",
    }


@pytest.mark.parametrize(
    "case", [str.lower, str.upper, lambda k: k, lambda k: k[0].lower() + k[1:]]
)
def test_keys_match_in_any_case(case):
    """Go's encoding/json matches struct fields case-insensitively; so must we."""

    def recase(value: Any) -> Any:
        if isinstance(value, dict):
            return {case(k): recase(v) for k, v in value.items()}
        if isinstance(value, list):
            return [recase(v) for v in value]
        return value

    original = yaml.safe_load(DOCKER_OUTPUT_S3)
    original["Tasks"][0]["Env"] = {"MODE": "x"}  # map keys are data: only struct fields fold
    recased = recase(original)
    recased[case("Tasks")][0][case("Env")] = {"MODE": "x"}
    assert spec_of(recased) == spec_of(original)


def test_later_spelling_wins_as_in_go():
    assert spec_of(job(name="first", Name="second"))["name"] == "second"


@pytest.mark.parametrize(
    ("data", "path", "fragment"),
    [
        (job(Type="daemon"), "Type", "daemon jobs"),
        (job(Type="service"), "Type", "not supported"),
        (job(Type=""), "Type", "required"),
        (job(Type="Batch"), "Type", "not a job type"),
        (job(Count=-1), "Count", "less than 0"),
        (job(Count=0), "Count", "0 stops"),
        (job(Type="ops", Count=2), "Count", "ops jobs"),
        (job(Count="one"), "Count", "not an integer"),
        (job(Count=1 << 63), "Count", "int64"),
        (job(Priority=-(1 << 64)), "Priority", "less than"),
        (
            job(task={"Timeouts": {"TotalTimeout": 1 << 70}}),
            "Tasks[0].Timeouts.TotalTimeout",
            "int64",
        ),
        (job(Name=5), "Name", "not a string"),
        (job(Bogus=1), "Bogus", "unknown field"),
        (job(ID="j-1"), "ID", "set by the server"),
        (job(State={"StateType": "Running"}), "State", "set by the server"),
        (job(Tasks=[]), "Tasks", "not a list of tasks"),
        (job(Labels={"a": 1}), "Labels", "map of strings"),
        (
            job(Constraints=[{"Key": "a", "Operator": "~", "Values": ["b"]}]),
            "Constraints[0].Operator",
            "not an operator",
        ),
        (job(Constraints=[{"Key": "a", "Operator": "in"}]), "Constraints[0].Values", "number of"),
        (
            job(Constraints=[{"Key": "a", "Operator": "gt", "Values": ["x"]}]),
            "Constraints[0]",
            "not a constraint",
        ),
        (job(task={"Name": ""}), "Tasks[0].Name", "required"),
        (job(task={"Oops": 1}), "Tasks[0].Oops", "unknown field"),
        (job(task={"Engine": None}), "Tasks[0].Engine", "is required"),
        (job(task={"Engine": {}}), "Tasks[0].Engine.Type", "is required"),
        (
            job(task={"InputSources": [{"Target": "/in"}]}),
            "Tasks[0].InputSources[0].Source",
            "is required",
        ),
        (
            job(task={"InputSources": [{"Source": IPFS}]}),
            "Tasks[0].InputSources[0].Target",
            "is required",
        ),
        (job(task={"Engine": {"Type": "flibble"}}), "Tasks[0].Engine.Type", "not an engine"),
        (docker(Image=""), "Tasks[0].Engine.Params.Image", "empty"),
        (docker(Imgae="b"), "Tasks[0].Engine.Params.Imgae", "unknown field"),
        (
            docker(EnvironmentVariables=["NOPE"]),
            "Tasks[0].Engine.Params.EnvironmentVariables[0]",
            "K=V",
        ),
        (
            docker(EnvironmentVariables=["BACALHAU_X=1"]),
            "Tasks[0].Engine.Params.EnvironmentVariables[0]",
            "BACALHAU_",
        ),
        (docker(WorkingDirectory="w"), "Tasks[0].Engine.Params.WorkingDirectory", "absolute"),
        (
            job(task={"Engine": {"Type": "wasm", "Params": {"EntryModule": "m.wasm"}}}),
            "Tasks[0].Engine.Params.EntryModule",
            "not the Target",
        ),
        (
            job(
                task={
                    "Engine": {
                        "Type": "wasm",
                        "Params": {"EntryModule": "m", "ImportModules": ["x"]},
                    },
                    "InputSources": [{"Target": "/m", "Source": IPFS}],
                }
            ),
            "Tasks[0].Engine.Params.ImportModules",
            "not supported",
        ),
        (
            job(task={"Engine": {"Type": "wasm", "Params": {"EntryModule": {"Source": {}}}}}),
            "Tasks[0].Engine.Params.EntryModule",
            "older form",
        ),
        (job(task={"Env": {"lower": "x"}}), "Tasks[0].Env.lower", "upper case"),
        (job(task={"Env": {"BACALHAU_JOB_ID": "x"}}), "Tasks[0].Env.BACALHAU_JOB_ID", "BACALHAU_"),
        (job(task={"Env": {"HOST": "env:HOME"}}), "Tasks[0].Env.HOST", "host variable"),
        (job(task={"Env": {"E": ""}}), "Tasks[0].Env.E", "empty value"),
        (
            job(task={"Network": {"Type": "HTTP", "Domains": ["example.org"]}}),
            "Tasks[0].Network.Type",
            "HTTP networks",
        ),
        (
            job(task={"Network": {"Type": "Full", "Domains": ["example.org"]}}),
            "Tasks[0].Network.Domains",
            "HTTP networks",
        ),
        (
            job(task={"Network": {"Type": "Host", "Ports": [{"Name": "web", "Static": 8080}]}}),
            "Tasks[0].Network.Ports",
            "port mappings",
        ),
        (job(task={"Network": {"Type": "Wormhole"}}), "Tasks[0].Network.Type", "not a network"),
        (job(task={"Network": {"Type": 1}}), "Tasks[0].Network.Type", "not a string"),
        (job(task={"Resources": {"Memory": "lots"}}), "Tasks[0].Resources.Memory", "not a size"),
        (job(task={"Resources": {"Memory": "1kb"}}), "Tasks[0].Resources.Memory", "6Mi"),
        (job(task={"Resources": {"CPU": "fast"}}), "Tasks[0].Resources.CPU", "not a CPU"),
        (job(task={"Resources": {"CPU": 2}}), "Tasks[0].Resources.CPU", "not a string"),
        (job(task={"Resources": {"GPU": "two"}}), "Tasks[0].Resources.GPU", "GPUs"),
        (job(task={"Resources": {"GPU": "²"}}), "Tasks[0].Resources.GPU", "GPUs"),
        (
            job(task={"Timeouts": {"TotalTimeout": 10, "ExecutionTimeout": 20}}),
            "Tasks[0].Timeouts.ExecutionTimeout",
            "more than TotalTimeout",
        ),
        (
            job(task={"Timeouts": {"TotalTimeout": -1}}),
            "Tasks[0].Timeouts.TotalTimeout",
            "less than 0",
        ),
        (
            job(task={"ResultPaths": [{"Name": "out", "Path": "rel"}]}),
            "Tasks[0].ResultPaths[0].Path",
            "absolute",
        ),
        (job(task={"ResultPaths": [{"Path": "/out"}]}), "Tasks[0].ResultPaths[0].Name", "required"),
        (job(task={"Publisher": {"Type": "s3managed"}}), "Tasks[0].Publisher.Type", "s3managed"),
        (job(task={"Publisher": {"Type": "dropbox"}}), "Tasks[0].Publisher.Type", "not supported"),
        (
            job(task={"Publisher": {"Type": "local", "Params": {"X": 1}}}),
            "Tasks[0].Publisher.Params.X",
            "unknown field",
        ),
        (s3_publisher(Key="k/{nodeID}"), "Tasks[0].Publisher.Params.Key", "{nodeID}"),
        (s3_publisher(Endpoint="http://x"), "Tasks[0].Publisher.Params.Endpoint", "not supported"),
        (s3_publisher(Encoding="zip"), "Tasks[0].Publisher.Params.Encoding", "gzip or plain"),
    ],
)
def test_refusals_name_their_field(data, path, fragment):
    found = problems(data)
    assert any(p == path and fragment in m for p, m in found), found


def source_problem(source: dict[str, Any], target: str = "/in") -> list[tuple[str, str]]:
    return problems(job(task={"InputSources": [{"Source": source, "Target": target}]}))


@pytest.mark.parametrize(
    ("source", "field", "fragment"),
    [
        ({"Type": "s3", "Params": {"Bucket": "b", "Filter": ".*csv"}}, "Params.Filter", "Filter"),
        ({"Type": "s3", "Params": {"Bucket": "b", "VersionID": "v1"}}, "Params.VersionID", "Vers"),
        (
            {"Type": "s3", "Params": {"Bucket": "b", "ChecksumSHA256": "ab"}},
            "Params.ChecksumSHA256",
            "not supported",
        ),
        (
            {"Type": "s3", "Params": {"Bucket": "b", "Endpoint": "http://minio"}},
            "Params.Endpoint",
            "own S3 endpoint",
        ),
        (
            {"Type": "s3", "Params": {"Bucket": "b", "Partition": {"Type": "object"}}},
            "Params.Partition",
            "partitioning",
        ),
        ({"Type": "s3", "Params": {"Key": "k"}}, "Params.Bucket", "required"),
        (
            {"Type": "local", "Params": {"SourcePath": "/srv", "ReadWrite": True}},
            "Params.ReadWrite",
            "read-write",
        ),
        (
            {"Type": "local", "Params": {"SourcePath": "/srv", "ReadWrite": "true"}},
            "Params.ReadWrite",
            "read-write",
        ),
        (
            {"Type": "local", "Params": {"SourcePath": "/srv", "CreateAs": "dir"}},
            "Params.CreateAs",
            "creating",
        ),
        ({"Type": "local", "Params": {"SourcePath": "srv"}}, "Params.SourcePath", "absolute"),
        ({"Type": "local", "Params": {"Path": "/srv"}}, "Params.Path", "unknown field"),
        ({"Type": "urlDownload", "Params": {"URL": "ftp://h/x"}}, "Params.URL", "http(s)"),
        ({"Type": "ipfs", "Params": {"CID": "nope"}}, "", "content id"),
        ({"Type": "inline", "Params": {"URL": "hello"}}, "Params.URL", "data: URL"),
        (
            {"Type": "inline", "Params": {"URL": "data:application/gzip;base64,AAAA"}},
            "Params.URL",
            "gzip",
        ),
        ({"Type": "s3PreSigned", "Params": {}}, "Type", "s3PreSigned"),
        ({"Type": "gopher", "Params": {}}, "Type", "not an input source"),
    ],
)
def test_source_refusals_name_their_field(source, field, fragment):
    found = source_problem(source)
    if field == "":  # what only edgebac's own source parser refuses, named in its terms
        assert any(fragment in m for _, m in found), found
        return
    path = f"Tasks[0].InputSources[0].Source.{field}"
    assert any(p == path and fragment in m for p, m in found), found


def test_an_s3_partition_of_type_none_is_no_partition():
    params = {"Bucket": "b", "Key": "k", "Partition": {"type": "none", "Pattern": ".*"}}
    spec = spec_of(
        job(task={"InputSources": [{"Source": {"Type": "s3", "Params": params}, "Target": "/in"}]})
    )
    assert spec["inputs"] == [{"source": "s3://b/k", "target": "/in"}]


def test_inline_file_right_under_root_is_refused_unless_it_is_the_module():
    found = source_problem({"Type": "inline", "Params": {"URL": "data:,x"}}, "/x.txt")
    assert found == [("Tasks[0].InputSources[0].Target", found[0][1])]
    assert "folder" in found[0][1]


def test_every_problem_reported_at_once():
    data = job(Type="daemon", Count=-1, task={"Network": {"Type": "HTTP"}, "Env": {"x": "1"}})
    paths = {p for p, _ in problems(data)}
    assert {"Type", "Count", "Tasks[0].Network.Type", "Tasks[0].Env.x"} <= paths


def test_api_bodies_may_carry_server_fields_which_are_ignored_with_a_warning():
    data = job(ID="", State={"StateType": "Undefined"}, Version=3, CreateTime=0)
    translation = translate(data, from_api=True)
    assert translation.warnings == ("job version is ignored when submitting a job",)
    assert {p for p, _ in problems(data)} == {"ID", "State", "Version", "CreateTime"}


def test_server_field_warnings_are_bacalhaus_words():
    """As models.Job.SanitizeSubmission says them (Bacalhau's API docs quote `create time`)."""
    data = job(ID="j-1", State={"StateType": "Running"}, Revision=2, CreateTime=1234)
    translation = translate(data | {"ModifyTime": 5}, from_api=True)
    assert translation.warnings == (
        "job ID is ignored when submitting a batch job",
        "job state is ignored when submitting a job",
        "job revision is ignored when submitting a job",
        "job create time is ignored when submitting a job",
        "job modify time is ignored when submitting a job",
    )


def test_warnings_for_what_runs_differently():
    data = job(
        Meta={"bacalhau.org/requester.id": "x", "team": "a"},
        Tasks=[job()["Tasks"][0], job()["Tasks"][0]],
    )
    data["Tasks"][0]["Publisher"] = {"Type": "ipfs"}
    translation = translate(data)
    assert translation.spec["bacalhau"]["meta"] == {"team": "a"}
    text = " | ".join(translation.warnings)
    assert "reserved" in text
    assert "only one task" in text
    assert "IPFS daemon" in text


def test_meta_labels_namespace_priority_are_kept_for_echo():
    data = job(Namespace="lab", Priority=5, Labels={"team": "x"}, Meta={"owner": "me"})
    data["Tasks"][0]["Meta"] = {"step": "1"}
    meta = parse_spec(spec_of(data)).bacalhau
    assert meta is not None
    assert (meta.namespace, meta.priority, meta.labels, meta.meta, meta.task_meta) == (
        "lab",
        5,
        {"team": "x"},
        {"owner": "me"},
        {"step": "1"},
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"Type": "batch", "Tasks": []}, True),
        ({"tasks": []}, True),
        ({"Name": "x"}, True),
        ({"name": "x", "engine": {"type": "noop"}}, False),
        ({"type": "batch", "engine": {"type": "noop"}}, False),
        ({"name": "x"}, False),
        ([], False),
    ],
)
def test_looks_like_bacalhau(data, expected):
    assert looks_like_bacalhau(data) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512Mb", 512 * 10**6),
        ("512mb", 512 * 10**6),
        ("512MB", 512 * 10**6),
        ("1Gb", 10**9),
        ("1GiB", 1 << 30),
        ("1gi", 1 << 30),
        ("100", 100),
        ("1.5kb", 1500),
        ("1,000kb", 10**6),
        ("2 TB", 2 * 10**12),
        ("1Mib", 1 << 20),
        ("lots", None),
        ("1xb", None),
        ("9" * 30 + "gb", None),  # go-humanize: too large
        ("", None),
    ],
)
def test_humanize_sizes(text, expected):
    assert parse_humanize_bytes(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500m", 500),
        ("0.25", 250),
        ("2", 2000),
        ("1.5", 1500),
        (" 100M ", 100),
        ("x", None),
        ("0.0005", None),
        ("-1", None),
        ("9" * 30, None),
    ],
)
def test_k8s_cpu(text, expected):
    assert parse_k8s_cpu(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("data:,hi%21", ("text/plain", b"hi!")),
        ("data:text/csv;base64,YSxi", ("text/csv", b"a,b")),
        ("data:;base64,YS\n xi", ("text/plain", b"a,b")),
        ("data:text/plain;base64,@@", None),
        ("http://x", None),
    ],
)
def test_data_urls(text, expected):
    assert data_url(text) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("/outputs", "outputs"),
        ("outputs", "outputs"),
        ("my results", "my_results"),
        ("/a/b/", "a_b"),
        ("..", "output"),
        ("/", "output"),
        (".hidden", "hidden"),
    ],
)
def test_result_names(name, expected):
    assert result_name(name) == expected


def test_result_names_never_collide_with_results_files_or_each_other():
    paths = [{"Name": n, "Path": f"/o{i}"} for i, n in enumerate(["stdout", "/x", "x", "exitCode"])]
    outputs = spec_of(job(task={"ResultPaths": paths}))["outputs"]
    assert [o["name"] for o in outputs] == ["stdout_2", "x", "x_2", "exitCode_2"]
    parse_spec(spec_of(job(task={"ResultPaths": paths})))


# -- partitions and variables ------------------------------------------------------------

NODE = bytes(32)


def bacalhau_job(count: int, job_type: str = "batch") -> Job:
    spec = parse_spec(spec_of(job(Type=job_type, Count=count)))
    return Job("j-" + "0" * 16, NODE, spec.to_dict(), spec, Hlc(1))


def add(j: Job, name: str, at: int, status: str = "running", ended: int | None = None) -> Execution:
    execution = Execution(name, j.id, NODE, 0, Hlc(at), status=status)
    execution.ended_hlc = Hlc(ended) if ended is not None else None
    j.executions[name] = execution
    return execution


def indices(j: Job) -> dict[str, int]:
    return {name: partition_index(j, e) for name, e in j.executions.items()}


def test_partitions_in_acceptance_order():
    j = bacalhau_job(3)
    for name, at in (("c", 30), ("a", 10), ("b", 20)):
        add(j, name, at)
    assert indices(j) == {"a": 0, "b": 1, "c": 2}


def test_a_retry_takes_the_partition_of_the_execution_that_failed():
    j = bacalhau_job(3)
    add(j, "a", 10, "completed", 15)
    add(j, "b", 10, "failed", 16)
    add(j, "c", 11, "running")
    add(j, "d", 20, "running")  # accepted after b failed: takes b's partition
    assert indices(j) == {"a": 0, "b": 1, "c": 2, "d": 1}


def test_a_failure_after_the_acceptance_does_not_move_partitions():
    j = bacalhau_job(2)
    add(j, "a", 10, "failed", 30)
    add(j, "b", 10, "running")
    add(j, "c", 20, "running")  # both partitions held when accepted: surplus shares a's
    assert indices(j) == {"a": 0, "b": 1, "c": 0}


def test_ops_jobs_have_one_partition_per_node():
    j = bacalhau_job(0, "ops")
    e = add(j, "a", 10)
    add(j, "b", 11)
    assert indices(j) == {"a": 0, "b": 0}
    assert bacalhau_env(j, e)["BACALHAU_PARTITION_COUNT"] == "0"


def test_execution_spec_sets_bacalhau_variables_over_the_tasks():
    j = bacalhau_job(2)
    add(j, "first", 10)
    e = add(j, "second", 11)
    spec = execution_spec(j, e)
    assert spec.env == {
        "BACALHAU_JOB_ID": j.id,
        "BACALHAU_EXECUTION_ID": "second",
        "BACALHAU_JOB_TYPE": "batch",
        "BACALHAU_PARTITION_INDEX": "1",
        "BACALHAU_PARTITION_COUNT": "2",
    }
    assert j.spec is not None
    assert j.spec.env == {}  # the job's own spec is unchanged


def test_edgebac_jobs_get_no_bacalhau_variables():
    spec = parse_spec({"engine": {"type": "noop"}})
    j = Job("j-" + "1" * 16, NODE, spec.to_dict(), spec, Hlc(1))
    assert execution_spec(j, add(j, "a", 10)) is spec


# -- property: what translates parses and round-trips -----------------------------------

names = st.text(alphabet="abcdefghij_", min_size=1, max_size=8).filter(lambda n: n[0] != "_")
upper = st.text(alphabet="ABCDEFGHIJ_", min_size=1, max_size=8).filter(
    lambda n: n[0] != "_" and not n.startswith("BACALHAU")
)
constraints = st.builds(
    lambda k, op, v: {"Key": k, "Operator": op, "Values": v},
    names,
    st.sampled_from(["=", "==", "!="]),
    st.lists(names, min_size=1, max_size=1),
) | st.builds(lambda k, op: {"Key": k, "Operator": op}, names, st.sampled_from(["exists", "!"]))
sources = st.one_of(
    st.builds(lambda b, k: {"Type": "s3", "Params": {"Bucket": b, "Key": k}}, names, names),
    st.builds(lambda p: {"Type": "urlDownload", "Params": {"URL": f"https://h.org/{p}"}}, names),
    st.just({"Type": "ipfs", "Params": {"CID": CID}}),
    st.builds(lambda p: {"Type": "localDirectory", "Params": {"SourcePath": f"/srv/{p}"}}, names),
    st.builds(
        lambda data: {
            "Type": "inline",
            "Params": {"URL": "data:;base64," + base64.b64encode(data).decode()},
        },
        st.binary(max_size=30),
    ),
)
tasks = st.fixed_dictionaries(
    {
        "Name": names,
        "Engine": st.builds(
            lambda image, args, env: {
                "Type": "docker",
                "Params": {
                    "Image": image,
                    "Parameters": args,
                    "EnvironmentVariables": [f"{k}=v" for k in env],
                },
            },
            names,
            st.lists(st.text(max_size=5), max_size=3),
            st.lists(upper, max_size=2),
        ),
    },
    optional={
        "Env": st.dictionaries(upper, names, max_size=2),
        "InputSources": st.lists(sources, max_size=3).map(
            lambda s: [{"Source": x, "Target": f"/in/{i}/f.txt"} for i, x in enumerate(s)]
        ),
        "ResultPaths": st.lists(names, max_size=3, unique=True).map(
            lambda ns: [{"Name": "/" + n, "Path": f"/out/{n}"} for n in ns]
        ),
        "Resources": st.fixed_dictionaries(
            {},
            optional={
                "CPU": st.sampled_from(["500m", "0.5", "2", "100m"]),
                "Memory": st.sampled_from(["512Mb", "1Gb", "100mb", "1GiB", "64Mi"]),
                "Disk": st.sampled_from(["1Gb", "10GiB", "500mb"]),
                "GPU": st.sampled_from(["0", "1", "2"]),
            },
        ),
        "Network": st.builds(
            lambda t: {"Type": t}, st.sampled_from(["Default", "None", "Full", "host"])
        ),
        "Timeouts": st.builds(lambda t: {"TotalTimeout": t}, st.integers(1, 10_000)),
        "Publisher": st.sampled_from([{}, {"Type": "local"}, {"Type": "noop"}, {"Type": "ipfs"}]),
    },
)
jobs = st.fixed_dictionaries(
    {"Type": st.sampled_from(["batch", "ops"]), "Tasks": st.lists(tasks, min_size=1, max_size=1)},
    optional={
        "Name": st.text(max_size=10),
        "Namespace": names,
        "Count": st.integers(1, 5),
        "Priority": st.integers(-5, 100),
        "Labels": st.dictionaries(names, names, max_size=2),
        "Meta": st.dictionaries(names, st.text(max_size=5), max_size=2),
        "Constraints": st.lists(constraints, max_size=3),
    },
).map(lambda d: {**d, "Count": 1} if d["Type"] == "ops" and "Count" in d else d)


@settings(max_examples=200, deadline=None)
@given(jobs)
def test_translated_specs_parse_and_round_trip(data):
    translated = translate(copy.deepcopy(data)).spec
    spec = parse_spec(translated)
    assert parse_spec(spec.to_dict()) == spec
    assert spec.to_dict()["bacalhau"]["task"] == data["Tasks"][0]["Name"]
    for text in spec.to_dict()["constraints"]:
        assert str(parse_constraint(text)) == text


def test_a_huge_count_does_not_make_partitions_slow():
    j = bacalhau_job(10**15)  # any client picks the count: nothing counts up to it
    e = add(j, "a", 10)
    assert partition_index(j, e) == 0


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("cores gt 4", {"cores": "8"}, True),
        ("cores gt 4", {"cores": "4"}, False),
        ("cores lt 4", {"cores": "-1"}, True),
        ("cores>4", {"cores": "many"}, False),  # as Kubernetes: both sides must be integers
        ("cores<4", {}, False),
    ],
)
def test_comparison_constraints(text, labels, expected):
    assert parse_constraint(text).matches(labels) is expected


@pytest.mark.parametrize("text", ["a" + " " * 200_000 + "x", "a gt" + " " * 200_000 + "x"])
def test_comparison_constraints_parse_in_linear_time(text):
    """A hostile client's selector of spaces must not make the regex backtrack quadratically."""
    import time

    started = time.monotonic()
    with pytest.raises(ValueError, match="not a constraint"):
        parse_constraint(text)
    assert time.monotonic() - started < 2


def test_many_result_paths_of_one_name_translate_quickly():
    import time

    paths = [{"Name": "out", "Path": f"/o/{i}"} for i in range(20_000)]
    started = time.monotonic()
    outputs = spec_of(job(task={"ResultPaths": paths}))["outputs"]
    assert time.monotonic() - started < 5
    assert len({o["name"] for o in outputs}) == 20_000


def test_submissions_as_the_go_cli_and_the_sdk_send_them():
    from edgebac.scheduler.bacalhau import translate_submission

    go_cli = {
        "Namespace": "",
        "Credential": None,
        "IdempotencyToken": "",
        "Force": False,
        "Job": {**job(), "ID": "", "State": {"StateType": "Undefined"}, "Version": 0},
    }
    sdk = {"Job": job(), "namespace": "default", "idempotencyToken": "t"}
    assert translate_submission(go_cli).spec == translate_submission(sdk).spec == spec_of(job())
    with pytest.raises(SpecError) as caught:
        translate_submission({"Job": job(Count=-1), "Extra": 1})
    assert {p for p, _ in caught.value.problems} == {"Extra"}
    with pytest.raises(SpecError) as caught:
        translate_submission({"Job": job(Count=-1, task={"Name": ""})})
    assert {p for p, _ in caught.value.problems} == {"Job.Count", "Job.Tasks[0].Name"}
    with pytest.raises(SpecError) as caught:
        translate_submission({})
    assert caught.value.problems == [("Job", "is required")]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


def slots(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) in a nested value, to replace one with junk."""
    found: list[tuple[Any, Any]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        found.append((value, key))
        if isinstance(item, dict | list):
            found += slots(item)
    return found


@settings(max_examples=300, deadline=None)
@given(jobs, json_values, st.data())
def test_any_value_anywhere_is_a_spec_or_a_spec_error(data, junk, draw):
    """Hostile input never escapes as anything but SpecError (the API's 400)."""
    data = copy.deepcopy(data)  # hypothesis replays the drawn value: never change it
    container, key = draw.draw(st.sampled_from(slots(data)))
    container[key] = junk
    for from_api in (False, True):
        with contextlib.suppress(SpecError):
            spec = parse_spec(translate(copy.deepcopy(data), from_api=from_api).spec)
            canonical_body({"spec": spec.to_dict()})  # what parses can be signed into an event
