"""The node's data directory: created if missing, checked writable, locked to one node.

Two nodes writing one log with one key would fork their own chain; the lock makes the second
one stop with a clear message instead. The lock file (`node.lock`, the holder's pid) exists
only while a node or `edgebac node gc` holds the folder. A start that fails (a corrupt key, a
port in use) gives back what it created (`release(discard_new=True)`), so a failed try leaves
no half-made node.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgebac.errors import DataDirError
from edgebac.eventlog.identity import KEY_FILE

LOCK_FILE = "node.lock"
LOG_FILE = "events.db"
_LOG_FILES = (LOG_FILE, LOG_FILE + "-wal", LOG_FILE + "-shm", LOG_FILE + "-journal")
_LOCK_TRIES = 5


@dataclass
class DataDir:
    path: Path
    _lock_fd: int | None = None
    existed: frozenset[str] | None = None  # names in the folder before we opened it; None: new

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    def release(self, discard_new: bool = False) -> None:
        """Drop the lock and remove its file (a data dir no node holds has none); with
        `discard_new`, first remove what this node created. The file goes while the flock
        is still held: a node that opened it just before takes a lock on a removed file,
        sees so, and tries again (`_lock`)."""
        if discard_new and self._lock_fd is not None:
            self._discard_new()
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):  # a read-only remount since: it stays
                (self.path / LOCK_FILE).unlink(missing_ok=True)
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    def _discard_new(self) -> None:
        """Remove what appeared since we opened the folder, while we still hold the lock.

        A new log goes only with a new key: a log written under a key that already existed
        may hold that identity's events, and losing them would make it fork its own chain.
        """
        if self.existed is None:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        new = set(os.listdir(self.path)) - self.existed
        if KEY_FILE not in new:
            new -= set(_LOG_FILES)
        for name in sorted(new):
            target = self.path / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)


def _ensure_dir(path: Path) -> bool:
    """Create the folder if needed; True if it was there already."""
    existed = path.is_dir()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise DataDirError(f"data directory {path} exists and is not a directory") from None
    except OSError as exc:
        raise DataDirError(f"data directory {path} cannot be created: {exc.strerror}") from None
    if not path.is_dir():
        raise DataDirError(f"data directory {path} exists and is not a directory")
    return existed


def _lock(path: Path) -> int:
    """An fd holding the flock on the lock file that is at `lock_path` now.

    A node that failed to start removes the lock file it created; another node that opened
    that file just before would hold a lock on a removed file, so it checks and tries again.
    """
    lock_path = path / LOCK_FILE
    for _ in range(_LOCK_TRIES):
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise DataDirError(f"data directory {path} is not writable: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirError(
                f"data directory {path} is in use by another edgebac node (pid {holder})"
            ) from None
        try:
            if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
    raise DataDirError(f"data directory {path}: its lock file keeps being replaced")


def open_data_dir(path: Path) -> DataDir:
    """Create or open the data directory and take its lock, or explain why not."""
    path = path.expanduser().absolute()
    existed = _ensure_dir(path)
    names = frozenset(os.listdir(path)) if existed else None
    fd = _lock(path)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return DataDir(path, fd, names)
