"""Arbitrary signed histories of four members, honest and rule-breaking events mixed: every
causal arrival order, whole or in chunks, folds to the same state and the same evidence."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey
from scheduler_harness import BIG, CLIENT, noop_spec
from test_projection import apply_in_chunks, indexes, interleave

from edgebac.eventlog.clock import Hlc
from edgebac.eventlog.encoding import Event, seal
from edgebac.eventlog.signed import SUBMIT, job_id_for, sign_request
from edgebac.scheduler.events import execution_id
from edgebac.scheduler.projection import Projection

KEYS = [SigningKey(bytes([i + 1]) * 32) for i in range(4)]
ROLES = [("requester", "compute"), ("compute",), ("requester",), ()]
TYPES = [
    "NodeAnnounced",
    "JobCreated",
    "BidOffered",
    "BidDeclined",
    "BidAccepted",
    "BidRejected",
    "BidsRequested",
    "ExecutionStarted",
    "ExecutionFailed",
    "ResultPublished",
    "NodeLost",
    "JobCompleted",
    "JobFailed",
    "JobCanceled",
]


def _spec(node: int) -> dict:
    if node % 2:
        return noop_spec(type="ops", constraints=[f"zone={_zone(node)}"])
    return noop_spec()


def _zone(node: int) -> str:
    return "north" if node % 2 == 0 else "south"


def _request(author: int, job: str, node: int) -> dict:
    """A client-signed JobCreated body as `author` would write it for `job` with `node`'s spec:
    it opens `JOBS[job]` only when written by that job's creator (any other author's, or
    another spec's, derives another id) and only once."""
    requester, client, spec = bytes(KEYS[author].verify_key), bytes(CLIENT.verify_key), _spec(node)
    sig = sign_request(CLIENT, SUBMIT, requester, {"spec": spec, "nonce": job})
    body = {"spec": spec, "nonce": job, "client": client, "client_sig": sig}
    return {**body, "job_id": JOBS[job], "wall_ms": 1000}


CREATORS = {"j1": 0, "j2": 1}  # who creates each job, and with which node's spec
JOBS = {
    job: job_id_for(bytes(KEYS[who].verify_key), bytes(CLIENT.verify_key), _spec(who), job)
    for job, who in CREATORS.items()
}


# What an event names is mostly something said before (a bid to accept, an execution to report
# on), so that histories get as far as runs and results; the author may still be the wrong one.
NAMES = {
    "BidAccepted": "BidOffered",
    "BidRejected": "BidOffered",
    "ExecutionStarted": "BidAccepted",
    "ExecutionFailed": "BidAccepted",
    "ResultPublished": "BidAccepted",
    "NodeLost": "BidAccepted",
}


def _named(type_: str, job: str, node: int, said: dict[str, list[Event]]) -> tuple[bytes, int, str]:
    """(node key, attempt, execution id) the event names: the `node`-th earlier bid or
    acceptance of the job it answers, if any; else from `node` itself."""
    key, attempt = bytes(KEYS[node].verify_key), node // 3
    earlier = [e for e in said.get(NAMES.get(type_, ""), ()) if e.body["job_id"] == JOBS[job]]
    if earlier:
        pick = earlier[node % len(earlier)]
        if pick.type == "BidOffered":
            key, attempt = pick.author, pick.body["attempt"]
        else:
            key, attempt = pick.body["node"], pick.body["attempt"]
    return key, attempt, execution_id(JOBS[job], attempt, key)


REQUESTER_TYPES = {"JobCreated", "BidsRequested", "BidAccepted", "BidRejected", "NodeLost"}
REQUESTER_TYPES |= {"JobCompleted", "JobFailed", "JobCanceled"}
REPORTS = {"ExecutionStarted", "ExecutionFailed", "ResultPublished"}


def _author(author: int, type_: str, job: str, key: bytes) -> int:
    """`author` 0-3 is that key; 4-7 the one the protocol expects to write `type_` (the job's
    requester, the execution's node), who may still lack the role or the round may not fit."""
    if author < 4:
        return author
    if type_ in REQUESTER_TYPES:
        return CREATORS[job]
    if type_ in REPORTS:
        return next(i for i, k in enumerate(KEYS) if bytes(k.verify_key) == key)
    return author % 4


