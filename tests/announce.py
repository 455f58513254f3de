"""What opens a test author's chain: its `NodeAnnounced` (an author's first event must be, see
edgebac/eventlog/types.FIRST_TYPES), so the events after it are judged as a member's."""

from __future__ import annotations

from typing import Any

from nacl.signing import SigningKey

from edgebac.eventlog.clock import Hlc
from edgebac.eventlog.encoding import Event, seal

# An author that runs nothing and asks for nothing: it only says that it exists.
ANNOUNCEMENT: dict[str, Any] = {
    "addresses": [],
    "roles": [],
    "labels": {},
    "resources": {},
    "executors": [],
}


def announcement(**fields: Any) -> tuple[str, dict[str, Any]]:
    """An item for `EventLog.append`: the announcement, with `fields` over the defaults."""
    return "NodeAnnounced", ANNOUNCEMENT | fields


def announced(key: SigningKey, hlc: Hlc, **fields: Any) -> Event:
    """`key`'s first event (seq 1): its announcement."""
    return seal(key, 1, None, hlc, *announcement(**fields))
