"""Ids are data, never paths: the one format of each id the log carries, and the one way an id
becomes a file name.

Every id in an event comes from some author, and any member may be compromised: an execution id
`/var/lib` or `../../x` must never reach `Path(folder) / id`. The projection counts an event only
if its ids have their format (see `authority`), and every place that turns an id into a path
calls `child_path`, which yields a name inside its folder or refuses.
"""

from __future__ import annotations

import re
from pathlib import Path

JOB_ID = re.compile(r"j-[0-9a-f]{16}")
EXECUTION_ID = re.compile(r"(j-[0-9a-f]{16})-(0|[1-9][0-9]{0,5})-([0-9a-f]{8})")
# CIDv1 in base32 (what our store makes: `b` + lower-case base32) or CIDv0 (base58btc `Qm...`).
CID = re.compile(r"b[a-z2-7]{20,120}|Qm[1-9A-HJ-NP-Za-km-z]{44}")
# A file name on every file system we run on: no separators, no leading dot, bounded.
FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


class UnsafeName(ValueError):
    """A name that cannot be used as a file name inside a folder."""


def is_job_id(value: object) -> bool:
    return isinstance(value, str) and JOB_ID.fullmatch(value) is not None


def is_execution_id(value: object) -> bool:
    return isinstance(value, str) and EXECUTION_ID.fullmatch(value) is not None


def is_cid(value: object) -> bool:
    return isinstance(value, str) and CID.fullmatch(value) is not None


def is_file_name(value: object) -> bool:
    return isinstance(value, str) and FILE_NAME.fullmatch(value) is not None


def execution_id(job_id: str, attempt: int, node: bytes) -> str:
    """The one id an execution of (job, round, node) may have: deterministic, so two replays of
    the same decision name the same execution, and checkable, so no author can choose it."""
    return f"{job_id}-{attempt}-{node.hex()[:8]}"


def child_path(folder: Path, name: str) -> Path:
    """`folder / name` for a name of one path component in `FILE_NAME`'s format; anything else
    (separators, `..`, absolute paths, NULs, empty, over-long) is refused."""
    if not is_file_name(name):
        raise UnsafeName(f"{name!r} is not a safe file name")
    return folder / name
