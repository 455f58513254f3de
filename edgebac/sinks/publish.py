"""Publishing a results folder: always into the node's content store, and to S3 when asked.

Every results folder is imported into the store first: its root CID is the folder's digest,
which `ResultPublished` carries whatever the publisher, so a download from anywhere (a peer's
store, S3) is verified by recomputing it. The S3 publisher then uploads each file under a key
template (`{job_id}`, `{execution_id}`), with multipart transfers for big files (boto3's
transfer manager), using this node's S3 configuration, never the job's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebac.runtime.executor import ExecutionError
from edgebac.sinks.blockstore import BlockStore

DEFAULT_KEY_TEMPLATE = "{job_id}/{execution_id}/"
MULTIPART_THRESHOLD = 16 << 20


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


def upload_folder(client: Any, folder: Path, bucket: str, prefix: str) -> int:
    """Upload every file under `folder` to s3://bucket/prefix...; blocking. Returns the count."""
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import BotoCoreError, ClientError

    config = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, use_threads=False)
    count = 0
    try:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                key = prefix + path.relative_to(folder).as_posix()
                client.upload_file(str(path), bucket, key, Config=config)
                count += 1
        if count == 0:  # an empty results folder still gets a marker, so the prefix exists
            client.put_object(Bucket=bucket, Key=prefix, Body=b"")
    except ClientError as exc:
        error = exc.response.get("Error", {})
        what = error.get("Code") or "error"
        raise ExecutionError(
            f"publishing to s3://{bucket}/{prefix}: {what}: {error.get('Message', exc)}"
        ) from None
    except BotoCoreError as exc:
        raise ExecutionError(f"publishing to s3://{bucket}/{prefix}: {exc}") from None
    return count


class Publisher:
    def __init__(self, store: BlockStore, s3_client: Any = None) -> None:
        self.store = store
        self._s3_client = s3_client  # a callable giving a boto3 client, made on first use

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
        prefix = s3_prefix(publisher.prefix, job_id, execution_id)
        client = await asyncio.to_thread(self._s3_client)
        await asyncio.to_thread(upload_folder, client, results, publisher.bucket, prefix)
        return Published(f"s3://{publisher.bucket}/{prefix}", digest, link.size)
