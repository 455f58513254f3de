"""Local paths on the compute node (`file:///abs` or `/abs`): only under allow-listed roots.

The path is resolved (symlinks and `..` included) before it is compared with the roots, also
resolved, so neither `/srv/data/../../etc` nor a symlink out of a root gets through.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgebac.runtime.providers import Fetch, InputError, link_or_copy, too_big


def resolve_allowed(url: str, roots: tuple[str, ...]) -> Path:
    """The real path of a file source, or InputError if it is outside every allowed root."""
    asked = url.removeprefix("file://")
    real = Path(os.path.realpath(asked))
    for root in roots:
        real_root = Path(os.path.realpath(root))
        if real == real_root or real_root in real.parents:
            return real
    raise InputError(f"refused: {asked} is outside the paths this node allows")


def stage(fetch: Fetch, roots: tuple[str, ...]) -> Path:
    """A folder is used in place (returned); a file is linked or copied into `fetch.dest`."""
    real = resolve_allowed(fetch.url, roots)
    if real.is_dir():
        return real
    if not real.is_file():
        raise InputError(f"no such file or folder: {fetch.url.removeprefix('file://')}")
    size = real.stat().st_size
    if size > fetch.max_bytes:
        raise too_big(size, fetch.max_bytes)
    link_or_copy(real, fetch.dest / real.name)
    return fetch.dest


def held(url: str, roots: tuple[str, ...]) -> bool:
    """Whether this node holds a file source locally (for the data-locality hint of a bid)."""
    try:
        return resolve_allowed(url, roots).exists()
    except (InputError, OSError):
        return False
