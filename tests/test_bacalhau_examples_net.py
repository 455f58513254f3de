"""Bacalhau's own example job specs (fixtures/bacalhau/examples, verbatim from its repository
and docs) run against a real 3-node edgebac network (issue 15): each supported one through
`edgebac job run FILE` and through `PUT /api/v1/orchestrator/jobs`, with real Docker, the real
S3 server and a loopback HTTP server; each one using what edgebac refuses gets a 400 naming the
field, and nothing is stored.

Offline, only values change, never a spec's shape: the public images it names are the busybox
test image tagged so (with a /bin/bash that runs busybox's sh, as the examples call bash), its
buckets are buckets of the loopback S3 server, its URL and CID are a loopback server's and an
upload's."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgebac.cli.content import CAR, UPLOAD_PATH, pack_car
from tests.httpfix import file_server
from tests.netfix import info, network_key, start_network, wait_converged
from tests.procs import NodeProcess, Nodes, run_edgebac, wait_for
from tests.test_bacalhau_api_net import ORC, call
from tests.test_uploads_net import signed, upload

EXAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "bacalhau" / "examples"
# The public images the examples name: all the offline busybox image, plus a /bin/bash.
IMAGES = ("ubuntu:latest", "ubuntu", "busybox:1.37.0")
SET1 = {"integration-tests-do-not-delete/set1/a.txt": b"a\n"}
SET1["integration-tests-do-not-delete/set1/b.txt"] = b"b\n"
CSV = b"id,name\n1,one\n2,two\n"
IPFS_FILE = b"from the content store\n"
DOCS_CID = "QmZ4tDuvesekSs4qM5ZBKpXiZGun7S2CYtEZRB3DYXkjGx"
DOCS_URL = "https://example.com/data.csv"


@dataclass
class Net:
    nodes: list[NodeProcess]
    site: str  # the loopback HTTP server's base URL
    cid: str  # a folder holding file.txt, uploaded to the first node's store
    s3: Any  # boto3 client of the S3 server

    @property
    def by_id(self) -> dict[str, NodeProcess]:
        return {info(n)["id"]: n for n in self.nodes}


def tag_offline_images(base: str, tmp: Path) -> None:
    """`docker build` from the local busybox image only (no registry): bash is its sh (a
    script, since busybox has no `bash` applet)."""
    bash = "printf '#!/bin/sh\\nexec /bin/sh \"$@\"\\n' > /bin/bash && chmod +x /bin/bash"
    (tmp / "Dockerfile").write_text(f"FROM {base}\nRUN {bash}\n")
    tags = [arg for image in IMAGES for arg in ("-t", image)]
    subprocess.run(
        ["docker", "build", "-q", "--pull=false", *tags, str(tmp)],
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def net(tmp_path_factory, s3_server, busybox_image):
    tmp = tmp_path_factory.mktemp("bacalhau-examples")
    tag_offline_images(busybox_image, tmp)
    s3 = s3_server.client()
    for bucket in ("bacalhau-test-datasets", "my-bucket"):
        s3.create_bucket(Bucket=bucket)
    for key, body in SET1.items():
        s3.put_object(Bucket="bacalhau-test-datasets", Key=key, Body=body)
    s3.put_object(Bucket="my-bucket", Key="datasets/sample.csv", Body=CSV)
    site = tmp / "site"
    site.mkdir()
    (site / "data.csv").write_bytes(CSV)
    policy = tmp / "policy.yaml"
    policy.write_text("engines: [docker, wasm, noop]\nurls: [127.0.0.1]\n")
    nodes = Nodes()
    try:
        with file_server(site) as site_url, pytest.MonkeyPatch.context() as env:
            for name, value in s3_server.env.items():  # the nodes' S3 is the loopback server
                env.setenv(name, value)
            extra = ("--network-key", str(network_key(tmp)), "--policy", str(policy))
            started = start_network(nodes, tmp, 3, *extra)
            wait_converged(started, {info(n)["id"]: 1 for n in started})
            yield Net(started, site_url, upload_folder(started[0], tmp), s3)
    finally:
        nodes.kill_all()


def upload_folder(node: NodeProcess, tmp: Path) -> str:
    """The CID of a folder holding file.txt, as the IPFS example's CID holds it."""
    folder = tmp / "ipfs"
    folder.mkdir()
    (folder / "file.txt").write_bytes(IPFS_FILE)
    car = io.BytesIO()
    pack_car(folder, car)
    body = car.getvalue()
    status, answer = upload(node, body, signed(UPLOAD_PATH, body) | {"Content-Type": CAR})
    assert status == 201, answer
    return answer["cid"]


