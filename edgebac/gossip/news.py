"""Peer lists that carry only news: the signed heartbeats a peer lacks or holds older.

Peer lists were most of an idle node's bytes (10 nodes: 2.4 of 2.9 KB a second): every message
of an exchange carried up to 32 signed entries (127 bytes each, incompressible), though the
peer held most of them. So an asker names what it holds, `hv`: for every member it counts
reachable, 4 bytes of its id and the heartbeat it holds (10 bytes, a twelfth of an entry). The
answer carries an entry only when it is news there (`is_news`): the asker does not name the
member (it does not know it, or counts it dead: that is how a restarted node is found again),
or names an older heartbeat.

What liveness relies on stays true. A member turns suspect after `suspect_after_ms(N)` without
a newer heartbeat (4 rounds at N <= 10, more as N grows) and dead after 3 times that; every
node beats once a round. Every newer heartbeat a peer holds still reaches us when we pull from
it, as before; what no longer crosses is what we hold already, and the lists we sent the peer
with our sums, which carry our own entry alone now (it is how the peer hears from us). In the
simulator at N = 10 that kept p99 silence at 3.6 rounds (3.5 before) and the share of
members judged alive as it was without loss; at 20% loss, where lost exchanges make members
suspect, p99 silence rose from 6.8 to 7.6 rounds, the longest stayed under 12 (dead).

An `hv` names all the members we count reachable or we send none: an unnamed member is news,
so a partial `hv` would only cost bytes. A view of twice the list size (64 at most) or more,
and older nodes, which send none, get and send whole lists as before (`Membership.rumours`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from edgebac.gossip.membership import Member, Membership

PREFIX = 4  # bytes of a member's id that name it: a view of 64 collides once in ~2 million
BEAT = 6  # bytes of a heartbeat (ms since 1970 at start, one more a round): wraps in 8,900 years
ITEM = PREFIX + BEAT
MAX_HELD = 64  # members an `hv` may name (MAX_RUMOURS: what a list of entries may hold)
WRAP = 1 << (8 * BEAT)
# Rounds a view must keep its size before we name it. A growing view is being mixed (a node
# joining, a network forming), and the lists we send with our sums are how the peer meets the
# members we just met: the simulator at N = 1,000 grew its views slower without them.
SETTLE_ROUNDS = 4


def pack_held(items: Iterable[tuple[bytes, int]]) -> bytes:
    """`hv`: (member id, heartbeat) pairs."""
    return b"".join(
        node_id[:PREFIX] + (beat % WRAP).to_bytes(BEAT, "big") for node_id, beat in items
    )


def parse_held(value: Any) -> dict[bytes, int] | None:
    """The members an `hv` names, by id prefix, with the heartbeats held (mod 2^48); None when
    there is no well-formed `hv` (an older node: it gets whole lists)."""
    if not isinstance(value, bytes) or len(value) % ITEM or len(value) > MAX_HELD * ITEM:
        return None
    return {
        value[i : i + PREFIX]: int.from_bytes(value[i + PREFIX : i + ITEM], "big")
        for i in range(0, len(value), ITEM)
    }


def is_news(held: Mapping[bytes, int], node_id: bytes, heartbeat: int) -> bool:
    """Whether our entry of `node_id` at `heartbeat` tells the holder of `held` something: it
    does not name the member, or names an older heartbeat (compared mod 2^48 as serial
    numbers; a real node's heartbeats never come near half of that apart)."""
    theirs = held.get(node_id[:PREFIX])
    if theirs is None:
        return True
    return 0 < (heartbeat - theirs) % WRAP < WRAP // 2


def held_view(membership: Membership, now_ms: float, limit: int) -> bytes | None:
    """Our `hv`: ourselves (our own entry is never news to us), then every reachable member
    we hold a signed heartbeat of; None when our view holds as many members as twice `limit`
    (the list size), or MAX_HELD: a view that large may be part of a larger network, where
    whole lists both ways are what mixes views (the simulator at N = 1,000 with views of 64
    and 20% loss: p99 spread 8.3 rounds with them, 24.9 with lists of news)."""
    if len(membership.members) >= min(MAX_HELD, 2 * limit):
        return None
    members = _signed(membership, now_ms)
    ours = (membership.me, membership.heartbeat)
    return pack_held([ours, *((m.node_id, m.heartbeat) for m in members)])


def news_for(
    membership: Membership,
    held: Mapping[bytes, int],
    now_ms: float,
    rng: Any,
    limit: int,
) -> list[list[Any]]:
    """The signed entries that are news for the holder of `held`, at most `limit`: ours first
    if it is news, then members it holds stale (their liveness there), then members it does
    not name (new to it, or dead there), each group a random pick when there are too many."""
    out: list[list[Any]] = []
    if is_news(held, membership.me, membership.heartbeat):
        out.append(membership.own_entry())
    stale: list[list[Any]] = []
    unnamed: list[list[Any]] = []
    for member in _signed(membership, now_ms):
        if member.signed is None or not is_news(held, member.node_id, member.heartbeat):
            continue
        (unnamed if member.node_id[:PREFIX] not in held else stale).append(member.signed)
    for group in (stale, unnamed):
        room = limit - len(out)
        if room <= 0:
            break
        out.extend(rng.sample(group, room) if len(group) > room else group)
    return out[:limit]


def _signed(membership: Membership, now_ms: float) -> list[Member]:
    """Reachable members whose signed entry we hold: those whose news we can pass on."""
    return [m for m in membership.reachable(now_ms) if m.signed is not None]


class PeerLists:
    """Which peer list each message of an exchange carries, on both sides of it.

    The asker's `sums` carries our own entry and our `hv`; the `diff` answers with the news for
    the asker and the answerer's `hv`; the asker's first `sync` then carries the news for the
    answerer, and every `sync` our `hv` again, so that a `page` carries only news still left
    (none, unless the diff's list was full). A peer whose diff named nothing (an older node,
    or one with a view too large to name) gets whole lists from then on, as does every
    message without an `hv`; it missed our list once. State: the addresses of those peers,
    bounded like a view (members come and go).
    """

    def __init__(
        self, membership: Membership, clock_ms: Any, rng: Any, limit: int, view_limit: int
    ) -> None:
        self.membership = membership
        self.clock_ms = clock_ms
        self.rng = rng
        self.limit = limit
        self.view_limit = view_limit
        self.older: set[str] = set()  # peers whose last diff had no `hv`
        self._size = -1  # members in the view when last looked at...
        self._settled_ms = 0.0  # ...and when it will have kept that size SETTLE_ROUNDS

    def whole(self) -> list[list[Any]]:
        """A list as older nodes send and expect it: our entry, then random others."""
        return self.membership.rumours(self.clock_ms(), self.rng, self.limit)

    def named(self) -> bytes | None:
        """Our `hv`, if our view has one and has settled (SETTLE_ROUNDS)."""
        now, size = self.clock_ms(), len(self.membership.members)
        if size != self._size:
            self._size = size
            self._settled_ms = now + SETTLE_ROUNDS * self.membership.interval_ms
        return None if now < self._settled_ms else held_view(self.membership, now, self.limit)

    def held(self, fields: dict[str, Any]) -> dict[str, Any]:
        """`fields` with our `hv`, if we name our view."""
        held = self.named()
        return fields if held is None else {**fields, "hv": held}

    def for_sums(self, address: str) -> dict[str, Any]:
        """The `peers` and `hv` of our sums to `address`: our entry alone (the peer answers
        with what we lack, and its `hv` says what it does), a whole list to an older peer."""
        held = self.named()
        if held is None:
            return {"peers": self.whole()}
        alone = address not in self.older
        return {"peers": [self.membership.own_entry()] if alone else self.whole(), "hv": held}

    def read_diff(self, address: str, diff: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Note whether the peer at `address` reads `hv` (its diff has one); the fields of the
        syncs that follow in this exchange, one item each."""
        theirs = parse_held(diff.get("hv"))
        if theirs is not None:
            self.older.discard(address)  # upgraded since
            return self._news_then_held(theirs)
        if address not in self.older and len(self.older) >= self.view_limit:
            self.older.clear()
        self.older.add(address)
        return self._whole_lists()

    def _whole_lists(self) -> Iterator[dict[str, Any]]:
        while True:
            yield {"peers": self.whole()}

    def _news_then_held(self, theirs: Mapping[bytes, int]) -> Iterator[dict[str, Any]]:
        now = self.clock_ms()
        yield self.held({"peers": news_for(self.membership, theirs, now, self.rng, self.limit)})
        while True:
            yield self.held({"peers": []})

    def answer(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """The list of our answer to `message` (a sums or a sync): news for it if it named what
        it holds, with our `hv` on a diff; a whole list otherwise."""
        theirs = parse_held(message.get("hv"))
        if theirs is None:
            return {"peers": self.whole()}
        news = news_for(self.membership, theirs, self.clock_ms(), self.rng, self.limit)
        return self.held({"peers": news}) if message.get("t") == "sums" else {"peers": news}
