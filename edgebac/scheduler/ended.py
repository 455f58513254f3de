"""Where the projection keeps the ended jobs it let go of: an overlay in memory over rows a
checkpoint already wrote, so memory does not grow with every job the log ever held.

The overlay holds what changed since the last checkpoint: jobs let go of (`put`) and jobs taken
back (`pop`, remembered as None so the stored row is hidden). A checkpoint `freeze`s it: the
frozen layer is what is being written; once the write is in, `committed` drops it (the rows
now hold it) and `failed` puts it back. Lookups read the overlay, then the frozen layer, then
the `Backing`: `EMPTY` for pure code and tests (everything then lives in the overlay), rows in
SQLite for a node (`scheduler.checkpoint.StoredEnded`: indexed point reads, read only; the
log's one writer writes them, in the checkpoint's transaction).

The store is a read-only Mapping (job id -> EndedJob) so tests and tools can look at it as
they looked at the dict it replaces; the node's paths use the indexed methods (`get`,
`execution`, `holding`, `listing`), never a full iteration.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from edgebac.scheduler.retention import EndedJob
from edgebac.scheduler.state import Execution, Job


@dataclass(frozen=True, slots=True)
class EndedRecord:
    """One ended job let go of: its summary and its executions (which never change again)."""

    summary: EndedJob
    executions: tuple[Execution, ...]


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose jobs a listing shows (as `Caller.may_read` says): everyone's, or those signed by
    `client`, or (unsigned) vouched for as `vouched`; nothing if neither is given."""

    everyone: bool = True
    client: bytes | None = None
    vouched: str | None = None

    def owns(self, job: Job | EndedJob) -> bool:
        if self.everyone:
            return True
        if job.client is not None:
            return job.client == self.client
        return self.vouched is not None and job.vouched == self.vouched


CREATED, ID = "created", "id"  # the orders a listing may ask for


@dataclass(frozen=True, slots=True)
class Listing:
    """What a listing asks for: an order, its direction, whose jobs, and a window: `limit`
    jobs from `offset` in, or (keyset paging) the `limit` jobs right after the one whose sort
    key is `after` (`sort_key`: the last of the page before), found by index however deep."""

    order: str = CREATED
    newest_first: bool = True  # descending (by creation, or by id)
    owner: Owner = field(default_factory=Owner)
    offset: int = 0
    limit: int = 50
    after: tuple[Any, ...] | None = None  # with it, `offset` is not used


class Page(NamedTuple):
    """A page, how many jobs the listing holds in all, and whether any follow the page."""

    items: list[Job | EndedJob]
    total: int
    more: bool


class Backing(Protocol):
    """Ended jobs a checkpoint stored (read only). `exclude`: ids the overlay speaks for."""

    def record(self, job_id: str) -> EndedRecord | None: ...
    def has(self, job_id: str) -> bool: ...
    def execution(self, execution_id: str) -> Execution | None: ...
    def holding(self, cid: str) -> list[Execution]: ...
    def named(self, name: str) -> list[EndedJob]: ...
    def since(self, ms: int) -> list[Execution]: ...
    def ended_ms(self) -> dict[str, tuple[str, int | None]]: ...  # id -> (job id, ms)
    def ids_from(self, prefix: str, limit: int) -> list[str]: ...
    def ids(self) -> Iterator[str]: ...
    def count(self) -> int: ...
    def digests(self) -> Iterator[tuple[str, bytes]]: ...
    def keys(self, asked: Listing, start: int, limit: int, exclude: set[str]) -> ListedKeys: ...
    def summaries(self, ids: list[str]) -> dict[str, EndedJob]: ...


# (how many rows match, minus `exclude`; their sort keys from `start`, as `sort_key` makes;
# with `asked.after`, from the first row after it, `start` being 0)
ListedKeys = tuple[int, list[tuple[Any, ...]]]


def sort_key(order: str, job: Job | EndedJob) -> tuple[Any, ...]:
    """A job's place in a listing (ascending); rows in SQLite sort by the same columns."""
    return (job.id,) if order == ID else (job.created_hlc.pack(), job.id)


