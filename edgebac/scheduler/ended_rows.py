"""The `ended.Backing` of a node: the ended-job rows its last checkpoint wrote in SQLite, read
by index through an `eventlog.checkpoints.EndedReader` and decoded here (the rows' format is
`scheduler.checkpoint`'s). Nothing is cached but what one lookup needs: memory stays the same
however many jobs the rows hold.
"""

from __future__ import annotations

from collections.abc import Iterator

from edgebac.eventlog.checkpoints import EndedReader, owned_by
from edgebac.scheduler.checkpoint import HLC_SHIFT, execution_from, summary_from
from edgebac.scheduler.ended import CREATED, EndedRecord, ListedKeys, Listing
from edgebac.scheduler.retention import EndedJob
from edgebac.scheduler.state import Execution


class StoredEnded:
    def __init__(self, reader: EndedReader) -> None:
        self.reader = reader

    def close(self) -> None:
        self.reader.close()

    def record(self, job_id: str) -> EndedRecord | None:
        row = self.reader.job_row(job_id)
        if row is None:
            return None
        executions = tuple(map(execution_from, self.reader.execution_rows_of(job_id)))
        return EndedRecord(summary_from(row), executions)

    def has(self, job_id: str) -> bool:
        return self.reader.has(job_id)

    def execution(self, execution_id: str) -> Execution | None:
        row = self.reader.execution_row(execution_id)
        return execution_from(row) if row is not None else None

    def holding(self, cid: str) -> list[Execution]:
        return [execution_from(row) for row in self.reader.holding_rows(cid)]

    def named(self, name: str) -> list[EndedJob]:
        return [summary_from(row) for row in self.reader.named_rows(name)]

    def since(self, ms: int) -> list[Execution]:
        return [execution_from(row) for row in self.reader.rows_since(ms)]

    def ended_ms(self) -> dict[str, tuple[str, int | None]]:
        return self.reader.ended_ms()

    def ids_from(self, prefix: str, limit: int) -> list[str]:
        return self.reader.ids_from(prefix, limit)

    def ids(self) -> Iterator[str]:
        return self.reader.ids()

    def count(self) -> int:
        return self.reader.count()

    def digests(self) -> Iterator[tuple[str, bytes]]:
        return self.reader.digests()

    def keys(self, asked: Listing, start: int, limit: int, exclude: set[str]) -> ListedKeys:
        owner = asked.owner
        where = owned_by(owner.everyone, owner.client, owner.vouched)
        after = asked.after
        if after is not None and asked.order == CREATED:  # the row's columns, as stored
            after = (after[0] - HLC_SHIFT, after[1])
        total, rows = self.reader.keys(
            where, asked.order, asked.newest_first, start, limit, exclude, after
        )
        if asked.order == CREATED:
            return total, [(created + HLC_SHIFT, job_id) for created, job_id in rows]
        return total, [(job_id,) for (job_id,) in rows]

    def summaries(self, ids: list[str]) -> dict[str, EndedJob]:
        return {job_id: summary_from(row) for job_id, row in self.reader.job_rows(ids)}