def offline(net: Net, name: str, tmp: Path) -> Path:
    """The example with its internet values (URL, CID) pointed at loopback; shape untouched."""
    text = (EXAMPLES / name).read_text()
    for theirs, ours in ((DOCS_URL, f"{net.site}/data.csv"), (DOCS_CID, net.cid)):
        text = text.replace(theirs, ours)
    path = tmp / name
    path.write_text(text)
    return path


def ended(node: NodeProcess, job_id: str) -> dict[str, Any]:
    """The job's edgebac view once it ended (on a node it may still be gossiping to)."""

    def done() -> dict[str, Any] | None:
        status, got = node.get_json(f"/api/v1/jobs/{job_id}?events=0")
        assert status in (200, 404), got
        if status == 404 or got["status"] not in ("completed", "failed", "canceled"):
            return None
        return got

    return wait_for(done, 60, f"job {job_id} to end")


def run_cli(net: Net, path: Path) -> str:
    """`edgebac job run FILE` as a Bacalhau user types it; the job's id."""
    ran = run_edgebac("job", "run", path, "--api", net.nodes[0].url, "--output", "json")
    assert ran.returncode == 0, ran.stderr
    return json.loads(ran.stdout)["job_id"]


def run_put(net: Net, path: Path) -> str:
    """The file as Bacalhau's clients PUT it: `{"Job": <the file's job>}`."""
    job = yaml.safe_load(path.read_text())
    status, answer = call(net.nodes[1], "PUT", f"{ORC}/jobs", {"Job": job})
    assert status == 200, answer
    return answer["JobID"]


def both(net: Net, path: Path) -> list[tuple[dict[str, Any], list[Path]]]:
    """Run the example both ways at once; each ended job's view and its results folders."""
    with ThreadPoolExecutor(2) as pool:
        ids = list(pool.map(lambda run: run(net, path), (run_cli, run_put)))
    by_id, out = net.by_id, []
    for job_id in ids:
        job = ended(net.nodes[0], job_id)
        folders = [
            by_id[e["node"]].data_dir / "work" / "results" / e["id"]
            for e in job["executions"].values()
            if e.get("status") == "completed"
        ]
        out.append((job, folders))
    return out


def stdout_of(folder: Path) -> str:
    return (folder / "stdout").read_text()


def results(folder: Path, path: str) -> str:
    return (folder / path).read_text()


# (example, what each execution's stdout is, {file in its results folder: content})
RUNS = [
    ("docker.yaml", "15\n", {}),
    ("docker-hello.yaml", "Hello Bacalhau!\n", {}),  # lower-case keys
    ("docker-output.yaml", "", {"output_custom/output.txt": "15\n"}),
    ("docker-output.json", "", {"output_custom/output.txt": "15\n"}),
    ("docker-s3.yaml", "a.txt\nb.txt\n", {}),  # an S3 prefix, its Region a warning
    ("docs-input-ipfs.yaml", IPFS_FILE.decode(), {}),
    ("docs-publish-local.yaml", "", {"outputs/results.txt": "results\n"}),
    ("docs-publish-ipfs.yaml", "", {"outputs/results.txt": "results\n"}),
    ("noop.yaml", "", {}),
    ("wasm.yaml", "Hello, world!\n", {}),  # its inline module, mounted at EntryModule
]


@pytest.mark.parametrize(("example", "stdout", "files"), RUNS, ids=[r[0] for r in RUNS])
def test_an_example_runs_through_job_run_and_the_api(net, tmp_path, example, stdout, files):
    ran = both(net, offline(net, example, tmp_path))
    for job, folders in ran:
        assert job["status"] == "completed", (job["reason"], job["executions"])
        (folder,) = folders
        assert stdout_of(folder) == stdout
        for name, content in files.items():
            assert results(folder, name) == content
    put_id = ran[1][0]["id"]  # and as Bacalhau's clients read it back
    status, got = call(net.nodes[1], "GET", f"{ORC}/jobs/{put_id}?include=executions")
    assert status == 200, got
    assert got["Job"]["State"]["StateType"] == "Completed"
    (execution,) = got["Executions"]["Items"]
    assert execution["RunOutput"]["Stdout"] == stdout
    assert execution["RunOutput"]["ExitCode"] == 0


def test_the_log_emitter_example_writes_odd_lines_to_stdout_and_even_ones_to_stderr(net, tmp_path):
    for job, folders in both(net, offline(net, "log_emitter.yml", tmp_path)):
        assert job["status"] == "completed", (job["reason"], job["executions"])
        (folder,) = folders
        for name, parity in (("stdout", 1), ("stderr", 0)):
            lines = results(folder, name).splitlines()
            numbers = [n for n in range(1, 11) if n % 2 == parity]
            assert [line.split()[:2] for line in lines] == [[name.upper(), str(n)] for n in numbers]
            assert all(line.endswith(" UTC " + line.split()[-1]) for line in lines)  # $(date)


