"""Who may write what (scheduler/authority.py), ids as data (scheduler/ids.py) and client-signed
requests (eventlog/signed.py): pure functions, tested from tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from edgebac.eventlog.clock import Hlc
from edgebac.eventlog.encoding import seal
from edgebac.eventlog.signed import CANCEL, SUBMIT, job_id_for, request_valid, sign_request
from edgebac.scheduler import authority, ids
from edgebac.scheduler import events as ev
from edgebac.scheduler.authority import Announced, Announcements
from edgebac.scheduler.evidence import evidence_of
from edgebac.scheduler.jobfold import create
from edgebac.scheduler.projection import Projection
from edgebac.scheduler.retention import Retention
from edgebac.scheduler.state import Execution
from tests.scheduler_harness import World, noop_spec
from tests.test_projection import apply_in_chunks, interleave

SPEC = {"engine": {"type": "noop"}, "constraints": ["zone=secure"]}
REQUESTER = SigningKey(b"r" * 32)
COMPUTE = SigningKey(b"c" * 32)
OTHER = SigningKey(b"o" * 32)
CLIENT = SigningKey(b"k" * 32)
R, C, X, K = (bytes(k.verify_key) for k in (REQUESTER, COMPUTE, OTHER, CLIENT))
AS_REQUESTER = Announced(1, frozenset({"requester"}))
AS_COMPUTE = Announced(
    1, frozenset({"compute"}), {"zone": "secure"}, {"cpu_millis": 4000, "memory_bytes": 1 << 30}
)
AS_BOTH = Announced(1, frozenset({"requester", "compute"}), {"zone": "secure"})


def event(key: SigningKey, type_: str, body: dict, seq: int = 2):
    return seal(key, seq, b"\0" * 32 if seq > 1 else None, Hlc(1_000 + seq), type_, body)


def created_body(requester: bytes = R, client: bytes | str = K, nonce: str = "n1") -> dict:
    body = {"spec": SPEC, "nonce": nonce, "job_id": job_id_for(requester, client, SPEC, nonce)}
    return body | ({"client": client} if isinstance(client, bytes) else {"vouched": client})


def cancel_body(job_id: str, client: SigningKey, reason: str = "no longer needed") -> dict:
    """A JobCanceled carrying `client`'s signed cancel request, as the requester writes it."""
    fields = {"job_id": job_id, "nonce": "c1", "reason": reason}
    sig = sign_request(client, CANCEL, R, fields)
    return fields | {"client": bytes(client.verify_key), "client_sig": sig}


def test_a_vouched_job_is_canceled_on_its_requesters_word():
    job = create(event(REQUESTER, ev.JOB_CREATED, created_body(client="unsigned")))
    cancel = event(REQUESTER, ev.JOB_CANCELED, {"job_id": job.id, "reason": "x"})
    assert authority.violation(job, cancel, AS_REQUESTER) is None
    assert "requester" in authority.violation(
        job, event(OTHER, ev.JOB_CANCELED, cancel.body), AS_BOTH
    )


def open_job():
    job = create(event(REQUESTER, ev.JOB_CREATED, created_body()))
    assert job is not None
    assert job.spec is not None
    execution_id = ids.execution_id(job.id, 0, C)
    job.executions[execution_id] = Execution(execution_id, job.id, C, 0, Hlc(2_000))
    return job, execution_id


# ----- JobCreated ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "body", "author", "problem"),
    [
        (REQUESTER, created_body(), AS_REQUESTER, None),
        (REQUESTER, created_body(client="token:ci@r"), AS_REQUESTER, None),
        (REQUESTER, created_body(), None, "never announced"),
        (REQUESTER, created_body(), AS_COMPUTE, "requester role"),
        # an attacker's JobCreated claiming the real job's id: its content derives another id
        (OTHER, created_body(), AS_BOTH, "does not match"),
        (REQUESTER, created_body() | {"nonce": "n2"}, AS_REQUESTER, "does not match"),
        (REQUESTER, created_body() | {"spec": {"engine": {"type": "docker"}}}, AS_REQUESTER,
         "does not match"),
        (REQUESTER, created_body() | {"job_id": "../../etc"}, AS_REQUESTER, "j-<16 hex"),
        (REQUESTER, {k: v for k, v in created_body().items() if k != "nonce"}, AS_REQUESTER,
         "no client request"),
        (REQUESTER, created_body() | {"vouched": "x"}, AS_REQUESTER, "no client request"),
    ],
)  # fmt: skip
def test_who_may_create_a_job(key, body, author, problem):
    found = authority.creation_violation(event(key, ev.JOB_CREATED, body), author)
    assert (found is None) if problem is None else (problem in found)


