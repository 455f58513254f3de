"""The initiator's half of an exchange: compare bucket digests, then pull and push each range
that differs (see `protocol` for the messages). A mixin of `Gossiper`, kept apart so that each
half of the protocol reads on its own."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from edgebac.eventlog.encoding import Event, decode
from edgebac.eventlog.store import IngestReport
from edgebac.gossip import vectors
from edgebac.gossip.config import GossipConfig
from edgebac.gossip.membership import Membership
from edgebac.gossip.news import PeerLists
from edgebac.gossip.reachability import Notices
from edgebac.gossip.thin import Leases, Recent
from edgebac.gossip.vectors import MASK_BYTES, MAX_ENTRIES, VectorIndex
from edgebac.gossip.wire import (
    ProtocolError,
    SyncLog,
    Transport,
    TransportError,
    check_bytes,
    check_events,
    check_vv,
)

logger = logging.getLogger("edgebac.gossip.protocol")
# A range's first page: what pushes missed fits (at 20% loss a node lacks a few events a range);
# more is a backlog, paged by one exchange at a time. Concurrent probes cost at most this much.
PROBE_EVENTS = 64


def advance(vv: dict[bytes, int], events: Sequence[Event]) -> None:
    """A peer's vector after it received `events` (pages are contiguous per author)."""
    for event in events:
        if event.seq > vv.get(event.author, 0):
            vv[event.author] = event.seq


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a prefetch's failure as seen: the exchange that dropped it already ended."""
    if not task.cancelled():
        task.exception()


def _advance_raw(vv: dict[bytes, int], raws: Sequence[bytes]) -> None:
    advance(vv, [decode(raw) for raw in raws])


def _cut(reply: dict[str, Any], lo: bytes, hi: bytes) -> bytes:
    """Where the peer's answer to the range lo..hi ends: within it, or the reply is wrong."""
    cut = check_bytes(reply.get("hi"), 32, "hi")
    if not lo <= cut <= hi:
        raise ProtocolError("reply covers a range that was not asked for")
    return cut


