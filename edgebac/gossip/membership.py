"""Who is in the network and who is alive: pure bookkeeping, time passed in, no I/O.

Liveness is gossip-style heartbeating: every node counts its own heartbeat up once a pull
interval and signs it with its addresses; the highest signed heartbeat heard of each member
rides along every exchange, as that member signed it (nobody can speak for another node). A member
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

from nacl.signing import SigningKey

from edgebac.gossip import heartbeats
from edgebac.gossip.addresses import is_address

MAX_ADDRESSES = 8  # per member; more is a node describing itself wrongly, not a bigger reach
# A newer heartbeat clears a failed exchange (the node restarted, say), but not for a member that
# never answered us and failed this often: an identity minted with an address nobody answers at
# costs each node that many failed pushes, not one for every heartbeat it signs.
MAX_FAILURES_FORGIVEN = 3
# ...unless its heartbeat jumped as a restart's does (a node starts counting at its wall clock's
# ms, far past the one beat per interval it counted before): a restarted node we only ever
# heard of second-hand is alive again at once, not suspect until we happen to dial it.
RESTART_JUMP = 10_000
# Entries of a peer list looked at: twice what we send, and a bound on signature checks.
MAX_RUMOURS = 64


class Liveness(StrEnum):
    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    UNKNOWN = "unknown"  # known from the log, never heard from: not up, not lost either


_REACHABLE = (Liveness.ALIVE, Liveness.SUSPECT)


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


# Members we have not talked to count towards the network's size, but at most this many times
# those that answered us: early on a node has talked to few of them (its timeouts must not be
# those of a tiny network, or healthy members flap to suspect), while minted members nobody
# vouches for first-hand stretch everyone's timeouts by at most log10 of this.
VOUCHED_SPAN = 4


def suspect_after_ms(n: int, interval_ms: float, mult: float) -> float:
    return mult * scale(n) * interval_ms


def dead_after_ms(n: int, interval_ms: float, mult: float, dead_mult: float) -> float:
    return dead_mult * suspect_after_ms(n, interval_ms, mult)


@dataclass(slots=True)
class Member:
    node_id: bytes
    addresses: tuple[str, ...]
    heartbeat: int = 0  # the highest heartbeat it signed that we verified (0: none yet)
    heard_ms: float | None = None  # local time its heartbeat last rose or it last answered us
    failed_ms: float | None = None  # local time of the last failed direct exchange, if newer
    signed: list[Any] | None = None  # its own signed entry with that heartbeat, to pass on
    answered: bool = False  # it once answered us, as itself, at its own address
    failures: int = 0  # failed direct exchanges since it last answered
    announced: bool = False  # its NodeAnnounced is in our log

    def weight(self) -> tuple[bool, bool, float]:
        """What backs it, for the bounded view: first-hand answers, then the log, then news."""
        return (self.answered, self.announced, self.heard_ms or 0.0)


@dataclass
class Membership:
    """This node's view of the others. Iteration orders are insertion orders: deterministic.

    A member enters only on its own word: its `NodeAnnounced` (the log) or a heartbeat entry it
    signed (heartbeats.py). Second-hand news is never more than a signed heartbeat passed on:
    it shows the member was up when it signed it, and ages like any other news.
    """

    me: bytes
    my_addresses: tuple[str, ...]
    interval_ms: float
    suspicion_mult: float = 4.0
    dead_mult: float = 3.0
    view_limit: int = 4096
    heartbeat: int = 0  # start it at the wall clock's ms: a restarted node must outbid its past
    key: SigningKey | None = None  # signs our own entry; None: peers cannot learn us by gossip
    members: dict[bytes, Member] = field(default_factory=dict)
    seeds: dict[str, bytes | None] = field(default_factory=dict)  # address -> node id once known
    answered_count: int = 0
    _own: list[Any] | None = None
    # Members heard from at least once, in the order first heard: the only ones liveness can
    # tell anything of. Judging walks these, not the whole view: a view of thousands of members
    # announced in the log and never heard (minted by a liar, say) made every runner tick and
    # every pull walk all of them (13% of a core per idle node at 10,000 such authors).
    _heard: dict[bytes, Member] = field(default_factory=dict)

    def add_seeds(self, addresses: Iterable[str]) -> None:
        for address in addresses:
            if is_address(address) and address not in self.my_addresses:
                self.seeds.setdefault(address, None)

    def beat(self) -> None:
        self.heartbeat += 1

    # ----- learning ----------------------------------------------------------------------------

    def learn(
        self,
        node_id: bytes,
        addresses: Sequence[str],
        heartbeat: int,
        now_ms: float,
        rng: Any,
        signed: list[Any] | None = None,
    ) -> None:
        """Record a heartbeat entry `node_id` signed (the caller verified the signature)."""
        addresses = dialable(addresses)
        if node_id == self.me or not addresses:
            return
        member = self.members.get(node_id)
        if member is None:
            member = self._admit(Member(node_id, tuple(addresses)), rng)
            if member is None:
                return
        elif heartbeat <= member.heartbeat:
            return
        if heartbeat - member.heartbeat > RESTART_JUMP:
            member.failures = 0  # failures of its past life say nothing of this one
        member.addresses = tuple(addresses)
        member.heartbeat, member.signed, member.heard_ms = heartbeat, signed, now_ms
        self._heard[node_id] = member
        if member.answered or member.failures < MAX_FAILURES_FORGIVEN:
            member.failed_ms = None

    def announce(self, node_id: bytes, addresses: Sequence[str], now_ms: float, rng: Any) -> None:
        """A node's own announcement in the log: its addresses are what it says they are
        (those that are addresses at all). It says nothing about whether the node is up."""
        addresses = dialable(addresses)
        if node_id == self.me or not addresses:
            return
        member = self.members.get(node_id)
        if member is None:
            member = self._admit(Member(node_id, tuple(addresses), announced=True), rng)
        if member is not None:
            member.addresses, member.announced = tuple(addresses), True

    def _admit(self, newcomer: Member, rng: Any) -> Member | None:
        """Add to a bounded view: evict the least backed of a few random members, never one
        that answered us first-hand (so identities minted by the thousand cannot crowd out the
        nodes we talk to); None when there is no room."""
        if len(self.members) >= self.view_limit:
            ids = list(self.members)
            sample = [self.members[ids[rng.randrange(len(ids))]] for _ in range(min(8, len(ids)))]
            weakest = min(sample, key=Member.weight)
            if weakest.answered or weakest.weight()[:2] > newcomer.weight()[:2]:
                return None
            del self.members[weakest.node_id]
            self._heard.pop(weakest.node_id, None)
        self.members[newcomer.node_id] = newcomer
        return newcomer

    def contacted(self, node_id: bytes, address: str, now_ms: float) -> None:
        """We dialled `address` and `node_id` answered: first-hand news, if `address` is that
        member's own (a peer naming another node as the answering sender proves nothing)."""
        if address in self.seeds:
            self.seeds[address] = node_id
        member = self.members.get(node_id)
        if member is None or not (address in member.addresses or address in self.seeds):
            return
        if not member.answered:
            member.answered = True
            self.answered_count += 1
        member.heard_ms = now_ms
        self._heard[node_id] = member
        member.failed_ms, member.failures = None, 0

    def failed(self, node_id: bytes | None, address: str, now_ms: float) -> None:
        """A direct exchange failed: suspect the member at once."""
        if node_id is None:
            node_id = self.seeds.get(address) or self._id_at(address)
        member = self.members.get(node_id) if node_id is not None else None
        if member is not None:
            if member.failed_ms is None:  # probing a member already failed proves nothing new
                member.failures += 1
            member.failed_ms = now_ms

    # ----- judging -----------------------------------------------------------------------------

    def size(self) -> int:
        """The network's size as timeouts and fanout see it: ourselves, the members that
        answered us, and the others up to `VOUCHED_SPAN` times those."""
        answered = self.answered_count + 1
        return max(answered, min(len(self.members) + 1, VOUCHED_SPAN * answered))

    def _limits(self) -> tuple[float, float]:
        """(suspect, dead) silence thresholds in ms for the size of the network we have talked
        to: members nobody vouches for first-hand must not stretch everyone's timeouts."""
        suspect_ms = suspect_after_ms(self.size(), self.interval_ms, self.suspicion_mult)
        return suspect_ms, self.dead_mult * suspect_ms

    def liveness(
        self, member: Member, now_ms: float, limits: tuple[float, float] | None = None
    ) -> Liveness:
        if member.heard_ms is None:
            return Liveness.UNKNOWN
        suspect_ms, dead_ms = limits or self._limits()
        silent = now_ms - member.heard_ms
        if silent > dead_ms:
            return Liveness.DEAD
        if member.failed_ms is not None or silent > suspect_ms:
            return Liveness.SUSPECT
        return Liveness.ALIVE

    def _judged(self, now_ms: float) -> list[tuple[Member, Liveness]]:
        """Members heard from, judged (the others are all UNKNOWN). One pass with the
        thresholds computed once: this runs on every message and every runner tick."""
        limits = self._limits()
        return [(m, self.liveness(m, now_ms, limits)) for m in self._heard.values()]

    def alive(self, now_ms: float) -> list[Member]:
        return [m for m, state in self._judged(now_ms) if state is Liveness.ALIVE]

    def dead(self, now_ms: float) -> list[bytes]:
        """Members heard from once and silent since: never ones we have not heard from yet
        (a requester records these as lost)."""
        return [m.node_id for m, state in self._judged(now_ms) if state is Liveness.DEAD]

    def reachable(self, now_ms: float) -> list[Member]:
        """Alive and suspect members: worth talking to every round."""
        return [m for m, state in self._judged(now_ms) if state in _REACHABLE]

    def _id_at(self, address: str) -> bytes | None:
        for member in self.members.values():
            if address in member.addresses:
                return member.node_id
        return None

    # ----- choosing ----------------------------------------------------------------------------

    def pull_target(self, now_ms: float, rng: Any, dead_probe_chance: float) -> str | None:
        """The address to pull from this round: a random live member that answered us before,
        sometimes a long shot.

        Long shots are seeds never answered and dead members, so a healed partition or a
        restarted node is found again without anyone's help; members never heard from at all
        (announced in the log, say) get half of those tries, so thousands of them cannot keep
        the others from being tried.
        """
        judged = self._judged(now_ms)
        live = [m for m, state in judged if state in _REACHABLE]
        any_unheard = len(self.members) > len(self._heard)
        unknown = [a for a, node_id in self.seeds.items() if node_id not in self.members]
        long_shots = unknown + [m.addresses[0] for m, state in judged if state is Liveness.DEAD]
        if (long_shots or any_unheard) and (not live or rng.random() < dead_probe_chance):
            if not any_unheard or (long_shots and rng.random() < 0.5):
                return long_shots[rng.randrange(len(long_shots))]
            unheard = [m.addresses[0] for m in self.members.values() if m.heard_ms is None]
            return unheard[rng.randrange(len(unheard))]
        # Every other round among those that answered us before: members heard of but never
        # answered (minted by the thousand, perhaps) cannot take all of our pulls.
        tried = [m for m in live if m.answered]
        if tried and rng.random() < 0.5:
            live = tried
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
        """Up to `fanout` distinct live members, none of `skip` (who told us, who has it):
        those that answered us first-hand first, the others only to fill up."""
        live = [m for m in self.alive(now_ms) if m.node_id not in skip]
        if len(live) <= fanout:
            return live
        tried = [m for m in live if m.answered]
        if len(tried) >= fanout:
            return rng.sample(tried, fanout)
        others = [m for m in live if not m.answered]
        return tried + rng.sample(others, fanout - len(tried))

    def own_entry(self) -> list[Any]:
        """Our signed heartbeat entry (signed once per heartbeat)."""
        own = self._own
        if own is None or own[2] != self.heartbeat or own[1] != list(self.my_addresses):
            if self.key is None:
                own = [self.me, list(self.my_addresses), self.heartbeat, bytes(64)]
            else:
                own = heartbeats.sign(self.key, self.my_addresses, self.heartbeat)
            self._own = own
        return own

    def rumours(self, now_ms: float, rng: Any, limit: int) -> list[list[Any]]:
        """What rides along an exchange: our own signed entry first, then the signed entries
        of random members that are not dead (their own words, passed on as they were)."""
        want = max(limit - 1, 0)
        members = [m for m in self.members.values() if m.signed is not None]
        if len(members) > 2 * want:
            # Judge a random sample, not the whole view: this runs on every message, and a view
            # can hold thousands. Non-dead members of a random sample are a random sample of them.
            members = rng.sample(members, 2 * want)
        limits = self._limits()
        others = [m for m in members if self.liveness(m, now_ms, limits) in _REACHABLE]
        if len(others) > want:
            others = rng.sample(others, want)
        return [self.own_entry(), *(m.signed for m in others if m.signed is not None)]

    def merge_rumours(self, entries: Any, now_ms: float, rng: Any) -> int:
        """Learn from a peer's list; returns how many entries had a bad signature. Malformed
        entries are skipped, and a signature is checked only when the entry would tell us
        something new, at most `MAX_RUMOURS` a message."""
        if not isinstance(entries, list):
            return 0
        refused = 0
        for entry in entries[:MAX_RUMOURS]:
            parsed = heartbeats.parse(entry)
            if parsed is None or parsed[0] == self.me:
                continue
            node_id, addresses, heartbeat, signature = parsed
            member = self.members.get(node_id)
            if member is not None and heartbeat <= member.heartbeat:
                continue
            if not heartbeats.verified(node_id, addresses, heartbeat, signature):
                refused += 1
                continue
            self.learn(node_id, addresses, heartbeat, now_ms, rng, entry)
        return refused

    def snapshot(self, now_ms: float) -> list[dict[str, Any]]:
        return [
            {
                "id": m.node_id.hex(),
                "addresses": list(m.addresses),
                "liveness": str(self.liveness(m, now_ms)),
                "heartbeat": m.heartbeat,
                "silent_ms": None if m.heard_ms is None else int(now_ms - m.heard_ms),
            }
            for m in self.members.values()
        ]