# ----- events about an open job -------------------------------------------------------------------


def _rows():
    job_id = open_job()[0].id
    execution_id = ids.execution_id(job_id, 0, C)
    accept = {"job_id": job_id, "node": C, "execution_id": execution_id, "attempt": 0}
    result = {"job_id": job_id, "execution_id": execution_id, "exit_code": 0}
    return [
        (REQUESTER, ev.BIDS_REQUESTED, {"job_id": job_id, "attempt": 1}, AS_REQUESTER, None),
        (OTHER, ev.BIDS_REQUESTED, {"job_id": job_id, "attempt": 1}, AS_BOTH, "requester"),
        (REQUESTER, ev.BID_ACCEPTED, accept, AS_REQUESTER, None),
        (OTHER, ev.BID_ACCEPTED, accept, AS_BOTH, "requester"),
        (REQUESTER, ev.BID_ACCEPTED, accept | {"execution_id": "/var/lib"}, AS_REQUESTER,
         "execution id other"),
        (REQUESTER, ev.BID_ACCEPTED, accept | {"attempt": -1}, AS_REQUESTER, "round number"),
        (OTHER, ev.BID_REJECTED, {"job_id": job_id, "node": C, "reason": "x"}, AS_BOTH,
         "requester"),
        (COMPUTE, ev.BID_OFFERED, {"job_id": job_id, "attempt": 0}, AS_COMPUTE, None),
        (OTHER, ev.BID_OFFERED, {"job_id": job_id, "attempt": 0}, AS_REQUESTER, "compute role"),
        (OTHER, ev.BID_OFFERED, {"job_id": job_id}, Announced(1, frozenset({"compute"})),
         "labels do not match the job's constraints"),
        (OTHER, ev.BID_DECLINED, {"job_id": job_id, "reason": "x"}, AS_REQUESTER,
         "compute role"),
        (COMPUTE, ev.EXECUTION_STARTED, {"job_id": job_id, "execution_id": execution_id},
         AS_COMPUTE, None),
        (OTHER, ev.EXECUTION_STARTED, {"job_id": job_id, "execution_id": execution_id},
         AS_BOTH, "other than the node"),
        (COMPUTE, ev.RESULT_PUBLISHED, result, AS_COMPUTE, None),
        (OTHER, ev.RESULT_PUBLISHED, result, AS_BOTH, "other than the node"),
        (REQUESTER, ev.RESULT_PUBLISHED, result, AS_BOTH, "other than the node"),
        (COMPUTE, ev.RESULT_PUBLISHED, result | {"digest": "../x"}, AS_COMPUTE, "not a CID"),
        (COMPUTE, ev.RESULT_PUBLISHED, result | {"execution_id": f"{job_id}-1-{C.hex()[:8]}"},
         AS_COMPUTE, "never accepted"),
        (COMPUTE, ev.RESULT_PUBLISHED, result | {"execution_id": "../../x"}, AS_COMPUTE,
         "malformed execution id"),
        (REQUESTER, ev.EXECUTION_FAILED, result | {"reason": "timed out"}, AS_REQUESTER, None),
        (OTHER, ev.EXECUTION_FAILED, result | {"reason": "x"}, AS_BOTH, "other than the node"),
        (REQUESTER, ev.NODE_LOST, {"node": C, "job_ids": [job_id]}, AS_REQUESTER, None),
        (OTHER, ev.NODE_LOST, {"node": C, "job_ids": [job_id]}, AS_BOTH, "requester"),
        (OTHER, ev.JOB_COMPLETED, {"job_id": job_id}, AS_BOTH, "requester"),
        (OTHER, ev.JOB_FAILED, {"job_id": job_id, "reason": "x"}, AS_BOTH, "requester"),
        (OTHER, ev.JOB_CANCELED, {"job_id": job_id}, AS_BOTH, "requester"),
        (REQUESTER, ev.JOB_CANCELED, {"job_id": job_id}, AS_REQUESTER, "signed request"),
        (REQUESTER, ev.JOB_CANCELED, cancel_body(job_id, CLIENT), AS_REQUESTER, None),
        (REQUESTER, ev.JOB_CANCELED, cancel_body(job_id, OTHER), AS_REQUESTER, "signed request"),
        (REQUESTER, ev.JOB_CANCELED, cancel_body(job_id, CLIENT) | {"reason": "changed"},
         AS_REQUESTER, "signed request"),
        (REQUESTER, ev.JOB_CREATED, created_body(), AS_REQUESTER, "second JobCreated"),
        (REQUESTER, ev.JOB_COMPLETED, {"job_id": job_id}, None, "never announced"),
    ]  # fmt: skip


