"""Bacalhau InputSources as edgebac inputs (see `bacalhau_task` for how mounts differ).

Each storage source becomes an edgebac source URL: `s3{Bucket, Key}` is `s3://Bucket/Key`,
`urlDownload{URL}` the URL, `ipfs{CID}` `ipfs://CID`, `local`/`localDirectory{SourcePath}`
`file://SourcePath`, `inline{URL: data:...}` `inline:base64:...`. Options edgebac cannot honour
(S3 Filter, VersionID, ChecksumSHA256, Endpoint, Partition; read-write or created local paths;
inline gzip archives) are refused by field.
"""

from __future__ import annotations

import base64
import posixpath
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from edgebac.scheduler.bacalhau_units import NOT_YET, data_url, fold
from edgebac.scheduler.fieldcheck import Checker, join
from edgebac.scheduler.ids import is_file_name

SPEC_CONFIG = ("Type", "Params")
S3_SOURCE = ("Bucket", "Key", "Filter", "Region", "Endpoint", "VersionID", "ChecksumSHA256")
S3_SOURCE += ("Partition",)
LOCAL = ("SourcePath", "ReadWrite", "CreateAs")


@dataclass(frozen=True)
class Mount:
    """One InputSource: where Bacalhau mounts it and the edgebac source it becomes."""

    path: str  # its field path, for problems
    target: str  # Bacalhau's Target, normalised (`/inputs`)
    kind: str  # edgebac source kind: s3, http, ipfs, file, inline
    source: str  # edgebac source URL
    alias: str

    def inner(self, rest: str) -> str | None:
        """The source of the file `rest` inside this mount, if the source can name it."""
        if self.kind in ("file", "ipfs"):
            return f"{self.source.rstrip('/')}/{rest}"
        if self.kind == "http" and posixpath.basename(urlsplit(self.source).path) == rest:
            return self.source
        if self.kind == "s3" and self.source.endswith("/"):
            return self.source + rest
        if self.kind == "s3" and posixpath.basename(self.source) == rest:
            return self.source
        return None

    def edgebac(self, c: Checker) -> dict[str, str] | None:
        """The edgebac input: an inline file goes into a folder named by its Target's parent."""
        if self.kind != "inline":
            return {"source": self.source, "target": self.target}
        folder, name = posixpath.split(self.target)
        if folder == "/" or not is_file_name(name):
            why = "edgebac mounts an inline file in a folder: give a Target like /inputs/data.txt"
            c.add(join(self.path, "Target"), f"{self.target!r}: {why}")
            return None
        return {"source": self.source, "target": folder, "name": name}


def read_mount(c: Checker, value: Any, path: str, warns: list[str]) -> Mount | None:
    d = fold(c, value, path, ("Source", "Alias", "Target"))
    target, alias = c.text(d, "Target", path, ""), c.text(d, "Alias", path, "")
    if target.strip() == "":
        c.add(join(path, "Target"), "is required (where the input is mounted)")
    if "Source" not in d:
        c.add(join(path, "Source"), "is required")
        return None
    source = fold(c, d["Source"], join(path, "Source"), SPEC_CONFIG)
    kind = c.text(source, "Type", join(path, "Source"), "").strip().lower()
    params = c.get(
        source, "Params", join(path, "Source"), lambda v: isinstance(v, dict), "a map", {}
    )
    parsed = _source(c, kind, params, join(path, "Source"), warns)
    if parsed is None or not target.strip():
        return None
    normal = posixpath.normpath("/" + target.strip().lstrip("/"))
    return Mount(path, normal, parsed[0], parsed[1], alias.strip())


def _source(
    c: Checker, kind: str, params: dict[str, Any], path: str, warns: list[str]
) -> tuple[str, str] | None:
    """(edgebac kind, edgebac source URL) of a Bacalhau storage source."""
    where = join(path, "Params")
    if kind == "s3":
        return _s3_source(c, fold(c, params, where, S3_SOURCE), where, warns)
    if kind == "urldownload":
        url = c.text(fold(c, params, where, ("URL",)), "URL", where)
        if url is not None and not url.lower().startswith(("http://", "https://")):
            c.add(join(where, "URL"), f"{url!r} is not an http(s) URL")
            return None
        return ("http", url) if url else None
    if kind == "ipfs":
        cid = c.text(fold(c, params, where, ("CID",)), "CID", where)
        return ("ipfs", f"ipfs://{cid.strip()}") if cid else None
    if kind in ("local", "localdirectory"):
        return _local_source(c, fold(c, params, where, LOCAL), where)
    if kind == "inline":
        return _inline_source(c, fold(c, params, where, ("URL",)), where)
    if kind == "s3presigned":
        c.add(join(path, "Type"), f"s3PreSigned inputs {NOT_YET}")
    elif kind:
        kinds = "s3, urlDownload, ipfs, localDirectory, inline"
        c.add(join(path, "Type"), f"{kind!r} is not an input source ({kinds})")
    else:
        c.add(join(path, "Type"), "is required")
    return None


def _s3_source(
    c: Checker, p: dict[str, Any], path: str, warns: list[str]
) -> tuple[str, str] | None:
    bucket, key = c.text(p, "Bucket", path), c.text(p, "Key", path, "")
    for name in ("Filter", "VersionID", "ChecksumSHA256", "Endpoint"):
        if p.get(name):
            why = " (nodes use their own S3 endpoint)" if name == "Endpoint" else ""
            c.add(join(path, name), f"S3 {name} on an input {NOT_YET}{why}")
    if _partitioned(p.get("Partition")):
        c.add(join(path, "Partition"), f"S3 partitioning {NOT_YET}")
    if p.get("Region"):
        warns.append(f"{join(path, 'Region')}: nodes use the S3 region they are configured with")
    if not bucket:
        if bucket == "":
            c.add(join(path, "Bucket"), "is empty")
        return None
    return "s3", f"s3://{bucket}/{key or ''}"


def _local_source(c: Checker, p: dict[str, Any], path: str) -> tuple[str, str] | None:
    source_path = c.text(p, "SourcePath", path)
    read_write = p.get("ReadWrite", False)
    if read_write is True or (isinstance(read_write, str) and read_write == "true"):
        c.add(join(path, "ReadWrite"), f"read-write local inputs {NOT_YET} (they are read-only)")
    create_as = p.get("CreateAs", "")
    if create_as not in ("", "noCreate"):
        c.add(join(path, "CreateAs"), f"{create_as!r}: creating local inputs {NOT_YET}")
    if source_path is None:
        return None
    if not source_path.startswith("/"):
        c.add(join(path, "SourcePath"), f"{source_path!r} is not an absolute path")
        return None
    return "file", f"file://{posixpath.normpath(source_path)}"


def _inline_source(c: Checker, p: dict[str, Any], path: str) -> tuple[str, str] | None:
    url = c.text(p, "URL", path)
    if url is None:
        return None
    decoded = data_url(url)
    if decoded is None:
        c.add(join(path, "URL"), "is not a data: URL (data:[type][;base64],DATA)")
        return None
    if decoded[0] in ("application/gzip", "application/x-gzip"):
        c.add(join(path, "URL"), f"inline gzip archives (a folder) {NOT_YET}")
        return None
    return "inline", "inline:base64:" + base64.b64encode(decoded[1]).decode()


def _partitioned(partition: Any) -> bool:
    """Whether an S3 Partition asks for anything: its Type (any key case) is not `none`."""
    if not partition:
        return False
    if not isinstance(partition, dict):
        return True
    kinds = [v for k, v in partition.items() if str(k).lower() == "type"]
    return bool(kinds) and str(kinds[-1]).lower() not in ("", "none")