def _body(type_: str, job: str, node: int, author: int, named: tuple[bytes, int, str]) -> dict:
    key, attempt, execution = named
    if type_ == "NodeAnnounced":
        return _announcement(node)
    if type_ == "JobCreated":
        return _request(author, job, node)
    bodies = {
        "BidOffered": {"attempt": attempt, "free": BIG, "local_data": node == 1},
        "BidDeclined": {"attempt": 0, "reason": "lack memory"},
        "BidAccepted": {"node": key, "execution_id": execution, "attempt": attempt},
        "BidRejected": {"node": key, "reason": "outranked"},
        "BidsRequested": {"attempt": 1},
        "ExecutionStarted": {"execution_id": execution},
        "ExecutionFailed": {"execution_id": execution, "reason": "x"},
        "ResultPublished": {"execution_id": execution, "exit_code": node % 2},
        "NodeLost": {"node": key, "reason": "x", "job_ids": [JOBS[job]]},
        "JobFailed": {"reason": "x", "attempts": []},
    }
    body = dict(bodies.get(type_, {}))
    if type_ != "NodeLost":
        body["job_id"] = JOBS[job]
    return body


def _announcement(node: int) -> dict:
    """Roles and labels vary with `node`: a re-announcement changes what its author may do."""
    return {
        "addresses": [f"127.0.0.{node + 1}:7700"],
        "roles": list(ROLES[node]),
        "labels": {"zone": _zone(node)},
        "resources": dict(BIG),
        "executors": ["noop"],
    }


raw_event = st.tuples(
    st.integers(0, 7),  # author (4-7: the one the protocol expects, see `_author`)
    # weighted towards what moves a job on, so that histories reach runs and results
    st.sampled_from(
        [*TYPES, *["BidOffered", "BidAccepted"] * 2, "ExecutionStarted", "ResultPublished"]
    ),
    st.sampled_from(["j1", "j2"]),
    st.integers(0, 3),  # node named in the body (for NodeAnnounced: the roles and labels)
    st.integers(0, 3),  # clock step (0: same ms as the author's last; ties across authors)
)


def _history(roles: list[int], raw: list[tuple]) -> list[Event]:
    """Every chain opens with its author's announcement (as ingest requires), the creators then
    create their jobs, then the raw events follow: honest ones and ones that break the rules."""
    opening = [(a, "NodeAnnounced", "j1", roles[a], 0) for a in range(4)]
    opening += [(who, "JobCreated", job, who, 0) for job, who in CREATORS.items()]
    chains: dict[int, list[Event]] = {i: [] for i in range(4)}
    clocks = dict.fromkeys(range(4), 0)
    said: dict[str, list[Event]] = {}
    for author, type_, job, node, step in [*opening, *raw]:
        named = _named(type_, job, node, said)
        author = _author(author, type_, job, named[0])
        chain = chains[author]
        clocks[author] += step
        hlc = Hlc(1000 + clocks[author], len(chain))
        prev = chain[-1].id if chain else None
        body = _body(type_, job, node, author, named)
        chain.append(seal(KEYS[author], len(chain) + 1, prev, hlc, type_, body))
        said.setdefault(type_, []).append(chain[-1])
    return [e for chain in chains.values() for e in chain]


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.sampled_from([0, 0, 1, 2, 3]), min_size=4, max_size=4),  # ROLES, mostly both
    st.lists(raw_event, max_size=40),
    st.randoms(use_true_random=False),
)
def test_arbitrary_signed_histories_fold_the_same_in_any_causal_order(roles, raw, rnd):
    events = _history(roles, raw)
    whole = Projection.from_events(events)
    expected, evidence = whole.state_hash(), whole.evidence()
    for _ in range(3):
        order = interleave(events, rnd)
        assert Projection.from_events(order).state_hash() == expected
        chunked = apply_in_chunks(order, rnd)
        assert chunked.state_hash() == expected
        assert chunked.evidence() == evidence
        indexes(chunked)