@pytest.mark.parametrize(("key", "type_", "body", "author", "problem"), _rows())
def test_who_may_write_about_a_job(key, type_, body, author, problem):
    job, _ = open_job()
    found = authority.violation(job, event(key, type_, body), author)
    assert (found is None) if problem is None else (problem in found), found


def test_every_job_event_type_has_a_rule_and_a_writer():
    job_types = {v for k, v in vars(ev).items() if k.isupper() and isinstance(v, str)}
    job_types -= {ev.NODE_ANNOUNCED}
    assert job_types <= set(authority._RULES)
    assert set(authority._RULES) <= set(authority.WRITERS)


def test_a_bid_claims_at_most_what_its_author_announced():
    claimed = {"cpu_millis": 10**12, "memory_bytes": 5, "gpu": 3, "disk_bytes": -1, "x": 9}
    assert authority.capped_free(claimed, AS_COMPUTE) == {
        "cpu_millis": 4000,
        "memory_bytes": 5,
        "gpu": 0,
    }


def test_the_announcement_in_force_is_the_newest_before_the_event():
    history = Announcements()
    history.add(R, Announced(5, frozenset({"compute"})))
    history.add(R, Announced(1, frozenset({"requester"})))
    history.add(R, Announced(5, frozenset({"ignored duplicate"})))
    assert history.as_of(R, 0) is None
    assert history.as_of(R, 1).roles == {"requester"}
    assert history.as_of(R, 4).roles == {"requester"}
    assert history.as_of(R, 5).roles == {"compute"}
    assert history.as_of(R, 10**9).roles == {"compute"}
    assert history.as_of(C, 3) is None


def test_announced_of_keeps_only_well_formed_values():
    body = {
        "addresses": [],
        "roles": ["compute", 3],
        "labels": {"zone": "a", "bad": 1},
        "resources": {"cpu_millis": 1000, "memory_bytes": -5, "gpu": 1.5},
        "executors": [],
    }
    announced = Announced.of(event(COMPUTE, ev.NODE_ANNOUNCED, body, seq=1))
    assert announced.roles == {"compute"}
    assert dict(announced.labels) == {"zone": "a"}
    assert dict(announced.resources) == {"cpu_millis": 1000}


# ----- ids and paths ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("j-0123456789abcdef-0-01234567", True),
        ("stdout", True),
        ("a.b_c-d", True),
        ("", False),
        (".", False),
        ("..", False),
        ("../x", False),
        ("/etc/passwd", False),
        ("a/b", False),
        (".hidden", False),
        ("x\0y", False),
        ("x" * 129, False),
        ("é", False),
    ],
)
def test_child_path_yields_only_names_inside_the_folder(name, safe, tmp_path):
    if safe:
        assert ids.child_path(tmp_path, name).parent == tmp_path
    else:
        with pytest.raises(ids.UnsafeName):
            ids.child_path(tmp_path, name)


@given(st.text(max_size=200))
def test_child_path_never_leaves_its_folder(name):
    folder = Path("/srv/work/results")
    try:
        path = ids.child_path(folder, name)
    except ids.UnsafeName:
        return
    assert path.parent == folder
    assert path.name == name