@pytest.mark.parametrize(
    ("example", "count", "stdouts"),
    [
        ("19-basic-hello-world-v1.yml", 2, ["hello bacalhau world1\n"] * 2),
        ("docs-partitioning.yaml", 3, [f"Partition={i}\n" for i in range(3)]),
    ],
)
def test_a_counted_example_runs_one_partition_per_node(net, tmp_path, example, count, stdouts):
    for job, folders in both(net, offline(net, example, tmp_path)):
        assert job["status"] == "completed", (job["reason"], job["executions"])
        nodes = {e["node"] for e in job["executions"].values() if e["status"] == "completed"}
        assert len(folders) == len(nodes) == count
        assert sorted(stdout_of(f) for f in folders) == stdouts


def test_the_s3_publisher_example_uploads_one_archive_that_job_get_downloads(net, tmp_path):
    """docs' Publisher s3 {Bucket: my-bucket, Key: bacalhau-outputs}, no Encoding (Bacalhau's
    default, gzip): each execution's results as one .tar.gz under the key, then JOB/EXECUTION
    (as the submission's warning says); its Bacalhau result a pre-signed URL that downloads
    without credentials, as Bacalhau's `job get` does; `edgebac job get` verifies it."""
    for job, _ in both(net, offline(net, "docs-publish-s3.yaml", tmp_path)):
        assert job["status"] == "completed", (job["reason"], job["executions"])
        (execution,) = job["executions"].values()
        key = f"bacalhau-outputs/{job['id']}/{execution['id']}.tar.gz"
        assert execution["reference"] == f"s3://my-bucket/{key}"
        body = net.s3.get_object(Bucket="my-bucket", Key=key)["Body"].read()
        assert unpacked(body)["outputs/results.txt"] == b"results\n"

        status, got = call(net.nodes[2], "GET", f"{ORC}/jobs/{job['id']}/results")
        assert status == 200, got
        (item,) = got["Items"]
        assert item["Type"] == "s3PreSigned", item
        source, managed = item["Params"]["SourceSpec"], item["Params"]["Managed"]
        assert (source["Bucket"], source["Key"], managed) == ("my-bucket", key, False)
        with urllib.request.urlopen(item["Params"]["PreSignedURL"], timeout=10) as download:
            assert download.read() == body

    out = tmp_path / "got"
    got = run_edgebac("job", "get", job["id"], "--api", net.nodes[0].url, "--output-dir", out)
    assert got.returncode == 0, got.stderr
    assert (out / execution["id"] / "outputs" / "results.txt").read_bytes() == b"results\n"


def test_plain_encoding_uploads_each_file_under_the_key(net, tmp_path):
    text = (EXAMPLES / "docs-publish-s3.yaml").read_text()
    path = tmp_path / "plain.yaml"
    path.write_text(
        text.replace("Key: bacalhau-outputs", "Key: plain-outputs\n        Encoding: plain")
    )
    job_id = run_put(net, path)
    job = ended(net.nodes[0], job_id)
    assert job["status"] == "completed", (job["reason"], job["executions"])
    (execution,) = job["executions"].values()
    prefix = f"plain-outputs/{job_id}/{execution['id']}/"
    got = net.s3.get_object(Bucket="my-bucket", Key=prefix + "outputs/results.txt")
    assert got["Body"].read() == b"results\n"


