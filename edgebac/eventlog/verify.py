"""Re-check a stored log from scratch: every row against its own signed bytes, every chain.

Pure over the rows it is given, so tests feed it tampered rows directly; the CLI feeds it the
rows of a data directory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from edgebac.eventlog.encoding import EncodingError, Event, Verifier, event_id
from edgebac.eventlog.horizon import Horizon
from edgebac.eventlog.offline import StoredRow
from edgebac.eventlog.opening import open_stored


@dataclass
class LogReport:
    events: int = 0
    authors: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _column_mismatch(row: StoredRow, event: Event) -> str | None:
    columns = {
        "author": (row.author, event.author),
        "seq": (row.seq, event.seq),
        "hlc": (row.hlc, event.hlc.pack()),
        "type": (row.type, event.type),
        "job_id": (row.job_id, event.job_id),
    }
    wrong = [name for name, (stored, signed) in columns.items() if stored != signed]
    return f"columns {', '.join(wrong)} disagree with the signed event" if wrong else None


def _check_row(row: StoredRow, verifier: Verifier) -> tuple[Event | None, str | None]:
    if event_id(row.raw) != row.id:
        return None, "stored id is not the hash of the stored bytes"
    try:
        event = open_stored(row.raw, verifier)
    except EncodingError as exc:
        return None, f"{exc.reason}: {exc.detail}"
    return event, _column_mismatch(row, event)


def check_rows(rows: Iterable[StoredRow], horizon: Horizon | None = None) -> LogReport:
    """Rows must come ordered by (author, seq). With a `horizon`, a gap pruning left (at or
    below the author's highest pruned seq) is no problem, and the first kept event after
    the author's highest pruned one must name it as prev: each chain is checked from there."""
    report = LogReport()
    verifier = Verifier()
    author: bytes | None = None
    prev: Event | None = None
    expected_seq = 1
    for row in rows:
        report.events += 1
        if row.author != author:
            author, prev, expected_seq = row.author, None, 1
            report.authors += 1
        where = f"{row.author.hex()[:12]}#{row.seq}"
        gap = row.seq != expected_seq
        pruned = (
            horizon if gap and horizon and horizon.gap_allowed(row.author, row.seq - 1) else None
        )
        if gap and pruned is None:
            report.problems.append(f"{where}: gap, expected seq {expected_seq}")
        expected_seq = row.seq + 1
        event, problem = _check_row(row, verifier)
        if problem is not None:
            report.problems.append(f"{where}: {problem}")
        if event is not None:
            link = _link_problem(event, prev, pruned)
            if link is not None:
                report.problems.append(f"{where}: {link}")
        prev = event
    return report


def _link_problem(event: Event, prev: Event | None, pruned: Horizon | None) -> str | None:
    """What is wrong with how `event` follows its chain (`pruned`: after a gap pruning left)."""
    if event.seq == 1 and event.prev is not None:
        return "the first event names a prev"
    if pruned is not None:
        head = pruned.heads[event.author]
        if head.seq == event.seq - 1 and event.prev != head.id:
            return f"prev is not the pruned seq {head.seq}"
    elif prev is not None and event.prev != prev.id:
        return f"prev is not the id of seq {prev.seq}"
    if prev is not None and event.hlc <= prev.hlc:
        return "hlc does not increase"
    return None