class _Empty:
    """No stored rows: pure folds keep every ended job in the overlay."""

    def record(self, job_id: str) -> EndedRecord | None:
        return None

    def has(self, job_id: str) -> bool:
        return False

    def execution(self, execution_id: str) -> Execution | None:
        return None

    def holding(self, cid: str) -> list[Execution]:
        return []

    def named(self, name: str) -> list[EndedJob]:
        return []

    def since(self, ms: int) -> list[Execution]:
        return []

    def ended_ms(self) -> dict[str, tuple[str, int | None]]:
        return {}

    def ids_from(self, prefix: str, limit: int) -> list[str]:
        return []

    def ids(self) -> Iterator[str]:
        return iter(())

    def count(self) -> int:
        return 0

    def digests(self) -> Iterator[tuple[str, bytes]]:
        return iter(())

    def keys(self, asked: Listing, start: int, limit: int, exclude: set[str]) -> ListedKeys:
        return 0, []

    def summaries(self, ids: list[str]) -> dict[str, EndedJob]:
        return {}


EMPTY: Backing = _Empty()

Layer = dict[str, EndedRecord | None]  # job id -> record, or None: taken back


class EndedStore(Mapping[str, EndedJob]):
    def __init__(self, backing: Backing = EMPTY) -> None:
        self.backing = backing
        self._current: Layer = {}
        self._frozen: Layer = {}
        self._by_execution: dict[str, str] = {}  # execution id -> job id, of both layers

    # ----- changes (the projection's) --------------------------------------------------------

    def put(self, record: EndedRecord) -> None:
        self._current[record.summary.id] = record
        for execution in record.executions:
            self._by_execution[execution.id] = record.summary.id

    def pop(self, job_id: str) -> EndedRecord | None:
        """Take a job back (to fold it again): its record, or None if not let go of."""
        record = self.record(job_id)
        if record is None:
            return None
        if self._current.pop(job_id, None) is not None:
            self._reindex({job_id: record})
        if job_id in self._frozen or self.backing.has(job_id):
            self._current[job_id] = None  # hides the frozen or stored one
        return record

    # ----- checkpoints -----------------------------------------------------------------------

    def freeze(self) -> Layer:
        """The changes since the last checkpoint, kept readable while they are written."""
        if self._frozen:
            raise RuntimeError("a checkpoint is being written already")
        self._frozen, self._current = self._current, {}
        return self._frozen

    def everything(self) -> Layer:
        """With no rows stored: every record (a full checkpoint writes them all)."""
        if self.backing is not EMPTY:
            raise RuntimeError("a full checkpoint of a store with stored rows")
        return {**self._frozen, **self._current}

    def committed(self, backing: Backing | None = None) -> None:
        """The frozen layer is in the rows now (`backing`: read them there from now on)."""
        if backing is not None:
            self.backing = backing
        frozen, self._frozen = self._frozen, {}
        self._reindex(frozen)

    def failed(self) -> None:
        """The write did not happen: the frozen changes are changes again."""
        self._frozen, self._current = {}, {**self._frozen, **self._current}

    def _reindex(self, gone: Layer) -> None:
        """Forget the executions of records that only the rows hold now."""
        for job_id, record in gone.items():
            now = self._current.get(job_id)
            kept = {e.id for e in now.executions} if now is not None else set()
            for execution in record.executions if record is not None else ():
                if execution.id not in kept:
                    self._by_execution.pop(execution.id, None)

    def _layer_get(self, job_id: str) -> EndedRecord | None:
        for layer in (self._current, self._frozen):
            if job_id in layer:
                return layer[job_id]
        return None

    # ----- lookups ---------------------------------------------------------------------------

    def record(self, job_id: str) -> EndedRecord | None:
        for layer in (self._current, self._frozen):
            if job_id in layer:
                return layer[job_id]
        return self.backing.record(job_id)

    def get(self, job_id: str, default: Any = None) -> Any:
        record = self.record(job_id)
        return record.summary if record is not None else default

    def __getitem__(self, job_id: str) -> EndedJob:
        record = self.record(job_id)
        if record is None:
            raise KeyError(job_id)
        return record.summary

    def __contains__(self, job_id: object) -> bool:
        if not isinstance(job_id, str):
            return False
        for layer in (self._current, self._frozen):
            if job_id in layer:
                return layer[job_id] is not None
        return self.backing.has(job_id)

    def _spoken_for(self) -> set[str]:
        """Ids whose stored rows the layers replace or hide."""
        return {*self._current, *self._frozen}

    def _overlay(self) -> dict[str, EndedRecord]:
        """The records the layers hold, newest layer first."""
        merged = {**self._frozen, **self._current}
        return {job_id: r for job_id, r in merged.items() if r is not None}

    def __iter__(self) -> Iterator[str]:
        """Every id, in order (reads every stored id: for tests and tools)."""
        spoken = self._spoken_for()
        stored = (i for i in self.backing.ids() if i not in spoken)
        return heapq.merge(stored, sorted(self._overlay()))

    def __len__(self) -> int:
        spoken = self._spoken_for()
        stored = self.backing.count() - sum(1 for i in spoken if self.backing.has(i))
        return stored + len(self._overlay())

    def digests(self) -> Iterator[tuple[str, bytes]]:
        """(job id, digest) of every ended job, in job id order: their part of the state hash."""
        spoken = self._spoken_for()
        if not spoken:  # nothing changed since the checkpoint (as at start): the rows alone
            return self.backing.digests()
        stored = ((i, d) for i, d in self.backing.digests() if i not in spoken)
        overlay = sorted((i, r.summary.digest) for i, r in self._overlay().items())
        return heapq.merge(stored, overlay)

    def with_prefix(self, prefix: str, limit: int = 1000) -> list[str]:
        spoken = self._spoken_for()
        ids = [i for i in self.backing.ids_from(prefix, limit) if i not in spoken]
        return ids + [i for i in self._overlay() if i.startswith(prefix)]

    def named(self, name: str) -> list[EndedJob]:
        spoken = self._spoken_for()
        found = [s for s in self.backing.named(name) if s.id not in spoken]
        return found + [r.summary for r in self._overlay().values() if r.summary.name == name]

    def execution(self, execution_id: str) -> Execution | None:
        job_id = self._by_execution.get(execution_id)
        if job_id is not None:
            record = self._layer_get(job_id)
            for execution in record.executions if record else ():
                if execution.id == execution_id:
                    return execution
        execution = self.backing.execution(execution_id)
        if execution is not None and execution.job_id in self._spoken_for():
            return None  # that job's stored row is replaced or hidden
        return execution

    def holding(self, cid: str) -> list[Execution]:
        """Executions of ended jobs whose result is `cid` (its reference or digest)."""
        spoken = self._spoken_for()
        found = [e for e in self.backing.holding(cid) if e.job_id not in spoken]
        for record in self._overlay().values():
            found += [e for e in record.executions if cid in (e.reference, e.digest)]
        return found

    def since(self, ms: int) -> list[Execution]:
        """Executions of ended jobs that ended at `ms` or later (or never did): by index."""
        spoken = self._spoken_for()
        found = [e for e in self.backing.since(ms) if e.job_id not in spoken]
        for record in self._overlay().values():
            found += [e for e in record.executions if e.ended_hlc is None or e.ended_hlc.ms >= ms]
        return found

    def ended_ms(self) -> dict[str, int | None]:
        """When each execution of an ended job ended (ms), by id: one column, no rows read."""
        spoken = self._spoken_for()
        out = {i: ms for i, (job_id, ms) in self.backing.ended_ms().items() if job_id not in spoken}
        for record in self._overlay().values():
            out |= {e.id: e.ended_hlc.ms if e.ended_hlc else None for e in record.executions}
        return out

    def executions(self) -> Iterator[Execution]:
        """Every execution of every ended job (reads every row: for tests and tools)."""
        for job_id in self:
            record = self.record(job_id)
            yield from record.executions if record else ()

    def listing(self, held: Iterable[Job], asked: Listing) -> Page:
        """One page of held and ended jobs together, and how many there are in all."""
        mem: list[Job | EndedJob] = [j for j in held if asked.owner.owns(j)]
        mem += [r.summary for r in self._overlay().values() if asked.owner.owns(r.summary)]
        if asked.after is not None:
            return page_after(self.backing, mem, asked, self._spoken_for())
        return page(self.backing, mem, asked, self._spoken_for())


