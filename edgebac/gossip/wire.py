"""What crosses the wire between gossipers, and the seams they cross it through.

The transport and the log are protocols (an HTTP transport and the SQLite log in a node, in-memory
ones in the simulator); the checks take a message apart without trusting it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from edgebac.eventlog.chain import Head
from edgebac.eventlog.store import IngestReport, Page

MAX_VV_ENTRIES = 1024  # per message (gossip/vectors.py): 43 KB of vector at most


class TransportError(Exception):
    """The peer could not be reached or did not answer properly (the exchange is abandoned).

    `unreachable`: nothing answered (refused connection, unknown name, timeout); `code`: the
    peer answered with a refusal of that code (`wrong_network_key`, `clock_skew`, ...).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        unreachable: bool = False,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.unreachable = unreachable
        self.detail = detail or message  # the peer's own words, without our prefix


class ProtocolError(ValueError):
    """A message that opened fine but is not a well-formed protocol message."""


class Transport(Protocol):
    async def request(self, address: str, message: dict[str, Any]) -> tuple[bytes, Any]:
        """Deliver `message` to the node at `address`; return (its node id, its reply).

        Raises TransportError on any failure, within the transport's own timeout.
        """
        ...


class SyncLog(Protocol):
    """What gossip needs from the event log (EventLog implements it)."""

    def version_vector(self) -> Mapping[bytes, int]:
        """Held state, from memory: never blocks."""
        ...

    def head(self, author: bytes) -> Head | None:
        """The author's last held event (seq, id), from memory: never blocks."""
        ...

    async def after(
        self, wants: Sequence[tuple[bytes, int]], *, max_events: int, max_bytes: int
    ) -> Page:
        """Events of the wanted (author, seq) pairs past that seq, in order, bounded; reads the
        database (does not wait for writers)."""
        ...

    async def ingest(self, raws: Sequence[bytes]) -> IngestReport:
        """Verify and store; bad events come back as rejections, never as exceptions.

        Waits for the log's single writer, so it may take a while under load.
        """
        ...


def check_vv(value: Any) -> dict[bytes, int]:
    if not isinstance(value, dict):
        raise ProtocolError("vv is not a map of authors to seqs")
    if len(value) > MAX_VV_ENTRIES:
        raise ProtocolError(
            f"vv has {len(value)} entries; a message carries at most {MAX_VV_ENTRIES}"
        )
    for author, seq in value.items():
        if not (isinstance(author, bytes) and len(author) == 32 and type(seq) is int and seq >= 0):
            raise ProtocolError("vv has an entry that is not (32-byte author, seq)")
    return value


def check_events(value: Any) -> list[bytes]:
    if not isinstance(value, list) or not all(isinstance(raw, bytes) for raw in value):
        raise ProtocolError("events is not a list of byte strings")
    return value


def check_bytes(value: Any, size: int, what: str) -> bytes:
    if not (isinstance(value, bytes) and len(value) == size):
        raise ProtocolError(f"{what} is not {size} bytes")
    return value
