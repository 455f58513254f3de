"""`s3://` inputs: one object, every object under `dir/`, or every object whose key starts
with a prefix (`s3://bucket/logs-2023-04*`), keeping their paths relative to the prefix's
folder. Objects are downloaded once into the node's cache, keyed by endpoint, bucket, key and
ETag, and linked into each execution that reads them.

Endpoint, region and credentials come from this node, never from the job: the standard AWS
environment and files (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_PROFILE, ...) which boto3
reads itself, overridden by EDGEBAC_S3_ENDPOINT_URL / EDGEBAC_S3_REGION / EDGEBAC_S3_PROFILE.
boto3 is blocking and slow to import: it is imported on the first S3 input, and every call
runs in a worker thread.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edgebac.runtime.providers import (
    Fetch,
    InputError,
    link_or_copy,
    safe_relative,
    too_big,
    used,
)

CHUNK = 1 << 20


@dataclass(frozen=True)
class S3Settings:
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> S3Settings:
        return cls(
            endpoint_url=env.get("EDGEBAC_S3_ENDPOINT_URL") or None,
            region=env.get("EDGEBAC_S3_REGION") or None,
            profile=env.get("EDGEBAC_S3_PROFILE") or None,
        )


@dataclass(frozen=True)
class S3Object:
    key: str
    etag: str
    size: int
    rel: Path  # where it goes in the input's folder


class S3Provider:
    """Stages s3:// sources; blocking: call `stage` from a worker thread."""

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                session = boto3.session.Session(profile_name=self.settings.profile)
                self._client = session.client(
                    "s3",
                    endpoint_url=self.settings.endpoint_url,
                    region_name=self.settings.region,
                    config=Config(
                        connect_timeout=10,
                        read_timeout=60,
                        retries={"max_attempts": 3, "mode": "standard"},
                    ),
                )
            return self._client

    def stage(self, fetch: Fetch) -> None:
        try:
            self._stage(fetch)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(_describe(exc, urlsplit(fetch.url).netloc)) from None

    def _stage(self, fetch: Fetch) -> None:
        parts = urlsplit(fetch.url)
        bucket, key = parts.netloc, parts.path.lstrip("/")
        objects = list(self._resolve(bucket, key))
        total = sum(o.size for o in objects)
        if total > fetch.max_bytes:
            raise too_big(total, fetch.max_bytes)
        endpoint = self.client().meta.endpoint_url
        for obj in objects:
            cached = self._cached(fetch.cache, endpoint, bucket, obj)
            link_or_copy(cached, fetch.dest / obj.rel)

    def _resolve(self, bucket: str, key: str) -> Iterator[S3Object]:
        if "*" in key[:-1]:
            raise InputError("only a trailing * is supported (s3://bucket/prefix*)")
        if key.endswith("*"):
            prefix = key[:-1]
            yield from self._listed(bucket, prefix, prefix[: prefix.rfind("/") + 1], "match")
            return
        if key == "" or key.endswith("/"):
            yield from self._listed(bucket, key, key, "are under")
            return
        single = self._head(bucket, key)
        if single is not None:
            yield single
            return
        yield from self._listed(bucket, key + "/", key + "/", "missing")

    def _head(self, bucket: str, key: str) -> S3Object | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client().head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        rel = safe_relative(key.rsplit("/", 1)[-1])
        return S3Object(key, head.get("ETag", ""), head["ContentLength"], rel)

    def _listed(self, bucket: str, prefix: str, base: str, how: str) -> Iterator[S3Object]:
        found = 0
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        for page in pages:
            for item in page.get("Contents", []):
                if item["Key"].endswith("/"):
                    continue  # a "folder" marker object
                found += 1
                rel = safe_relative(item["Key"][len(base) :])
                yield S3Object(item["Key"], item.get("ETag", ""), item["Size"], rel)
        if not found:
            if how == "missing":
                raise InputError(f"no such key: s3://{bucket}/{prefix[:-1]}")
            raise InputError(f"no objects {how} s3://{bucket}/{prefix}")

    def _cached(self, cache: Path, endpoint: str, bucket: str, obj: S3Object) -> Path:
        name = hashlib.sha256(f"{endpoint}\0{bucket}\0{obj.key}\0{obj.etag}".encode()).hexdigest()
        path = cache / "s3" / name[:2] / name
        if path.is_file() and path.stat().st_size == obj.size:
            return used(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out:
                body = self.client().get_object(Bucket=bucket, Key=obj.key)["Body"]
                for chunk in body.iter_chunks(CHUNK):
                    out.write(chunk)
            os.replace(temp, path)
        finally:
            Path(temp).unlink(missing_ok=True)
        return path


def _describe(exc: Exception, bucket: str) -> str:
    """A botocore failure in words a user can act on."""
    from botocore import exceptions as bx

    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code == "NoSuchBucket":
            return f"no such bucket: {bucket}"
        if code in ("NoSuchKey", "404", "NotFound"):
            return "no such key"
        if code in ("AccessDenied", "403", "Forbidden"):
            return "access denied by the S3 endpoint"
        return f"S3 error {code}: {error.get('Message', '')}".rstrip(": ")
    if isinstance(exc, bx.NoCredentialsError):
        return "this node has no S3 credentials configured"
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError)):
        return f"cannot reach the S3 endpoint: {exc}"
    if isinstance(exc, bx.BotoCoreError):
        return f"S3 error: {exc}"
    if isinstance(exc, OSError):
        return f"cannot store it: {exc}"
    raise exc