def _key_of(order: str) -> Callable[[Any], tuple[Any, ...]]:
    return lambda job: sort_key(order, job)


def page(backing: Backing, mem: list[Job | EndedJob], asked: Listing, exclude: set[str]) -> Page:
    """Merge the stored rows (read by index, from the one place the page can start) with the
    jobs in memory (few: the held ones and the overlay's), in the order asked for.

    Whatever sorts before the window, `start = offset - len(mem)` stored rows at least do: the
    stored rows from there and every jobs in memory after the first of them hold the page."""
    key, desc = _key_of(asked.order), asked.newest_first
    mem.sort(key=key, reverse=desc)
    start = max(0, asked.offset - len(mem))
    stored_total, keys = backing.keys(asked, start, asked.limit + len(mem), exclude)
    total = stored_total + len(mem)
    if asked.offset >= total:
        return Page([], total, False)
    if start == 0 or not keys:
        merged_from, items = 0, mem
    else:  # the jobs in memory before keys[0]: somewhere among the `start` rows skipped
        first = keys[0]
        before = [j for j in mem if (key(j) > first if desc else key(j) < first)]
        merged_from, items = start + len(before), mem[len(before) :]
    merged = _merged(keys, items, key, desc)
    window = merged[asked.offset - merged_from : asked.offset - merged_from + asked.limit]
    shown = _summaries(backing, window)
    return Page(shown, total, asked.offset + len(shown) < total)


