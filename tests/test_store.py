"""The SQLite event log on real files."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from edgebac.errors import LogStoreError
from edgebac.eventlog.chain import Reason
from edgebac.eventlog.clock import Hlc, HybridClock
from edgebac.eventlog.encoding import EncodingError, Event, Verifier, seal
from edgebac.eventlog.opening import MIN_VERIFY_CHUNK, open_batch, open_many
from edgebac.eventlog.store import EventLog
from tests.announce import announced, announcement

SKEW = 60_000


def job(i: int) -> tuple[str, dict]:
    return ("JobCreated", {"job_id": f"job-{i}", "spec": {"n": i}})


async def open_log(
    path: Path, key: SigningKey | None = None, wall=None, announce: bool = True
) -> EventLog:
    """A keyed log whose chain opens with its announcement (seq 1), as a node's does."""
    clock = HybridClock(SKEW) if wall is None else HybridClock(SKEW, wall=wall)
    log = await EventLog.open(path, clock, key or SigningKey.generate())
    if announce and log.head(log.author) is None:
        await log.append([announcement()])
    return log


async def chain(log: EventLog) -> list[Event]:
    """Every event of the log's own author, from its announcement on: what a peer must ingest."""
    return [event for _, event in await log.since() if event.author == log.author]


@pytest.fixture
async def log(tmp_path):
    log = await open_log(tmp_path / "a.db")
    yield log
    await log.close()


@pytest.fixture
async def other(tmp_path):
    log = await open_log(tmp_path / "b.db")
    yield log
    await log.close()


async def test_append_then_read_back_every_way(log):
    (opening,) = await chain(log)
    events = await log.append([job(1), job(2), ("BidOffered", {"job_id": "job-1"})])
    assert [e.seq for e in events] == [2, 3, 4]  # seq 1 is the announcement
    assert events[0].prev == opening.id
    assert events[1].prev == events[0].id
    assert log.version_vector() == {log.author: 4}
    assert await log.get(log.author, 3) == events[1]
    assert [e.seq for e in await log.by_job("job-1")] == [2, 4]
    assert [e.seq for e in await log.by_type("JobCreated")] == [2, 3]
    assert [e.seq for e in await log.by_type("NodeAnnounced")] == [1]
    assert [pos for pos, _ in await log.since(2)] == [3, 4]
    assert (await log.latest(log.author, "JobCreated")).seq == 3
    assert await log.count() == 4


async def test_version_vector_is_the_callers_copy_and_follows_every_commit(log, other):
    """Built once per commit and copied after: a caller that edits its copy (gossip advances
    one as pages arrive) changes nothing, and each commit shows in the next one asked for."""
    await chain(log)
    vector = log.version_vector()
    vector[log.author] = 99
    vector[b"x" * 32] = 1
    assert log.version_vector() == {log.author: 1}
    await log.append([job(1)])
    assert log.version_vector() == {log.author: 2}
    await log.ingest([e.raw for e in await chain(other)])
    assert log.version_vector() == {log.author: 2, other.author: 1}


async def test_concurrent_appends_form_one_gapless_chain(log):
    results = await asyncio.gather(*(log.append([job(i), job(i)]) for i in range(40)))
    seqs = sorted(e.seq for batch in results for e in batch)
    assert seqs == list(range(2, 82))  # after the announcement
    for batch in results:  # each call's events stay together and in order
        assert batch[1].seq == batch[0].seq + 1
    stored = [await log.get(log.author, seq) for seq in [1, *seqs]]
    assert all(b.prev == a.id for a, b in itertools.pairwise(stored))


async def test_a_bad_append_fails_alone(log):
    good = asyncio.ensure_future(log.append([job(1)]))
    with pytest.raises(EncodingError, match="unknown event type"):
        await log.append([("NoSuchType", {})])
    with pytest.raises(EncodingError, match="missing field 'spec'"):
        await log.append([("JobCreated", {"job_id": "x"})])
    with pytest.raises(EncodingError) as too_large:
        await log.append([("JobCreated", {"job_id": "x", "spec": {"b": b"x" * (1 << 20)}})])
    assert too_large.value.reason == "too_large"
    assert len(await good) == 1
    assert log.version_vector() == {log.author: 2}  # the announcement and the good job


async def test_reopen_keeps_chain_and_clock_moves_past_held_events(tmp_path):
    key = SigningKey.generate()
    log = await open_log(tmp_path / "a.db", key)
    before = await log.append([job(1), job(2)])
    await log.close()
    # The wall clock went back an hour: new events must still sort after the held ones.
    log = await open_log(tmp_path / "a.db", key, wall=lambda: before[-1].hlc.ms - 3_600_000)
    try:
        assert log.version_vector() == {log.author: 3}  # announcement, job 1, job 2
        after = await log.append([job(3)])
        assert after[0].seq == 4
        assert after[0].prev == before[-1].id
        assert after[0].hlc > before[-1].hlc
    finally:
        await log.close()