class Pulling:
    """What `Gossiper` brings (its state) and what the pulling half adds."""

    log: SyncLog
    transport: Transport
    config: GossipConfig
    clock_ms: Callable[[], float]
    membership: Membership
    index: VectorIndex
    notices: Notices
    stats: Counter[str]
    last_answer_ms: float
    _limit: asyncio.Semaphore
    _exchanging: set[str]

    lists: PeerLists
    _sync_lists: dict[str, Iterator[dict[str, Any]]]  # per exchange: its syncs' peer lists

    # Gossiper's own, used here:
    _merge: Callable[[Any], None]
    _count: Callable[[IngestReport], None]
    ingest: Callable[[Sequence[bytes]], Awaitable[IngestReport]]
    recent: Recent
    leases: Leases
    reads_deltas: Callable[[bytes, dict[str, Any]], None]

    # ----- pulling ----------------------------------------------------------------------------

    async def exchange(self, address: str) -> bool:
        """One push-pull exchange with the node at `address`; False if it failed.

        At most one exchange per peer at a time: a long catch-up outlives many pull intervals,
        and a second exchange would fetch and verify the very same pages again.
        """
        if address in self._exchanging:
            return True
        self._exchanging.add(address)
        try:
            async with self._limit:
                await self._exchange(address)
        except Exception as exc:  # nothing one peer does may end our loops
            self.stats["exchange_failed"] += 1
            self._failed(address, exc)
            return False
        finally:
            self._exchanging.discard(address)
        self.stats["exchanges"] += 1
        self.notices.answered(address)
        return True

    def refused_body(self, peer: str, code: str, detail: str) -> None:
        """A body we refused before reading it (the HTTP route tells us)."""
        self.notices.body_refused(peer, code, detail)

    def _failed(self, address: str, exc: Exception) -> None:
        """Suspect the peer; say why when it is a cause the operator can fix."""
        self.membership.failed(None, address, self.clock_ms())
        logger.debug("exchange with %s failed", address, exc_info=exc)
        expected = isinstance(exc, TransportError | ProtocolError)
        if not expected:
            self.stats["exchange_error"] += 1
        self.notices.exchange_failed(address, exc, expected, address in self.membership.seeds)

    async def _exchange(self, address: str) -> None:
        """Compare bucket digests, then pull and push each differing range in turn: those
        that no other exchange is paging a backlog of right now (`thin.Leases`)."""
        self.index.update(self.log.version_vector())
        # d: we read pushes as deltas (gossip.deltas); our list as `news.PeerLists` says
        sums = {"t": "sums", "sums": self.index.sums(), "d": 1, **self.lists.for_sums(address)}
        reply = await self._ask(address, sums, "diff")
        mask = self.leases.free(check_bytes(reply.get("mask"), MASK_BYTES, "mask"), self.clock_ms())
        lease = object()
        self._sync_lists[address] = self.lists.read_diff(address, reply)
        try:
            budget = self.config.max_pages_per_exchange
            lo = vectors.next_start(mask, vectors.ZERO)
            while lo is not None and budget > 0:
                done, budget = await self._sync_range(address, mask, lo, budget, lease)
                lo = vectors.next_start(mask, vectors.after(done))
        finally:
            self.leases.give_back(lease)
            self._sync_lists.pop(address, None)

    async def _sync_range(
        self, address: str, mask: bytes, lo: bytes, budget: int, lease: object
    ) -> tuple[bytes, int]:
        """Pull the range starting at `lo` until caught up, then push what the peer lacks in it;
        (the end of the range now in step, the page budget left).

        The first page is a probe of at most PROBE_EVENTS: what pushes missed fits in it. One
        that comes back incomplete is a backlog: its buckets are claimed (`thin.Leases`), or
        left to the exchange that claimed them first. Pages are pipelined: while one page is
        being verified and stored, the next is already asked for, with our entries as they will
        be once this page is in. A catch-up of a large backlog then costs about the verification
        time alone, not verification plus round trips.
        """
        self.index.update(self.log.version_vector())
        wanted, hi = self.index.entries(mask, lo, vectors.END, MAX_ENTRIES)
        reply = await self._range(address, mask, lo, hi, wanted, PROBE_EVENTS)
        hi, remote = _cut(reply, lo, hi), dict(check_vv(reply.get("vv")))
        paging = reply.get("complete") is not True
        if paging and not self.leases.claim(lease, mask, lo[0], hi[0], self.clock_ms()):
            self.stats["backlog_left_to_another"] += 1
            reply = dict(reply, complete=True)  # store the probe; another exchange pages on
        hi, budget = await self._page(address, mask, lo, hi, wanted, reply, budget, lease)
        self.leases.give_back(lease)  # pulled: pushing back needs no lease
        await self._push_missing(address, remote, mask, lo, hi)
        return hi, budget

    async def _page(
        self,
        address: str,
        mask: bytes,
        lo: bytes,
        hi: bytes,
        wanted: dict[bytes, int],
        reply: dict[str, Any],
        budget: int,
        lease: object,
    ) -> tuple[bytes, int]:
        """Store `reply`'s page and those after it (pipelined); (where the range ends now, the
        page budget left)."""
        while budget > 0:
            budget -= 1
            raws = check_events(reply.get("events"))
            following = None
            if reply.get("complete") is not True and raws and budget > 0:
                _advance_raw(wanted, raws)
                following = asyncio.ensure_future(self._range(address, mask, lo, hi, wanted))
                following.add_done_callback(_retrieve)
            try:
                report = await self.ingest(raws)
            except BaseException:
                if following is not None:
                    following.cancel()
                raise
            self._count(report)
            self.leases.renew(lease, self.clock_ms())
            if following is None:
                break
            if not report.accepted:  # the page was refused: asking on would only repeat it
                following.cancel()
                break
            reply = await following
            self.leases.renew(lease, self.clock_ms())
            hi = min(hi, _cut(reply, lo, hi))
        return hi, budget

    async def _range(
        self,
        address: str,
        mask: bytes,
        lo: bytes,
        hi: bytes,
        entries: dict[bytes, int],
        max_events: int | None = None,
    ) -> dict[str, Any]:
        vv = {author: seq for author, seq in entries.items() if author <= hi}
        message: dict[str, Any] = {"t": "sync", "mask": mask, "lo": lo, "hi": hi, "vv": vv}
        message.update(next(self._sync_lists[address]))  # the exchange's peer lists
        if max_events is not None:  # nodes before it ignore it: their first page is full
            message["max"] = max_events
        return await self._ask(address, message, "page")

    async def _ask(self, address: str, message: dict[str, Any], answer: str) -> dict[str, Any]:
        """One request of an exchange; the reply must be an `answer`. Every message of an
        exchange has its peer list (`news.PeerLists`: what is news for the peer): without any
        on ranges, at N = 1,000 and 20% loss, liveness went stale and the simulator's p99
        spread rose from 8 to 13 rounds."""
        sender, reply = await self._request(address, message)
        if not isinstance(reply, dict) or reply.get("t") != answer:
            raise ProtocolError(f"reply to {message['t']} is not a {answer}")
        if answer == "diff":
            self.reads_deltas(sender, reply)
        self._merge(reply.get("peers"))
        self.membership.contacted(sender, address, self.clock_ms())
        self.last_answer_ms = self.clock_ms()
        return reply

    async def _push_missing(
        self, address: str, remote: dict[bytes, int], mask: bytes, lo: bytes, hi: bytes
    ) -> None:
        """Send the peer the events of the range that its entries `remote` lack and that are
        new here (`thin.Recent`), page by page. A backlog it lacks it pulls from us: serving
        our `sync`, it saw that we hold more."""
        vv = self.log.version_vector()
        self.index.update(vv)
        for _ in range(self.config.max_pages_per_exchange):
            ahead = self.index.ahead(remote, mask, lo, hi)
            page = await self.log.after(
                self.recent.wants(ahead, vv, self.clock_ms()),
                max_events=self.config.max_page_events,
                max_bytes=self.config.max_page_bytes,
            )
            if not page.raws:
                return
            message = {"t": "push", "events": page.raws, "relay": False, "peers": []}
            await self._request(address, message)
            self.stats["events_sent"] += len(page.raws)
            _advance_raw(remote, page.raws)
            if page.complete:
                return

    async def _request(self, address: str, message: dict[str, Any]) -> tuple[bytes, Any]:
        self.stats[f"sent_{message['t']}"] += 1
        return await self.transport.request(address, message)
