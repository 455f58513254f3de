"""A node joining late starts from the present: its seeds' horizon and the events they kept
below it, not all history (`eventlog.adopt`).

Before its first sync a new node (an empty log) asks every seed for its `Summary`. When the
seeds it reached hold no horizon (nobody pruned), it syncs whole chains as any node does.
When they agree on one (all of those it reached, or `quorum` of them if the operator says so),
it fetches the kept events below it from one of them, checks they are exactly what the seeds
agreed on, and adopts them; the chains then continue from the horizon's heads, each next
event naming its head's id. When they disagree (a seed that lies, or one that pruned a period
later than the others), it asks again until `wait_s` has passed, then refuses to start: a node
that took one seed's word could hold a history no other node has.

Served to peers as two gossip messages: `horizon` (the summary) and `kept` (pages of events).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from edgebac.errors import EdgebacError
from edgebac.eventlog.adopt import AdoptRefused, Summary, comparable
from edgebac.eventlog.horizon import HorizonError, unpack
from edgebac.eventlog.kept import Cursor
from edgebac.gossip.config import GossipConfig

DIGEST_BYTES = 32
MAX_KEPT_PAGES = 100_000  # a bound on one fetch whatever a peer answers
# What a joiner holds in memory before it adopts: far more than announcements and live jobs'
# events come to (10,000 minted authors' announcements are ~3 MB), far less than a Pi has.
MAX_KEPT_EVENTS = 500_000
MAX_KEPT_BYTES = 256 << 20
# Rounds with no seed answering before a new node starts without a horizon: nodes of a network
# started together do not wait for each other (a pruned network's seeds are up: they answer).
UNANSWERED_TRIES = 1
# A seed whose cut moves within this (or half its pruner's period, if shorter) is asked again
# after the move: the first sync after an adoption then has a whole period to be done.
MOVE_MARGIN_MS = 10_000


class JoinRefused(EdgebacError):
    """The seeds do not agree on where history starts: the node does not start."""


class KeptLog(Protocol):
    horizon_moving: bool
    horizon_move: Callable[[], tuple[int, int]] | None

    async def kept_summary(self) -> tuple[bytes, Summary] | None: ...
    async def kept_page(
        self, after: Cursor | None, max_events: int, max_bytes: int
    ) -> tuple[list[bytes], Cursor | None]: ...


class Asking(Protocol):
    async def request(self, address: str, message: dict[str, Any]) -> tuple[bytes, Any]: ...


# ----- serving ---------------------------------------------------------------------------------


async def serve_horizon(log: KeptLog) -> dict[str, Any]:
    found = await log.kept_summary()
    if found is None:
        return {"t": "horizon", "body": None}
    body, summary = found
    answer = {
        "t": "horizon",
        "body": body,
        "kept": summary.kept,
        "count": summary.count,
        "moving": log.horizon_moving,
    }
    if log.horizon_move is not None:
        answer["move_in_ms"], answer["period_ms"] = log.horizon_move()
    return answer


async def serve_kept(log: KeptLog, message: Mapping[str, Any], config: GossipConfig) -> dict:
    after = parse_cursor(message.get("after"))
    raws, following = await log.kept_page(after, config.max_page_events, config.max_page_bytes)
    return {"t": "kept", "events": raws, "next": list(following) if following else None}


def parse_cursor(value: Any) -> Cursor | None:
    """A `kept` page's cursor: None (from the start) or [author, seq]; anything else is none."""
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and isinstance(value[0], bytes)
        and len(value[0]) == DIGEST_BYTES
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
        and 0 <= value[1] < 2**63
    ):
        return bytes(value[0]), value[1]
    return None


