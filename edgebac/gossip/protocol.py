"""The sync protocol: push new events to a few peers, pull what is missing from one peer a round.

Transport-agnostic: the same `Gossiper` runs over HTTP between real nodes and over the
simulator's in-memory transport under a virtual clock. Messages are plain msgpack-able maps:

    sums  {t, sums, d, peers, hv}               -> diff {t, mask, d, peers, hv}
    sync  {t, mask, lo, hi, vv, [max], peers, hv} -> page {t, hi, vv, events, complete, peers}
    push  {t, events | deltas, relay, to, k}    -> ack {t, new, refused}

(`hv`: what the sender holds of membership, so that the answer's peer list is only news; an
older node sends none and gets whole lists: gossip/news.py.)

An exchange is push-pull over the version vector in bounded pieces (vectors.py): the initiator
sends its 256 bucket digests and learns which buckets differ; then, a range of at most 1,024
authors of those buckets at a time, it sends its entries, gets the events it lacks (paging
while the reply says incomplete) with the peer's entries, and pushes the events the peer lacks,
so both sides hold the union after one exchange, and no message grows with the number of
authors. Anything else, an unknown message type included, is refused before it changes
anything (one fixed counter, never one per type). Events that arrive by push and are new here are
pushed on to `fanout` other peers (rumour mongering) when the push says `relay`; what moves by
pull (and the push half of an exchange) is never relayed, so a catch-up of a large backlog does
not become a storm. Pull is the safety net for what pushes miss.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

from nacl.signing import SigningKey

from edgebac.eventlog.chain import Reason, Rejection
from edgebac.eventlog.encoding import MAX_EVENT_BYTES, Event, event_id, peek_key
from edgebac.eventlog.store import IngestReport
from edgebac.gossip import deltas, late
from edgebac.gossip.bodies import batches
from edgebac.gossip.config import GossipConfig
from edgebac.gossip.membership import Membership, dead_after_ms, push_fanout
from edgebac.gossip.news import PeerLists
from edgebac.gossip.pulling import Pulling, advance
from edgebac.gossip.reachability import Notices
from edgebac.gossip.thin import (
    ID_PREFIX,
    MAX_REACHED,
    Leases,
    Recent,
    is_named,
    my_share,
    push_relayers,
    reached_ids,
    split_held,
)
from edgebac.gossip.vectors import MASK_BYTES, MAX_ENTRIES, SUMS_BYTES, VectorIndex
from edgebac.gossip.wire import (
    ProtocolError,
    SyncLog,
    Transport,
    TransportError,
    check_bytes,
    check_events,
    check_vv,
)

__all__ = [
    "Gossiper",
    "ProtocolError",
    "SyncLog",
    "Transport",
    "TransportError",
    "advance",
    "check_events",
    "check_vv",
]

logger = logging.getLogger(__name__)
RECENT_ROUNDS = 10  # events stored within this many pull intervals are new: pushes carry them
# What we answer; anything else is refused as it arrives. `horizon` and `kept` serve nodes
# joining late (gossip.late).
KINDS = ("sums", "sync", "push", "horizon", "kept")


def _page_events(asked: Any, limit: int) -> int:
    """Events in a page: at most our limit, fewer if the asker says so (its probe)."""
    return min(asked, limit) if type(asked) is int and asked >= 1 else limit


def _range(message: dict[str, Any]) -> tuple[bytes, bytes, bytes]:
    """(mask, lo, hi) of a range request."""
    mask = check_bytes(message.get("mask"), MASK_BYTES, "mask")
    lo = check_bytes(message.get("lo"), 32, "lo")
    hi = check_bytes(message.get("hi"), 32, "hi")
    if lo > hi:
        raise ProtocolError("range ends before it starts")
    return mask, lo, hi


class Gossiper(Pulling):
    """One node's side of gossip: serve peers, pull every round, push what is new."""

    def __init__(
        self,
        key: SigningKey,
        addresses: Sequence[str],
        log: SyncLog,
        transport: Transport,
        config: GossipConfig,
        *,
        clock_ms: Callable[[], float],
        rng: random.Random | None = None,
        seeds: Sequence[str] = (),
        notices: Notices | None = None,
    ) -> None:
        self.me = me = bytes(key.verify_key)
        self.log = log
        self.transport = transport
        self.config = config
        self.clock_ms = clock_ms
        self.rng = rng or random.Random()
        self.membership = Membership(
            me,
            tuple(addresses),
            interval_ms=config.pull_interval_s * 1000,
            suspicion_mult=config.suspicion_mult,
            dead_mult=config.dead_mult,
            view_limit=config.view_limit,
            heartbeat=int(clock_ms()),
            key=key,
        )
        self.membership.add_seeds(seeds)
        self.lists = PeerLists(
            self.membership, clock_ms, self.rng, config.peers_per_message, config.view_limit
        )
        self.index = VectorIndex()
        self.notices = notices or Notices(logger.info, clock_ms)
        self.last_answer_ms = clock_ms()  # the last time any peer answered us or spoke to us
        self.stats: Counter[str] = Counter()
        self._outbox: list[bytes] = []
        self._outbox_ready = asyncio.Event()
        # A dict, not a set: tasks hash by address, and `stop` must cancel in a reproducible order.
        self._tasks: dict[asyncio.Task[Any], None] = {}
        self._limit = asyncio.Semaphore(16)
        self._exchanging: set[str] = set()  # peers we are in an exchange with right now
        self._sync_lists: dict[str, Iterator[dict[str, Any]]] = {}
        # What a push may carry: events that came by push within ten rounds, and our own.
        self.recent = Recent(me, RECENT_ROUNDS * config.pull_interval_s * 1000)
        # Buckets whose backlog is being paged in: held a request timeout after each page.
        self.leases = Leases(config.request_timeout_s * 1000)
        self.delta_peers: set[bytes] = set()  # node ids that said they read deltas (`d: 1`)
        self.bases = deltas.Bases()

    # ----- serving ----------------------------------------------------------------------------

    async def handle(self, sender: bytes, message: Any) -> dict[str, Any]:
        """Answer one message from `sender` (whom the network key vouches for, no more)."""
        if not isinstance(message, dict):
            raise ProtocolError("message is not a map")
        kind = message.get("t")
        if kind not in KINDS:
            self.stats["refused_unknown_type"] += 1
            raise ProtocolError("unknown message type")
        self.stats[f"recv_{kind}"] += 1
        self._merge(message.get("peers"))
        self.last_answer_ms = self.clock_ms()
        if kind == "sums":
            theirs = check_bytes(message.get("sums"), SUMS_BYTES, "sums")
            self.reads_deltas(sender, message)
            self.index.update(self.log.version_vector())
            mask = self.index.diff(theirs)
            return {"t": "diff", "mask": mask, "d": 1, **self.lists.answer(message)}
        if kind == "sync":
            return await self._serve_range(sender, message)
        if kind == "horizon":
            return await late.serve_horizon(self.log)  # type: ignore[arg-type]
        if kind == "kept":
            return await late.serve_kept(self.log, message, self.config)  # type: ignore[arg-type]
        events, early = await self._events(message)
        relay = message.get("relay") is True
        split = (push_relayers(message), event_id(events[0])) if events else None
        to = reached_ids(message.get("to"))
        report = await self.ingest_from(sender, events, relay, to, split, early)
        return {"t": "ack", "new": len(report.accepted), "refused": len(report.errors)}

    async def _events(self, push: dict[str, Any]) -> tuple[list[bytes], list[Rejection]]:
        """A push's events, rebuilt from its deltas if it has them (`gossip.deltas`)."""
        if "deltas" not in push:
            return check_events(push.get("events")), []
        vv, config = self.log.version_vector(), self.config
        value = push.get("deltas")
        return await deltas.decode(
            value, vv, self._base, config.max_page_events, config.max_body_bytes
        )

    def reads_deltas(self, node_id: bytes, message: dict[str, Any]) -> None:
        """Note whether the node that sent `message` (a sums or a diff) reads deltas."""
        if message.get("d") == 1:
            if len(self.delta_peers) >= self.config.view_limit:  # members come and go
                self.delta_peers.clear()
            self.delta_peers.add(node_id)
        else:
            self.delta_peers.discard(node_id)  # downgraded since

    async def _base(self, author: bytes, seq: int) -> bytes | None:
        """The raw of our event (author, seq), if we hold it: what a delta is against."""
        raw = self.bases.get(author, seq)
        if raw is not None:
            return raw
        page = await self.log.after([(author, seq - 1)], max_events=1, max_bytes=MAX_EVENT_BYTES)
        raw = page.raws[0] if page.raws else None
        return raw if raw is not None and peek_key(raw) == (author, seq) else None

    def _merge(self, peers: Any) -> None:
        refused = self.membership.merge_rumours(peers, self.clock_ms(), self.rng)
        if refused:
            self.stats["rumours_refused"] += refused

    async def _serve_range(self, sender: bytes, message: dict[str, Any]) -> dict[str, Any]:
        """Our entries in the asked range (cut at MAX_ENTRIES) and the events the asker's
        entries there lack. When the asker holds what we lack, we pull it from the asker: it
        pushes us only what is new there, never a backlog."""
        mask, lo, hi = _range(message)
        remote = check_vv(message.get("vv"))
        vv = self.log.version_vector()
        if any(seq > vv.get(author, 0) for author, seq in remote.items()):
            self._pull_from(sender)
        self.index.update(vv)
        mine, cut = self.index.entries(mask, lo, hi, MAX_ENTRIES)
        page = await self.log.after(
            self.index.ahead(remote, mask, lo, cut),
            max_events=_page_events(message.get("max"), self.config.max_page_events),
            max_bytes=self.config.max_page_bytes,
        )
        self.stats["events_sent"] += len(page.raws)
        return {
            "t": "page",
            "hi": cut,
            "vv": mine,
            "events": page.raws,
            "complete": page.complete,
            **self.lists.answer(message),
        }

    async def ingest_from(
        self,
        sender: bytes | None,
        raws: Sequence[bytes],
        relay: bool = True,
        reached: frozenset[bytes] = frozenset(),
        split: tuple[tuple[bytes, ...], bytes] | None = None,
        early: Sequence[Rejection] = (),
    ) -> IngestReport:
        """Store events pushed to us (or given by a client) and push on what was new.

        `reached` are the nodes the pusher sent the same events to: relaying to them would only
        make duplicates, so the relay picks among the others; `split` (the nodes the push went
        to, a salt) says which of those others fall to us (`thin.my_share`). `early`: what was
        refused before (deltas held, or against an event we lack).
        """
        report = await self.ingest(raws)
        report.rejections.extend(early)
        self._count(report)
        self.recent.stored(report.accepted, self.clock_ms())
        if relay and report.accepted:
            skip = self._known(reached) | ({sender} if sender is not None else set())
            raws = [e.raw for e in report.accepted]
            self._spawn(self._guarded(self._push(raws, self._not_mine(skip, split)), "relay"))
        if sender is not None and any(r.reason is Reason.GAP for r in report.rejections):
            self._pull_from(sender)  # we are behind it: catch up now, not some later round
        return report

    def _pull_from(self, node_id: bytes) -> None:
        member = self.membership.members.get(node_id)
        if member is not None and member.addresses[0] not in self._exchanging:
            self._spawn(self._guarded(self.exchange(member.addresses[0]), "pull"))

    async def ingest(self, raws: Sequence[bytes]) -> IngestReport:
        """`log.ingest`, after dropping what we hold by (author, seq) alone, unverified."""
        fresh, held = split_held(raws, self.log.version_vector(), self.log.head)
        report = await self.log.ingest(fresh) if fresh else IngestReport()
        report.rejections.extend(held)
        return report

    def _count(self, report: IngestReport) -> None:
        self.stats["events_new"] += len(report.accepted)
        for rejection in report.rejections:
            self.stats[f"refused_{rejection.reason}"] += 1
            if rejection.reason is Reason.CLOCK_SKEW:
                self.notices.events_refused(rejection)

    async def pull_once(self) -> bool | None:
        """Beat our heart and pull from one chosen peer; None if we know no one."""
        self.membership.beat()
        address = self.membership.pull_target(
            self.clock_ms(), self.rng, self.config.dead_probe_chance
        )
        if address is None:
            return None
        self._check_alone()
        return await self.exchange(address)

    def _check_alone(self) -> None:
        config = self.config
        dead_ms = dead_after_ms(
            2, config.pull_interval_s * 1000, config.suspicion_mult, config.dead_mult
        )
        self.notices.check_alone(self.clock_ms() - self.last_answer_ms, dead_ms)

    async def run(self) -> None:
        """Pull every interval (with jitter, so peers do not synchronise) and push as asked.

        Each pull runs as its own task: a lost request holds its exchange for the request
        timeout, not the rounds after it (nor our heartbeat, which beats once a round).
        """
        self._spawn(self._push_loop())
        # Join: one exchange with every seed at once. Pulling them one a round, a node whose
        # first seed knows no one else (say, two nodes that are each other's seed) only meets
        # the rest by the occasional long shot: an island for ~1/dead_probe_chance rounds.
        for address in list(self.membership.seeds):
            self._spawn(self.exchange(address))
        interval = self.config.pull_interval_s
        while True:
            self._spawn(self._guarded(self.pull_once(), "pull"))
            await asyncio.sleep(interval * self.rng.uniform(0.5, 1.5))

    async def _guarded(self, coro: Any, what: str) -> None:
        """Run one round of a loop; an error ends the round, never the loop."""
        try:
            await coro
        except Exception as exc:  # said; the next round starts anyway
            self.stats[f"{what}_error"] += 1
            logger.debug("gossip %s round failed", what, exc_info=True)
            said = f"a gossip {what} round failed: {type(exc).__name__}: {exc}"
            self.notices.warn("", f"{what} {type(exc).__name__}", said)

    # ----- pushing ----------------------------------------------------------------------------

    def on_local(self, events: Sequence[Event]) -> None:
        """Called with every batch of newly stored events: pushes the ones we wrote, and learns
        the addresses nodes announce (the log is the other place a member's own word is)."""
        self.announced(events)
        self.bases.stored(events)
        mine = [event.raw for event in events if event.author == self.me]
        if mine:
            self._outbox.extend(mine)
            self._outbox_ready.set()

    def announced(self, events: Sequence[Event]) -> None:
        """Learn the addresses in these events' `NodeAnnounced` (the log's at start, say)."""
        now = self.clock_ms()
        for event in events:
            if event.type == "NodeAnnounced" and event.author != self.me:
                addresses = event.body.get("addresses", [])
                self.membership.announce(event.author, addresses, now, self.rng)

    async def _push_loop(self) -> None:
        while True:
            await self._outbox_ready.wait()
            if self.config.push_linger_s:
                await asyncio.sleep(self.config.push_linger_s)
            raws, self._outbox = self._outbox, []
            self._outbox_ready.clear()
            for batch in batches(raws, self.config.max_page_events, self.config.max_page_bytes):
                await self._guarded(self._push(batch), "push")

    def _known(self, named: frozenset[bytes]) -> frozenset[bytes]:
        """The ids of the members that `named` names, in full or by prefix."""
        if not named:
            return named
        return frozenset(
            node_id
            for node_id in self.membership.members
            if node_id in named or node_id[:ID_PREFIX] in named
        )

    def _not_mine(
        self, skip: frozenset[bytes], split: tuple[tuple[bytes, ...], bytes] | None
    ) -> frozenset[bytes]:
        """`skip`, and the live members whose relay falls to another of the push's relayers."""
        if split is None or not any(is_named(r, self.me) for r in split[0]):
            return skip
        relayers, salt = split
        others = {
            m.node_id
            for m in self.membership.alive(self.clock_ms())
            if m.node_id not in skip and not my_share(self.me, relayers, m.node_id, salt)
        }
        return skip | others

    async def _push(self, raws: list[bytes], skip: Collection[bytes] = ()) -> None:
        fanout = push_fanout(self.membership.size(), self.config.fanout, self.config.max_fanout)
        now = self.clock_ms()
        targets = self.membership.push_members(now, self.rng, fanout, skip)
        if not targets:
            return
        ids = sorted(m.node_id[:ID_PREFIX] for m in targets)  # first: they split the relay
        rest = sorted({n[:ID_PREFIX] for n in (self.me, *skip)} - set(ids))
        reached = (ids + rest)[:MAX_REACHED]
        message = {"t": "push", "events": raws, "relay": True, "to": reached, "k": len(ids)}
        thin = message
        if any(m.node_id in self.delta_peers for m in targets):
            items = await deltas.encode(raws, self._base)
            if not all(isinstance(item, bytes) for item in items):
                thin = {**message, "events": [], "deltas": items}
        pushes = (
            self._push_to(m.addresses[0], thin if m.node_id in self.delta_peers else message, raws)
            for m in targets
        )
        await asyncio.gather(*pushes)

    async def _push_to(self, address: str, message: dict[str, Any], raws: list[bytes]) -> None:
        """One push. It carries no peer list: a push is about one event's size, and our signed
        entry (127 bytes) made it a fifth larger; exchanges carry membership every round."""
        async with self._limit:
            try:
                sender, _ = await self._request(address, message)
            except Exception as exc:  # one peer must not stop the rest
                self.stats["push_failed"] += 1
                self._failed(address, exc)
                return
            self.membership.contacted(sender, address, self.clock_ms())
            self.stats["events_sent"] += len(raws)
            self.last_answer_ms = self.clock_ms()
            self.notices.answered(address)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks[task] = None
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._tasks.pop(task, None)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
