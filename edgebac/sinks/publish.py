"""Publishing a results folder: always into the node's content store, and to S3 when asked.

Every results folder is imported into the store first: its root CID is the folder's digest,
which `ResultPublished` carries whatever the publisher, so a download from anywhere (a peer's
store, S3) is verified by recomputing it. The S3 publisher then uploads each file under a key
template (`{job_id}`, `{execution_id}`), or with `format: tar.gz` one gzipped tar of the
folder made from the stored DAG (what Bacalhau's S3 publisher writes by default, and what its
`job get` downloads from a pre-signed URL), with multipart transfers for big files (boto3's
transfer manager), using this node's S3 configuration, never the job's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebac.runtime.executor import ExecutionError
from edgebac.sinks.blockstore import BlockStore
from edgebac.sinks.exporter import gzipped

DEFAULT_KEY_TEMPLATE = "{job_id}/{execution_id}/"
MULTIPART_THRESHOLD = 16 << 20
PRESIGNED_S = 3600  # how long a pre-signed result URL works (Bacalhau's default is an hour)


@dataclass(frozen=True)
class Published:
    reference: str  # a CID (the node's store) or s3://bucket/prefix/
    digest: str  # the results folder's root CID
    size: int

    def body(self) -> dict[str, Any]:
        return {"reference": self.reference, "digest": self.digest, "size": self.size}


def s3_prefix(template: str, job_id: str, execution_id: str) -> str:
    """The key prefix for one execution: the template filled in, or the ids appended."""
    if not template:
        template = DEFAULT_KEY_TEMPLATE
    elif "{" not in template:
        template = template.rstrip("/") + "/" + DEFAULT_KEY_TEMPLATE
    try:
        prefix = template.format(job_id=job_id, execution_id=execution_id)
    except (KeyError, IndexError, ValueError) as exc:
        raise ExecutionError(
            f"publisher prefix {template!r} is not a key template: {exc}"
        ) from None
    return prefix if prefix.endswith("/") else prefix + "/"


def s3_archive_key(template: str, job_id: str, execution_id: str) -> str:
    """The key of one execution's archive: the template filled in (or the ids appended), as
    a `.tar.gz` object (Bacalhau adds the suffix when the key lacks it, too)."""
    filled = s3_prefix(template.removesuffix(".tar.gz"), job_id, execution_id).rstrip("/")
    return filled + ".tar.gz"


def upload_archive(client: Any, chunks: Iterator[bytes], bucket: str, key: str, spool: Path) -> int:
    """Upload the bytes of `chunks` as s3://bucket/key; blocking. They are spooled to a file
    in `spool` first (multipart uploads need a seekable body); returns the size."""
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, use_threads=False)
    fd, name = tempfile.mkstemp(prefix=".archive-", suffix=".tar.gz", dir=spool)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
            size = out.tell()
        with _s3_errors(bucket, key):
            client.upload_file(name, bucket, key, Config=config)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)
    return size


@contextlib.contextmanager
def _s3_errors(bucket: str, key: str) -> Iterator[None]:
    """botocore's errors as the one line an execution's failure reason shows."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        what = error.get("Code") or "error"
        raise ExecutionError(
            f"publishing to s3://{bucket}/{key}: {what}: {error.get('Message', exc)}"
        ) from None
    except BotoCoreError as exc:
        raise ExecutionError(f"publishing to s3://{bucket}/{key}: {exc}") from None


def upload_folder(client: Any, folder: Path, bucket: str, prefix: str) -> int:
    """Upload every file under `folder` to s3://bucket/prefix...; blocking. Returns the count."""
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, use_threads=False)
    count = 0
    with _s3_errors(bucket, prefix):
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                key = prefix + path.relative_to(folder).as_posix()
                client.upload_file(str(path), bucket, key, Config=config)
                count += 1
        if count == 0:  # an empty results folder still gets a marker, so the prefix exists
            client.put_object(Bucket=bucket, Key=prefix, Body=b"")
    return count


class Publisher:
    def __init__(self, store: BlockStore, s3_client: Any = None) -> None:
        self.store = store
        self._s3_client = s3_client  # a callable giving a boto3 client, made on first use
        self._signer: Any = None

    def presigned_url(self, bucket: str, key: str, expires_s: int = PRESIGNED_S) -> str | None:
        """A GET URL of s3://bucket/key that needs no credentials (as Bacalhau's requester
        signs an archive for its `job get`), or None when this node has no S3 credentials.
        Blocking the first time (the client is made); signing itself is local."""
        if self._s3_client is None:
            return None
        from botocore.exceptions import BotoCoreError

        try:
            if self._signer is None:
                self._signer = self._s3_client()
            params = {"Bucket": bucket, "Key": key}
            return self._signer.generate_presigned_url("get_object", params, expires_s)
        except BotoCoreError:  # no credentials, no region: nothing to sign with
            return None

    async def publish_files(self, files: Mapping[str, bytes]) -> Published:
        """Results held in memory (a folder of small files) into the node's store only: what
        the `local` publisher does with a results folder, without the folder."""
        link = await asyncio.to_thread(self.store.import_files, files)
        digest = str(link.cid)
        return Published(digest, digest, link.size)

    async def publish(
        self, results: Path, publisher: Any, job_id: str, execution_id: str
    ) -> Published:
        link = await asyncio.to_thread(self.store.import_path, results)
        digest = str(link.cid)
        if publisher.type != "s3":
            return Published(digest, digest, link.size)
        if self._s3_client is None:
            raise ExecutionError("this node has no S3 configuration to publish with")
        client = await asyncio.to_thread(self._s3_client)
        if publisher.format == "tar.gz":
            key = s3_archive_key(publisher.prefix, job_id, execution_id)
            archive = gzipped(self.store.export_tar(link.cid))
            spool = results.parent
            await asyncio.to_thread(upload_archive, client, archive, publisher.bucket, key, spool)
            return Published(f"s3://{publisher.bucket}/{key}", digest, link.size)
        prefix = s3_prefix(publisher.prefix, job_id, execution_id)
        await asyncio.to_thread(upload_folder, client, results, publisher.bucket, prefix)
        return Published(f"s3://{publisher.bucket}/{prefix}", digest, link.size)