@pytest.mark.parametrize(
    ("check", "value", "ok"),
    [
        (ids.is_job_id, "j-0123456789abcdef", True),
        (ids.is_job_id, "j-0123456789ABCDEF", False),
        (ids.is_job_id, "j-0123", False),
        (ids.is_job_id, 7, False),
        (ids.is_execution_id, "j-0123456789abcdef-12-deadbeef", True),
        (ids.is_execution_id, "j-0123456789abcdef-01-deadbeef", False),
        (ids.is_execution_id, "j-0123456789abcdef-0-deadbeef/..", False),
        (ids.is_cid, "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", True),
        (ids.is_cid, "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", True),
        (ids.is_cid, "../bafkrei", False),
    ],
)
def test_id_formats(check, value, ok):
    assert check(value) is ok


# ----- client-signed requests ---------------------------------------------------------------------


def test_a_request_signature_binds_client_kind_requester_and_fields():
    fields = {"spec": SPEC, "nonce": "n1"}
    sig = sign_request(CLIENT, SUBMIT, R, fields)
    assert request_valid(K, sig, SUBMIT, R, fields)
    assert not request_valid(X, sig, SUBMIT, R, fields)  # another client
    assert not request_valid(K, sig, "cancel", R, fields)  # another kind
    assert not request_valid(K, sig, SUBMIT, X, fields)  # meant for another requester
    assert not request_valid(K, sig, SUBMIT, R, fields | {"nonce": "n2"})  # replayed as new
    assert not request_valid(K, sig[:-1], SUBMIT, R, fields)
    assert not request_valid("k", sig, SUBMIT, R, fields)


def test_job_ids_differ_for_every_part_of_the_request():
    base = job_id_for(R, K, SPEC, "n")
    assert ids.is_job_id(base)
    assert base == job_id_for(R, K, dict(reversed(SPEC.items())), "n")  # canonical spec
    others = {
        job_id_for(X, K, SPEC, "n"),
        job_id_for(R, X, SPEC, "n"),
        job_id_for(R, "token:ci", SPEC, "n"),
        job_id_for(R, K, {"engine": {"type": "wasm"}}, "n"),
        job_id_for(R, K, SPEC, "m"),
    }
    assert base not in others
    assert len(others) == 5


# ----- the rules in the projection: attacks on a real history, in every arrival order -------------


def attacked_history():
    """An honest job run by "req" on "a" (zone=secure), and a member "evil" that announced both
    roles and tries every attack of the issue; returns (world, the honest job's id, evil's id)."""
    w = World()
    w.announce("req", roles=("requester",))
    w.announce("a", labels={"zone": "secure"})
    w.announce("evil", roles=("requester", "compute"), labels={"zone": "elsewhere"})
    spec = noop_spec(constraints=["zone=secure"])
    real = w.submit("req", "j", spec)
    job_id, evil = w.jid("j"), w.actor("evil")
    early = Hlc(real.hlc.ms - 10)
    forged_xid = ids.execution_id(job_id, 0, evil.id)

    def forge(type_: str, body: dict, hlc: Hlc | None = None) -> None:
        event = seal(evil.key, evil.seq + 1, evil.prev, hlc or w.last, type_, body)
        evil.seq, evil.prev = event.seq, event.id
        w.log.append(event)
        w.state.apply([event])

    # Hijack: the same job id, dated before the real one, with the attacker's spec.
    forge(ev.JOB_CREATED, {"job_id": job_id, "spec": noop_spec(), "nonce": "j",
                           "client": bytes(32), "client_sig": bytes(64)}, early)  # fmt: skip
    # Forged bid (labels it never announced, unlimited resources), acceptance and result.
    forge(ev.BID_OFFERED, {"job_id": job_id, "attempt": 0, "free": {"cpu_millis": 10**15}})
    forge(ev.BID_ACCEPTED, {"job_id": job_id, "node": evil.id, "execution_id": "/var/lib",
                            "attempt": 0})  # fmt: skip
    forge(ev.RESULT_PUBLISHED, {"job_id": job_id, "execution_id": forged_xid, "exit_code": 0,
                                "reference": "FORGED RESULT"})  # fmt: skip
    w.compute_step("a")
    w.advance(3_000)
    w.requester_step("req")
    xid = w.xid("j", 0, "a")
    forge(ev.EXECUTION_FAILED, {"job_id": job_id, "execution_id": xid, "reason": "sabotage"})
    forge(ev.JOB_CANCELED, {"job_id": job_id, "reason": "mine now"})
    w.start("a", xid)
    w.publish("a", xid)
    w.requester_step("req")
    return w, job_id, evil.id


