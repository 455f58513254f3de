"""Input storage providers: each fills one empty folder with what a source names.

Every input becomes a folder at its target. A prefix or directory keeps the objects' paths
relative to it; a single object, URL, local file or inline datum becomes one file in that folder
(named after the key's or the URL's last segment, the file's name, or `inline`). A local folder
is handed over in place, never copied. Providers raise `InputError` with a reason the user reads.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgebac.runtime.executor import ExecutionError

DEFAULT_MAX_INPUT_BYTES = 10 << 30  # per input, unless the job claims disk (resources.disk)


class InputError(ExecutionError):
    """An input could not be staged: no such key, HTTP 404, too big, path refused, ..."""


@dataclass(frozen=True)
class Fetch:
    """Where one input goes: `dest` is an empty folder; `cache` is the node's input cache."""

    url: str
    dest: Path
    cache: Path
    max_bytes: int


def safe_relative(name: str) -> Path:
    """A relative path from an object key or URL, refusing `..`, `.` and absolute parts."""
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise InputError(f"refused: {name!r} is not a safe relative path")
    return Path(*parts)


def used(cached: Path) -> Path:
    """Mark a cached input as used now: retention takes the cache's files not used within it
    (node.retain), by their mtimes."""
    os.utime(cached)
    return cached


def link_or_copy(source: Path, dest: Path) -> None:
    """Hard link a cached file into an execution's folder (same file system), else copy it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


def too_big(size: int, cap: int) -> InputError:
    return InputError(f"too big: {size} bytes, more than the {cap} byte cap")
