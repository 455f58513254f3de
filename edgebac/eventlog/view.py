"""Events as JSON for the API and the CLI: bytes become hex, the rest stays as signed."""

from __future__ import annotations

from typing import Any

from edgebac.eventlog.encoding import Event
from edgebac.textdata import when


def jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    return value


def event_json(event: Event, pos: int | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": event.id.hex(),
        "author": event.author.hex(),
        "seq": event.seq,
        "prev": event.prev.hex() if event.prev else None,
        "hlc": str(event.hlc),
        "type": event.type,
        "body": jsonable(event.body),
        "sig": event.sig.hex(),
    }
    if pos is not None:
        view["pos"] = pos
    return view


def event_line(event: Event, now_ms: int, pos: int | None = None) -> str:
    """One line per event for people: where, when (local time and age, not the hlc), who,
    what, and the job it concerns."""
    where = f"{pos:>6} " if pos is not None else ""
    job = f" job={event.job_id}" if event.job_id else ""
    return (
        f"{where}{when(event.hlc.pack(), now_ms)} {event.author.hex()[:12]}#{event.seq:<5} "
        f"{event.type}{job} id={event.id.hex()[:12]}"
    )
