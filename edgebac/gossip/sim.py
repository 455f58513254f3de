"""A simulator: thousands of nodes running the real `Gossiper` and `Membership` in one process.

Time is virtual. `VirtualLoop` is an asyncio loop whose selector never blocks: asked to wait
`timeout` seconds for I/O, it moves the loop's clock on by `timeout` and reports no events, so
`asyncio.sleep`, timeouts and jitter all run at full CPU speed. The network is in memory
(`SimNetwork`): requests and replies are delivered after random delays, lost, duplicated or cut
by partitions. Logs are in memory (`MemoryLog`) but apply the real checks: `open_many` for
decoding, signatures and body shapes, `check_chains` for chains.

A run is a pure function of its seed: one RNG per node and one for the network, all drawn in
the loop's deterministic order; no threads; nothing iterates a set (bytes hash differently in
every process). `Simulation.digest()` fingerprints every message sent, for reproducibility.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import selectors
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nacl.signing import SigningKey

from edgebac.eventlog.chain import Fork, Head, check_chains
from edgebac.eventlog.clock import HybridClock
from edgebac.eventlog.encoding import Event, Verifier, event_id, peek_key, seal
from edgebac.eventlog.opening import open_many
from edgebac.eventlog.store import IngestReport, Page
from edgebac.eventlog.types import FIRST_TYPES, body_problem
from edgebac.gossip.config import PRESETS, GossipConfig
from edgebac.gossip.membership import Liveness
from edgebac.gossip.protocol import Gossiper, ProtocolError, TransportError

# The default preset, with views bounded so 10,000 nodes fit in memory and each message costs
# O(view), and an eighth of the view riding along each message (32 of 64 would replace half a
# full view per message: pure churn, and the costliest part of a simulated round).
SIM_CONFIG = PRESETS["default"].with_(view_limit=64, peers_per_message=8)


class SimulationStuck(RuntimeError):
    """Nothing is scheduled and nothing is ready: a real loop would wait forever."""


# ----- virtual time ---------------------------------------------------------------------------


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now


class _VirtualSelector(selectors.BaseSelector):
    """Accepts registrations (the loop's self-pipe) but never blocks: waiting is time passing."""

    def __init__(self, clock: _Clock) -> None:
        self._clock = clock
        self._keys: dict[int, selectors.SelectorKey] = {}

    @staticmethod
    def _fd(fileobj: Any) -> int:
        return fileobj if isinstance(fileobj, int) else fileobj.fileno()

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = selectors.SelectorKey(fileobj, self._fd(fileobj), events, data)
        self._keys[key.fd] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._keys.pop(self._fd(fileobj))

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._keys[self._fd(fileobj)]

    def get_map(self) -> Mapping[int, selectors.SelectorKey]:
        return self._keys

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None:
            raise SimulationStuck("nothing is scheduled: the simulation would wait forever")
        if timeout > 0:
            self._clock.now += timeout
        return []

    def close(self) -> None:
        self._keys.clear()


class VirtualLoop(asyncio.SelectorEventLoop):
    """An event loop on a virtual clock (seconds, starting at `start`)."""

    def __init__(self, start: float = 0.0) -> None:
        self._vclock = _Clock(start)
        super().__init__(_VirtualSelector(self._vclock))

    def time(self) -> float:
        return self._vclock.now


# ----- the log ---------------------------------------------------------------------------------


class SharedVerifier(Verifier):
    """Checks each distinct event's signature once per simulation; nodes share the result.

    Keyed by the event id (sha256 of the exact bytes), so a cached answer is only ever reused
    for the very bytes that were verified.
    """

    def __init__(self) -> None:
        super().__init__()
        self.opened: dict[bytes, Event] = {}

    def open(self, raw: bytes) -> Event:
        id_ = event_id(raw)
        event = self.opened.get(id_)
        if event is None:
            event = self.opened[id_] = super().open(raw)
        return event


class MemoryLog:
    """The `SyncLog` protocol in memory, with the real verification and chain checks."""

    def __init__(
        self, key: SigningKey | None, clock: HybridClock, verifier: Verifier | None = None
    ) -> None:
        self.key = key
        self.clock = clock
        self.is_member: Callable[[bytes], bool] = lambda author: True
        self.forks: list[Fork] = []
        self._verifier = verifier or Verifier()
        self._chains: dict[bytes, list[Event]] = {}
        self._heads: dict[bytes, Head] = {}
        self._vv: dict[bytes, int] = {}
        self._listeners: list[Callable[[list[Event]], None]] = []

    def version_vector(self) -> Mapping[bytes, int]:
        return self._vv

    def head(self, author: bytes) -> Head | None:
        return self._heads.get(author)

    def chain(self, author: bytes) -> list[Event]:
        return self._chains.get(author, [])

    def chains(self) -> list[list[Event]]:
        return list(self._chains.values())

    def count(self) -> int:
        return sum(len(chain) for chain in self._chains.values())

    def add_listener(self, listener: Callable[[list[Event]], None]) -> None:
        self._listeners.append(listener)

    async def missing(
        self, remote: Mapping[bytes, int], *, max_events: int = 1000, max_bytes: int = 1 << 20
    ) -> Page:
        """As `EventLog.missing`: oldest first per author, authors in order, bounded."""
        wants = [
            (author, remote.get(author, 0))
            for author, chain in sorted(self._chains.items())
            if len(chain) > remote.get(author, 0)
        ]
        return await self.after(wants, max_events=max_events, max_bytes=max_bytes)

    async def after(
        self,
        wants: Sequence[tuple[bytes, int]],
        *,
        max_events: int = 1000,
        max_bytes: int = 1 << 20,
    ) -> Page:
        """As `EventLog.after`: each wanted author's events past its seq, in order, bounded."""
        raws: list[bytes] = []
        size = 0
        for author, after in wants:
            chain = self._chains.get(author, [])
            if len(chain) <= after:
                continue
            rows = chain[after : after + max(max_events - len(raws), 0)]
            for event in rows:
                if raws and size + len(event.raw) > max_bytes:
                    return Page(raws, complete=False)
                raws.append(event.raw)
                size += len(event.raw)
            if after + len(rows) < len(chain):
                return Page(raws, complete=False)
        return Page(raws, complete=True)

    async def ingest(self, raws: Sequence[bytes]) -> IngestReport:
        events, rejections = open_many(raws, self._verifier)
        report = IngestReport(rejections=rejections)
        if events:
            held_ids = {
                (e.author, e.seq): self._chains[e.author][e.seq - 1].id
                for e in events
                if e.seq <= self._vv.get(e.author, 0)
            }
            verdict = check_chains(
                self._heads,
                held_ids,
                events,
                now_ms=self.clock.wall_ms(),
                max_skew_ms=self.clock.max_skew_ms,
                is_member=self.is_member,
            )
            for event in verdict.accepted:
                self.clock.advance_to(event.hlc)
            self.forks.extend(verdict.forks)
            report.accepted = verdict.accepted
            report.rejections.extend(verdict.rejections)
            self._store(verdict.accepted)
        return report

    def append(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Event]:
        """Sign and store local events (at once: memory needs no writer queue)."""
        if self.key is None:
            raise ValueError("this log has no key: it cannot append")
        author = bytes(self.key.verify_key)
        events = []
        head = self._heads.get(author)
        if head is None and items and items[0][0] not in FIRST_TYPES:
            raise ValueError(
                f"this node's first event must be its NodeAnnounced, not {items[0][0]}"
            )
        for type_, body in items:
            problem = body_problem(type_, body)
            if problem is not None:
                raise ValueError(problem[1])
            seq = head.seq + 1 if head else 1
            event = seal(self.key, seq, head.id if head else None, self.clock.now(), type_, body)
            head = Head(event.seq, event.id, event.hlc)
            events.append(event)
        self._store(events)
        return events

    def _store(self, events: list[Event]) -> None:
        if not events:
            return
        for event in events:
            self._chains.setdefault(event.author, []).append(event)
            self._heads[event.author] = Head(event.seq, event.id, event.hlc)
            self._vv[event.author] = event.seq
        for listener in self._listeners:
            listener(events)


# ----- the network -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Faults:
    loss: float = 0.0  # chance that a request, or a reply, is dropped
    duplicate: float = 0.0  # chance that a request is delivered twice (the copy's reply is lost)
    delay_s: tuple[float, float] = (0.002, 0.1)  # one-way delay, uniform: reorders messages


@dataclass
class SimNode:
    index: int
    key: SigningKey
    address: str
    log: MemoryLog
    rng: random.Random
    seeds: list[str]
    gossiper: Gossiper | None = None
    task: asyncio.Task[None] | None = None
    up: bool = False
    serving: dict[asyncio.Task[None], None] = field(default_factory=dict)

    @property
    def id(self) -> bytes:
        return bytes(self.key.verify_key)


class SimNetwork:
    """Carries messages between nodes by address; counts and fingerprints everything sent."""

    def __init__(self, loop: VirtualLoop, rng: random.Random, faults: Faults, timeout_s: float):
        self.loop = loop
        self.rng = rng
        self.faults = faults
        self.timeout_s = timeout_s
        self.nodes: dict[str, SimNode] = {}
        self.sent: Counter[str] = Counter()  # by message type: sync, page, push, ack
        self.events_carried = 0  # every event in every message sent, lost or not
        # (author, seq) -> copies that reached a node (pushes and pages, new there or not)
        self.delivered: dict[tuple[bytes, int], int] = {}
        self._side: dict[str, int] = {}  # address -> partition side; empty: no partition
        self._trace = hashlib.sha256()

    def partition(self, *sides: Sequence[str]) -> None:
        """Cut the network: nodes on different sides cannot reach each other (unlisted nodes
        form one more side). Replaces any earlier partition."""
        self._side = {address: i + 1 for i, side in enumerate(sides) for address in side}

    def heal(self) -> None:
        self._side = {}

    def reachable(self, a: str, b: str) -> bool:
        return self._side.get(a, 0) == self._side.get(b, 0)

    def digest(self) -> str:
        return self._trace.hexdigest()

    def _note(self, src: str, dst: str, message: Any) -> None:
        kind = message.get("t") if isinstance(message, dict) else None
        self.sent[str(kind)] += 1
        for key in ("events", "deltas"):  # a push carries one or the other (gossip.deltas)
            events = message.get(key) if isinstance(message, dict) else None
            self.events_carried += len(events) if isinstance(events, list) else 0
        self._trace.update(f"{self.loop.time():.9f} {src} {dst} {kind}\n".encode())

    def watch(self, event: Event) -> None:
        """Count, from now on, the copies of `event` that reach a node (`delivered`)."""
        self.delivered.setdefault((event.author, event.seq), 0)

    def _count_delivered(self, message: Any) -> None:
        """Copies of watched events in a message that reached its node: whole events (by
        their (author, seq)) and deltas ([author, seq, blob], gossip.deltas) alike."""
        if not self.delivered or not isinstance(message, dict):
            return
        for key in ("events", "deltas"):
            items = message.get(key)
            for item in items if isinstance(items, list) else ():
                if isinstance(item, bytes):
                    found = peek_key(item)
                elif isinstance(item, list) and len(item) == 3:
                    found = (item[0], item[1])
                else:
                    continue
                if found in self.delivered:
                    self.delivered[found] += 1

    def post(self, src: str, dst: str, message: Any, reply: asyncio.Future[Any]) -> None:
        self._note(src, dst, message)
        copies = 2 if self.rng.random() < self.faults.duplicate else 1
        for copy in range(copies):
            if self.rng.random() < self.faults.loss:
                continue
            answer_to = reply if copy == 0 else None
            delay = self.rng.uniform(*self.faults.delay_s)
            self.loop.call_later(delay, self._arrive, src, dst, message, answer_to)

    def _arrive(self, src: str, dst: str, message: Any, reply: asyncio.Future[Any] | None):
        node = self.nodes.get(dst)
        sender = self.nodes[src]
        if node is None or not node.up or not self.reachable(src, dst):
            return
        self._count_delivered(message)
        task = self.loop.create_task(self._serve(sender, node, message, reply))
        node.serving[task] = None
        task.add_done_callback(lambda done: node.serving.pop(done, None))

    async def _serve(
        self, sender: SimNode, node: SimNode, message: Any, reply: asyncio.Future[Any] | None
    ) -> None:
        assert node.gossiper is not None
        try:
            answer: Any = await node.gossiper.handle(sender.id, message)
        except ProtocolError as exc:  # HTTP answers 400: the caller sees a failed request
            answer = TransportError(f"{node.address} refused: {exc}")
        else:
            self._note(node.address, sender.address, answer)
        if self.rng.random() < self.faults.loss:
            return
        delay = self.rng.uniform(*self.faults.delay_s)
        self.loop.call_later(delay, self._answer, sender, node, answer, reply)

    def _answer(self, sender: SimNode, node: SimNode, answer: Any, reply: Any) -> None:
        if reply is None or reply.done() or not self.reachable(sender.address, node.address):
            return
        self._count_delivered(answer)
        if isinstance(answer, Exception):
            reply.set_exception(answer)
        else:
            reply.set_result((node.id, answer))


class SimTransport:
    """One node's `Transport`: a request fails with TransportError after the timeout."""

    def __init__(self, network: SimNetwork, address: str) -> None:
        self.network = network
        self.address = address

    async def request(self, address: str, message: dict[str, Any]) -> tuple[bytes, Any]:
        loop = self.network.loop
        reply: asyncio.Future[Any] = loop.create_future()
        self.network.post(self.address, address, message, reply)
        timer = loop.call_later(self.network.timeout_s, _time_out, reply, address)
        try:
            return await reply
        finally:
            timer.cancel()


def _time_out(reply: asyncio.Future[Any], address: str) -> None:
    if not reply.done():
        reply.set_exception(TransportError(f"{address}: no answer (timed out)"))


# ----- the simulation --------------------------------------------------------------------------


class Simulation:
    """N nodes with real keys and the real gossip code, on one virtual loop.

    Use as a context manager (or call `close()`); every method runs the loop itself, so callers
    stay synchronous. Node `i` is addressed `node{i}:7700` (a real `HOST:PORT`: membership
    drops anything else).
    """

    def __init__(
        self,
        n: int,
        seed: int,
        *,
        loss: float = 0.0,
        duplicate: float = 0.0,
        delay_s: tuple[float, float] = (0.002, 0.1),
        config: GossipConfig = SIM_CONFIG,
        seeds_per_node: int = 3,
        max_skew_ms: int = 60_000,
    ) -> None:
        self.seed = seed
        self.config = config
        self.loop = VirtualLoop()
        self.rng = random.Random(seed)
        self.verifier = SharedVerifier()
        faults = Faults(loss, duplicate, delay_s)
        net_rng = random.Random(self.rng.getrandbits(64))
        self.network = SimNetwork(self.loop, net_rng, faults, self.config.request_timeout_s)
        self.holders: Counter[bytes] = Counter()  # event id -> nodes holding it
        self.nodes: list[SimNode] = []
        self._written = 0
        for i in range(n):
            self.nodes.append(self._make_node(i, n, seeds_per_node, max_skew_ms))
        for node in self.nodes:
            self.network.nodes[node.address] = node
            self.start(node.index)

    def _make_node(self, i: int, n: int, seeds_per_node: int, max_skew_ms: int) -> SimNode:
        key = SigningKey(self.rng.randbytes(32))
        others = [j for j in self.rng.sample(range(n), min(seeds_per_node + 1, n)) if j != i]
        clock = HybridClock(max_skew_ms, wall=self.now_ms_int)
        node = SimNode(
            index=i,
            key=key,
            address=f"node{i}:7700",
            log=MemoryLog(key, clock, self.verifier),
            rng=random.Random(self.rng.getrandbits(64)),
            seeds=[f"node{j}:7700" for j in others[:seeds_per_node]],
        )
        node.log.add_listener(lambda events: self._stored(node, events))
        return node

    def _stored(self, node: SimNode, events: list[Event]) -> None:
        for event in events:
            self.holders[event.id] += 1
        if node.gossiper is not None and node.up:
            node.gossiper.on_local(events)

    # ----- time --------------------------------------------------------------------------------

    def now(self) -> float:
        return self.loop.time()

    def now_ms(self) -> float:
        return self.loop.time() * 1000

    def now_ms_int(self) -> int:
        return int(self.loop.time() * 1000)

    def run_for(self, seconds: float) -> None:
        self.loop.run_until_complete(asyncio.sleep(seconds))

    def run_until(self, done: Callable[[], bool], within_s: float, step_s: float = 0.01) -> bool:
        """Run until `done()` (checked every `step_s`) or `within_s` pass; whether it held."""

        async def wait() -> bool:
            deadline = self.now() + within_s
            while not done():
                if self.now() >= deadline:
                    return False
                await asyncio.sleep(step_s)
            return True

        return self.loop.run_until_complete(wait())

    # ----- nodes -------------------------------------------------------------------------------

    def start(self, i: int) -> None:
        """Start (or restart after `crash`) node i: a fresh Gossiper over its kept log."""
        node = self.nodes[i]
        if node.up:
            return
        node.gossiper = Gossiper(
            node.key,
            [node.address],
            node.log,
            SimTransport(self.network, node.address),
            self.config,
            clock_ms=self.now_ms,
            rng=node.rng,
            seeds=node.seeds,
        )
        node.gossiper.announced(
            [e for c in node.log.chains() for e in c if e.type == "NodeAnnounced"]
        )
        node.up = True
        node.task = self.loop.create_task(node.gossiper.run())

    def crash(self, i: int) -> None:
        """Stop node i at once: its loops and the requests it was serving die; its log stays."""
        node = self.nodes[i]
        if not node.up:
            return
        node.up = False
        tasks = [node.task, *node.serving]
        for task in tasks:
            if task is not None:
                task.cancel()
        assert node.gossiper is not None
        tasks.append(self.loop.create_task(node.gossiper.stop()))
        self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        node.task = None

    def stop_pulling(self) -> None:
        """Cancel every node's pull loop, keeping its push loop: push-only dissemination."""
        tasks = [node.task for node in self.nodes if node.task is not None]
        for task in tasks:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))

    def append(self, i: int, type_: str = "BidOffered", body: Mapping[str, Any] | None = None):
        """Node i writes one event, which its gossiper pushes like a real node's listener.

        A node's first write comes after its announcement (an author's first event must be its
        `NodeAnnounced`), in the same batch: only nodes that write hold events, so a run of
        10,000 nodes does not carry 10,000 announcements to every node. The event is watched
        (`copies`) before the loop runs again, so before any copy of it is sent.
        """
        self._written += 1
        item = (type_, dict(body) if body is not None else {"job_id": f"sim-{self._written}"})
        log = self.nodes[i].log
        first = [] if log.chain(self.nodes[i].id) else [self.announcement(i)]
        event = log.append([*first, item])[-1]
        self.network.watch(event)
        return event

    def announcement(self, i: int) -> tuple[str, dict[str, Any]]:
        body = {"addresses": [self.nodes[i].address], "roles": ["compute"], "labels": {}}
        return "NodeAnnounced", body | {"resources": {}, "executors": ["noop"]}

    def up(self) -> list[SimNode]:
        return [node for node in self.nodes if node.up]

    # ----- observing ---------------------------------------------------------------------------

    def coverage(self, event: Event) -> float:
        """The share of nodes (up or not) holding `event`."""
        return self.holders[event.id] / len(self.nodes)

    def copies(self, event: Event) -> float:
        """Copies of `event` that reached a node, per node: deliveries per new event per node
        (#17's figure; the real nodes' is `events_new` plus refusals), from when it was
        `network.watch`ed (`append` does). Not `events_carried`: that counts every event of
        every message sent, a writer's announcement and the lost copies too."""
        return self.network.delivered[(event.author, event.seq)] / len(self.nodes)

    def converged(self) -> bool:
        """Every node up holds the same version vector."""
        vvs = [node.log.version_vector() for node in self.up()]
        return all(vv == vvs[0] for vv in vvs[1:])

    def liveness(self, observer: int, subject: int) -> Liveness | None:
        """What node `observer` thinks of node `subject` (None: not in its view)."""
        gossiper = self.nodes[observer].gossiper
        assert gossiper is not None
        member = gossiper.membership.members.get(self.nodes[subject].id)
        return None if member is None else gossiper.membership.liveness(member, self.now_ms())

    def messages(self) -> int:
        """Requests sent so far (replies are counted apart, in `network.sent`)."""
        sent = self.network.sent
        return sent["sync"] + sent["push"]

    def digest(self) -> str:
        """A fingerprint of every message sent (when, from, to, type) and of every log."""
        logs = hashlib.sha256()
        for node in self.nodes:
            for author, seq in sorted(node.log.version_vector().items()):
                logs.update(author + seq.to_bytes(8, "big"))
        return f"{self.network.digest()[:32]}-{logs.hexdigest()[:32]}"

    def close(self) -> None:
        for node in self.nodes:
            self.crash(node.index)
        pending = sorted(asyncio.all_tasks(self.loop), key=lambda task: task.get_name())
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def __enter__(self) -> Simulation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