def test_every_attack_of_a_member_counts_for_nothing():
    w, job_id, evil = attacked_history()
    job = w.state.jobs[job_id]
    assert job.requester == w.actor("req").id
    assert job.status == "completed"
    assert [(e.node, e.status) for e in job.executions.values()] == [(w.actor("a").id, "completed")]
    assert "FORGED RESULT" not in {e.reference for e in job.executions.values()}
    assert w.state.reputation(evil) == (0, 0)
    found = w.state.evidence()[evil]
    assert sum(found.values()) == 6  # every forged event, the hijack and the bid included
    assert set(w.state.evidence()) == {evil}  # nothing honest is evidence


# Random lies on top of the attacked history: (liar, event type, what its body names, ms from the
# honest job's creation). "evil" announced both roles and the wrong labels; "mute" the compute
# role and the right ones, and is never accepted: neither may change what the honest job did.
LIARS = ("evil", "mute")
NAMING = ("a", "liar", "path", "malformed")
random_lie = st.tuples(
    st.sampled_from(LIARS),
    st.sampled_from(sorted(authority.WRITERS)),
    st.sampled_from(NAMING),
    st.integers(-50, 5_000),
)


def _lie_body(w: World, job_id: str, liar: str, type_: str, naming: str) -> dict:
    node = w.actor("a" if naming == "a" else liar).id
    execution = {
        "a": w.xid("j", 0, "a"),
        "liar": ids.execution_id(job_id, 0, node),
        "path": "/var/lib",
        "malformed": f"{job_id}-0-../../x",
    }[naming]
    if type_ == ev.NODE_ANNOUNCED:
        return World._announcement(liar, ("requester", "compute"), {"zone": "secure"})
    if type_ == ev.JOB_CREATED:
        return {"job_id": job_id, "spec": noop_spec(), "nonce": naming, "vouched": liar}
    body = {
        "job_id": job_id,
        "node": node,
        "execution_id": execution,
        "attempt": 0,
        "reason": "lie",
        "exit_code": 0,
        "reference": "FORGED RESULT",
        "free": {"cpu_millis": 10**15},
    }
    if type_ == ev.NODE_LOST:
        return {"node": node, "reason": "lie", "job_ids": [job_id] if naming != "path" else []}
    return body


def lie(w: World, job_id: str, liar: str, type_: str, naming: str, offset_ms: int) -> None:
    """One event of `liar` dated `offset_ms` from the honest job's creation: before it, among
    its events or after its end (the chain's own order stays that of writing)."""
    actor = w.actor(liar)
    hlc = Hlc(w.state.jobs[job_id].created_hlc.ms + offset_ms, actor.seq)
    event = seal(
        actor.key, actor.seq + 1, actor.prev, hlc, type_, _lie_body(w, job_id, liar, type_, naming)
    )
    actor.seq, actor.prev = event.seq, event.id
    w.log.append(event)
    w.state.apply([event])


@settings(max_examples=80, deadline=None)
@given(st.lists(random_lie, max_size=25), st.randoms(use_true_random=False))
def test_honest_and_rule_breaking_events_fold_the_same_in_any_order(lies, rnd):
    w, job_id, evil = attacked_history()
    w.announce("mute", labels={"zone": "secure"})
    for liar, type_, naming, offset_ms in lies:
        lie(w, job_id, liar, type_, naming, offset_ms)
    job, a = w.state.jobs[job_id], w.actor("a").id
    assert job.requester == w.actor("req").id
    assert job.status == "completed"
    assert [(e.node, e.status) for e in job.executions.values()] == [(a, "completed")]
    assert "FORGED RESULT" not in {e.reference for e in job.executions.values()}
    assert not w.state.nodes[a].lost_for(w.actor("req").id)
    assert set(w.state.evidence()) <= {evil, w.actor("mute").id}  # nothing honest is evidence
    expected = (w.state.state_hash(), w.state.evidence())
    for _ in range(3):
        order = interleave(w.log, rnd)
        folded = Projection.from_events(order)
        assert (folded.state_hash(), folded.evidence()) == expected
        chunked = apply_in_chunks(order, rnd)
        assert (chunked.state_hash(), chunked.evidence()) == expected


