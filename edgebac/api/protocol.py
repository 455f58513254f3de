"""What a route may ask of the node it serves: the API's side of the seam with `edgebac.node`.

The node satisfies these protocols structurally; nothing here imports it, so the API can be
built, read and tested without the node's wiring, and the two never import each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from edgebac.eventlog.identity import Identity
from edgebac.eventlog.store import EventLog
from edgebac.scheduler.projection import Projection
from edgebac.scheduler.state import Job
from edgebac.sinks.blockstore import BlockStore


class JobView(Protocol):
    """The node's projection of the log and the waits on it (the node's job runner)."""

    @property
    def state(self) -> Projection: ...

    def refresh(self) -> Projection:
        """The projection with every stored event folded in."""
        ...

    async def full_job(self, job_id: str) -> Job | None:
        """A job with all its details, folded again from the log if it was let go of."""
        ...

    async def wait_job(self, job_id: str, timeout_s: float) -> Job | None:
        """The job as soon as it ends (None if it did not within the time)."""
        ...

    async def wait_folded(self, timeout_s: float) -> None:
        """Until the next fold of new events, or the time is up."""
        ...

    def results_dir(self, execution_id: str) -> Path: ...


class ContentView(Protocol):
    @property
    def store(self) -> BlockStore: ...

    def holds(self, url: str) -> bool:
        """Whether this node's store holds the whole of `ipfs://CID`."""
        ...

    def presigned(self, bucket: str, key: str) -> str | None:
        """A credential-free GET URL of an S3 object, if this node can sign one (blocking)."""
        ...


class EventIntake(Protocol):
    async def ingest(self, raws: Sequence[bytes]) -> Any:
        """Store foreign signed events and spread them; a report of accepted and refused."""
        ...


class ServedNode(Protocol):
    """The node as its API sees it."""

    @property
    def identity(self) -> Identity: ...

    @property
    def log(self) -> EventLog: ...

    @property
    def runner(self) -> JobView: ...

    @property
    def content(self) -> ContentView: ...

    @property
    def gossip(self) -> EventIntake: ...

    @property
    def roles(self) -> frozenset[str]: ...

    @property
    def ready(self) -> bool:
        """Whether the node has folded its log and is scheduling: answers about jobs are whole."""
        ...

    @property
    def advertised(self) -> str:
        """The address other nodes and clients reach this node at (HOST:PORT)."""
        ...

    def holders(self, cid: str) -> list[str]:
        """Base URLs of nodes that may hold a CID, likeliest first."""
        ...

    async def describe(self) -> dict[str, Any]: ...

    async def known_nodes(self) -> list[dict[str, Any]]: ...


NODE_KEY: web.AppKey[ServedNode] = web.AppKey("node")


def served_node(request: web.Request) -> ServedNode:
    return request.app[NODE_KEY]
