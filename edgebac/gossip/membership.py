"""Who is in the network and who is alive: pure bookkeeping, time passed in, no I/O.

Liveness is gossip-style heartbeating: every node counts its own heartbeat up once a pull
interval, and the highest heartbeat heard of each member rides along every exchange. A member
whose heartbeat has not moved for `suspect_after(N)` is suspect, for `dead_after(N)` dead. Both
grow with log10(N) (Lifeguard's rule), because news of a heartbeat needs O(log N) rounds to
cross the network. A failed direct exchange makes a member suspect at once. Nothing here is
logged: liveness is ephemeral; the event log holds only decisions taken because of it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from edgebac.gossip.addresses import is_address

MAX_ADDRESSES = 8  # per member; more is a node describing itself wrongly, not a bigger reach


class Liveness(StrEnum):
    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"


def scale(n: int) -> float:
    """How much longer than one round news takes to cross N nodes."""
    return max(1.0, math.log10(max(n, 1)))


def push_fanout(n: int, base: int, cap: int) -> int:
    """Peers to push each new event to in a network of N.

    A one-shot relay with fanout f misses a node with probability about e^-f: with f = 3 one
    node in twenty of a network waits for the next pull. log2(N) + 2 makes misses rare in the
    small networks edge sites run (6 of 9 peers at N = 10), and the cap bounds traffic in big
    ones, where pull fills the few gaps within a round or two.
    """
    wanted = math.ceil(math.log2(max(n, 2))) + 2
    return max(base, min(cap, wanted))


def dialable(addresses: Any) -> list[str]:
    """The `HOST:PORT` strings among what a peer or an announcement claims, at most 8."""
    if not isinstance(addresses, list | tuple):
        return []
    return [a for a in addresses[:MAX_ADDRESSES] if is_address(a)]


def suspect_after_ms(n: int, interval_ms: float, mult: float) -> float:
    return mult * scale(n) * interval_ms


def dead_after_ms(n: int, interval_ms: float, mult: float, dead_mult: float) -> float:
    return dead_mult * suspect_after_ms(n, interval_ms, mult)


@dataclass(slots=True)
class Member:
    node_id: bytes
    addresses: tuple[str, ...]
    heartbeat: int = 0
    heard_ms: float = 0.0  # local time the heartbeat last moved or we last talked directly
    failed_ms: float | None = None  # local time of the last failed direct exchange, if newer


@dataclass
class Membership:
    """This node's view of the others. Iteration orders are insertion orders: deterministic."""

    me: bytes
    my_addresses: tuple[str, ...]
    interval_ms: float
    suspicion_mult: float = 4.0
    dead_mult: float = 3.0
    view_limit: int = 4096
    heartbeat: int = 0  # start it at the wall clock's ms: a restarted node must outbid its past
    members: dict[bytes, Member] = field(default_factory=dict)
    seeds: dict[str, bytes | None] = field(default_factory=dict)  # address -> node id once known

    def add_seeds(self, addresses: Iterable[str]) -> None:
        for address in addresses:
            if is_address(address) and address not in self.my_addresses:
                self.seeds.setdefault(address, None)

    def beat(self) -> None:
        self.heartbeat += 1

    # ----- learning ----------------------------------------------------------------------------

    def learn(
        self, node_id: bytes, addresses: Sequence[str], heartbeat: int, now_ms: float, rng: Any
    ) -> None:
        """Record what a peer said about a member (itself or another)."""
        if node_id == self.me or not addresses:
            return
        member = self.members.get(node_id)
        if member is None:
            if len(self.members) >= self.view_limit:
                self._evict(rng)
            member = self.members[node_id] = Member(node_id, tuple(addresses), heartbeat, now_ms)
            return
        if tuple(addresses) != member.addresses and heartbeat >= member.heartbeat:
            member.addresses = tuple(addresses)
        if heartbeat > member.heartbeat:
            member.heartbeat = heartbeat
            member.heard_ms = now_ms
            member.failed_ms = None

    def announce(self, node_id: bytes, addresses: Sequence[str], now_ms: float) -> None:
        """A node's own announcement in the log: its addresses are what it says they are
        (those that are addresses at all: anyone may write an announcement)."""
        addresses = dialable(addresses)
        if node_id == self.me or not addresses:
            return
        member = self.members.get(node_id)
        if member is None:
            self.members[node_id] = Member(node_id, tuple(addresses), 0, now_ms)
        else:
            member.addresses = tuple(addresses)

    def _evict(self, rng: Any) -> None:
        """Make room in a bounded view: drop the stalest of a few random members."""
        ids = list(self.members)
        sample = [ids[rng.randrange(len(ids))] for _ in range(min(4, len(ids)))]
        stalest = min(sample, key=lambda node_id: self.members[node_id].heard_ms)
        del self.members[stalest]

    def contacted(self, node_id: bytes, address: str | None, now_ms: float) -> None:
        """A direct exchange with this member succeeded."""
        if address is not None and address in self.seeds:
            self.seeds[address] = node_id
        member = self.members.get(node_id)
        if member is not None:
            member.heard_ms = now_ms
            member.failed_ms = None

    def failed(self, node_id: bytes | None, address: str, now_ms: float) -> None:
        """A direct exchange failed: suspect the member at once."""
        if node_id is None:
            node_id = self.seeds.get(address) or self._id_at(address)
        member = self.members.get(node_id) if node_id is not None else None
        if member is not None:
            member.failed_ms = now_ms

    # ----- judging -----------------------------------------------------------------------------

    def _limits(self) -> tuple[float, float]:
        """(suspect, dead) silence thresholds in ms for the current view size."""
        suspect_ms = suspect_after_ms(len(self.members) + 1, self.interval_ms, self.suspicion_mult)
        return suspect_ms, self.dead_mult * suspect_ms

    def liveness(
        self, member: Member, now_ms: float, limits: tuple[float, float] | None = None
    ) -> Liveness:
        suspect_ms, dead_ms = limits or self._limits()
        silent = now_ms - member.heard_ms
        if silent > dead_ms:
            return Liveness.DEAD
        if member.failed_ms is not None or silent > suspect_ms:
            return Liveness.SUSPECT
        return Liveness.ALIVE

    def _judged(self, now_ms: float) -> list[tuple[Member, Liveness]]:
        # One pass with the thresholds computed once: this runs on every message.
        limits = self._limits()
        return [(m, self.liveness(m, now_ms, limits)) for m in self.members.values()]

    def alive(self, now_ms: float) -> list[Member]:
        return [m for m, state in self._judged(now_ms) if state is Liveness.ALIVE]

    def dead(self, now_ms: float) -> list[bytes]:
        return [
            m.node_id for m in self.members.values() if self.liveness(m, now_ms) is Liveness.DEAD
        ]

    def reachable(self, now_ms: float) -> list[Member]:
        """Alive and suspect members: worth talking to every round."""
        return [m for m, state in self._judged(now_ms) if state is not Liveness.DEAD]

    def _id_at(self, address: str) -> bytes | None:
        for member in self.members.values():
            if address in member.addresses:
                return member.node_id
        return None

    # ----- choosing ----------------------------------------------------------------------------

    def pull_target(self, now_ms: float, rng: Any, dead_probe_chance: float) -> str | None:
        """The address to pull from this round: a random live member, sometimes a dead one.

        Dead members and seeds never answered get an occasional try, so a healed partition or a
        restarted node is found again without anyone's help.
        """
        judged = self._judged(now_ms)
        live = [m for m, state in judged if state is not Liveness.DEAD]
        dead = [m for m, state in judged if state is Liveness.DEAD]
        unknown = [a for a, node_id in self.seeds.items() if node_id not in self.members]
        long_shots = unknown + [m.addresses[0] for m in dead]
        if long_shots and (not live or rng.random() < dead_probe_chance):
            return long_shots[rng.randrange(len(long_shots))]
        if live:
            return live[rng.randrange(len(live))].addresses[0]
        return None

    def push_targets(
        self, now_ms: float, rng: Any, fanout: int, exclude: bytes | None = None
    ) -> list[str]:
        """Up to `fanout` distinct live members, never `exclude` (who told us)."""
        skip = (exclude,) if exclude is not None else ()
        return [m.addresses[0] for m in self.push_members(now_ms, rng, fanout, skip)]

    def push_members(
        self, now_ms: float, rng: Any, fanout: int, skip: Collection[bytes] = ()
    ) -> list[Member]:
        """Up to `fanout` distinct live members, none of `skip` (who told us, who has it)."""
        live = [m for m in self.alive(now_ms) if m.node_id not in skip]
        return rng.sample(live, fanout) if len(live) > fanout else live

    def rumours(self, now_ms: float, rng: Any, limit: int) -> list[list[Any]]:
        """What rides along an exchange: ourselves first, then random non-dead members."""
        want = max(limit - 1, 0)
        members = list(self.members.values())
        if len(members) > 2 * want:
            # Judge a random sample, not the whole view: this runs on every message, and a view
            # can hold thousands. Non-dead members of a random sample are a random sample of them.
            members = rng.sample(members, 2 * want)
        limits = self._limits()
        others = [m for m in members if self.liveness(m, now_ms, limits) is not Liveness.DEAD]
        if len(others) > want:
            others = rng.sample(others, want)
        entries = [[self.me, list(self.my_addresses), self.heartbeat]]
        entries.extend([m.node_id, list(m.addresses), m.heartbeat] for m in others)
        return entries

    def merge_rumours(self, entries: Any, now_ms: float, rng: Any) -> None:
        """Learn from a peer's list; malformed entries are skipped, not trusted."""
        if not isinstance(entries, list):
            return
        for entry in entries[:1024]:
            if (
                isinstance(entry, list)
                and len(entry) == 3
                and isinstance(entry[0], bytes)
                and len(entry[0]) == 32
                and isinstance(entry[1], list)
                and type(entry[2]) is int
            ):
                self.learn(entry[0], dialable(entry[1]), entry[2], now_ms, rng)

    def snapshot(self, now_ms: float) -> list[dict[str, Any]]:
        return [
            {
                "id": m.node_id.hex(),
                "addresses": list(m.addresses),
                "liveness": str(self.liveness(m, now_ms)),
                "heartbeat": m.heartbeat,
                "silent_ms": int(now_ms - m.heard_ms),
            }
            for m in self.members.values()
        ]
