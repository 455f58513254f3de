"""Build UnixFS DAGs from files and folders exactly as `ipfs-car pack` (v3) does.

ipfs-car uses @ipld/unixfs with: raw leaves (also for single-chunk and empty files, whose
CID is then the raw leaf's), fixed 1 MiB chunks, a balanced layout of at most 1024 children
per node, CIDv1 sha2-256, and a HAMT-sharded directory past 1,000 entries. Which files it
takes comes from `files-from-path`: regular files and folders only (symlinks and special files
are skipped, empty folders vanish, names starting with "." are skipped unless `--hidden`),
and the folder's content becomes the root with no wrapping folder of its own name, except that
a chain of folders holding nothing but one folder collapses into it (the root is the common
parent folder of all files). `import_path` follows those rules, so its root CID equals
`ipfs-car pack --hidden DIR` (or `ipfs-car pack DIR` with `hidden=False`), and for a lone
file it equals `ipfs-car pack --no-wrap FILE`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from edgebac.sinks.cid import CID, DAG_PB, RAW
from edgebac.sinks.dagpb import DIRECTORY, FILE, PBLink, UnixFSData, encode_node, encode_unixfs
from edgebac.sinks.errors import BadContent
from edgebac.sinks.hamt import Entry, build_sharded_directory

CHUNK_SIZE = 1024 * 1024
MAX_CHILDREN = 1024
SHARD_THRESHOLD = 1000  # ipfs-car shards a directory of more than this many entries

Put = Callable[[CID, "bytes | memoryview"], None]


@dataclass(frozen=True, slots=True)
class DagLink:
    """The root of an imported DAG: its CID, its DAG bytes and its content bytes."""

    cid: CID
    tsize: int
    size: int


_local = threading.local()


def _buffer(size: int) -> memoryview:
    """This thread's chunk buffer, reused so that no MiB is allocated per leaf."""
    view = getattr(_local, "view", None)
    if view is None or len(view) < size:
        view = _local.view = memoryview(bytearray(max(size, CHUNK_SIZE)))
    return view[:size]


def _leaf(fd: int, offset: int, size: int, put: Put) -> DagLink:
    chunk = _buffer(size)
    got = 0
    while got < size:
        n = os.preadv(fd, [chunk[got:]], offset + got)
        if not n:
            raise BadContent("a file shrank while it was being imported")
        got += n
    cid = CID.of(RAW, chunk)  # hashlib lets go of the GIL: leaves hash in parallel
    put(cid, chunk)
    return DagLink(cid, size, size)


def import_file(
    path: str | os.PathLike[str],
    put: Put,
    chunk_size: int = CHUNK_SIZE,
    pool: Executor | None = None,
) -> DagLink:
    """Chunk a file into raw leaves under a balanced tree; every block goes through `put`.

    Leaves are read into reused per-thread buffers: `put` gets a memoryview that is only
    valid during the call (it must copy what it keeps) and, with a `pool`, is called from
    several threads at once.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        offsets = range(0, size, chunk_size) if size else range(1)

        def leaf(offset: int) -> DagLink:
            return _leaf(fd, offset, min(chunk_size, size - offset), put)

        leaves = list(pool.map(leaf, offsets) if pool else map(leaf, offsets))
        if os.fstat(fd).st_size != size:
            raise BadContent(f"{os.fspath(path)!r} changed while it was being imported")
    finally:
        os.close(fd)
    return _balanced(leaves, put)


def _balanced(level: list[DagLink], put: Put) -> DagLink:
    """Group links into nodes of MAX_CHILDREN, level by level, until one root remains."""
    while len(level) > 1:
        level = [
            _file_node(level[i : i + MAX_CHILDREN], put) for i in range(0, len(level), MAX_CHILDREN)
        ]
    return level[0]


def _file_node(parts: list[DagLink], put: Put) -> DagLink:
    size = sum(p.size for p in parts)
    data = UnixFSData(FILE, filesize=size, blocksizes=tuple(p.size for p in parts))
    block = encode_node([PBLink(p.cid, "", p.tsize) for p in parts], encode_unixfs(data))
    cid = CID.of(DAG_PB, block)
    put(cid, block)
    return DagLink(cid, len(block) + sum(p.tsize for p in parts), size)


@dataclass
class _Folder:
    files: dict[str, str] = field(default_factory=dict)  # name -> path
    folders: dict[str, _Folder] = field(default_factory=dict)


def _check_name(name: str, where: str) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise BadContent(f"{os.path.join(where, name)!r}: file name is not UTF-8") from None


def _scan(path: str, hidden: bool) -> _Folder | None:
    """The folder's regular files and non-empty subfolders; None when it holds no file."""
    folder = _Folder()
    with os.scandir(path) as it:
        for entry in it:
            if not hidden and entry.name.startswith("."):
                continue
            if entry.is_file(follow_symlinks=False):
                _check_name(entry.name, path)
                folder.files[entry.name] = entry.path
            elif entry.is_dir(follow_symlinks=False):
                sub = _scan(entry.path, hidden)
                if sub is not None:
                    _check_name(entry.name, path)
                    folder.folders[entry.name] = sub
    return folder if folder.files or folder.folders else None


