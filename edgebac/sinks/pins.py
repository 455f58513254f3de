"""Pins: the DAGs clients put in a store (`POST /api/v1/content`), which garbage collection
keeps, and who put each, so that no client's uploads can fill a node's disk.

`pinned/<cid>` is one marker per DAG. Its text is JSON, `{"owners": {NAME: BYTES}, "sha256":
HEX}`: each caller who uploaded it and what that upload charged to its quota (the body's size;
the same content uploaded twice by one caller charges once), and the sha256 of the body (so an
upload that names its digest is known to be one held already before a byte of it is read).
Its mtime is when it was last uploaded: retention lets a pin go once that is older than the
horizon (and nothing else keeps its DAG).
A marker of an older release is empty: a pin of no one's, charged to no quota. Blocking
(files): call from a thread in async code.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edgebac.sinks.cid import CID
from edgebac.sinks.errors import BadCid

MAX_OWNERS = 64  # names kept on one marker: a DAG many callers uploaded charges the first 64


@dataclass(frozen=True)
class Pin:
    cid: CID
    owners: Mapping[str, int]  # who uploaded it -> bytes charged to them
    at_s: float  # when it was last uploaded (the marker's mtime)
    marker: Path
    sha256: str = ""  # of the body uploaded ("" for a marker of an older release)


@dataclass(frozen=True)
class Usage:
    bytes: int
    pins: int


class Pins:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._scan: tuple[int, list[Pin]] | None = None  # (the folder's mtime_ns, its pins)

    def add(self, cid: CID, owner: str | None = None, charged: int = 0, sha256: str = "") -> None:
        """Pin `cid` (again: its time is now) for `owner`, charging it `charged` bytes."""
        marker = self.folder / str(cid)
        body = _read(marker)
        owners = dict(_owners(body))
        if owner is not None and (owner in owners or len(owners) < MAX_OWNERS):
            owners[owner] = max(owners.get(owner, 0), charged)
        temp = self.folder / f".{uuid.uuid4().hex}.tmp"
        with open(temp, "w") as out:
            json.dump({"owners": owners, "sha256": sha256 or _sha256(body)}, out, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, marker)  # a fresh mtime too: a pin uploaded again is young again
        self._scan = None  # the folder's mtime may not have moved on (a coarse clock)
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def all(self) -> list[Pin]:
        """Every pin, in CID order (scanned again only when the folder changed)."""
        stamp = self.folder.stat().st_mtime_ns
        if self._scan is not None and self._scan[0] == stamp:
            return self._scan[1]
        pins = []
        for marker in sorted(self.folder.iterdir()):
            try:
                cid = CID.parse(marker.name)
                at_s = marker.stat().st_mtime
            except (BadCid, OSError):
                continue  # a temp file, or not ours: names nothing to keep
            body = _read(marker)
            pins.append(Pin(cid, _owners(body), at_s, marker, _sha256(body)))
        self._scan = (stamp, pins)
        return pins

    def remove(self, pin: Pin) -> None:
        """Let a pin go (retention): its DAG is then kept only if something else names it."""
        pin.marker.unlink(missing_ok=True)
        self._scan = None

    def usage(self, owner: str) -> Usage:
        """What `owner`'s pins hold: bytes charged to it, and how many."""
        mine = [pin.owners[owner] for pin in self.all() if owner in pin.owners]
        return Usage(sum(mine), len(mine))

    def holds_for(self, owner: str, sha256: str) -> bool:
        """Whether `owner` pinned a body of this sha256 (uploading it again charges nothing)."""
        return any(owner in pin.owners and pin.sha256 == sha256 for pin in self.all())


def _read(marker: Path) -> dict[str, object]:
    """A marker's JSON; {} for an empty one (an older release's) or one that is not ours."""
    with contextlib.suppress(OSError, UnicodeDecodeError, ValueError):
        text = marker.read_text()
        body = json.loads(text) if text.strip() else {}
        if isinstance(body, dict):
            return body
    return {}


def _owners(body: dict[str, object]) -> dict[str, int]:
    owners = body.get("owners")
    if not isinstance(owners, dict):
        return {}
    return {
        str(name): charged
        for name, charged in owners.items()
        if isinstance(charged, int) and charged >= 0
    }


def _sha256(body: dict[str, object]) -> str:
    digest = body.get("sha256")
    return digest if isinstance(digest, str) else ""
