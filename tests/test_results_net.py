"""Publishing and getting results across real nodes: content store, CID inputs, S3, `job get`."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import pytest

from edgebac.sinks.blockstore import BlockStore
from edgebac.sinks.car import read_car
from tests.netfix import info, network_key, post_json, wait_converged
from tests.procs import nodes_fixture, run_edgebac, wait_for

nodes = nodes_fixture()
WASM = Path(__file__).resolve().parent.parent / "fixtures" / "wasm"


def submit(node, spec):
    status, body = post_json(node.url + "/api/v1/jobs", {"retries": 0, **spec})
    assert status == 201, body
    return body["job_id"]


def finished(node, job_id, timeout=30.0):
    return wait_for(
        lambda: (
            (v := node.get_json(f"/api/v1/jobs/{job_id}?events=0")[1])["status"]
            in ("completed", "failed", "canceled")
            and v
        ),
        timeout,
        f"job {job_id} to end",
    )


def io_job(source: str, zone: str) -> dict:
    module = base64.b64encode((WASM / "io.wasm").read_bytes()).decode()
    return {
        "engine": {"type": "wasm", "module": f"inline:base64:{module}", "args": ["/in", "/out"]},
        "inputs": [{"source": source, "target": "/in"}],
        "outputs": [{"name": "listing", "path": "/out"}],
        "constraints": [f"zone={zone}"],
    }


@pytest.fixture
def trio(nodes, tmp_path, s3_server):
    """A requester-only node and two compute nodes in zones b and c, all with S3 settings."""
    key = network_key(tmp_path)
    env = s3_server.env
    requester = nodes.start(
        tmp_path / "a",
        "--network-key",
        str(key),
        "--roles",
        "requester",
        env=env,
        listen="127.0.0.2:0",
    )
    seed = ("--peers", requester.url.removeprefix("http://"))
    b = nodes.start(
        tmp_path / "b",
        "--network-key",
        str(key),
        *seed,
        "--labels",
        "zone=b",
        env=env,
        listen="127.0.0.3:0",
    )
    c = nodes.start(
        tmp_path / "c",
        "--network-key",
        str(key),
        *seed,
        "--labels",
        "zone=c",
        env=env,
        listen="127.0.0.4:0",
    )
    everyone = [requester, b, c]
    wait_converged(everyone, {info(n)["id"]: 1 for n in everyone})
    return requester, b, c


def test_results_travel_by_cid_and_survive_a_corrupt_holder(trio, tmp_path):
    requester, b, c = trio
    first = finished(
        requester,
        submit(
            requester,
            {
                "engine": {"type": "noop", "stdout": "result of b\n"},
                "constraints": ["zone=b"],
            },
        ),
    )
    assert first["status"] == "completed"
    (execution,) = first["executions"].values()
    cid = execution["reference"]
    assert cid.startswith("bafy")
    assert execution["digest"] == cid
    # job get through the requester (which holds nothing): fetched from b, verified.
    out = tmp_path / "got"
    got = run_edgebac(
        "job", "get", first["id"], "--output-dir", out, "--api", requester.url, "--output", "json"
    )
    assert got.returncode == 0, got.stderr
    assert (out / execution["id"] / "stdout").read_text() == "result of b\n"
    assert (out / execution["id"] / "exitCode").read_text() == "0\n"
    assert json.loads(got.stdout)["results"][0]["cid"] == cid
    # A CID input: c has to fetch it from b.
    second = finished(requester, submit(requester, io_job(f"ipfs://{cid}", "c")))
    assert second["status"] == "completed", second
    (reading,) = second["executions"].values()
    listing = (c.data_dir / "work/results" / reading["id"] / "listing/listing.txt").read_text()
    assert sorted(line.split()[0] for line in listing.splitlines()) == [
        "exitCode",
        "stderr",
        "stdout",
    ]
    # Now b and c both hold the first result. Damage b's copy: the download comes from c.
    blocks = [
        p
        for p in (b.data_dir / "content").rglob("*")
        if p.is_file() and p.read_bytes() == b"result of b\n"
    ]
    assert blocks, "the stdout block in b's store"
    blocks[0].write_bytes(b"result of X\n")
    again = run_edgebac(
        "job",
        "get",
        first["id"],
        "--output-dir",
        tmp_path / "again",
        "--car",
        "--api",
        requester.url,
    )
    assert again.returncode == 0, again.stderr
    with (tmp_path / "again" / f"{execution['id']}.car").open("rb") as car:
        roots, car_blocks = read_car(car)
        store = BlockStore(tmp_path / "check")
        for block_cid, data in car_blocks:
            store.put(block_cid, data)  # verifies each block
    assert [str(r) for r in roots] == [cid]
    assert store.holds(roots[0])


def test_data_locality_wins_the_bid(trio):
    requester, b, _ = trio
    first = finished(
        requester,
        submit(requester, {"engine": {"type": "noop", "stdout": "x"}, "constraints": ["zone=b"]}),
    )
    cid = next(iter(first["executions"].values()))["reference"]
    spec = io_job(f"ipfs://{cid}", "b")
    spec["constraints"] = ["zone in (b,c)"]
    for _ in range(3):
        view = finished(requester, submit(requester, spec))
        (execution,) = view["executions"].values()
        assert execution["node"] == info(b)["id"]
        bids = [bid for bid in view["bids"].values() if bid["local_data"]]
        assert [bid["node"] for bid in bids] == [info(b)["id"]]


def test_s3_publisher_and_get(trio, tmp_path, s3_server):
    requester, _, _ = trio
    bucket = f"results-{uuid.uuid4().hex[:8]}"
    s3_server.client().create_bucket(Bucket=bucket)
    spec = {
        "engine": {"type": "noop", "stdout": "to s3\n"},
        "count": 2,
        "publisher": {"type": "s3", "bucket": bucket, "prefix": "runs/{job_id}/{execution_id}"},
    }
    view = finished(requester, submit(requester, spec))
    assert view["status"] == "completed", view
    for execution in view["executions"].values():
        prefix = f"runs/{view['id']}/{execution['id']}/"
        assert execution["reference"] == f"s3://{bucket}/{prefix}"
        keys = sorted(
            o["Key"]
            for o in s3_server.client().list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
        )
        assert keys == [prefix + "exitCode", prefix + "stderr", prefix + "stdout"]
    out = tmp_path / "s3got"
    got = run_edgebac(
        "job", "get", view["id"], "--output-dir", out, "--api", requester.url, env=s3_server.env
    )
    assert got.returncode == 0, got.stderr
    for execution in view["executions"].values():
        assert (out / execution["id"] / "stdout").read_text() == "to s3\n"
    # Tampered objects on S3 no longer match the recorded digest.
    first = next(iter(view["executions"].values()))
    s3_server.client().put_object(
        Bucket=bucket, Key=f"runs/{view['id']}/{first['id']}/stdout", Body=b"tampered\n"
    )
    bad = run_edgebac(
        "job",
        "get",
        view["id"],
        "--output-dir",
        tmp_path / "bad",
        "--api",
        requester.url,
        env=s3_server.env,
    )
    assert bad.returncode == 1
    assert "does not match its digest" in bad.stderr
    # A bucket that does not exist: the execution fails and says so.
    missing = finished(
        requester,
        submit(
            requester,
            {"engine": {"type": "noop"}, "publisher": {"type": "s3", "bucket": "no-such-bucket"}},
        ),
    )
    assert missing["status"] == "failed"
    assert "NoSuchBucket" in json.dumps(missing["executions"])


def test_get_errors_are_one_line(trio, tmp_path):
    requester, b, _ = trio
    unknown = run_edgebac("job", "get", "j-nope", "--api", requester.url)
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("error: no job 'j-nope'")
    view = finished(
        requester,
        submit(requester, {"engine": {"type": "noop", "stdout": "x"}, "constraints": ["zone=b"]}),
    )
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    unwritable = run_edgebac(
        "job", "get", view["id"], "--output-dir", blocker / "sub", "--api", requester.url
    )
    assert unwritable.returncode == 1
    assert "cannot write there" in unwritable.stderr
    b.kill()  # the only holder is gone: a clear error after the bounded wait
    gone = run_edgebac(
        "job",
        "get",
        view["id"],
        "--output-dir",
        tmp_path / "gone",
        "--find-timeout",
        "2",
        "--api",
        requester.url,
    )
    assert gone.returncode == 1
    assert "Traceback" not in gone.stderr
    said = gone.stderr.strip().splitlines()
    assert said[0].startswith("waiting: looking for a node that holds"), said  # not silent
    assert len([line for line in said if not line.startswith("waiting:")]) == 1, said
    assert view["id"] not in [p.name for p in (tmp_path / "gone").glob("*")]
