"""The node list the API shows: this node, the members gossip knows, and seeds that never
answered, with the roles and labels each announced. Pure: the rows from what the node holds."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from edgebac.scheduler.state import NodeInfo


def member_rows(
    me: dict[str, Any],
    members: Sequence[dict[str, Any]],
    announced: Callable[[bytes], NodeInfo | None],
    unreachable: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """`me` and `members` (id, addresses, liveness) with the roles and labels they announced
    (`announced`: a node's info in the projection), then each unreachable seed whose address
    no member has (no id, its error)."""
    rows = [dict(me), *(dict(member) for member in members)]
    for row in rows:
        info = announced(bytes.fromhex(row["id"]))
        row["roles"] = list(info.roles) if info is not None else []
        row["labels"] = dict(info.labels) if info is not None else {}
    known = {address for row in rows for address in row["addresses"]}
    for peer in unreachable:
        if peer["address"] not in known:
            rows.append(
                {
                    "id": None,
                    "addresses": [peer["address"]],
                    "liveness": "unreachable",
                    "roles": [],
                    "labels": {},
                    "error": peer["error"],
                }
            )
    return rows