async def test_sync_by_pages_converges(log, other):
    await log.append([job(i) for i in range(50)])
    await other.append([job(i) for i in range(7)])
    pages = 0
    while True:
        page = await log.missing(other.version_vector(), max_events=8, max_bytes=4096)
        assert len(page.raws) <= 8
        report = await other.ingest(page.raws)
        assert report.errors == []
        pages += 1
        if page.complete:
            break
    assert pages >= 7
    assert other.version_vector() == {log.author: 51, other.author: 8}  # each announced first
    assert (await other.missing(log.version_vector())).raws  # other's own events
    assert (await log.missing(other.version_vector())).raws == []


async def test_page_byte_bound_always_makes_progress(log, other):
    await log.append([("JobCreated", {"job_id": "big", "spec": {"b": b"x" * 5000}})] * 3)
    page = await log.missing({log.author: 1}, max_bytes=100)  # past the small announcement
    assert len(page.raws) == 1
    assert len(page.raws[0]) > 5000
    assert not page.complete


async def test_bad_event_in_batch_keeps_good_prefix_with_reasons(log, other):
    await log.append([job(i) for i in range(4)])
    events = await chain(log)  # the announcement and 4 jobs
    third = bytearray(events[2].raw)
    third[-1] ^= 0xFF  # break the signature
    raws = [e.raw for e in events]
    raws[2] = bytes(third)
    report = await other.ingest(raws)
    assert [e.seq for e in report.accepted] == [1, 2]
    assert [r.reason for r in report.rejections] == [Reason.BAD_SIGNATURE, Reason.GAP, Reason.GAP]
    assert other.version_vector() == {log.author: 2, other.author: 1}
    # The rest arrives later, intact: the chain continues.
    report = await other.ingest([e.raw for e in events[2:]])
    assert [e.seq for e in report.accepted] == [3, 4, 5]


async def test_a_big_batch_checked_in_parallel_refuses_each_bad_event_for_its_reason(log, other):
    """Batches past a few events are decoded, then checked on several threads: every kind of
    bad event still gets its own reason, and each author's good prefix is kept."""
    await log.append([job(i) for i in range(4 * MIN_VERIFY_CHUNK - 1)])
    events = await chain(log)
    raws = [e.raw for e in events]
    tampered = bytearray(raws[50])
    tampered[-1] ^= 0xFF  # signature
    raws[50] = bytes(tampered)
    stranger = SigningKey.generate()
    bad_body = seal(stranger, 1, None, Hlc(1, 0), "BidAccepted", {"job_id": "j", "node": b"x"})
    report = await other.ingest([b"\x93garbage", bad_body.raw, *raws])
    assert [e.seq for e in report.accepted] == list(range(1, 51))
    reasons = [r.reason for r in report.rejections]
    assert sorted(set(reasons)) == sorted(
        {Reason.MALFORMED, Reason.BAD_BODY, Reason.BAD_SIGNATURE, Reason.GAP}
    )
    assert reasons.count(Reason.BAD_SIGNATURE) == 1
    assert reasons.count(Reason.GAP) == len(events) - 51
    assert other.version_vector() == {log.author: 50, other.author: 1}


@pytest.mark.parametrize(("parts", "with_helpers"), [(1, True), (2, True), (3, True), (3, False)])
async def test_a_batch_opens_the_same_on_any_number_of_threads(log, parts, with_helpers):
    """`open_batch` (decode, then signatures in parts) answers as `open_many` does."""
    events = await log.append([job(i) for i in range(3 * MIN_VERIFY_CHUNK)])
    raws = [e.raw for e in events]
    raws[7] = raws[7][:-1] + bytes([raws[7][-1] ^ 1])
    raws[40] = b"\xc0"
    with ThreadPoolExecutor(2) as helpers:
        batch = open_batch(raws, helpers if with_helpers else None, parts)
    one_by_one = open_many(raws, Verifier())
    assert batch[0] == one_by_one[0]
    assert len(batch[0]) == len(raws) - 2
    assert sorted(r.reason for r in batch[1]) == sorted(r.reason for r in one_by_one[1])


