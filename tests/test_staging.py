"""Input providers against real servers: moto_server for S3, http.server for URLs, real paths."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest

from edgebac.runtime.executor import ExecutionError, Task
from edgebac.runtime.providers.s3 import S3Settings
from edgebac.runtime.staging import HeldInputs, Stager
from edgebac.scheduler.sources import parse_source
from edgebac.scheduler.spec import Input, JobSpec, NoopEngine, Resources
from tests.httpfix import file_server

LOGS = {
    "logs-2023-04-01.log": b"april one\n",
    "logs-2023-04-02.log": b"april two\n",
    "logs-2023-04/extra/deep.txt": b"deep\n",
    "logs-2023-05-01.log": b"may\n",
    "dir/a.txt": b"a\n",
    "dir/sub/b.txt": b"b\n",
    "data/logs-2023-04-09.log": b"nested prefix\n",
}


@pytest.fixture(scope="module")
def bucket(s3_server):
    name = f"stage-{uuid.uuid4().hex[:12]}"
    client = s3_server.client()
    client.create_bucket(Bucket=name)
    for key, body in LOGS.items():
        client.put_object(Bucket=name, Key=key, Body=body)
    return name


@pytest.fixture
def stager(tmp_path, s3_server, monkeypatch):
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    return Stager(tmp_path / "cache", (str(allowed),), S3Settings(), urls=("127.0.0.1",))


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    (root / "data.csv").write_bytes(b"a,b\n1,2\n")
    (root / "big.bin").write_bytes(b"x" * 5000)
    with file_server(root) as url:
        yield url


def tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


async def stage(stager: Stager, url: str, dest: Path, cap: int = 1 << 20) -> Path:
    return await stager.stage(parse_source(url), dest, cap)


async def reason(stager: Stager, url: str, dest: Path, cap: int = 1 << 20) -> str:
    with pytest.raises(ExecutionError) as info:
        await stage(stager, url, dest, cap)
    return info.value.reason


async def test_s3_prefix_keeps_paths_relative_to_the_prefix_folder(stager, bucket, tmp_path):
    folder = await stage(stager, f"s3://{bucket}/logs-2023-04*", tmp_path / "in")
    assert tree(folder) == {
        "logs-2023-04-01.log": b"april one\n",
        "logs-2023-04-02.log": b"april two\n",
        "logs-2023-04/extra/deep.txt": b"deep\n",
    }
    nested = await stage(stager, f"s3://{bucket}/data/logs-2023-04*", tmp_path / "in2")
    assert tree(nested) == {"logs-2023-04-09.log": b"nested prefix\n"}


async def test_s3_folder_and_single_key(stager, bucket, tmp_path):
    folder = await stage(stager, f"s3://{bucket}/dir/", tmp_path / "a")
    assert tree(folder) == {"a.txt": b"a\n", "sub/b.txt": b"b\n"}
    as_key = await stage(stager, f"s3://{bucket}/dir", tmp_path / "b")
    assert tree(as_key) == tree(folder)
    single = await stage(stager, f"s3://{bucket}/dir/sub/b.txt", tmp_path / "c")
    assert tree(single) == {"b.txt": b"b\n"}


async def test_s3_objects_are_cached_and_linked(stager, bucket, tmp_path):
    await stage(stager, f"s3://{bucket}/dir/a.txt", tmp_path / "one")
    cached = [p for p in (tmp_path / "cache" / "s3").rglob("*") if p.is_file()]
    assert len(cached) == 1
    await stage(stager, f"s3://{bucket}/dir/a.txt", tmp_path / "two")
    assert os.stat(tmp_path / "two" / "a.txt").st_ino == cached[0].stat().st_ino


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("dir/nope.txt", "no such key: s3://{b}/dir/nope.txt"),
        ("zzz*", "no objects match s3://{b}/zzz"),
        ("empty/", "no objects are under s3://{b}/empty/"),
        ("lo*gs", "only a trailing * is supported (s3://bucket/prefix*)"),
    ],
)
async def test_s3_failures_name_the_problem(stager, bucket, tmp_path, path, expected):
    said = await reason(stager, f"s3://{bucket}/{path}", tmp_path / "x")
    assert said == f"input s3://{bucket}/{path}: " + expected.format(b=bucket)


async def test_s3_missing_bucket_and_too_big(stager, bucket, tmp_path):
    said = await reason(stager, "s3://no-such-bucket-here/k", tmp_path / "x")
    assert said == "input s3://no-such-bucket-here/k: no such bucket: no-such-bucket-here"
    said = await reason(stager, f"s3://{bucket}/logs-2023-04*", tmp_path / "y", cap=10)
    assert "too big: 25 bytes, more than the 10 byte cap" in said


async def test_url_download_checksum_and_failures(stager, site, tmp_path):
    folder = await stage(stager, f"{site}/data.csv", tmp_path / "a")
    assert tree(folder) == {"data.csv": b"a,b\n1,2\n"}
    digest = hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    checked = await stage(stager, f"{site}/data.csv#sha256={digest}", tmp_path / "b")
    assert tree(checked) == {"data.csv": b"a,b\n1,2\n"}
    assert (tmp_path / "cache" / "http" / digest).is_file()
    assert "HTTP 404" in await reason(stager, f"{site}/missing.csv", tmp_path / "c")
    assert "too big" in await reason(stager, f"{site}/big.bin", tmp_path / "d", cap=1000)
    bad = await reason(stager, f"{site}/data.csv#sha256={'0' * 64}", tmp_path / "e")
    assert "checksum mismatch" in bad
    assert not (tmp_path / "e" / "data.csv").exists()
    down = await reason(stager, "http://127.0.0.1:9/x", tmp_path / "f")
    assert "download failed" in down


async def test_local_paths_only_under_allowed_roots(stager, tmp_path):
    allowed = tmp_path / "allowed"
    (allowed / "sub").mkdir()
    (allowed / "sub" / "f.txt").write_text("f\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("no\n")
    (allowed / "escape").symlink_to(secret)
    assert await stage(stager, str(allowed / "sub"), tmp_path / "a") == allowed / "sub"
    linked = await stage(stager, f"file://{allowed}/sub/f.txt", tmp_path / "b")
    assert tree(linked) == {"f.txt": b"f\n"}
    for refused in (f"{allowed}/../secret.txt", f"{allowed}/escape", str(secret)):
        said = await reason(stager, refused, tmp_path / "c")
        assert "refused:" in said
        assert "outside the paths this node allows" in said
    assert "no such file" in await reason(stager, f"{allowed}/nope", tmp_path / "d")
    held = HeldInputs((str(allowed),))
    assert f"file://{allowed}/sub" in held
    assert f"file://{allowed}/../secret.txt" not in held
    assert "s3://b/k" not in held


async def test_inline_and_unsupported_sources(stager, tmp_path):
    folder = await stage(stager, "inline:base64:aGVsbG8=", tmp_path / "a")
    assert tree(folder) == {"inline": b"hello"}
    cid = "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
    said = await reason(stager, cid, tmp_path / "b")
    assert said == f"input {cid}: ipfs sources are not supported yet"


async def test_stage_inputs_nests_mountpoints_and_shares_the_timeout(stager, bucket, tmp_path):
    spec = JobSpec(
        engine=NoopEngine(),
        inputs=(
            Input(parse_source(f"s3://{bucket}/dir/"), "/inputs"),
            Input(parse_source("inline:x"), "/inputs/extra/inline"),
        ),
        resources=Resources(disk_bytes=1 << 20),
        timeout_s=30,
    )
    scratch = tmp_path / "scratch"
    task = Task("e1", "j1", spec, scratch, tmp_path / "results")
    staged = await stager.stage_inputs(task)
    assert [s.target for s in staged] == ["/inputs", "/inputs/extra/inline"]
    assert (staged[0].host / "extra" / "inline").is_dir()
    assert all(s.host.is_relative_to(scratch) for s in staged)