def test_log_verify_folds_the_same_evidence_as_a_node():
    w, _, evil = attacked_history()

    def job_events(wanted: str) -> list:
        return [e for e in w.log if e.job_id == wanted]

    assert evidence_of(iter(w.log), job_events) == w.state.evidence()
    assert sum(evidence_of(iter(w.log), job_events)[evil].values()) == 6


# ----- NodeLost: a requester's word holds for its own decisions only ------------------------------


def lost_world():
    """Requesters "req" and "evil" (a member gone bad), compute nodes "a" and "b"; one job of
    "req" that both nodes bid on."""
    w = World()
    w.announce("req", roles=("requester",))
    w.announce("evil", roles=("requester",))
    w.announce("mute", roles=("compute",))  # never a requester
    for name in "ab":
        w.announce(name)
    w.submit("req", "j", noop_spec(count=2))
    w.compute_step("a")
    w.compute_step("b")
    return w


def lost(w: World, who: str, node: str, job_ids: list[str] | None = None):
    body = {"node": w.actor(node).id, "reason": "liar", "job_ids": job_ids or []}
    return w.emit(who, ev.NODE_LOST, body)


@pytest.mark.parametrize(
    ("author", "then_heard_from", "lost_for"),
    [
        ("req", False, {"req"}),
        ("evil", False, {"evil"}),  # not "req": its jobs still run on "a"
        ("mute", False, set()),  # never announced the requester role
        ("req", True, set()),  # "a" wrote an event since
        ("evil", True, set()),
    ],
)
def test_a_node_lost_mark_holds_for_its_author_only(author, then_heard_from, lost_for):
    w = lost_world()
    lost(w, author, "a")
    if then_heard_from:
        w.emit("a", ev.BID_DECLINED, {"job_id": w.jid("j"), "attempt": 1, "reason": "x"})
    info = w.state.nodes[w.actor("a").id]
    assert {who for who in ("req", "evil", "mute") if info.lost_for(w.actor(who).id)} == lost_for
    assert not w.state.nodes[w.actor("b").id].lost_by


def test_another_requesters_node_lost_keeps_no_node_out_of_my_jobs():
    w = lost_world()
    for node in "ab":
        lost(w, "evil", node)
        lost(w, "evil", node, [w.jid("j")])  # naming my job: evidence, not a mark on it
    accepted = [e.body["node"] for e in w.requester_step("req") if e.type == ev.BID_ACCEPTED]
    assert sorted(accepted) == sorted([w.actor("a").id, w.actor("b").id])
    assert sum(w.state.evidence()[w.actor("evil").id].values()) == 2
    lost(w, "req", "b")  # my own word counts for my decisions
    w.submit("req", "k", noop_spec(count=2))
    w.compute_step("a")
    w.emit("b", ev.BID_OFFERED, {"job_id": w.jid("k"), "attempt": 0, "free": {}, "cost": 1})
    lost(w, "req", "b")  # declared lost after its bid: not taken
    w.advance(3_000)
    planned = w.requester_step("req")
    assert [e.body["node"] for e in planned if e.type == ev.BID_ACCEPTED] == [w.actor("a").id]


@settings(max_examples=30, deadline=None)
@given(st.randoms(use_true_random=False))
def test_lost_marks_fold_the_same_in_any_order(rnd):
    w = lost_world()
    lost(w, "evil", "a")
    lost(w, "req", "b")
    w.emit("a", ev.BID_DECLINED, {"job_id": w.jid("j"), "attempt": 1, "reason": "x"})
    lost(w, "req", "a")
    lost(w, "mute", "b")
    expected = {n: dict(i.lost_by) for n, i in w.state.nodes.items()}
    assert expected[w.actor("a").id] == {w.actor("req").id: w.log[-2].hlc.pack()}
    for _ in range(3):
        folded = Projection.from_events(interleave(w.log, rnd))
        assert {n: dict(i.lost_by) for n, i in folded.nodes.items()} == expected
        assert folded.state_hash() == w.state.state_hash()


