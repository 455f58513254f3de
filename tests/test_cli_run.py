"""`docker run` / `wasm run` flag parsing: pure functions, tested from tables."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from edgebac.cli.run import job_spec, module_source, named_input, split_input, split_output
from edgebac.errors import BadRequest
from edgebac.scheduler.spec import parse_spec
from tests.procs import clean_env, edgebac_argv, nodes_fixture, run_edgebac
from tests.test_cli_errors import assert_one_line_error

nodes = nodes_fixture()
WASM = Path(__file__).resolve().parent.parent / "fixtures" / "wasm"


@pytest.mark.parametrize(
    ("text", "source", "target"),
    [
        ("s3://mybucket/logs-2023-04*:/input", "s3://mybucket/logs-2023-04*", "/input"),
        ("http://host:8080/x.csv:/in/x", "http://host:8080/x.csv", "/in/x"),
        ("https://host/a:b/c:/in", "https://host/a:b/c", "/in"),
        ("/srv/data:/data", "/srv/data", "/data"),
        ("file:///srv/data:/data", "file:///srv/data", "/data"),
        ("s3://bucket/key", "s3://bucket/key", "/inputs"),
        ("file:///srv/data", "file:///srv/data", "/inputs"),
        ("/srv/data", "/srv/data", "/inputs"),
        ("inline:hello:/in", "inline:hello", "/in"),
        ("s3://b/k:/", "s3://b/k", "/"),
    ],
)
def test_split_input_at_the_last_colon_starting_an_absolute_path(text, source, target):
    assert split_input(text) == {"source": source, "target": target}


def test_split_output_and_spec():
    assert split_output("apples:/output_folder") == {"name": "apples", "path": "/output_folder"}
    for bad in ("apples", ":/x", "apples:"):
        with pytest.raises(BadRequest):
            split_output(bad)
    spec = job_spec(
        {"type": "docker", "image": "busybox", "args": ["ls"]},
        {
            "inputs": ("s3://b/p*:/in",),
            "outputs": ("out:/out",),
            "env": ("A=1", "B=x=y"),
            "network": "none",
            "cpu": "500m",
            "memory": "64Mi",
            "timeout": 30.0,
            "concurrency": 2,
        },
    )
    parsed = parse_spec(spec)
    assert parsed.env == {"A": "1", "B": "x=y"}
    assert (parsed.count, parsed.timeout_s, parsed.resources.memory_bytes) == (2, 30, 64 << 20)
    assert parsed.inputs[0].source.url == "s3://b/p*"


def test_module_source_inlines_local_files_only(tmp_path):
    module = tmp_path / "m.wasm"
    module.write_bytes(b"\0asm\1\0\0\0")
    assert (
        module_source(str(module)) == "inline:base64:" + base64.b64encode(b"\0asm\1\0\0\0").decode()
    )
    assert module_source("s3://b/m.wasm") == "s3://b/m.wasm"
    assert module_source("/not/here.wasm") == "/not/here.wasm"
    module.write_bytes(b"\0asm" + b"x" * (600 << 10))
    with pytest.raises(BadRequest, match="too big to send inline"):
        module_source(str(module))


def test_module_source_refuses_what_no_node_can_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "prog.c").write_text("int main() { return 0; }\n")
    with pytest.raises(BadRequest, match=r"^prog.c: not a WebAssembly module"):
        module_source("prog.c")
    with pytest.raises(BadRequest, match=r"^nope.wasm: no such file"):
        module_source("nope.wasm")
    (tmp_path / "dir.wasm").mkdir()
    with pytest.raises(BadRequest, match=r"^dir.wasm: is a directory"):
        module_source("dir.wasm")


def test_wasm_run_of_a_missing_or_non_wasm_file_says_so(tmp_path):
    text = tmp_path / "prog.wasm"
    text.write_text("(module)\n")
    for module, words in ((tmp_path / "nope.wasm", "no such file"), (text, "not a WebAssembly")):
        relative = module.relative_to(tmp_path.parent)
        argv = edgebac_argv("wasm", "run", "--api", "http://127.0.0.1:9", relative)
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, env=clean_env(), cwd=tmp_path.parent
        )
        line = assert_one_line_error(result, str(relative), words)
        assert "not a source" not in line


def test_bad_flags_are_readable_errors():
    bad = run_edgebac("docker", "run", "-o", "nopath", "--api", "http://127.0.0.1:9", "img")
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: -o 'nopath': an output volume is NAME:PATH")


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("inline:a,b:/in/data.csv", {"source": "inline:a,b", "target": "/in", "name": "data.csv"}),
        ("inline:a,b:/in", {"source": "inline:a,b", "target": "/in"}),
        ("inline:a,b", {"source": "inline:a,b", "target": "/inputs"}),
        ("inline:a:/data.csv", {"source": "inline:a", "target": "/data.csv"}),
        ("s3://b/k:/in/data.csv", {"source": "s3://b/k", "target": "/in/data.csv"}),
    ],
)
def test_an_inline_input_may_name_its_file(text, expect):
    assert named_input(text) == expect
    assert parse_spec({"engine": {"type": "noop"}, "inputs": [expect]})


def test_a_named_inline_input_reaches_the_job_by_that_name(nodes, tmp_path):
    node = nodes.start(tmp_path / "node")
    ran = run_edgebac(
        "wasm", "run", "--api", node.url, "--wait", "--output", "json",
        "-i", "inline:hello:/in/data.csv", "-o", "out:/out", WASM / "io.wasm", "/in", "/out",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    view = json.loads(ran.stdout)
    got = run_edgebac("job", "get", view["id"], "--output-dir", tmp_path / "got", "--api", node.url)
    assert got.returncode == 0, got.stderr
    (execution_id,) = view["executions"]
    listing = (tmp_path / "got" / execution_id / "out" / "listing.txt").read_text()
    assert listing.startswith("data.csv 5 "), listing