async def test_unknown_type_and_bad_body_from_peers_are_refused(log, other):
    key = SigningKey.generate()
    first = seal(key, 1, None, Hlc(1, 0), "NoSuchType", {})
    second = seal(key, 1, None, Hlc(1, 0), "BidAccepted", {"job_id": "j", "node": b"short"})
    report = await other.ingest([first.raw, second.raw])
    assert sorted(r.reason for r in report.rejections) == [Reason.BAD_BODY, Reason.UNKNOWN_TYPE]
    assert report.accepted == []


async def test_forks_are_refused_and_kept_as_evidence(tmp_path, other):
    key = SigningKey.generate()
    log = await open_log(tmp_path / "forker.db", key)
    try:
        await log.append([job(1), job(2)])
        events = await chain(log)  # seq 1 its announcement, then the two jobs
    finally:
        await log.close()
    await other.ingest([e.raw for e in events])
    forged = seal(key, 3, events[1].id, events[2].hlc, "JobCreated", {"job_id": "x", "spec": {}})
    for _ in range(2):  # the same evidence twice is kept once
        report = await other.ingest([forged.raw])
        assert [r.reason for r in report.rejections] == [Reason.FORK]
    forks = await other.forks()
    assert [(f.seq, f.id, f.held_id) for f in forks] == [(3, forged.id, events[2].id)]
    assert (await other.get(events[0].author, 3)).id == events[2].id  # never replaced


async def test_a_chain_that_opens_with_anything_but_its_announcement_is_refused(log, other):
    """A stranger's first event must be its NodeAnnounced: anything else is not_announced, the
    rest of that chain a gap (nothing after an unheld seq 1 can follow), other authors in the
    same batch unaffected; the same author announcing properly later is taken."""
    stranger, clock = SigningKey.generate(), HybridClock(SKEW)
    early = seal(stranger, 1, None, clock.now(), *job(1))
    after = [early]
    for seq in (2, 3):
        after.append(seal(stranger, seq, after[-1].id, clock.now(), "Note", {"text": "hi"}))
    await log.append([job(2)])
    honest = await chain(log)
    report = await other.ingest([e.raw for e in [*after, *honest]])
    refused = [(r.seq, r.reason) for r in report.rejections]
    assert refused == [(1, Reason.NOT_ANNOUNCED), (2, Reason.GAP), (3, Reason.GAP)]
    assert "first event must be its NodeAnnounced, not JobCreated" in report.rejections[0].detail
    assert report.accepted == honest
    assert other.version_vector() == {log.author: 2, other.author: 1}
    assert await other.forks() == []
    opening = announced(stranger, clock.now())
    assert (await other.ingest([opening.raw])).accepted == [opening]


async def test_a_nodes_first_append_must_be_its_announcement(tmp_path):
    log = await open_log(tmp_path / "a.db", announce=False)
    try:
        for first in (job(1), ("Note", {"text": "hello"}), ("BidOffered", {"job_id": "j"})):
            with pytest.raises(EncodingError) as refused:
                await log.append([first, announcement()])
            assert refused.value.reason == "not_announced"
            assert f"must be its NodeAnnounced, not {first[0]}" in str(refused.value)
        assert log.version_vector() == {}
        assert await log.count() == 0
        opened = await log.append([announcement(), job(1)])  # one batch may open the chain
        assert [(e.seq, e.type) for e in opened] == [(1, "NodeAnnounced"), (2, "JobCreated")]
        assert [e.seq for e in await log.append([job(2)])] == [3]
    finally:
        await log.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET type = 'JobFailed'",
        "UPDATE events SET raw = x'00' WHERE seq = 1",
        "DELETE FROM events",
        "DELETE FROM events WHERE seq = 2",
        "UPDATE forks SET seq = 7",
        "DELETE FROM forks",
    ],
)
async def test_database_refuses_update_and_delete(other, statement):
    events = await other.append([job(1), job(2)])  # seqs 2 and 3
    forker = SigningKey(b"\x05" * 32)
    await other.ingest([announced(forker, Hlc(1, 0), labels={"say": "one"}).raw])
    await other.ingest([announced(forker, Hlc(2, 0), labels={"say": "another"}).raw])
    assert len(await other.forks()) == 1
    conn = sqlite3.connect(other.path)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute(statement)
    finally:
        conn.close()
    assert (await other.get(other.author, 3)).id == events[1].id
    assert len(await other.forks()) == 1


async def test_close_drains_queued_appends(tmp_path):
    key = SigningKey.generate()
    log = await open_log(tmp_path / "a.db", key)
    pending = [asyncio.ensure_future(log.append([job(i)])) for i in range(20)]
    await asyncio.sleep(0)  # let them queue
    await log.close()
    acknowledged = [e for task in pending for e in task.result()]
    late = asyncio.ensure_future(log.append([job(99)]))
    with pytest.raises(LogStoreError, match="closed"):
        await late
    log = await open_log(tmp_path / "a.db", key)
    try:
        for event in acknowledged:
            assert (await log.get(event.author, event.seq)).id == event.id
    finally:
        await log.close()


