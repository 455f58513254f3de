"""The SQLite event log: with `offline` (read-only access for `edgebac log`), `checkpoints`
(the projection saved beside the log), `prune` and `kept` (late joining), the only modules
that speak SQL.

One writer task owns every write and commits each group of requests in one transaction, so
concurrent appends share an fsync (group commit) and the chain never sees two writers. The
writer's connection lives on one thread of its own, and a group's whole transaction is one
call there (a thread hop per statement would cost more than the statements). Reads use their
own connection; WAL lets them run while the writer commits, and each read is one call on that
connection's thread (reads interleaved there would share a stale snapshot). The database refuses
UPDATE and DELETE on events and fork evidence by itself (triggers), whatever code runs on it,
but for the one pruning path (`prune`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sqlite3
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
from nacl.signing import SigningKey

from edgebac.errors import LogStoreError
from edgebac.eventlog.adopt import AdoptRefused, Summary, comparable, kept_digest, problems
from edgebac.eventlog.chain import Fork, Head, Reason, Rejection, Verdict, check_chains
from edgebac.eventlog.checkpoints import (
    CHECKPOINT_SCHEMA,
    Checkpoint,
    CheckpointWrite,
    EndedReader,
    check_checkpoint,
    write_checkpoint,
)
from edgebac.eventlog.clock import Hlc, HybridClock
from edgebac.eventlog.encoding import EncodingError, Event, decode, event_id, seal
from edgebac.eventlog.horizon import Horizon, HorizonError, pack, sign, unpack
from edgebac.eventlog.kept import Cursor, kept_ids, kept_page, write_adopted
from edgebac.eventlog.opening import open_batch
from edgebac.eventlog.prune import PRUNE_SCHEMA, Prune, prunable_jobs, read_horizon
from edgebac.eventlog.types import FIRST_TYPES, body_problem

logger = logging.getLogger(__name__)
APPLICATION_ID = 0x45444742  # "EDGB": tells our databases from any other SQLite file
# Version 2 made `pos` the rowid and dropped the index on `id` (nothing looks events up by id):
# two fewer b-trees to write per event. Version 1 files have the same columns and are used as
# they are.
SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    pos INTEGER PRIMARY KEY,       -- local arrival order, for tailing the log
    author BLOB NOT NULL,
    seq INTEGER NOT NULL,
    id BLOB NOT NULL,
    hlc INTEGER NOT NULL,
    type TEXT NOT NULL,
    job_id TEXT,
    raw BLOB NOT NULL,
    UNIQUE (author, seq)
);
CREATE INDEX IF NOT EXISTS events_by_type ON events (type, pos);
CREATE INDEX IF NOT EXISTS events_by_job ON events (job_id, pos) WHERE job_id IS NOT NULL;
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only: UPDATE refused'); END;

CREATE TABLE IF NOT EXISTS forks (
    id BLOB PRIMARY KEY,
    author BLOB NOT NULL,
    seq INTEGER NOT NULL,
    held_id BLOB NOT NULL,
    detected_ms INTEGER NOT NULL,
    raw BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS forks_no_update BEFORE UPDATE ON forks
BEGIN SELECT RAISE(ABORT, 'fork evidence is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS forks_no_delete BEFORE DELETE ON forks
BEGIN SELECT RAISE(ABORT, 'fork evidence is append-only: DELETE refused'); END;
"""

INSERT_EVENT = (
    "INSERT INTO events (author, seq, pos, id, hlc, type, job_id, raw) VALUES (?,?,?,?,?,?,?,?)"
)
INSERT_FORK = (
    "INSERT OR IGNORE INTO forks (id, author, seq, held_id, detected_ms, raw) VALUES (?,?,?,?,?,?)"
)

MAX_GROUP = 64  # requests committed together; bounds one transaction's size and latency
_CORES = os.cpu_count() or 1
INLINE_VERIFY = 8  # at most this many events are verified on the loop: a thread hop costs more
RECENT_IDS = 1 << 14  # ids of the newest stored events, to drop gossip's duplicates unverified


