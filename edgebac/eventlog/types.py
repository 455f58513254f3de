"""The event types the log accepts and the minimal shape of each body.

Shapes name only the fields the log itself relies on (ids that index events, keys that name
nodes); each part that owns a type validates the rest when it projects the event. Extra fields
are allowed so newer nodes can add information older ones ignore.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Check = Callable[[Any], bool]


def _str(value: Any) -> bool:
    return isinstance(value, str)


def _int(value: Any) -> bool:
    return type(value) is int


def _map(value: Any) -> bool:
    return isinstance(value, dict)


def _key(value: Any) -> bool:
    return isinstance(value, bytes) and len(value) == 32


def _sig(value: Any) -> bool:
    return isinstance(value, bytes) and len(value) == 64


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _bool(value: Any) -> bool:
    return isinstance(value, bool)


def _number(value: Any) -> bool:
    return type(value) in (int, float)


def _map_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)


CHECK_NAMES: dict[Check, str] = {
    _str: "a string",
    _int: "an integer",
    _map: "a map",
    _key: "a 32-byte public key",
    _sig: "a 64-byte signature",
    _str_list: "a list of strings",
    _bool: "a boolean",
    _number: "a number",
    _map_list: "a list of maps",
}


@dataclass(frozen=True)
class BodyShape:
    required: Mapping[str, Check]
    optional: Mapping[str, Check] = field(default_factory=dict)

    def problem(self, body: Mapping[str, Any]) -> str | None:
        """Why `body` does not fit, or None."""
        for name, check in self.required.items():
            if name not in body:
                return f"missing field {name!r}"
            if not check(body[name]):
                return f"field {name!r} is not {CHECK_NAMES[check]}"
        for name, check in self.optional.items():
            if name in body and not check(body[name]):
                return f"field {name!r} is not {CHECK_NAMES[check]}"
        return None


def _job(optional: Mapping[str, Check] | None = None, **extra: Check) -> BodyShape:
    return BodyShape(required={"job_id": _str, **extra}, optional=optional or {})


EVENT_TYPES: dict[str, BodyShape] = {
    "NodeAnnounced": BodyShape(
        required={
            "addresses": _str_list,
            "roles": _str_list,
            "labels": _map,
            "resources": _map,
            "executors": _str_list,
        },
        optional={"version": _str},
    ),
    # Written by the network authority (the author is the authority key), about another node.
    "NodeAdmitted": BodyShape(required={"node": _key}),
    "NodeRevoked": BodyShape(required={"node": _key}, optional={"reason": _str}),
    # Free-form annotations by operators and clients (also test traffic); projections ignore it.
    "Note": BodyShape(required={"text": _str}),
    # A requester's decision that a node is gone; liveness itself is not logged.
    "NodeLost": BodyShape(required={"node": _key}, optional={"reason": _str}),
    # Job events: the bodies are documented in edgebac/scheduler/events.py. Shapes here are the
    # floor every node enforces; the projection ignores events whose author has no say.
    "JobCreated": _job(
        spec=_map,
        optional={
            "client": _key,
            "client_sig": _sig,
            "vouched": _str,
            "nonce": _str,
            "wall_ms": _int,
        },
    ),
    "BidsRequested": _job(attempt=_int, optional={"reason": _str}),
    "BidOffered": _job(
        optional={"attempt": _int, "local_data": _bool, "free": _map, "cost": _number}
    ),
    "BidDeclined": _job(reason=_str, optional={"attempt": _int, "detail": _str}),
    "BidAccepted": _job(node=_key, execution_id=_str, optional={"attempt": _int}),
    "BidRejected": _job(node=_key, reason=_str, optional={"attempt": _int}),
    "ExecutionStarted": _job(execution_id=_str),
    "ExecutionFailed": _job(execution_id=_str, reason=_str),
    "ResultPublished": _job(
        execution_id=_str,
        exit_code=_int,
        optional={
            "reference": _str,
            "digest": _str,
            "size": _int,
            "stdout_head": _str,
            "stderr_head": _str,
        },
    ),
    "JobCompleted": _job(),
    "JobFailed": _job(reason=_str, optional={"attempts": _map_list}),
    "JobCanceled": _job(optional={"reason": _str}),
}


# What may open an author's chain: a member's own announcement of itself (so every event it
# writes after can be judged by the roles it announced), or an authority's first verdict.
FIRST_TYPES = frozenset({"NodeAnnounced", "NodeAdmitted", "NodeRevoked"})


def body_problem(type_: str, body: Mapping[str, Any]) -> tuple[str, str] | None:
    """(reason, detail) when an event of this type and body is not acceptable, else None."""
    shape = EVENT_TYPES.get(type_)
    if shape is None:
        return "unknown_type", f"unknown event type {type_!r}"
    problem = shape.problem(body)
    if problem is not None:
        return "bad_body", f"{type_}: {problem}"
    return None
