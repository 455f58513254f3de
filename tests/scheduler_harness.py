"""A side-effect-free world for scheduler tests: signed events in, decisions out.

Every event is really sealed (ed25519, canonical bytes) with a per-author chain and one shared
hybrid clock, as if all nodes saw each other's events at once; the projection is kept up to
date incrementally. Time only moves when a test says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nacl.signing import SigningKey

from edgebac.eventlog.clock import ZERO, Hlc, tick
from edgebac.eventlog.encoding import Event, seal
from edgebac.eventlog.signed import CANCEL, SUBMIT, job_id_for, sign_request
from edgebac.scheduler import compute, requester
from edgebac.scheduler.events import Planned, execution_id
from edgebac.scheduler.projection import Projection

START_MS = 1_700_000_000_000
CLIENT = SigningKey(b"client-key-of-the-harness-tests!")  # signs every job the harness submits
GIB = 1 << 30
BIG = {"cpu_millis": 8000, "memory_bytes": 16 * GIB, "disk_bytes": 100 * GIB, "gpu": 0}


@dataclass
class Actor:
    name: str
    key: SigningKey
    seq: int = 0
    prev: bytes | None = None

    @property
    def id(self) -> bytes:
        return bytes(self.key.verify_key)


@dataclass
class World:
    now_ms: int = START_MS
    last: Hlc = ZERO
    log: list[Event] = field(default_factory=list)
    state: Projection = field(default_factory=Projection)
    actors: dict[str, Actor] = field(default_factory=dict)
    job_ids: dict[str, str] = field(default_factory=dict)  # a test's name of a job -> its id

    def actor(self, name: str) -> Actor:
        if name not in self.actors:
            seed = (name.encode() * 32)[:32]
            self.actors[name] = Actor(name, SigningKey(seed))
        return self.actors[name]

    def emit(self, who: Actor | str, type_: str, body: dict[str, Any]) -> Event:
        actor = self.actor(who) if isinstance(who, str) else who
        self.last = tick(self.last, self.now_ms)
        event = seal(actor.key, actor.seq + 1, actor.prev, self.last, type_, body)
        actor.seq, actor.prev = event.seq, event.id
        self.log.append(event)
        self.state.apply([event])
        return event

    def emit_all(self, who: Actor | str, planned: Iterable[Planned]) -> list[Event]:
        return [self.emit(who, type_, body) for type_, body in planned]

    def advance(self, ms: int) -> None:
        self.now_ms += ms

    def announce(
        self,
        who: str,
        roles: tuple[str, ...] = ("compute",),
        labels: dict[str, str] | None = None,
        resources: dict[str, int] | None = None,
    ) -> Event:
        return self.emit(who, "NodeAnnounced", self._announcement(who, roles, labels, resources))

    @staticmethod
    def _announcement(
        who: str,
        roles: tuple[str, ...] = (),
        labels: dict[str, str] | None = None,
        resources: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        return {
            "addresses": [f"{who}:7700"],
            "roles": list(roles),
            "labels": labels or {},
            "resources": resources if resources is not None else dict(BIG),
            "executors": ["docker", "wasm", "noop"],
        }

    def submit(self, who: str, name: str, spec: dict[str, Any]) -> Event:
        """As the API does for a signed request: the job id derived from the request (the
        test's `name` is the nonce; `jid(name)` is the id), the client's signature, and the
        requester's wall clock (`wall_ms`)."""
        return self.emit(who, "JobCreated", self.job_request(who, name, spec))

    def job_request(self, who: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """The body `submit` appends, for a test that changes a field of it first (`jid(name)`
        is its job id from here on)."""
        requester, client = self.actor(who).id, bytes(CLIENT.verify_key)
        fields = {"spec": spec, "nonce": name}
        job_id = self.job_ids[name] = job_id_for(requester, client, spec, name)
        return {
            "job_id": job_id,
            "spec": spec,
            "nonce": name,
            "client": client,
            "client_sig": sign_request(CLIENT, SUBMIT, requester, fields),
            "wall_ms": self.now_ms,
        }

    def cancel(self, who: str, job_id: str, reason: str = "canceled by the client") -> list[Event]:
        """As the API does for the job's client's signed cancel request: the requester's
        planned JobCanceled, carrying the client's key, nonce and signature."""
        fields = {"job_id": job_id, "nonce": f"cancel-{job_id}", "reason": reason}
        requester_id = self.state.jobs[job_id].requester
        signed = {
            "client": bytes(CLIENT.verify_key),
            "nonce": fields["nonce"],
            "client_sig": sign_request(CLIENT, CANCEL, requester_id, fields),
        }
        planned = requester.cancel(self.state, job_id, reason)
        return self.emit_all(who, [(kind, {**body, **signed}) for kind, body in planned])

    def jid(self, name: str) -> str:
        """The id of the job a test submitted as `name`."""
        return self.job_ids[name]

    def xid(self, name: str, attempt: int, node: str) -> str:
        """The id an execution of job `name` in round `attempt` on actor `node` must have."""
        return execution_id(self.jid(name), attempt, self.actor(node).id)

    def future_event(self, ahead_ms: int) -> Event:
        """A legal event dated `ahead_ms` ahead (a node whose clock runs fast, within the
        tolerance): seeing it drags the shared hybrid clock forward, as `HybridClock.observe`
        does, so every later hlc is that far ahead of the wall clock. Its author is a member
        with no role: its first event is its announcement, as ingest requires."""
        stranger = self.actor("fast-clock")
        hlc = max(self.last, Hlc(self.now_ms + ahead_ms, 0))
        if stranger.seq:
            type_, body = "Note", {"text": "hi"}
        else:
            type_, body = "NodeAnnounced", self._announcement(stranger.name)
        event = seal(stranger.key, stranger.seq + 1, stranger.prev, hlc, type_, body)
        stranger.seq, stranger.prev = event.seq, event.id
        self.last = hlc
        self.log.append(event)
        self.state.apply([event])
        return event

    def plan_requester(self, who: str, config: Any = None, **kwargs: Any) -> list[Planned]:
        config = config or requester.RequesterConfig()
        return requester.decide(self.state, self.now_ms, self.actor(who).id, config, **kwargs)

    def requester_step(self, who: str, config: Any = None, **kwargs: Any) -> list[Event]:
        return self.emit_all(who, self.plan_requester(who, config, **kwargs))

    def plan_compute(self, who: str, policy: Any = None, facts: Any = None) -> list[Planned]:
        policy = policy or compute.NodePolicy()
        facts = facts or compute.LocalFacts(images=frozenset({"alpine:latest"}))
        return compute.decide(self.state, self.now_ms, self.actor(who).id, policy, facts)

    def compute_step(self, who: str, policy: Any = None, facts: Any = None) -> list[Event]:
        return self.emit_all(who, self.plan_compute(who, policy, facts))

    def start(self, who: str, execution_id: str) -> Event:
        job_id = self.state.executions[execution_id].job_id
        return self.emit(who, "ExecutionStarted", {"job_id": job_id, "execution_id": execution_id})

    def publish(self, who: str, execution_id: str, exit_code: int = 0) -> Event:
        job_id = self.state.executions[execution_id].job_id
        body = {
            "job_id": job_id,
            "execution_id": execution_id,
            "exit_code": exit_code,
            "reference": f"cid-{execution_id}",
        }
        return self.emit(who, "ResultPublished", body)

    def fail(self, who: str, execution_id: str, reason: str = "crashed") -> Event:
        job_id = self.state.executions[execution_id].job_id
        body = {"job_id": job_id, "execution_id": execution_id, "reason": reason}
        return self.emit(who, "ExecutionFailed", body)


def noop_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"engine": {"type": "noop"}, "timeout_s": 60}
    spec.update(overrides)
    return spec


def docker_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"engine": {"type": "docker", "image": "alpine"}, "timeout_s": 60}
    spec.update(overrides)
    return spec


def types(events: Iterable[Event | Planned]) -> list[str]:
    return [e.type if isinstance(e, Event) else e[0] for e in events]