@dataclass
class IngestReport:
    accepted: list[Event] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def errors(self) -> list[Rejection]:
        """Rejections that mean something is wrong; duplicates are the normal cost of gossip."""
        return [r for r in self.rejections if r.reason is not Reason.DUPLICATE]


@dataclass(frozen=True, slots=True)
class Page:
    raws: list[bytes]
    complete: bool  # False: more is missing than fitted; ask again with the updated vector


@dataclass(frozen=True, slots=True)
class ForkRecord:
    author: bytes
    seq: int
    id: bytes
    held_id: bytes
    detected_ms: int


class _Writer:
    """The writer's SQLite connection, used only from its own single thread."""

    def __init__(self, conn: sqlite3.Connection, thread: ThreadPoolExecutor) -> None:
        self.conn = conn
        self._thread = thread

    @classmethod
    async def connect(cls, path: Path) -> _Writer:
        thread = ThreadPoolExecutor(1, thread_name_prefix="eventlog-writer")
        try:
            conn = await asyncio.get_running_loop().run_in_executor(
                thread,
                functools.partial(
                    sqlite3.connect, path, isolation_level=None, check_same_thread=False
                ),
            )
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return cls(conn, thread)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(conn, *args)` on the writer's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, self.conn, *args)

    async def close(self) -> None:
        try:
            await self.run(sqlite3.Connection.close)
        finally:
            self._thread.shutdown(wait=False)


def _prepare(conn: sqlite3.Connection, path: Path) -> None:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = conn.execute("SELECT name FROM sqlite_master").fetchall()
    create = check_identity(path, app_id, version, bool(tables))
    if create:  # before WAL mode writes the header: pruning then gives pages back (vacuum.py)
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("PRAGMA journal_mode = WAL")
    # FULL: a commit is on disk before we acknowledge it, even across power loss.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA busy_timeout = 5000")
    if create:
        conn.executescript(
            f"BEGIN; {SCHEMA} PRAGMA application_id = {APPLICATION_ID};"
            f" PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        )
    # On every open: see there (the second replaces an older file's trigger on DELETE).
    conn.executescript(f"BEGIN; {CHECKPOINT_SCHEMA} {PRUNE_SCHEMA} COMMIT;")


def _read_heads(conn: sqlite3.Connection) -> tuple[list[tuple[Any, ...]], int | None]:
    """Each author's newest event, by two seeks of the (author, seq) index per author: a
    GROUP BY reads the whole index (0.4-0.7 s at 1M events), this reads one entry an author."""
    newest = "SELECT author, seq, id, hlc FROM events WHERE author = ? ORDER BY seq DESC LIMIT 1"
    heads = []
    author = conn.execute("SELECT MIN(author) FROM events").fetchone()[0]
    while author is not None:
        heads.append(conn.execute(newest, (author,)).fetchone())
        after = conn.execute("SELECT MIN(author) FROM events WHERE author > ?", (author,))
        author = after.fetchone()[0]
    return heads, conn.execute("SELECT MAX(pos) FROM events").fetchone()[0]


def _select_held(
    conn: sqlite3.Connection, wanted: dict[bytes, set[int]]
) -> dict[tuple[bytes, int], bytes]:
    held: dict[tuple[bytes, int], bytes] = {}
    for author, seqs in wanted.items():
        marks = ",".join("?" * len(seqs))
        rows = conn.execute(
            f"SELECT seq, id FROM events WHERE author = ? AND seq IN ({marks})", (author, *seqs)
        )
        for seq, id_ in rows:
            held[(author, seq)] = id_
    return held


def _write_group(
    conn: sqlite3.Connection, mode: str | None, rows: list[tuple], fork_rows: list[tuple]
) -> None:
    """One group's transaction (after setting `synchronous` to `mode`, unless None)."""
    if mode is not None:
        conn.execute(f"PRAGMA synchronous = {mode}")
    if not rows and not fork_rows:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(INSERT_EVENT, rows)
        conn.executemany(INSERT_FORK, fork_rows)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


@dataclass
class _Request:
    kind: str  # "append" | "ingest"
    payload: Any
    done: asyncio.Future[Any]


def not_ours(path: Path, why: str) -> LogStoreError:
    return LogStoreError(f"{path} is not an edgebac event log: {why}")


def check_identity(path: Path, app_id: int, version: int, has_tables: bool) -> bool:
    """True when the schema must be created; raises when the file belongs to someone else."""
    if app_id == 0 and version == 0:
        if has_tables:
            raise not_ours(path, "it is a SQLite database of another program")
        return True
    if app_id != APPLICATION_ID:
        raise not_ours(path, f"SQLite application id is {app_id:#x}")
    if version > SCHEMA_VERSION:
        raise LogStoreError(
            f"{path} was written by a newer edgebac (schema {version}, this one knows "
            f"{SCHEMA_VERSION}); upgrade edgebac to open it"
        )
    return False


def _row_values(event: Event, pos: int) -> tuple[Any, ...]:
    return (
        event.author,
        event.seq,
        pos,
        event.id,
        event.hlc.pack(),
        event.type,
        event.job_id,
        event.raw,
    )


class EventLog:
    """The node's append-only log. Create with `await EventLog.open(...)`; `close()` drains."""

    def __init__(
        self,
        path: Path,
        writer: _Writer,
        reader: aiosqlite.Connection,
        clock: HybridClock,
        key: SigningKey | None,
    ) -> None:
        self.path = path
        self.clock = clock
        self.is_member: Callable[[bytes], bool] = lambda author: True
        self._writer = writer
        self._reader = reader
        self._key = key
        # Threads that check a batch's signatures beside the one that decoded it.
        self._helpers = ThreadPoolExecutor(_CORES - 1, "eventlog-verify") if _CORES > 1 else None
        self._heads: dict[bytes, Head] = {}
        self._vector: tuple[dict[bytes, Head], dict[bytes, int]] | None = None  # of these heads
        self._kept: tuple[bytes, Summary] | None = None  # (packed horizon, its summary)
        # Set by the node's pruner while a prune of many batches is under way: its horizon is
        # about to move, and a node joining late waits for it (gossip.late).
        self.horizon_moving = False
        # ...and when it moves next: (ms from now, the pruner's period in ms); None: never.
        self.horizon_move: Callable[[], tuple[int, int]] | None = None
        # Times a peer lacked events this log pruned (it cannot follow those chains from here).
        self.pruned_asked = 0
        self._next_pos = 1
        self._queue: asyncio.Queue[_Request | None] = asyncio.Queue()
        self._listeners: list[Callable[[list[Event]], None]] = []
        self._grown = asyncio.Event()  # replaced after each commit that stored something
        # Push gossip delivers most events more than once; an id (the hash of the signed
        # bytes) already stored means the very bytes we verified and stored: a duplicate.
        self._recent_ids: set[bytes] = set()
        self._recent_order: deque[bytes] = deque()
        self._sync_mode: str | None = "FULL"  # as _prepare left the writer
        self._writer_task: asyncio.Task[None] | None = None
        self._closing = False

    # ----- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def open(cls, path: Path, clock: HybridClock, key: SigningKey | None = None) -> EventLog:
        """Open or create the log at `path`; `key` signs local appends (None: read and ingest)."""
        writer = reader = None
        try:
            writer = await _Writer.connect(path)
            await writer.run(_prepare, path)
            reader = await aiosqlite.connect(path, isolation_level=None)
            await reader.execute("PRAGMA query_only = ON")
            await reader.execute("PRAGMA busy_timeout = 5000")
        except sqlite3.DatabaseError as exc:
            for conn in (writer, reader):
                if conn is not None:
                    await conn.close()
            raise not_ours(path, str(exc)) from None
        except LogStoreError:
            if writer is not None:
                await writer.close()
            raise
        log = cls(path, writer, reader, clock, key)
        await log._load_heads()
        log._writer_task = asyncio.create_task(log._write_loop(), name="eventlog-writer")
        return log

    async def _load_heads(self) -> None:
        heads, last_pos = await self._writer.run(_read_heads)
        newest = Hlc(0, 0)
        for author, seq, id_, hlc in heads:
            head = Head(seq, id_, Hlc.unpack(hlc))
            self._heads[author] = head
            newest = max(newest, head.hlc)
        # A chain's newest event may have been pruned: it is still held as far as the chain
        # (and a peer's version vector) goes, or gossip would bring it back.
        horizon = await self.read_horizon()
        for author, pruned in (horizon.heads if horizon else {}).items():
            if author not in self._heads or pruned.seq > self._heads[author].seq:
                self._heads[author] = Head(pruned.seq, pruned.id, horizon.heard[author])
                newest = max(newest, horizon.heard[author])
        self._vector = None  # filled in place above: a vector cached before is stale
        self._next_pos = (last_pos or 0) + 1
        # Our next events must sort after everything held, even if the wall clock went back.
        self.clock.advance_to(newest)

    async def close(self) -> None:
        """Finish every queued write, then close: nothing acknowledged or queued is lost."""
        self._closing = True  # set before any await: no request can queue behind the sentinel
        if self._writer_task is not None:
            await self._queue.put(None)
            await self._writer_task
            self._writer_task = None
        await self._reader.close()
        await self._writer.close()
        if self._helpers is not None:
            self._helpers.shutdown(wait=False)

    # ----- writing ---------------------------------------------------------------------------

    async def append(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Event]:
        """Sign and durably append local events, in order. Returns them once committed."""
        if self._key is None:
            raise LogStoreError(f"{self.path} is open without a node key: cannot append")
        for type_, body in items:
            problem = body_problem(type_, body)
            if problem is not None:
                raise EncodingError(*problem)
        return await self._submit("append", list(items))

    async def ingest(self, raws: Sequence[bytes]) -> IngestReport:
        """Verify and store events from elsewhere; refused ones come back with their reasons."""
        raws, held = self._drop_recent(raws)
        if len(raws) <= INLINE_VERIFY:  # on the loop: a thread hop would cost more
            events, refused = open_batch(raws, None, 1)
        else:
            # Signature checks are most of an ingest's cost; one thread per core does a part.
            events, refused = await asyncio.to_thread(open_batch, raws, self._helpers, _CORES)
        report = IngestReport(rejections=held + refused)
        if events:
            verdict: Verdict = await self._submit("ingest", events)
            report.accepted = verdict.accepted
            report.rejections.extend(verdict.rejections)
        return report

    def _drop_recent(self, raws: Sequence[bytes]) -> tuple[list[bytes], list[Rejection]]:
        """(raws not stored lately, duplicate rejections of those that were)."""
        fresh: list[bytes] = []
        held: list[Rejection] = []
        for raw in raws:
            id_ = event_id(raw)
            if id_ in self._recent_ids:
                held.append(Rejection(Reason.DUPLICATE, "event is already held", event_id=id_))
            else:
                fresh.append(raw)
        return fresh, held

    def _remember(self, events: list[Event]) -> None:
        for event in events:
            if len(self._recent_order) >= RECENT_IDS:
                self._recent_ids.discard(self._recent_order.popleft())
            self._recent_order.append(event.id)
            self._recent_ids.add(event.id)

    def add_listener(self, listener: Callable[[list[Event]], None]) -> None:
        """Call `listener` with every batch of newly stored events, right after its commit."""
        self._listeners.append(listener)

    async def _submit(self, kind: str, payload: Any) -> Any:
        if self._closing:
            raise LogStoreError(f"{self.path} is closed")
        done = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(kind, payload, done))
        return await done

    async def _write_loop(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            group = [first]
            stop = False
            while len(group) < MAX_GROUP and not self._queue.empty():
                request = self._queue.get_nowait()
                if request is None:
                    stop = True
                    break
                group.append(request)
            try:
                await self._commit_group(group)
            except Exception as exc:  # the writer must outlive any one bad group
                logger.exception("event log writer: group failed")
                for request in group:
                    if not request.done.done():
                        request.done.set_exception(LogStoreError(f"{self.path}: {exc}"))
            if stop:
                return

    async def _commit_group(self, group: list[_Request]) -> None:
        heads = dict(self._heads)
        rows: list[tuple[Any, ...]] = []
        fork_rows: list[tuple[Any, ...]] = []
        new_events: list[Event] = []
        results: list[tuple[_Request, Any]] = []
        # (author, seq) -> id of what this group will store: not in the database until the
        # commit, yet a later request of the group must see it as held (a duplicate, not a fork).
        in_group: dict[tuple[bytes, int], bytes] = {}
        for request in group:
            try:
                if request.kind == "append":
                    result = events = self._seal_local(request.payload, heads)
                else:
                    result = await self._check(request.payload, heads, in_group)
                    events = result.accepted
                    fork_rows.extend(self._fork_row(fork) for fork in result.forks)
            except EncodingError as exc:
                request.done.set_exception(exc)
                continue
            for event in events:
                rows.append(_row_values(event, self._next_pos + len(rows)))
                in_group[(event.author, event.seq)] = event.id
            new_events.extend(events)
            results.append((request, result))
        try:
            mode = self._durability(any(r.kind == "append" for r, _ in results))
            await self._write_rows(rows, fork_rows, mode=mode)
        except sqlite3.Error as exc:
            self._sync_mode = None  # unknown after a failure: set it again next time
            error = LogStoreError(f"{self.path}: write failed: {exc}")
            for request, _ in results:
                request.done.set_exception(error)
            return
        self._heads = heads
        self._next_pos += len(rows)
        for request, result in results:
            request.done.set_result(result)
        if new_events:
            self._remember(new_events)
            self._grown.set()
            self._grown = asyncio.Event()
            for listener in self._listeners:
                listener(new_events)

    def _seal_local(self, items: list[tuple[str, Mapping[str, Any]]], heads: dict) -> list[Event]:
        assert self._key is not None
        author = bytes(self._key.verify_key)
        head = heads.get(author)
        seq, prev = (head.seq, head.id) if head else (0, None)
        if seq == 0 and items and items[0][0] not in FIRST_TYPES:
            raise EncodingError(
                "not_announced",
                f"this node's first event must be its NodeAnnounced, not {items[0][0]}",
            )
        events = []
        for type_, body in items:
            seq += 1
            event = seal(self._key, seq, prev, self.clock.now(), type_, body)
            events.append(event)
            prev = event.id
        if events:
            heads[author] = Head(seq, prev, events[-1].hlc)
        return events

    async def _check(
        self,
        events: list[Event],
        heads: dict[bytes, Head],
        in_group: Mapping[tuple[bytes, int], bytes],
    ) -> Verdict:
        held_ids = await self._held_ids(events, heads)
        for event in events:
            key = (event.author, event.seq)
            if key in in_group:
                held_ids[key] = in_group[key]
        verdict = check_chains(
            heads,
            held_ids,
            events,
            now_ms=self.clock.wall_ms(),
            max_skew_ms=self.clock.max_skew_ms,
            is_member=self.is_member,
        )
        heads.update(verdict.heads)
        if verdict.accepted:  # past the newest: our next events sort after all of them
            self.clock.advance_to(max(event.hlc for event in verdict.accepted))
        return verdict

    async def _held_ids(
        self, events: list[Event], heads: Mapping[bytes, Head]
    ) -> dict[tuple[bytes, int], bytes]:
        wanted: dict[bytes, set[int]] = {}
        for event in events:
            head = heads.get(event.author)
            if head is not None and event.seq <= head.seq:
                wanted.setdefault(event.author, set()).add(event.seq)
        if not wanted:
            return {}
        return await self._writer.run(_select_held, wanted)

    def _fork_row(self, fork: Fork) -> tuple[Any, ...]:
        event = fork.event
        return (
            event.id,
            event.author,
            event.seq,
            fork.existing_id,
            self.clock.wall_ms(),
            event.raw,
        )

    async def _write_rows(
        self, rows: list[tuple], fork_rows: list[tuple], *, mode: str | None = None
    ) -> None:
        await self._writer.run(_write_group, mode, rows, fork_rows)

    def _durability(self, own_events: bool) -> str | None:
        """FULL (fsync each commit) when the group holds our own events, NORMAL otherwise;
        None when the writer is in that mode already.

        Losing our own acknowledged events to a power cut would make us sign a different event
        at the same seq later: a fork of our own chain. Foreign events lost that way (never to a
        process crash: WAL keeps them) are simply pulled again, so they skip the fsync.
        """
        mode = "FULL" if own_events else "NORMAL"
        if mode == self._sync_mode:
            return None
        self._sync_mode = mode
        return mode

    # ----- reading ---------------------------------------------------------------------------

    @property
    def author(self) -> bytes | None:
        return bytes(self._key.verify_key) if self._key is not None else None

    def version_vector(self) -> dict[bytes, int]:
        """{author: highest contiguous seq} of everything committed: the caller's own copy.

        Built once per commit (each commit replaces `_heads`), then copied at C speed: gossip
        asks for it several times an exchange, and building it walked every author each time.
        """
        cached = self._vector
        if cached is None or cached[0] is not self._heads:
            cached = self._vector = (
                self._heads,
                {author: head.seq for author, head in self._heads.items()},
            )
        return dict(cached[1])

    def head(self, author: bytes) -> Head | None:
        return self._heads.get(author)

    async def _read(self, sql: str, params: tuple = ()) -> list[Any]:
        """All rows of one query in one call on the reader's thread. Reads run concurrently
        on one connection: a statement left stepping between two calls would hold its read
        transaction open, and the next read would see that older snapshot, not the last commit."""
        return list(await self._reader.execute_fetchall(sql, params))

    async def missing(
        self, remote: Mapping[bytes, int], *, max_events: int = 1000, max_bytes: int = 1 << 20
    ) -> Page:
        """Events a peer with version vector `remote` lacks, oldest first per author, bounded.

        A page always holds at least one event when any is missing, so paging always advances.
        """
        wants = [
            (author, remote.get(author, 0))
            for author, head in sorted(self._heads.items())
            if head.seq > remote.get(author, 0)
        ]
        return await self.after(wants, max_events=max_events, max_bytes=max_bytes)

    async def after(
        self,
        wants: Sequence[tuple[bytes, int]],
        *,
        max_events: int = 1000,
        max_bytes: int = 1 << 20,
    ) -> Page:
        """Events of each (author, seq) in `wants`, in that order, after that seq up to the held
        head: what a peer lacks of just those authors (gossip compares vectors a range at a
        time). Bounded as `missing`; `complete` when nothing wanted is left out."""
        raws: list[bytes] = []
        size = 0
        for author, after in wants:
            head = self._heads.get(author)
            if head is None or head.seq <= after:
                continue
            budget = max_events - len(raws)
            if budget <= 0:
                return Page(raws, complete=False)
            rows = await self._read(
                "SELECT seq, raw FROM events WHERE author = ? AND seq > ? AND seq <= ? "
                "ORDER BY seq LIMIT ?",
                (author, after, head.seq, budget),
            )
            given = after
            for seq, raw in rows:
                if seq != given + 1:
                    break
                if raws and size + len(raw) > max_bytes:
                    return Page(raws, complete=False)
                raws.append(raw)
                size += len(raw)
                given = seq
            if given < head.seq and len(rows) == budget and given == rows[-1][0]:
                return Page(raws, complete=False)  # the event budget ran out inside this chain
            if given < head.seq:  # pruned from here: a chain is given only whole, up to that
                self.pruned_asked += 1
        return Page(raws, complete=True)

    @property
    def last_pos(self) -> int:
        return self._next_pos - 1

    async def wait_past(self, pos: int, timeout_s: float) -> bool:
        """Wait until something is stored after `pos` (long polls); False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.last_pos <= pos:
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:  # not wait_for: on 3.11 it can swallow a cancel (a stopping node's)
                async with asyncio.timeout(left):
                    await self._grown.wait()
            except TimeoutError:
                return False
        return True

    async def _select(self, where: str, params: tuple, limit: int) -> list[tuple[int, Event]]:
        rows = await self._read(
            f"SELECT pos, raw FROM events WHERE {where} ORDER BY pos LIMIT ?", (*params, limit)
        )
        return [(pos, decode(raw)) for pos, raw in rows]

    async def since(self, after_pos: int = 0, limit: int = 1000) -> list[tuple[int, Event]]:
        """(pos, event) in local arrival order, after `after_pos`: for tailing the log."""
        return await self._select("pos > ?", (after_pos,), limit)

    async def by_type(self, type_: str, after_pos: int = 0, limit: int = 1000) -> list[Event]:
        return [event for _, event in await self.by_type_page(type_, after_pos, limit)]

    async def by_type_page(
        self, type_: str, after_pos: int = 0, limit: int = 1000
    ) -> list[tuple[int, Event]]:
        """(pos, event) of one type after `after_pos`: page on with the last pos."""
        return await self._select("type = ? AND pos > ?", (type_, after_pos), limit)

    async def by_job(self, job_id: str, after_pos: int = 0, limit: int = 1000) -> list[Event]:
        rows = await self._select("job_id = ? AND pos > ?", (job_id, after_pos), limit)
        return [event for _, event in rows]

    async def get(self, author: bytes, seq: int) -> Event | None:
        rows = await self._read(
            "SELECT raw FROM events WHERE author = ? AND seq = ?", (author, seq)
        )
        return decode(rows[0][0]) if rows else None

    async def latest(self, author: bytes, type_: str) -> Event | None:
        """The author's most recent event of this type."""
        rows = await self._read(
            "SELECT raw FROM events WHERE type = ? AND author = ? ORDER BY pos DESC LIMIT 1",
            (type_, author),
        )
        return decode(rows[0][0]) if rows else None

    # ----- checkpoints -------------------------------------------------------------------

    async def write_checkpoint(self, pos: int, prepare: Callable[[], CheckpointWrite]) -> str:
        """Replace the stored checkpoint, atomically, with `prepare()`'s: the state after
        the events up to `pos`; returns its state hash. Runs on the writer's thread between
        two groups of events, and so does `prepare` (the packing): the loop only waits."""
        return await self._writer.run(write_checkpoint, pos, self.clock.wall_ms(), prepare)

    async def read_checkpoint(self) -> Checkpoint | None:
        """The stored checkpoint, or None; BadCheckpoint if it is not what was written (a
        changed body, lost or added rows) or not of this log."""
        headers = await self._read(
            "SELECT pos, event_id, format, state_hash, body, checksum, ended_rows FROM checkpoint"
        )
        if not headers:
            return None
        header = tuple(headers[0])
        rows = (await self._read("SELECT COUNT(*) FROM ended_jobs"))[0][0]
        at = await self._read("SELECT id FROM events WHERE pos = ?", (header[0],))
        check_checkpoint(header, rows, at[0][0] if at else None)
        return Checkpoint(header[0], header[2], header[3], header[4], rows)  # type: ignore[arg-type]

    def prune_order(
        self,
        job_ids: list[str],
        cut: Hlc,
        reputation: Mapping[bytes, tuple[int, int]],
        archive: Path | None = None,
    ) -> Prune:
        """What a checkpoint's transaction needs to prune `job_ids`, signed with this log's key."""
        if self._key is None:
            raise LogStoreError("only a log with its node's key can be pruned")
        key = self._key
        return Prune(
            job_ids, cut, reputation, bytes(key.verify_key), lambda b: sign(key, b), archive
        )

    async def prunable(self, cut: Hlc, limit: int) -> list[str]:
        """Up to `limit` ended jobs let go of (rows of the checkpoint) every event of which is
        older than `cut`, oldest first."""
        return await self._writer.run(prunable_jobs, cut.pack(), limit)

    async def read_horizon(self) -> Horizon | None:
        """What pruning removed (None: nothing yet), signed by this log's own author;
        LogStoreError if it is not (an edited file, another node's log)."""

        def read(conn: sqlite3.Connection) -> Horizon | None:
            try:
                return read_horizon(conn, self.author)
            except HorizonError as exc:
                raise LogStoreError(f"{self.path}: the log's horizon is refused: {exc}") from None

        return await self._writer.run(read)

    # ----- late joining (eventlog.adopt) -------------------------------------------------------

    async def kept_summary(self) -> tuple[bytes, Summary] | None:
        """(the packed horizon, what joiners compare of this log); None: never pruned. Worked
        out again only when the horizon changed: below its heads nothing else ever changes."""
        author = self.author
        cached = self._kept

        def read(conn: sqlite3.Connection) -> tuple[bytes, Summary] | None:
            horizon = read_horizon(conn, author)
            if horizon is None:
                return None
            body = pack(horizon)
            if cached is not None and cached[0] == body:
                return cached
            rows = kept_ids(conn, horizon)
            return body, Summary(comparable(horizon), kept_digest(rows), len(rows))

        try:
            self._kept = found = await self._writer.run(read)
        except HorizonError as exc:
            raise LogStoreError(f"{self.path}: the log's horizon is refused: {exc}") from None
        return found

    async def kept_page(
        self, after: Cursor | None, max_events: int, max_bytes: int
    ) -> tuple[list[bytes], Cursor | None]:
        """Kept events below the horizon after `after`, in (author, seq) order, bounded."""
        return await self._writer.run(kept_page, self.author, after, max_events, max_bytes)

    async def adopt(self, body: bytes, summary: Summary, raws: Sequence[bytes]) -> int:
        """A joiner's first write: the horizon its peers agreed on (`body`, now signed by this
        log's key) and the kept events below it, checked to be exactly what `summary` names;
        from then on chains continue from the horizon's heads. Returns how many events.
        AdoptRefused (nothing written) when they are not, or the log holds anything."""
        if self._key is None:
            raise LogStoreError(f"{self.path} is open without a node key: cannot adopt")
        if self._heads or self._next_pos != 1:
            raise AdoptRefused("the log is not empty: a horizon is adopted only by a new node")
        try:
            horizon = unpack(body)
        except HorizonError as exc:
            raise AdoptRefused(f"the horizon does not decode: {exc}") from None
        events, refused = await asyncio.to_thread(open_batch, raws, self._helpers, _CORES)
        if refused:
            raise AdoptRefused(f"{len(refused)} kept events do not verify ({refused[0].detail})")
        found = problems(horizon, events, summary)
        if found:
            raise AdoptRefused("; ".join(found[:4]))
        events.sort(key=lambda e: (e.author, e.seq))
        row = (body, sign(self._key, body), bytes(self._key.verify_key), self.clock.wall_ms())
        try:
            rows = [_row_values(e, self._next_pos + i) for i, e in enumerate(events)]
            await self._writer.run(write_adopted, INSERT_EVENT, rows, row)
        except sqlite3.Error as exc:
            raise AdoptRefused(f"{self.path}: {exc}") from None
        self._heads = {
            author: Head(head.seq, head.id, horizon.heard[author])
            for author, head in horizon.heads.items()
        }
        self._next_pos += len(events)
        if horizon.heard:
            self.clock.advance_to(max(horizon.heard.values()))
        return len(events)

    def ended_reader(self) -> EndedReader:
        """A read-only connection to the checkpoint's ended-job rows (close it when done)."""
        return EndedReader(self.path)

    async def count(self) -> int:
        return (await self._read("SELECT COUNT(*) FROM events"))[0][0]

    async def forks(self) -> list[ForkRecord]:
        rows = await self._read(
            "SELECT author, seq, id, held_id, detected_ms FROM forks ORDER BY author, seq"
        )
        return [ForkRecord(*row) for row in rows]
