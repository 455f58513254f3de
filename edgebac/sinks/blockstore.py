"""The node's content-addressed block store on disk.

Layout under the root folder the node gives (e.g. DATA_DIR/content):
`blocks/XY/<cid>` holds each block once (XY = the two characters before the CID's last one,
as go-ds-flatfs shards), written to `tmp/` and renamed into place so a block file is always
whole (a shard folder emptied by retention goes, and comes back with its next block);
`complete/<cid>` marks a DAG known to be held entirely (after an import or a verified fetch;
a cache that `holds` can rebuild by walking the DAG); `pinned/<cid>` marks a DAG a client put
here (`POST /api/v1/content`) that garbage collection must keep. Every block read is checked
against its CID: a damaged file is moved to `corrupt/` and reported, never served.

Methods block on disk I/O: call them from a thread (`asyncio.to_thread`) in async code.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from edgebac.sinks import exporter, unixfs
from edgebac.sinks.car import block_prefix, car_header, read_car
from edgebac.sinks.cid import CID
from edgebac.sinks.errors import BadContent, ContentNotFound, CorruptBlock, WriteFailed
from edgebac.sinks.pins import Pins

MAX_BLOCK_SIZE = 2 * 1024 * 1024  # ipfs-car blocks hold at most 1 MiB of data plus a header
_SYNCFS = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
IMPORT_THREADS = max(2, min(4, os.cpu_count() or 1))  # hashing and writing release the GIL
# A typical results folder (stdout, stderr, exitCode, a few small outputs) imports faster in
# the calling thread than the hop to a pool costs; only bigger ones are spread over threads.
SMALL_IMPORT_BYTES = 4 << 20
_PLACE_TRIES = 3  # a block's rename into a shard folder a sweep removed meanwhile


def _larger_than(path: str | os.PathLike[str], limit: int) -> bool:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
            if total > limit:
                return True
    if os.path.isfile(path):
        return os.path.getsize(path) > limit
    return False


class BlockStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._blocks = self.root / "blocks"
        self._tmp = self.root / "tmp"
        self._complete = self.root / "complete"
        self._corrupt = self.root / "corrupt"
        self._pinned = self.root / "pinned"
        for folder in (self._blocks, self._tmp, self._complete, self._corrupt, self._pinned):
            folder.mkdir(parents=True, exist_ok=True)
        self.pins = Pins(self._pinned)
        for leftover in self._tmp.iterdir():  # a crash mid-write leaves only temp files
            leftover.unlink(missing_ok=True)
        self._shards: set[str] = set()
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def _path(self, cid: CID) -> Path:
        text = str(cid)
        return self._blocks / text[-3:-1] / text

    def has(self, cid: CID) -> bool:
        """Whether the block itself is on disk (not whether its DAG is complete: see `holds`)."""
        return self._path(cid).exists()

    def put(self, cid: CID, data: bytes | memoryview, *, verified: bool = False) -> bool:
        """Store a block once (checked against its CID unless `verified`); True if it was new."""
        if len(data) > MAX_BLOCK_SIZE:
            raise BadContent(f"block {cid} is {len(data)} bytes, more than {MAX_BLOCK_SIZE}")
        if not verified:
            cid.verify(data)
        path = self._path(cid)
        if path.exists():
            with contextlib.suppress(OSError):  # a block used again is young again: a
                os.utime(path)  # retention sweep never takes one a new DAG is being built of
            return False
        shard = path.parent.name
        if shard not in self._shards:
            path.parent.mkdir(exist_ok=True)
            with self._lock:
                self._shards.add(shard)
        tmp = self._tmp / f"{path.name}.{uuid.uuid4().hex}"
        with open(tmp, "wb", buffering=0) as f:
            f.write(data)
        for _ in range(_PLACE_TRIES):
            try:
                os.replace(tmp, path)
                return True
            except FileNotFoundError:  # a sweep removed its emptied shard folder just now
                path.parent.mkdir(exist_ok=True)
        os.replace(tmp, path)
        return True

    def drop_empty_shards(self) -> int:
        """Remove the shard folders a sweep emptied; how many went. Safe beside `put`: rmdir
        takes only an empty folder, and a `put` that finds its folder gone makes it again."""
        dropped = 0
        for shard in self._blocks.iterdir():
            try:
                shard.rmdir()
            except OSError:  # not empty (or not a folder): kept
                continue
            dropped += 1
        return dropped

    def get_block(self, cid: CID) -> bytes:
        """The block's bytes, verified; ContentNotFound if absent, CorruptBlock if damaged."""
        path = self._path(cid)
        try:
            with open(path, "rb", buffering=0) as f:
                data = f.read(MAX_BLOCK_SIZE + 1)
        except FileNotFoundError:
            raise ContentNotFound(f"block {cid} is not in this store") from None
        try:
            cid.verify(data)
        except CorruptBlock:
            os.replace(path, self._corrupt / path.name)
            for marker in self._complete.iterdir():  # cheap, and corruption is rare
                marker.unlink(missing_ok=True)
            raise
        return data

    # -- whole DAGs -------------------------------------------------------------------------

    def import_path(self, path: str | os.PathLike[str], *, hidden: bool = True) -> unixfs.DagLink:
        """Import a file or folder (ipfs-car rules, see `unixfs`); its root CID and sizes."""
        written: list[Path] = []
        put = self._putter(written)
        pool = self._import_pool() if _larger_than(path, SMALL_IMPORT_BYTES) else None
        link = unixfs.import_path(path, put, hidden=hidden, pool=pool)
        self._sync(written)
        self.mark_complete(link.cid)
        return link

    def import_files(self, files: Mapping[str, bytes]) -> unixfs.DagLink:
        """Import a folder of files held in memory (see `unixfs.import_files`): the same DAG
        as `import_path` of those files, without creating them on disk first. Blocks already
        held (the same output again) cost no file and no sync."""
        written: list[Path] = []
        put = self._putter(written)
        link = unixfs.import_files(files, put)
        self._sync(written)
        self.mark_complete(link.cid)
        return link

    def _putter(self, written: list[Path]) -> unixfs.Put:
        """A `put` for the importers that notes the blocks it wrote (to sync them)."""

        def put(cid: CID, data: bytes | memoryview) -> None:
            if self.put(cid, data, verified=True):
                written.append(self._path(cid))

        return put

    def _import_pool(self) -> ThreadPoolExecutor:
        """One pool for the store's lifetime: a pool per import costs a millisecond per job."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(IMPORT_THREADS, thread_name_prefix="import")
            return self._pool

    def _sync(self, paths: list[Path]) -> None:
        """Make new blocks durable before anyone is told about them, once per import.

        One syncfs(2) of the store's file system where the C library has it (one journal
        commit, not one per block); otherwise an fsync of each new block and folder.
        """
        if not paths:
            return
        fd = os.open(self._blocks, os.O_RDONLY)
        try:
            if _SYNCFS is not None and _SYNCFS(fd) == 0:
                return
        finally:
            os.close(fd)
        for path in [*paths, *{p.parent for p in paths}]:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def temp_path(self) -> Path:
        """A fresh name in the store's temp folder (emptied at every start: crash-safe)."""
        return self._tmp / f"upload.{uuid.uuid4().hex}"

    def import_upload(
        self, path: Path, name: str | None = None, owner: str | None = None, sha256: str = ""
    ) -> unixfs.DagLink:
        """Import an uploaded file, wrapped in a folder as `name` if given, and pin it for
        `owner`, charged the file's size."""
        written: list[Path] = []
        put = self._putter(written)
        pool = self._import_pool() if _larger_than(path, SMALL_IMPORT_BYTES) else None
        link = unixfs.import_file(path, put, pool=pool)
        if name is not None:
            link = unixfs.wrap(name, link, put)
        self._sync(written)
        self.mark_complete(link.cid)
        self.pin(link.cid, owner, path.stat().st_size, sha256)
        return link

    def import_car_upload(self, path: Path, owner: str | None = None, sha256: str = "") -> CID:
        """Import an uploaded CAR of one whole DAG and pin its root. A CAR that lacks blocks
        of its DAG is refused; the blocks it did bring stay unpinned (collectable)."""
        with open(path, "rb") as stream:
            roots = self.import_car(stream)
        if len(roots) != 1:
            raise BadContent(f"an uploaded CAR has one root, not {len(roots)}")
        if not self.holds(roots[0]):
            raise BadContent(f"the CAR lacks blocks of the DAG under its root {roots[0]}")
        self.pin(roots[0], owner, path.stat().st_size, sha256)
        return roots[0]

    def pin(self, cid: CID, owner: str | None = None, charged: int = 0, sha256: str = "") -> None:
        """Mark a DAG as kept (its blocks are on disk already), for `owner` (see `pins`)."""
        self.pins.add(cid, owner, charged, sha256)

    def pinned(self) -> list[CID]:
        """The DAGs clients put here: roots that garbage collection keeps, with their blocks."""
        return [pin.cid for pin in self.pins.all()]

    def mark_complete(self, cid: CID) -> None:
        marker = self._complete / str(cid)
        if not marker.exists():  # a file creation waits on the disk; a lookup does not
            marker.touch()

    def holds(self, cid: CID) -> bool:
        """Whether every block of the DAG under `cid` is here (checks, then remembers)."""
        if (self._complete / str(cid)).exists() and self.has(cid):
            return True
        try:
            for _ in exporter.walk_blocks(self.get_block, cid):
                pass
        except (ContentNotFound, CorruptBlock, BadContent):
            return False
        self.mark_complete(cid)
        return True

    def stat(self, cid: CID) -> exporter.Item:
        """Kind ("file" or "directory") and size of the content; ContentNotFound if absent."""
        return exporter.stat(self.get_block, cid)

    def export_to(self, cid: CID, dest: str | os.PathLike[str]) -> int:
        """Write the file to `dest`, or the folder's content into folder `dest`; bytes written."""
        try:
            return exporter.write_tree(self.get_block, cid, dest)
        except OSError as exc:
            where = exc.filename or os.fspath(dest)
            raise WriteFailed(f"cannot write {where!r}: {exc.strerror or exc}") from None

    def export_tar(self, cid: CID) -> Iterator[bytes]:
        """A tar stream of the content (see `exporter.tar_stream`), verified block by block."""
        return exporter.tar_stream(self.get_block, cid)

    def export_file(self, cid: CID) -> Iterator[bytes]:
        """The bytes of a file, verified block by block."""
        return exporter.file_chunks(self.get_block, cid)

    def read_entry(self, cid: CID, name: str) -> bytes | None:
        """The bytes of the file `name` in the folder `cid`, verified; None if it has none.
        ContentNotFound (or CorruptBlock) if the store lacks a block of it."""
        entry = exporter.child(self.get_block, cid, name)
        if entry is None:
            return None
        return b"".join(exporter.file_chunks(self.get_block, entry))

    def export_car(self, cid: CID) -> Iterator[bytes]:
        """A CARv1 with `cid` as its root and every block of its DAG, parents first."""
        yield car_header([cid])
        for block_cid, block in exporter.walk_blocks(self.get_block, cid):
            yield block_prefix(block_cid, len(block))
            yield block

    def import_car(self, stream: BinaryIO) -> list[CID]:
        """Store every (verified) block of a CAR read from a binary file; its roots."""
        roots, blocks = read_car(stream)
        for cid, data in blocks:
            self.put(cid, data, verified=True)
        return roots