def unpacked(body: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        return {m.name: archive.extractfile(m).read() for m in archive if m.isfile()}


@pytest.mark.parametrize(
    ("example", "error"),
    [("docs-input-url.yaml", "head: /data/data.csv: "), ("docs-input-s3.yaml", "Is a directory")],
)
def test_a_file_target_example_fails_as_on_bacalhau(net, tmp_path, example, error):
    """The docs mount a URL or an S3 object at a file's path (`Target: /data/data.csv`) and
    read that path; Bacalhau v1.9.3's code mounts a folder there (urlDownload: the file at
    Target/<name>; s3: the objects in a folder bound at Target), and so does edgebac: the
    command reads a folder and fails, here as there."""
    for job, _ in both(net, offline(net, example, tmp_path)):
        assert job["status"] == "failed"
        for execution in job["executions"].values():
            assert execution["exit_code"] == 1
            assert error in execution["stderr_head"]


def job_count(net: Net) -> list[int]:
    """Jobs each node lists, once gossip has settled (a past test's events may still travel)."""
    wait_converged(net.nodes)
    counts = []
    for node in net.nodes:
        status, listed = call(node, "GET", f"{ORC}/jobs?limit=1000")
        assert status == 200, listed
        counts.append(len(listed["Items"]))
    return counts


REFUSED = [
    ("19-basic-daemon-job-v1.yml", "Type", "daemon jobs (long-running) are not supported"),
    ("20-s3managed-publisher.yml", "Tasks[0].Publisher.Type", "s3managed publishing is not"),
    ("custom-task-type.yaml", "Tasks[0].Engine.Type", "'flibble' is not an engine"),
    ("docs-input-local.yaml", "Tasks[0].InputSources[0].Source.Params.Path", "unknown field"),
    (
        "docs-s3-partitioning.yaml",
        "Tasks[0].InputSources[0].Source.Params.Partition",
        "S3 partitioning is not supported",
    ),
]


@pytest.mark.parametrize(("example", "field", "why"), REFUSED, ids=[r[0] for r in REFUSED])
def test_a_refused_example_names_its_field_both_ways_and_stores_nothing(
    net, tmp_path, example, field, why
):
    before = job_count(net)
    path = offline(net, example, tmp_path)
    ran = run_edgebac("job", "run", path, "--api", net.nodes[0].url)
    assert ran.returncode != 0
    assert f"{field}: {why}" in ran.stderr
    job = yaml.safe_load(path.read_text())
    status, error = call(net.nodes[1], "PUT", f"{ORC}/jobs", {"Job": job})
    assert status == 400, error
    assert error["Code"] == "ValidationError"
    assert f"Job.{field}: {why}" in error["Message"]
    assert job_count(net) == before


def test_the_api_docs_submission_runs_and_warns_as_bacalhau_does(net, tmp_path):
    """docs/api/jobs.md's PUT body, CreateTime and all: the same Warnings as Bacalhau's."""
    body = json.loads(offline(net, "docs-api-put-job-createtime.json", tmp_path).read_text())
    status, answer = call(net.nodes[1], "PUT", f"{ORC}/jobs", body)
    assert status == 200, answer
    assert answer["Warnings"] == ["job create time is ignored when submitting a job"]
    job = ended(net.nodes[0], answer["JobID"])
    assert job["status"] == "completed", (job["reason"], job["executions"])
    (execution,) = job["executions"].values()
    assert execution["stdout_head"] == "hello\n"


@pytest.mark.parametrize(
    ("example", "field", "why"),
    [
        ("docs-api-put-job.json", "Job.Tasks[0].ResourcesConfig", "unknown field"),
        (
            "wasm_legacy.yaml",
            "Job.Tasks[0].Engine.Params.EntryModule",
            "the older form with a Source inside is not accepted",
        ),
    ],
)
def test_a_refused_api_body_names_its_field(net, tmp_path, example, field, why):
    """The API docs' first body spells `Resources` as the Go field (`ResourcesConfig`, JSON
    `Resources`), which Go's decoder drops silently and edgebac refuses; the legacy wasm spec
    has a Source inside EntryModule, which Bacalhau v1.9 refuses too."""
    before = job_count(net)
    body = yaml.safe_load(offline(net, example, tmp_path).read_text())
    status, error = call(
        net.nodes[0], "PUT", f"{ORC}/jobs", body if "Job" in body else {"Job": body}
    )
    assert status == 400, error
    assert f"{field}: {why}" in error["Message"]
    assert job_count(net) == before


TEMPLATED = "docs-cli-job-run-templated.yaml"


def test_a_templated_example_reaches_the_api_as_written(net, tmp_path):
    """Templates are the CLI's (`bacalhau job run -V`); Bacalhau's server takes `{{.name}}` as
    text, and so does edgebac's: the job echoes it."""
    job_id = run_put(net, offline(net, TEMPLATED, tmp_path))
    job = ended(net.nodes[0], job_id)
    assert job["status"] == "completed", (job["reason"], job["executions"])
    (execution,) = job["executions"].values()
    assert execution["stdout_head"] == "{{.greeting}} {{.name}}\n"


def test_a_templated_example_renders_its_template_vars_in_job_run(net, tmp_path):
    path = offline(net, TEMPLATED, tmp_path)
    ran = run_edgebac(
        "job", "run", path, "-V", "greeting=Hello", "-V", "name=World",
        "--api", net.nodes[0].url, "--wait", "--output", "json",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    (execution,) = json.loads(ran.stdout)["executions"].values()
    assert execution["stdout_head"] == "Hello World\n"


def test_a_templated_example_without_its_vars_is_refused_naming_the_missing_one(net, tmp_path):
    """As Bacalhau's CLI (missingkey=error): nothing is sent."""
    path = offline(net, TEMPLATED, tmp_path)
    before = job_count(net)
    ran = run_edgebac("job", "run", path, "-V", "greeting=Hello", "--api", net.nodes[0].url)
    assert ran.returncode != 0
    assert "template: no value for {{.name}} (give -V name=VALUE" in ran.stderr
    assert job_count(net) == before