# ----- evidence is bounded: counts per (author, reason), none kept per ended job ------------------


def test_evidence_stays_bounded_with_many_liars_and_many_jobs():
    liars, jobs = [f"liar{i}" for i in range(12)], 40
    w = World(state=Projection(Retention(ended_ms=1_000, ended_max=4)))
    w.announce("req", roles=("requester",))
    for liar in liars:
        w.announce(liar, roles=("requester", "compute"))
    for n in range(jobs):
        w.submit("req", f"j{n}", noop_spec())
        for liar in liars:  # two reasons each, the second twice
            w.emit(liar, ev.JOB_COMPLETED, {"job_id": w.jid(f"j{n}")})
            for _ in range(2):
                w.emit(liar, ev.BIDS_REQUESTED, {"job_id": w.jid(f"j{n}"), "attempt": 1})
        w.cancel("req", w.jid(f"j{n}"))
        w.advance(2_000)
    p = w.state
    assert {w.actor(liar).id: sum(p.evidence()[w.actor(liar).id].values()) for liar in liars} == {
        w.actor(liar).id: 3 * jobs for liar in liars
    }
    assert p.evidence() == Projection.from_events(w.log).evidence()  # as if every job were held
    assert len(p._evidence) <= len(p.jobs) <= 5  # nothing kept per job let go of
    assert all(len(found) <= 2 * len(liars) for found in p._evidence.values())
    assert len(p._evidence_let_go) == len(liars)
    assert all(len(reasons) == 2 for reasons in p._evidence_let_go.values())

    # A late lie about a job let go of: read back, folded again, counted once more, not twice.
    first, liar = w.jid("j0"), w.actor(liars[0])
    assert first in p.evicted
    after_creation = [e for e in w.log if e.job_id == first][1].hlc  # before its cancel
    late = seal(liar.key, liar.seq + 1, liar.prev, after_creation, ev.JOB_FAILED,
                {"job_id": first, "reason": "mine"})  # fmt: skip
    liar.seq, liar.prev = late.seq, late.id
    w.log.append(late)
    p.apply([late])
    assert first in p.needs_reload
    p.reload(first, [e for e in w.log if e.job_id == first])
    assert sum(p.evidence()[liar.id].values()) == 3 * jobs + 1
    assert p.evidence() == Projection.from_events(w.log).evidence()


# ----- an execution reports once: later reports of its own node change nothing --------------------


def completed_on_a():
    """A job run on "a" whose result is in: returns (world, the execution id)."""
    w = World()
    w.announce("req", roles=("requester",))
    w.announce("a")
    w.submit("req", "j", noop_spec())
    w.compute_step("a")
    w.requester_step("req")
    xid = w.xid("j", 0, "a")
    w.start("a", xid)
    w.publish("a", xid)
    return w, xid


@pytest.mark.parametrize(
    ("type_", "body"),
    [
        (ev.RESULT_PUBLISHED, {"exit_code": 0, "reference": "SECOND RESULT"}),  # a duplicate
        (ev.RESULT_PUBLISHED, {"exit_code": 1, "reference": "SECOND RESULT"}),
        (ev.EXECUTION_FAILED, {"reason": "changed my mind"}),
        (ev.EXECUTION_STARTED, {}),
    ],
)
def test_an_execution_reports_once(type_, body):
    w, xid = completed_on_a()
    before = w.state.jobs[w.jid("j")].to_dict()
    first = w.state.executions[xid].reference
    w.emit("a", type_, {"job_id": w.jid("j"), "execution_id": xid, **body})
    execution = w.state.executions[xid]
    assert (execution.status, execution.reference) == ("completed", first)
    assert w.state.jobs[w.jid("j")].to_dict() == before  # the job, so its digest, unchanged
    assert w.state.reputation(w.actor("a").id) == (1, 0)
    assert w.state.evidence() == {}  # its own node's: too late, not a breach of a rule
