"""A node back from longer offline than its peers keep history (`--retain-log`): they pruned
events of chains it holds only part of, and give chains only whole, so it would never catch
up on them. Before it serves anything it sets its log aside (kept, renamed, never deleted),
starts a new one from the horizon its seeds agree on and the events they kept below it
(`gossip.late`), and puts back its own chain's events that are not behind that horizon, so
it goes on signing where it left off (no fork of its own chain)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from nacl.signing import SigningKey

from edgebac.errors import LogStoreError
from edgebac.eventlog.adopt import AdoptRefused
from edgebac.eventlog.horizon import unpack
from edgebac.eventlog.store import EventLog
from edgebac.gossip.late import behind_by
from edgebac.gossip.service import GossipService

MAX_OWN_EVENTS = 10_000_000  # its own chain, read back whole


async def rejoin_if_behind(
    log: EventLog, gossip: GossipService, quorum: int, key: SigningKey, say: Callable[[str], None]
) -> EventLog:
    """The log to go on with: `log` itself, or a new one started from the seeds' horizon."""
    found = await behind_by(gossip.transport, gossip.seeds, log.version_vector(), quorum)
    if found is None:
        return log
    decision, kept = found
    offer = decision.offer
    if offer is None or offer.body is None or offer.summary is None:
        return log
    me = bytes(key.verify_key)
    horizon = unpack(offer.body)
    mine_after = horizon.heads[me].seq if me in horizon.heads else 0
    own = await log.after([(me, mine_after)], max_events=MAX_OWN_EVENTS, max_bytes=1 << 62)
    head = log.head(me)
    if head is not None and mine_after + len(own.raws) < head.seq:
        # Its own chain has a gap above the horizon (it pruned further itself): a new log
        # without those events would sign their seqs again, a fork of its own chain.
        say("join: this node is behind what its seeds pruned, but cannot carry its own chain")
        return log
    path, clock = log.path, log.clock
    await log.close()
    aside = path.with_name(f"events-behind-{int(time.time())}.db")
    _move(path, aside)
    fresh = await EventLog.open(path, clock, key)
    try:
        adopted = await fresh.adopt(offer.body, offer.summary, kept)
        report = await fresh.ingest(own.raws)
        if report.errors:
            raise AdoptRefused(f"its own events were refused ({report.errors[0].detail})")
    except (AdoptRefused, LogStoreError) as exc:  # put the old log back, as it was
        await fresh.close()
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        _move(aside, path)
        say(f"join: this node is behind what its seeds pruned, but stays as it is: {exc}")
        return await EventLog.open(path, clock, key)
    say(
        f"join: this node was behind what its seeds pruned; its log is kept as {aside.name}, "
        f"a new one started from their horizon ({adopted} kept events, "
        f"{len(report.accepted)} of its own)"
    )
    return fresh


def _move(path: Path, to: Path) -> None:
    """An SQLite file with its WAL and shared memory, renamed (the same folder: atomic each)."""
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.rename(to.with_name(to.name + suffix))
