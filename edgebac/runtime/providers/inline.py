"""Inline data: small content carried in the job spec itself."""

from __future__ import annotations

from edgebac.runtime.providers import Fetch, too_big
from edgebac.scheduler.sources import Source

INLINE_NAME = "inline"


def stage(source: Source, fetch: Fetch) -> None:
    data = source.inline_bytes()
    if len(data) > fetch.max_bytes:
        raise too_big(len(data), fetch.max_bytes)
    (fetch.dest / INLINE_NAME).write_bytes(data)
