"""Authority mode: only authors the network authority admitted (and did not revoke) may write.

The authority is an ed25519 key kept offline by the operator; `edgebac network admit/revoke`
signs `NodeAdmitted` / `NodeRevoked` events with it and hands them to any node, and gossip
spreads them like any other event. Which of an author's admissions counts is decided by the
authority's own chain order, so every node reaches the same verdict.
"""

from __future__ import annotations

from collections.abc import Iterable

from edgebac.eventlog.encoding import Event

ADMISSION_TYPES = ("NodeAdmitted", "NodeRevoked")


class Admission:
    def __init__(self, authority: bytes) -> None:
        self.authority = authority
        self._verdicts: dict[bytes, tuple[int, bool]] = {}  # node -> (authority seq, admitted)

    def observe(self, events: Iterable[Event]) -> None:
        for event in events:
            if event.author != self.authority or event.type not in ADMISSION_TYPES:
                continue
            node = event.body["node"]
            seen = self._verdicts.get(node)
            if seen is None or event.seq > seen[0]:
                self._verdicts[node] = (event.seq, event.type == "NodeAdmitted")

    def is_member(self, author: bytes) -> bool:
        if author == self.authority:
            return True
        verdict = self._verdicts.get(author)
        return verdict is not None and verdict[1]

    def admitted(self) -> list[bytes]:
        return sorted(node for node, (_, ok) in self._verdicts.items() if ok)
