"""The S3 publisher's `tar.gz` format (Bacalhau's default S3 encoding): one gzipped tar per
execution, made from the stored DAG, uploaded to a real S3 server, whose content is the very
results folder the recorded CID names; and the pre-signed URL that serves it without
credentials."""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
import urllib.request
import uuid
from pathlib import Path

import pytest

from edgebac.scheduler.spec import Publisher as PublisherSpec
from edgebac.sinks.blockstore import BlockStore
from edgebac.sinks.publish import Publisher, s3_archive_key


@pytest.mark.parametrize(
    ("template", "key"),
    [
        ("", "J/E.tar.gz"),
        ("bacalhau-outputs", "bacalhau-outputs/J/E.tar.gz"),
        ("bacalhau-outputs/", "bacalhau-outputs/J/E.tar.gz"),
        ("runs/{job_id}/{execution_id}", "runs/J/E.tar.gz"),
        ("runs/{execution_id}.tar.gz", "runs/E.tar.gz"),
        ("runs/{job_id}/", "runs/J.tar.gz"),
    ],
)
def test_the_archive_key_is_the_filled_template_as_a_tar_gz(template, key):
    assert s3_archive_key(template, "J", "E") == key


@pytest.fixture
def results(tmp_path) -> Path:
    folder = tmp_path / "results" / "e-1"
    (folder / "out" / "deep").mkdir(parents=True)
    (folder / "stdout").write_bytes(b"hello\n")
    (folder / "stderr").write_bytes(b"")
    (folder / "exitCode").write_bytes(b"0")
    (folder / "out" / "deep" / "big.bin").write_bytes(os.urandom(300_000))
    return folder


async def test_an_archive_goes_to_s3_as_the_folder_the_cid_names(s3_server, results, tmp_path):
    s3 = s3_server.client()
    bucket = f"archive-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    store = BlockStore(tmp_path / "store")
    publisher = Publisher(store, s3_server.client)
    spec = PublisherSpec("s3", bucket, "runs/{job_id}", "tar.gz")
    published = await publisher.publish(results, spec, "j-1", "e-1")
    assert published.reference == f"s3://{bucket}/runs/j-1.tar.gz"
    body = s3.get_object(Bucket=bucket, Key="runs/j-1.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        names = sorted(m.name for m in archive.getmembers() if m.isfile())
        assert names == ["exitCode", "out/deep/big.bin", "stderr", "stdout"]
        unpacked = tmp_path / "unpacked"
        archive.extractall(unpacked, filter="data")
    for name in names:
        assert (unpacked / name).read_bytes() == (results / name).read_bytes(), name
    again = BlockStore(tmp_path / "again").import_path(unpacked)
    assert str(again.cid) == published.digest  # what the log records verifies the download
    assert not list(results.parent.glob(".archive-*"))  # the spool file is gone

    url = publisher.presigned_url(bucket, "runs/j-1.tar.gz")
    assert url is not None
    assert "Signature" in url
    assert await asyncio.to_thread(download, url) == body  # no credentials: the URL is enough


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as got:
        return got.read()


def test_no_s3_configuration_signs_nothing(tmp_path):
    assert Publisher(BlockStore(tmp_path / "s"), None).presigned_url("b", "k.tar.gz") is None


def archive_of(entries: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for info, data in entries:
            archive.addfile(info, io.BytesIO(data) if data else None)
    return buffer.getvalue()


def member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = ""):
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, len(data), link
    return info, data


def test_job_get_unpacks_only_files_inside_its_folder_and_within_the_limit(s3_server, tmp_path):
    """An S3 archive is whatever its uploader put there: links and paths out of the folder
    are not followed, and its declared sizes count against --max-size before writing."""
    from edgebac.cli.results import ResultsError, _unpack_archive

    s3 = s3_server.client()
    bucket = f"hostile-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    body = archive_of(
        [
            member("stdout", b"fine\n"),
            member("link", kind=tarfile.SYMTYPE, link="/etc/passwd"),
            member("hard", kind=tarfile.LNKTYPE, link="stdout"),
        ]
    )
    s3.put_object(Bucket=bucket, Key="a.tar.gz", Body=body)
    dest = tmp_path / "out" / "e"
    dest.mkdir(parents=True)
    _unpack_archive(s3, bucket, "a.tar.gz", dest, 1 << 20)
    assert sorted(p.name for p in dest.iterdir()) == ["stdout"]

    s3.put_object(Bucket=bucket, Key="esc.tar.gz", Body=archive_of([member("../up", b"x")]))
    with pytest.raises(tarfile.OutsideDestinationError):
        _unpack_archive(s3, bucket, "esc.tar.gz", tmp_path / "out" / "f", 1 << 20)
    assert not (tmp_path / "out" / "up").exists()

    big = archive_of([member("a", bytes(600)), member("b", bytes(600))])
    s3.put_object(Bucket=bucket, Key="big.tar.gz", Body=big)
    with pytest.raises(ResultsError, match="more than the limit of 1,000 bytes"):
        _unpack_archive(s3, bucket, "big.tar.gz", tmp_path / "out" / "g", 1000)
    assert not (tmp_path / "out" / "g" / "a").exists()  # refused before writing anything