def import_bytes(data: bytes, put: Put, chunk_size: int = CHUNK_SIZE) -> DagLink:
    """The DAG of a file held in memory: the same blocks as `import_file` of those bytes."""
    view = memoryview(data)
    leaves = []
    for offset in range(0, len(data), chunk_size) if data else range(1):
        chunk = view[offset : offset + chunk_size]
        cid = CID.of(RAW, chunk)
        put(cid, chunk)
        leaves.append(DagLink(cid, len(chunk), len(chunk)))
    return _balanced(leaves, put)


def import_files(files: Mapping[str, bytes], put: Put) -> DagLink:
    """The DAG of a folder of files held in memory (no subfolders), as `import_path` would
    build it from those files on disk: for results that never need to touch the disk."""
    for name in files:
        if name in ("", ".", "..") or "/" in name or "\0" in name:
            raise BadContent(f"{name!r} is not a file name")
        _check_name(name, "")
    return _directory({name: import_bytes(data, put) for name, data in files.items()}, put)


def wrap(name: str, link: DagLink, put: Put) -> DagLink:
    """A folder holding `link` as the file `name`: what `ipfs-car pack FILE` makes of a lone
    file (without `--no-wrap`), so an input staged from it arrives under its own name."""
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise BadContent(f"{name!r} is not a file name")
    _check_name(name, "")
    return _directory({name: link}, put)


def _build_folder(folder: _Folder, put: Put, pool: Executor | None) -> DagLink:
    links = {name: import_file(p, put, pool=pool) for name, p in folder.files.items()}
    for name, sub in folder.folders.items():
        links[name] = _build_folder(sub, put, pool)
    return _directory(links, put)


def _directory(links: dict[str, DagLink], put: Put) -> DagLink:
    size = sum(link.size for link in links.values())
    if len(links) > SHARD_THRESHOLD:
        entries = [Entry(name, link.cid, link.tsize) for name, link in links.items()]
        cid, tsize = build_sharded_directory(entries, put)
        return DagLink(cid, tsize, size)
    pb_links = [PBLink(link.cid, name, link.tsize) for name, link in links.items()]
    block = encode_node(pb_links, encode_unixfs(UnixFSData(DIRECTORY)))
    cid = CID.of(DAG_PB, block)
    put(cid, block)
    return DagLink(cid, len(block) + sum(link.tsize for link in links.values()), size)


def import_path(
    path: str | os.PathLike[str], put: Put, *, hidden: bool = True, pool: Executor | None = None
) -> DagLink:
    """The DAG of a file or folder, with ipfs-car's rules (see the module docstring).

    `put(cid, data)` receives every block, leaves first, each root last (see `import_file`).
    """
    target = Path(path)
    try:
        if target.is_file():
            return import_file(target, put, pool=pool)
        if not target.is_dir():
            raise BadContent(f"{str(target)!r} is not a file or a folder")
        folder = _scan(str(target), hidden) or _Folder()
    except OSError as exc:
        raise BadContent(f"cannot read {exc.filename or str(target)!r}: {exc.strerror}") from None
    while not folder.files and len(folder.folders) == 1:
        folder = next(iter(folder.folders.values()))
    try:
        return _build_folder(folder, put, pool)
    except OSError as exc:
        raise BadContent(f"cannot read {exc.filename!r}: {exc.strerror}") from None
