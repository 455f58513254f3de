"""The node's data directory: created if missing, checked writable, locked to one node.

Two nodes writing one log with one key would fork their own chain; the lock makes the second
one stop with a clear message instead.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from edgebac.errors import DataDirError

LOCK_FILE = "node.lock"
LOG_FILE = "events.db"


@dataclass
class DataDir:
    path: Path
    _lock_fd: int | None = None

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None


def _ensure_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise DataDirError(f"data directory {path} exists and is not a directory") from None
    except OSError as exc:
        raise DataDirError(f"data directory {path} cannot be created: {exc.strerror}") from None
    if not path.is_dir():
        raise DataDirError(f"data directory {path} exists and is not a directory")


def open_data_dir(path: Path) -> DataDir:
    """Create or open the data directory and take its lock, or explain why not."""
    path = path.expanduser().absolute()
    _ensure_dir(path)
    lock_path = path / LOCK_FILE
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
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return DataDir(path, fd)