def page_after(
    backing: Backing, mem: list[Job | EndedJob], asked: Listing, exclude: set[str]
) -> Page:
    """The page right after `asked.after`: the stored rows after it (an index seek, not an
    OFFSET walked) merged with the jobs in memory after it. Keys are unique (they end with the
    job id), so pages by cursor neither skip nor repeat a job while nothing changes, and a job
    added or let go of between two pages moves no other across the cursor."""
    key, desc, after = _key_of(asked.order), asked.newest_first, asked.after
    items = sorted((j for j in mem if (key(j) < after if desc else key(j) > after)), key=key)
    if desc:
        items.reverse()
    stored_total, keys = backing.keys(asked, 0, asked.limit + 1, exclude)
    merged = _merged(keys, items, key, desc)[: asked.limit + 1]
    shown = _summaries(backing, merged[: asked.limit])
    return Page(shown, stored_total + len(mem), len(merged) > asked.limit)


Merged = list[tuple[tuple[Any, ...], Job | EndedJob | None]]  # sort key, job (None: a row's)


def _merged(keys: list[tuple[Any, ...]], mem: list[Job | EndedJob], key: Any, desc: bool) -> Merged:
    rows: Merged = [(k, None) for k in keys]
    return list(heapq.merge(rows, [(key(j), j) for j in mem], key=lambda r: r[0], reverse=desc))


def _summaries(backing: Backing, window: Merged) -> list[Job | EndedJob]:
    """The window's jobs: the rows' summaries read in one go (by id, the key's last part)."""
    wanted = [k[-1] for k, job in window if job is None]
    found = backing.summaries(wanted) if wanted else {}
    return [job if job is not None else found[k[-1]] for k, job in window]


class Executions(Mapping[str, Execution]):
    """Every execution by id: those of held jobs (a dict the projection keeps) and those of
    ended ones (the store). Iterating reads every row: the node's paths use `get`, `held`,
    `holding` and `of_job`."""

    def __init__(self, held: dict[str, Execution], ended: EndedStore) -> None:
        self.held = held
        self.ended = ended

    def __getitem__(self, execution_id: str) -> Execution:
        execution = self.held.get(execution_id) or self.ended.execution(execution_id)
        if execution is None:
            raise KeyError(execution_id)
        return execution

    def get(self, execution_id: str, default: Any = None) -> Any:
        execution = self.held.get(execution_id) or self.ended.execution(execution_id)
        return execution if execution is not None else default

    def __contains__(self, execution_id: object) -> bool:
        return isinstance(execution_id, str) and self.get(execution_id) is not None

    def __iter__(self) -> Iterator[str]:
        yield from self.held
        for execution in self.ended.executions():
            yield execution.id

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def holding(self, cid: str) -> list[Execution]:
        """Executions, held or ended, whose result is `cid` (by reference or digest)."""
        held = [e for e in self.held.values() if cid in (e.reference, e.digest)]
        return held + self.ended.holding(cid)

    def since(self, ms: int) -> list[Execution]:
        """Executions, held or ended, that ended at `ms` or later, or have not ended."""
        held = [e for e in self.held.values() if e.ended_hlc is None or e.ended_hlc.ms >= ms]
        return held + self.ended.since(ms)

    def ended_ms(self) -> dict[str, int | None]:
        """When each execution ended (ms; None: not yet), by id."""
        held = {i: e.ended_hlc.ms if e.ended_hlc else None for i, e in self.held.items()}
        return self.ended.ended_ms() | held