async def test_listeners_see_new_events_once(log, other):
    seen = []
    other.add_listener(seen.extend)
    await log.append([job(1), job(2)])
    events = await chain(log)
    await other.ingest([e.raw for e in events])
    await other.ingest([e.raw for e in events])
    assert [e.id for e in seen] == [e.id for e in events]


async def test_not_sqlite_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "events.db"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(LogStoreError, match=f"{path}.*not an edgebac event log"):
        await open_log(path)


async def test_other_programs_database_is_refused(tmp_path):
    path = tmp_path / "events.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(LogStoreError, match="another program"):
        await open_log(path)


async def test_newer_schema_is_refused(tmp_path):
    log = await open_log(tmp_path / "events.db")
    await log.close()
    conn = sqlite3.connect(tmp_path / "events.db")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(LogStoreError, match="newer edgebac"):
        await open_log(tmp_path / "events.db")


async def test_same_events_ingested_at_once_are_duplicates_not_forks(log, other):
    """Two peers deliver the same events concurrently: the writer commits both requests in
    one group, and the second must see the first's events as held (before they are on disk)."""
    await log.append([job(i) for i in range(4)])
    raws = [e.raw for e in await chain(log)]
    reports = await asyncio.gather(*(other.ingest(raws) for _ in range(4)))
    assert sum(len(r.accepted) for r in reports) == 5
    reasons = {r.reason for report in reports for r in report.rejections}
    assert reasons <= {Reason.DUPLICATE}
    assert await other.forks() == []
    # Our own events echoed back while their append is still in the same group: not forks.
    echoes = await asyncio.gather(other.append([job(9)]), log.ingest(raws))
    assert await log.forks() == []
    assert echoes[1].errors == []


async def test_reads_see_every_commit_before_them_while_other_reads_run(log):
    """Concurrent readers share one connection: a read must never take its snapshot from
    another read still in progress (a job's end read back without its last event once kept
    a long poll waiting for 30 s)."""
    for i in range(200):
        await log.append([("BidOffered", {"job_id": "busy", "n": i})])
    stale: list[int] = []

    async def busy_reader() -> None:
        for _ in range(60):
            await log.by_job("busy", limit=1000)

    async def append_then_read(i: int) -> None:
        await log.append([("BidOffered", {"job_id": f"job-{i}"})])
        if not await log.by_job(f"job-{i}"):
            stale.append(i)

    readers = [asyncio.create_task(busy_reader()) for _ in range(4)]
    for i in range(60):
        await append_then_read(i)
    await asyncio.gather(*readers)
    assert stale == []


SCHEMA_V1 = """
CREATE TABLE events (
    author BLOB NOT NULL, seq INTEGER NOT NULL, pos INTEGER NOT NULL UNIQUE,
    id BLOB NOT NULL UNIQUE, hlc INTEGER NOT NULL, type TEXT NOT NULL, job_id TEXT,
    raw BLOB NOT NULL, PRIMARY KEY (author, seq)
);
CREATE INDEX events_by_type ON events (type, pos);
CREATE INDEX events_by_job ON events (job_id, pos) WHERE job_id IS NOT NULL;
CREATE TABLE forks (
    id BLOB PRIMARY KEY, author BLOB NOT NULL, seq INTEGER NOT NULL, held_id BLOB NOT NULL,
    detected_ms INTEGER NOT NULL, raw BLOB NOT NULL
);
PRAGMA application_id = 1162102594;
PRAGMA user_version = 1;
"""


async def test_a_version_1_log_is_used_as_it_is(tmp_path, other):
    """Schema 2 only changed which columns are indexed: older logs keep working, unchanged."""
    path = tmp_path / "v1.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA_V1)
    key = SigningKey.generate()
    log = await open_log(path, key)
    mine = await log.append([job(1), job(2)])
    await other.append([job(3)])
    foreign = [e.raw for e in await chain(other)]
    assert [e.seq for e in (await log.ingest(foreign)).accepted] == [1, 2]
    await log.close()
    log = await open_log(path, key)
    try:
        assert (await log.append([job(4)]))[0].prev == mine[-1].id
        assert [pos for pos, _ in await log.since()] == [1, 2, 3, 4, 5, 6]
        assert [e.seq for e in await log.by_job("job-3")] == [2]
    finally:
        await log.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (1,)
