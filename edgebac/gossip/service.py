"""Gossip as a node runs it: envelope, HTTP transport, the gossiper loop, admission, addresses.

Membership is fed from two sides, both a node's own word: the signed heartbeats that ride along
exchanges, and the addresses nodes announce in the log (`NodeAnnounced`), so a restarted node
finds its peers again even when its seeds are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web
from nacl.signing import SigningKey

from edgebac.eventlog.clock import wall_clock_ms
from edgebac.eventlog.encoding import Event
from edgebac.eventlog.store import EventLog
from edgebac.gossip.admission import ADMISSION_TYPES, Admission
from edgebac.gossip.config import GossipConfig
from edgebac.gossip.envelope import Envelope
from edgebac.gossip.http import HttpTransport, add_gossip_routes
from edgebac.gossip.late import join_from_present
from edgebac.gossip.protocol import Gossiper
from edgebac.gossip.reachability import Notices


def wall_ms() -> float:
    return float(wall_clock_ms())


def warn(line: str) -> None:
    """Say `line` on stderr; a closed stderr must not end the gossip loop that said it."""
    with contextlib.suppress(OSError, ValueError):
        print(f"warning: {line}", file=sys.stderr, flush=True)


class GossipService:
    def __init__(
        self,
        log: EventLog,
        key: SigningKey,
        network_key: bytes,
        config: GossipConfig,
        seeds: Sequence[str],
        authority: bytes | None = None,
        local_host: str | None = None,
        max_skew_ms: int = 300_000,
        say: Callable[[str], None] = warn,
    ) -> None:
        self.log = log
        self.config = config
        self.seeds = list(seeds)
        self.say = say
        self.envelope = Envelope(
            network_key,
            bytes(key.verify_key),
            int(config.max_body_age_s * 1000),
            config.max_body_bytes,
            max_skew_ms=max_skew_ms,
        )
        self.transport = HttpTransport(
            self.envelope, config.request_timeout_s, config.max_body_bytes, local_host
        )
        self.gossiper = Gossiper(
            key,
            (),
            log,
            self.transport,
            config,
            clock_ms=wall_ms,
            rng=random.Random(),
            seeds=seeds,
            notices=Notices(say, wall_ms),
        )
        self.transport.stats = self.gossiper.stats
        self.admission = Admission(authority) if authority is not None else None
        self._task: asyncio.Task[None] | None = None

    async def join_late(self, quorum: int, wait_s: float) -> None:
        """A new node (its log empty) of a network whose seeds pruned their logs starts from
        the horizon they agree on, not from all history (gossip.late); JoinRefused if they
        do not agree."""
        if not self.seeds:
            return
        adopted = await join_from_present(
            self.transport, self.seeds, self.log, quorum=quorum, wait_s=wait_s, say=self.say
        )
        if adopted is not None:
            line = f"join: started from the seeds' horizon, with the {adopted} events kept below it"
            with contextlib.suppress(OSError, ValueError):
                print(line, file=sys.stderr, flush=True)

    def add_routes(self, app: web.Application) -> None:
        add_gossip_routes(app, self.gossiper, self.envelope)

    async def start(self, my_addresses: Sequence[str]) -> None:
        """Load what the log knows about peers, then start pulling and pushing."""
        self.gossiper.membership.my_addresses = tuple(my_addresses)
        if self.admission is not None:
            for type_ in ADMISSION_TYPES:
                self.admission.observe(await self.all_of_type(type_))
            self.log.is_member = self.admission.is_member
        self.gossiper.announced(await self.all_of_type("NodeAnnounced"))
        self.log.add_listener(self._on_events)
        self._task = asyncio.create_task(self.gossiper.run(), name="gossip")

    async def all_of_type(self, type_: str) -> list[Event]:
        events: list[Event] = []
        after = 0
        while True:
            page = await self.log.by_type_page(type_, after)
            if not page:
                return events
            events.extend(event for _, event in page)
            after = page[-1][0]

    def _on_events(self, events: list[Event]) -> None:
        if self.admission is not None:
            self.admission.observe(events)
        self.gossiper.on_local(events)

    async def ingest(self, raws: Sequence[bytes]) -> Any:
        """Events handed in by a client (e.g. an authority's admission): store and spread."""
        return await self.gossiper.ingest_from(None, raws)

    def members(self) -> list[dict[str, Any]]:
        return self.gossiper.membership.snapshot(wall_ms())

    def unreachable(self) -> list[dict[str, str]]:
        """Configured seeds that are not answering now, with the last error each gave."""
        membership = self.gossiper.membership
        live = {m.node_id for m in membership.reachable(wall_ms())}
        errors = self.gossiper.notices.unreachable
        return [
            {"address": address, "error": errors.get(address, "not answered yet")}
            for address, node_id in membership.seeds.items()
            if node_id not in live and (node_id is not None or address in errors)
        ]

    def stats(self) -> dict[str, int]:
        return dict(sorted(self.gossiper.stats.items()))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.gossiper.stop()
        await self.transport.close()
