"""What the event-authority checks (#13) cost per job, in the projection and on a bidder.

    python bench/authority_cost.py [--jobs N] [--rounds R]

A job's whole history as a 3-node network writes it (announcements first; then per job a
client-signed JobCreated, three bids, one acceptance, two rejections, a start, a result and
JobCompleted: 10 events) is folded into a fresh projection twice: as it is, and with
`authority.violation` and `authority.creation_violation` replaced by a function that allows
everything. The difference per job is what the rules cost in the fold (the JobCreated id check
hashes the spec; the rest are dictionary lookups). Separately: the time spent inside the two
checks themselves, and the client signature check a bidder makes once per job
(`compute.client_signed`, one ed25519 verify). Best of R rounds (other load only slows one).
`bench/eventlog.py` prints these figures too.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from nacl.signing import SigningKey

from edgebac.eventlog.clock import Hlc
from edgebac.eventlog.encoding import Event, seal
from edgebac.eventlog.signed import SUBMIT, job_id_for, sign_request
from edgebac.scheduler import authority, compute
from edgebac.scheduler.events import execution_id
from edgebac.scheduler.projection import Projection

EVENTS_PER_JOB = 10
SPEC = {"engine": {"type": "noop"}, "timeout_s": 60, "resources": {"cpu": "100m"}}
RESOURCES = {"cpu_millis": 8000, "memory_bytes": 1 << 34, "disk_bytes": 1 << 36, "gpu": 0}


class _Chain:
    def __init__(self, seed: bytes) -> None:
        self.key = SigningKey(seed)
        self.id = bytes(self.key.verify_key)
        self.events: list[Event] = []

    def write(self, hlc: Hlc, type_: str, body: dict[str, Any]) -> Event:
        prev = self.events[-1].id if self.events else None
        event = seal(self.key, len(self.events) + 1, prev, hlc, type_, body)
        self.events.append(event)
        return event


def history(jobs: int) -> list[Event]:
    """Every event of `jobs` noop jobs run on a network of a requester and three compute
    nodes, in the order they were written."""
    client = SigningKey(b"c" * 32)
    requester = _Chain(b"r" * 32)
    nodes = [_Chain(bytes([i + 1]) * 32) for i in range(3)]
    ms = 1_700_000_000_000
    out: list[Event] = []

    def write(chain: _Chain, type_: str, body: dict[str, Any]) -> None:
        nonlocal ms
        ms += 1
        out.append(chain.write(Hlc(ms, 0), type_, body))

    for chain, roles in [(requester, ["requester"]), *((n, ["compute"]) for n in nodes)]:
        announced = {"addresses": [], "roles": roles, "labels": {}, "resources": RESOURCES}
        write(chain, "NodeAnnounced", {**announced, "executors": ["noop"]})
    for n in range(jobs):
        nonce = f"n{n}"
        job_id = job_id_for(requester.id, bytes(client.verify_key), SPEC, nonce)
        sig = sign_request(client, SUBMIT, requester.id, {"spec": SPEC, "nonce": nonce})
        created = {"job_id": job_id, "spec": SPEC, "nonce": nonce, "wall_ms": ms}
        write(
            requester,
            "JobCreated",
            created | {"client": bytes(client.verify_key), "client_sig": sig},
        )
        for node in nodes:
            write(node, "BidOffered", {"job_id": job_id, "attempt": 0, "free": RESOURCES})
        winner, *others = nodes
        xid = execution_id(job_id, 0, winner.id)
        accept = {"job_id": job_id, "node": winner.id, "execution_id": xid, "attempt": 0}
        write(requester, "BidAccepted", accept | {"wall_ms": ms})
        for node in others:
            body = {"job_id": job_id, "node": node.id, "reason": "outranked", "attempt": 0}
            write(requester, "BidRejected", body)
        write(winner, "ExecutionStarted", {"job_id": job_id, "execution_id": xid})
        result = {"job_id": job_id, "execution_id": xid, "exit_code": 0, "reference": "x"}
        write(winner, "ResultPublished", result)
        write(requester, "JobCompleted", {"job_id": job_id})
    return out


@contextmanager
def checks(replace: Callable[..., Any] | None) -> Iterator[None]:
    """The authority rules as they are (None), or both replaced by `replace`."""
    saved = authority.violation, authority.creation_violation
    if replace is not None:
        authority.violation = authority.creation_violation = replace
    try:
        yield
    finally:
        authority.violation, authority.creation_violation = saved


def fold_seconds(events: list[Event]) -> float:
    start = time.perf_counter()
    Projection.from_events(events)
    return time.perf_counter() - start


def measure(jobs: int, rounds: int) -> dict[str, float]:
    """Per job, in microseconds: the fold with and without the rules, the time inside the
    rules (less the timer's own cost, measured around a rule that allows everything), and a
    bidder's client signature check. Best of `rounds`."""
    events = history(jobs)
    violation, creation = authority.violation, authority.creation_violation
    with_rules, without, in_rules, in_nothing = [], [], [], []
    for _ in range(rounds):
        with checks(None):
            with_rules.append(fold_seconds(events))
        with checks(lambda *args: None):
            without.append(fold_seconds(events))
        for rules, spent in (((violation, creation), in_rules), ((_allow, _allow), in_nothing)):
            inside = [0.0]
            with checks(_timed(*rules, inside)):
                fold_seconds(events)
            spent.append(inside[0])
    folded = Projection.from_events(events)
    sample = list(folded.jobs.values())[: min(jobs, 500)]
    start = time.perf_counter()
    assert all(compute.client_signed(job) for job in sample)
    verify = (time.perf_counter() - start) / len(sample)
    per_job = 1e6 / jobs
    return {
        "fold with the rules": min(with_rules) * per_job,
        "fold without them": min(without) * per_job,
        "rules (fold difference)": (min(with_rules) - min(without)) * per_job,
        "inside the rules (timed)": (min(in_rules) - min(in_nothing)) * per_job,
        "bidder's client signature check": verify * 1e6,
    }


def _allow(*args: Any) -> None:
    return None


def _timed(violation: Callable[..., Any], creation: Callable[..., Any], inside: list[float]):
    """Both rules as one function (creation_violation takes 2 arguments, violation 3) that
    adds the time spent in them to `inside[0]`."""

    def rule(*args: Any) -> str | None:
        start = time.perf_counter()
        found = (creation if len(args) == 2 else violation)(*args)
        inside[0] += time.perf_counter() - start
        return found

    return rule


def report(jobs: int, rounds: int) -> None:
    figures = measure(jobs, rounds)
    print(f"per job ({jobs} jobs of {EVENTS_PER_JOB} events, best of {rounds} rounds):")
    for name, us in figures.items():
        print(f"  {name:<38} {us:>8.1f} us")
    share = figures["rules (fold difference)"] / figures["fold with the rules"]
    print(f"  the rules' share of the fold: {share:.0%}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    report(args.jobs, args.rounds)
