"""Inline data: small content carried in the job spec itself."""

from __future__ import annotations

from edgebac.runtime.providers import Fetch, safe_relative, too_big
from edgebac.scheduler.sources import Source

INLINE_NAME = "inline"


def stage(source: Source, fetch: Fetch, name: str | None = None) -> None:
    """The data as one file, `name` (checked by the spec: a plain file name) or `inline`."""
    data = source.inline_bytes()
    if len(data) > fetch.max_bytes:
        raise too_big(len(data), fetch.max_bytes)
    (fetch.dest / safe_relative(name or INLINE_NAME)).write_bytes(data)
