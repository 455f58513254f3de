"""Read UnixFS DAGs back: walk blocks, list entries, stream file bytes, write tar or files.

Every function takes `get(cid) -> bytes`, which must return verified blocks (the store's
`get_block` does). Names inside a DAG are untrusted: anything that is not a plain file name
("", ".", "..", with "/" or NUL) is refused before it reaches a path.

Sizes are untrusted too. Shared blocks let a small DAG declare, honestly, far more bytes than
it holds (one 1 MiB leaf linked a thousand times is a 1 GiB file), and a node may declare less
than its blocks hold; so a file's bytes never pass the size it and each of its parents declare,
and `write_tree` sums what the files declare against a cap and the free disk before writing.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edgebac.sinks.cid import CID, DAG_PB, RAW
from edgebac.sinks.dagpb import DIRECTORY, FILE, HAMT_SHARD, PBLink, decode_node, decode_unixfs
from edgebac.sinks.errors import BadContent, WriteFailed

Get = Callable[[CID], bytes]
DEFAULT_MAX_BYTES = 10 << 30  # larger results are rare at the edge; more takes an explicit cap
MAX_ENTRIES = 1_000_000  # shared folders repeat entries as shared blocks repeat bytes


class ContentTooLarge(BadContent):
    """Content that declares more bytes (or entries) than the cap allows, or than was recorded."""

    code = "content_too_large"


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


def dag_members(get: Get, root: CID, limit: int) -> frozenset[CID]:
    """Every CID in the DAG under `root`, reading only its inner (dag-pb) blocks: leaves are
    named by their parents. BadContent past `limit` CIDs (a DAG too large to index)."""
    seen: set[CID] = set()
    stack = [root]
    while stack:
        cid = stack.pop()
        if cid in seen:
            continue
        seen.add(cid)
        if len(seen) > limit:
            raise BadContent(f"the DAG under {root} has more than {limit} blocks")
        if cid.codec == DAG_PB:
            stack.extend(links_of(cid, get(cid)))
    return frozenset(seen)


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


def _file_node(
    cid: CID, block: bytes, declared: int | None
) -> tuple[list[PBLink], bytes, list[int | None], int | None]:
    """(links, inline bytes, each link's declared size, the size to hold) of a file node, the
    sizes it declares checked against each other and against what its parent declared."""
    links, data = decode_node(block)
    meta = decode_unixfs(data)
    if meta.type not in (FILE, 0):
        raise BadContent(f"{cid} is not a file")
    bound = meta.filesize if meta.filesize is not None else declared
    if declared is not None and bound != declared:
        raise BadContent(f"file {cid} is declared as {declared} bytes but declares {bound}")
    sizes: list[int | None] = list(meta.blocksizes) or [None] * len(links)
    if len(sizes) != len(links):
        raise BadContent(f"file {cid} declares {len(sizes)} block sizes for {len(links)} links")
    known = [s for s in sizes if s is not None]
    if bound is not None and len(known) == len(sizes) and len(meta.data) + sum(known) != bound:
        raise BadContent(f"file {cid} declares {bound} bytes but its blocks {sum(known)}")
    return links, meta.data, sizes, bound


def file_chunks(
    get: Get, cid: CID, block: bytes | None = None, declared: int | None = None
) -> Iterator[bytes]:
    """A file's bytes, leaf by leaf (each at most a chunk); never more than the file, or the
    parent that links it (`declared`), says it holds: a liar is refused before the excess."""
    block = get(cid) if block is None else block
    if cid.codec == RAW:
        if declared is not None and len(block) != declared:
            raise BadContent(f"block {cid} is declared as {declared} bytes but holds {len(block)}")
        if block:
            yield block
        return
    links, data, sizes, bound = _file_node(cid, block, declared)
    parts = [iter([data])] if data else []
    parts += [file_chunks(get, link.cid, None, n) for link, n in zip(links, sizes, strict=True)]
    total = 0
    for part in parts:
        for chunk in part:
            total += len(chunk)
            if bound is not None and total > bound:
                raise BadContent(f"file {cid} declares {bound} bytes but holds more")
            yield chunk
    if bound is not None and total != bound:
        raise BadContent(f"file {cid} declares {bound} bytes but holds {total}")


def declared_size(get: Get, root: CID, limit: int) -> int:
    """What the files of the DAG declare, in all; ContentTooLarge as soon as it passes `limit`
    (reads only folders and files' root blocks, so a petabyte claim costs one block)."""
    total = 0
    for count, item in enumerate(walk_items(get, root)):
        total += item.size
        if total > limit:
            raise ContentTooLarge(f"{root} declares more than the limit of {limit:,} bytes")
        if count >= MAX_ENTRIES:
            raise ContentTooLarge(f"{root} has more than {MAX_ENTRIES:,} entries")
    return total


def check_room(dest: str | os.PathLike[str], need: int) -> None:
    """WriteFailed unless the disk under `dest` has `need` bytes free (checked before writing,
    so a download that cannot fit fails at once instead of filling the disk)."""
    where = Path(dest).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    if need > free:
        raise WriteFailed(f"{need:,} bytes do not fit in the {free:,} bytes free at {where}")


GZIP = 31  # zlib's wbits for a gzip wrapper


def gzipped(chunks: Iterator[bytes], level: int = 6) -> Iterator[bytes]:
    """The gzip stream of `chunks`, compressed as they come."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, GZIP)
    for chunk in chunks:
        if out := compressor.compress(chunk):
            yield out
    yield compressor.flush()


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


def write_tree(
    get: Get, root: CID, dest: str | os.PathLike[str], limit: int | None = DEFAULT_MAX_BYTES
) -> int:
    """Write a file (to `dest`) or a folder's content (into the folder `dest`); bytes written.
    What the files declare is checked against `limit` (None: no cap) and the free disk first."""
    check_room(dest, declared_size(get, root, limit if limit is not None else 1 << 62))
    dest = Path(dest)
    total = 0
    for item in walk_items(get, root):
        target = dest / item.path if item.path else dest
        if item.kind == "directory":
            target.mkdir(parents=True, exist_ok=True)
            continue
        with open(target, "wb") as f:
            for chunk in file_chunks(get, item.cid, item.block, item.size):
                f.write(chunk)
                total += len(chunk)
    return total