# ----- deciding (pure) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Offer:
    """One seed's answer: its packed horizon and summary, (None, None) for no horizon, or
    why its answer was refused (a seed that answers garbage is reached, and agrees with no one)."""

    body: bytes | None
    summary: Summary | None
    refused: str = ""


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse_offer(reply: Any) -> Offer:
    """A seed's `horizon` answer; ValueError when it is not one."""
    if not isinstance(reply, dict) or reply.get("t") != "horizon":
        raise ValueError("not a horizon answer")
    body = reply.get("body")
    if body is None:
        return Offer(None, None)
    if reply.get("moving") is True:
        # A prune of many batches is under way: what the seed holds below its heads is about
        # to go, and a joiner that took this horizon could not fetch what lies between it and
        # the next one (the seed gives chains only whole). Asked again in a moment.
        raise ValueError("it is still pruning")
    move_in, period = reply.get("move_in_ms"), reply.get("period_ms")
    if _count(move_in) and _count(period) and move_in < min(MOVE_MARGIN_MS, period // 2):
        # Its cut moves in a moment: a horizon taken now could be pruned past before the
        # first sync has fetched what lies above it. Asked again once it has moved.
        raise ValueError(f"its cut moves in {move_in / 1000:.1f} s")
    kept, count = reply.get("kept"), reply.get("count")
    if not isinstance(body, bytes) or not isinstance(kept, bytes) or len(kept) != DIGEST_BYTES:
        raise ValueError("a horizon answer without its body or digest")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ValueError("a horizon answer with a bad count")
    if count > MAX_KEPT_EVENTS:
        raise ValueError(f"{count} kept events: more than a joiner takes ({MAX_KEPT_EVENTS})")
    try:
        comparable_body = comparable(unpack(body))
    except HorizonError as exc:
        raise ValueError(f"its horizon does not decode: {exc}") from None
    return Offer(body, Summary(comparable_body, kept, count))


@dataclass(frozen=True, slots=True)
class Decision:
    kind: str  # "adopt" | "sync" (nobody pruned) | "wait" (nobody answered) | "disagree"
    offer: Offer | None = None
    seeds: tuple[str, ...] = ()  # for "adopt": the seeds that agree, to fetch from
    why: str = ""


def decide(offers: Mapping[str, Offer], quorum: int) -> Decision:
    """What a joiner does with the seeds' answers (`offers`, by address). `quorum` 0: every
    seed that answered must agree; N: at least N must give the same horizon."""
    if not offers:
        return Decision("wait", why="no seed answered")
    need = quorum if quorum > 0 else len(offers)
    groups = Counter(offer.summary for offer in offers.values() if not offer.refused)
    pruned = [(s, n) for s, n in groups.items() if s is not None]
    if not pruned and groups.get(None, 0) >= need:
        return Decision("sync")
    summary, agreeing = max(pruned, key=lambda item: item[1], default=(None, 0))
    if summary is not None and agreeing >= need:
        seeds = tuple(address for address, offer in offers.items() if offer.summary == summary)
        return Decision("adopt", offers[seeds[0]], seeds)
    said = ", ".join(f"{address}: {_said(offer)}" for address, offer in sorted(offers.items()))
    return Decision("disagree", why=f"{agreeing} of {len(offers)} agree, {need} needed ({said})")


def _said(offer: Offer) -> str:
    if offer.refused:
        return f"refused ({offer.refused})"
    if offer.summary is None:
        return "no horizon"
    digest = hashlib.sha256(offer.summary.horizon).hexdigest()[:8]
    return f"horizon {digest}, {offer.summary.count} kept {offer.summary.kept.hex()[:8]}"


# ----- joining ---------------------------------------------------------------------------------


class AdoptingLog(KeptLog, Protocol):
    async def adopt(self, body: bytes, summary: Summary, raws: Sequence[bytes]) -> int: ...


async def join_from_present(
    transport: Asking,
    seeds: Sequence[str],
    log: AdoptingLog,
    *,
    quorum: int,
    wait_s: float,
    say: Callable[[str], None],
) -> int | None:
    """Adopt the seeds' horizon if they agree on one; returns how many kept events came
    (None: nothing adopted, sync as usual). JoinRefused when they disagree past `wait_s`."""
    deadline = time.monotonic() + wait_s
    delay, last_why, unanswered = 0.25, "", 0
    while True:
        decision = decide(await _offers(transport, seeds), quorum)
        if decision.kind == "sync":
            return None
        if decision.kind == "wait":
            unanswered += 1
            if unanswered > UNANSWERED_TRIES:  # a network starting up: its seeds are not up yet
                say("join: no seed answered; starting as a node of a new network")
                return None
        if decision.kind == "adopt":
            try:
                return await _adopt(transport, log, decision)
            except (AdoptRefused, ValueError) as exc:
                last_why = f"what the seeds sent is refused: {exc}"
        else:
            last_why = decision.why
        if time.monotonic() + delay > deadline:
            raise JoinRefused(f"join: the seeds do not agree on the log's horizon: {last_why}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


async def behind_by(
    transport: Asking, seeds: Sequence[str], heads: Mapping[bytes, int], quorum: int
) -> tuple[Decision, list[bytes]] | None:
    """For a node that is not new: when the seeds agree on a horizon some chain of which it
    holds less of than they pruned (`heads`: its vector), it can never catch up on that chain
    (a pruned node gives chains only whole): (the decision, the kept events to adopt). None
    when it is not behind, or the seeds do not agree (it starts as it is). One round: a node
    whose seeds are down starts at once."""
    decision = decide(await _offers(transport, seeds), quorum)
    if decision.kind != "adopt" or decision.offer is None or decision.offer.body is None:
        return None
    horizon = unpack(decision.offer.body)
    if all(heads.get(author, 0) >= head.seq for author, head in horizon.heads.items()):
        return None
    summary = decision.offer.summary
    if summary is None:
        return None
    for address in decision.seeds:
        try:
            return decision, await _fetch_kept(transport, address, summary.count)
        except Exception:  # the next agreeing seed may give them
            continue
    return None


async def _offers(transport: Asking, seeds: Sequence[str]) -> dict[str, Offer]:
    async def ask(address: str) -> Offer:
        _, reply = await transport.request(address, {"t": "horizon"})
        try:
            return parse_offer(reply)
        except ValueError as exc:
            return Offer(None, None, str(exc))

    answers = await asyncio.gather(*(ask(address) for address in seeds), return_exceptions=True)
    return {
        address: answer
        for address, answer in zip(seeds, answers, strict=True)
        if isinstance(answer, Offer)
    }


async def _adopt(transport: Asking, log: AdoptingLog, decision: Decision) -> int:
    """Fetch the kept events from the first agreeing seed that gives them all, and adopt."""
    offer = decision.offer
    if offer is None or offer.body is None or offer.summary is None:
        raise ValueError("nothing to adopt")
    problem: Exception | None = None
    for address in decision.seeds:
        try:
            raws = await _fetch_kept(transport, address, offer.summary.count)
            return await log.adopt(offer.body, offer.summary, raws)
        except Exception as exc:  # this seed failed us: the next agreeing one may not
            problem = exc
    raise ValueError(str(problem))


async def _fetch_kept(transport: Asking, address: str, count: int) -> list[bytes]:
    raws: list[bytes] = []
    size = 0
    after: Cursor | None = None
    for _ in range(MAX_KEPT_PAGES):
        message: dict[str, Any] = {"t": "kept", "after": list(after) if after else None}
        _, reply = await transport.request(address, message)
        if not isinstance(reply, dict) or reply.get("t") != "kept":
            raise ValueError(f"{address}: not a kept page")
        events = reply.get("events")
        if not isinstance(events, list) or not all(isinstance(e, bytes) for e in events):
            raise ValueError(f"{address}: a kept page without events")
        raws += events
        size += sum(len(raw) for raw in events)
        if len(raws) > count or size > MAX_KEPT_BYTES:
            raise ValueError(f"{address} sent more than the {count} kept events it agreed on")
        following = parse_cursor(reply.get("next"))
        if following is None or not events:
            return raws
        after = following
    raise ValueError(f"{address}: kept events never ended")
