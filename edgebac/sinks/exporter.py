"""Read UnixFS DAGs back: walk blocks, list entries, stream file bytes, write tar or files.

Every function takes `get(cid) -> bytes`, which must return verified blocks (the store's
`get_block` does). Names inside a DAG are untrusted: anything that is not a plain file name
("", ".", "..", with "/" or NUL) is refused before it reaches a path.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edgebac.sinks.cid import CID, DAG_PB, RAW
from edgebac.sinks.dagpb import DIRECTORY, FILE, HAMT_SHARD, PBLink, decode_node, decode_unixfs
from edgebac.sinks.errors import BadContent

Get = Callable[[CID], bytes]


@dataclass(frozen=True, slots=True)
class Item:
    path: str  # "/"-joined, relative to the root; "" for the root itself
    kind: str  # "file" or "directory"
    cid: CID
    size: int  # file bytes (0 for directories)
    block: bytes | None = field(default=None, repr=False, compare=False)  # a file's root block


def links_of(cid: CID, block: bytes) -> list[CID]:
    """The CIDs a block links to (none for raw blocks)."""
    return [link.cid for link in decode_node(block)[0]] if cid.codec == DAG_PB else []


def walk_blocks(get: Get, root: CID) -> Iterator[tuple[CID, bytes]]:
    """Every block of the DAG once, depth first, parents before children (CAR order)."""
    seen: set[CID] = set()
    stack = [root]
    while stack:
        cid = stack.pop()
        if cid in seen:
            continue
        seen.add(cid)
        block = get(cid)
        yield cid, block
        stack.extend(reversed(links_of(cid, block)))


def _node(cid: CID, block: bytes) -> tuple[list[PBLink], int, int]:
    """(links, UnixFS type, file size) of a block."""
    if cid.codec == RAW:
        return [], FILE, len(block)
    links, data = decode_node(block)
    meta = decode_unixfs(data)
    if meta.type in (FILE, 0):
        size = meta.filesize if meta.filesize is not None else len(meta.data)
        return links, FILE, size
    if meta.type in (DIRECTORY, HAMT_SHARD):
        return links, meta.type, 0
    raise BadContent(f"{cid}: UnixFS type {meta.type} is not supported (only files and folders)")


def _safe_name(name: str, where: CID) -> str:
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise BadContent(f"directory {where} has an unsafe entry name {name!r}")
    return name


def _dir_entries(get: Get, cid: CID, links: list[PBLink], kind: int) -> Iterator[tuple[str, CID]]:
    if kind == DIRECTORY:
        for link in links:
            yield _safe_name(link.name, cid), link.cid
        return
    for link in links:  # HAMT shard: "XX" is a child shard, "XXname" an entry
        if len(link.name) == 2:
            child, child_kind, _ = _node(link.cid, get(link.cid))
            if child_kind != HAMT_SHARD:
                raise BadContent(f"HAMT shard {cid} links to a non-shard {link.cid}")
            yield from _dir_entries(get, link.cid, child, HAMT_SHARD)
        elif len(link.name) > 2:
            yield _safe_name(link.name[2:], cid), link.cid
        else:
            raise BadContent(f"HAMT shard {cid} has a bad link name {link.name!r}")


def walk_items(get: Get, root: CID) -> Iterator[Item]:
    """The root, then every folder and file below it, parents first, names in DAG order."""
    stack: list[tuple[str, CID]] = [("", root)]
    while stack:
        path, cid = stack.pop()
        block = get(cid)
        links, kind, size = _node(cid, block)
        if kind == FILE:
            yield Item(path, "file", cid, size, block)
            continue
        yield Item(path, "directory", cid, 0)
        children = [
            (f"{path}/{name}" if path else name, c)
            for name, c in _dir_entries(get, cid, links, kind)
        ]
        stack.extend(reversed(children))


def child(get: Get, cid: CID, name: str) -> CID | None:
    """The entry `name` of the folder `cid`; None if it has none (or `cid` is a file)."""
    links, kind, _ = _node(cid, get(cid))
    if kind == FILE:
        return None
    return next((c for n, c in _dir_entries(get, cid, links, kind) if n == name), None)


def stat(get: Get, cid: CID) -> Item:
    _, kind, size = _node(cid, get(cid))
    return Item("", "file" if kind == FILE else "directory", cid, size if kind == FILE else 0)


def file_chunks(get: Get, cid: CID, block: bytes | None = None) -> Iterator[bytes]:
    """A file's bytes, leaf by leaf (each at most a chunk), checked against its declared size."""
    block = get(cid) if block is None else block
    if cid.codec == RAW:
        if block:
            yield block
        return
    links, data = decode_node(block)
    meta = decode_unixfs(data)
    if meta.type not in (FILE, 0):
        raise BadContent(f"{cid} is not a file")
    total = len(meta.data)
    if meta.data:
        yield meta.data
    for link in links:
        for chunk in file_chunks(get, link.cid):
            total += len(chunk)
            yield chunk
    if meta.filesize is not None and total != meta.filesize:
        raise BadContent(f"file {cid} declares {meta.filesize} bytes but holds {total}")


def tar_stream(get: Get, root: CID) -> Iterator[bytes]:
    """A POSIX (pax) tar of the DAG: a folder's content at the top, or one file named by its CID."""
    for item in walk_items(get, root):
        name = item.path or (str(root) if item.kind == "file" else "")
        if not name:
            continue
        info = tarfile.TarInfo(name)
        info.mtime = 0
        if item.kind == "directory":
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            yield info.tobuf(tarfile.PAX_FORMAT, "utf-8")
            continue
        info.size, info.mode = item.size, 0o644
        yield info.tobuf(tarfile.PAX_FORMAT, "utf-8")
        yield from file_chunks(get, item.cid, item.block)
        if item.size % tarfile.BLOCKSIZE:
            yield bytes(tarfile.BLOCKSIZE - item.size % tarfile.BLOCKSIZE)
    yield bytes(tarfile.BLOCKSIZE * 2)


def write_tree(get: Get, root: CID, dest: str | os.PathLike[str]) -> int:
    """Write a file (to `dest`) or a folder's content (into the folder `dest`); bytes written."""
    dest = Path(dest)
    total = 0
    for item in walk_items(get, root):
        target = dest / item.path if item.path else dest
        if item.kind == "directory":
            target.mkdir(parents=True, exist_ok=True)
            continue
        with open(target, "wb") as f:
            for chunk in file_chunks(get, item.cid, item.block):
                f.write(chunk)
                total += len(chunk)
    return total
