"""The listener's arithmetic, with no sockets: caps, eviction, deadlines, the warning's rate,
the test-only limit knobs, and the client's fingerprint parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgebac.cli.tls import parse_fingerprint
from edgebac.errors import ConfigError
from edgebac.node.config import ConnectionLimits, limits_for_tests
from edgebac.node.connlimits import (
    MAX_DEFAULT,
    Admission,
    Phases,
    RateLimited,
    default_max_connections,
    source_key,
)


@pytest.mark.parametrize(
    ("nofile", "cap"),
    [
        (1024, 768),  # a quarter kept back for the log, engines and peers
        (256, 128),  # never fewer than 128 kept back
        (100, 16),  # a tiny limit still serves a few
        (20_000, 15_000),
        (1 << 20, MAX_DEFAULT),
        (-1, MAX_DEFAULT),  # RLIM_INFINITY
    ],
)
def test_default_cap_leaves_descriptors_for_the_rest_of_the_node(nofile, cap):
    assert default_max_connections(nofile) == cap


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("127.0.0.5", "127.0.0.5"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("2001:db8::1", "2001:db8::/64"),
        ("2001:db8::ffff:1", "2001:db8::/64"),  # one site's /64 counts as one source
        ("2001:db8:0:1::1", "2001:db8:0:1::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_source_key(host, key):
    assert source_key(host) == key


def test_per_source_cap_refuses_that_source_only():
    admission: Admission[str] = Admission(max_total=10, max_per_source=2)
    assert admission.admit("a1", "A") == (True, None)
    assert admission.admit("a2", "A") == (True, None)
    assert admission.admit("a3", "A") == (False, None)
    assert admission.admit("b1", "B") == (True, None)
    admission.release("a1")
    admission.release("a1")  # twice: harmless
    assert admission.of("A") == 1
    assert admission.admit("a3", "A") == (True, None)


def test_full_node_evicts_the_oldest_still_waiting_never_one_being_answered():
    admission: Admission[str] = Admission(max_total=3, max_per_source=10)
    for key in ("x", "y", "z"):
        admission.admit(key, "S")
    admission.waiting("x", False)  # x is being answered
    assert admission.admit("n1", "T") == (True, "y")
    admission.waiting("z", False)
    admission.waiting("n1", False)
    assert admission.admit("n2", "T") == (False, None)  # all answering: refuse
    admission.waiting("x", True)  # x's answer ended: it waits again, last in line
    assert admission.admit("n2", "T") == (True, "x")
    assert admission.total == 3


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["admit", "release", "wait", "answer"]),
            st.integers(0, 15),
            st.sampled_from("ABC"),
        ),
        max_size=200,
    )
)
def test_admission_never_exceeds_its_caps(ops):
    admission: Admission[int] = Admission(max_total=6, max_per_source=3)
    held: dict[int, str] = {}
    for op, key, source in ops:
        if op == "admit" and key not in held:
            admitted, evicted = admission.admit(key, source)
            if evicted is not None:
                held.pop(evicted)
            if admitted:
                held[key] = source
        elif op == "release":
            admission.release(key)
            held.pop(key, None)
        elif op in ("wait", "answer"):
            admission.waiting(key, op == "wait")
        assert admission.total == len(held) <= 6
        for s in "ABC":
            assert admission.of(s) == sum(v == s for v in held.values()) <= 3


def test_phases_headers_then_body_then_answering_then_idle():
    phases = Phases(header_s=2.0, body_s=5.0, idle_s=30.0)
    phases.opened(100.0)
    assert (phases.phase, phases.deadline) == ("headers", 102.0)
    assert not phases.expired(101.9, body_whole=True)
    assert phases.expired(102.0, body_whole=True)  # no request by then: cut
    phases.request(101.0, body_whole=False)
    assert (phases.phase, phases.deadline) == ("body", 106.0)
    assert phases.expired(106.0, body_whole=False)  # the body trickles: cut
    assert not phases.expired(106.0, body_whole=True)  # it came whole: go on answering
    assert (phases.phase, phases.deadline) == ("answering", None)
    assert not phases.expired(10_000.0, body_whole=False)  # a long poll is never cut
    phases.answered(200.0)
    assert (phases.phase, phases.deadline) == ("idle", 230.0)  # kept alive, waiting
    assert phases.received(210.0)  # the next request's first byte: its headers have 2 s
    assert (phases.phase, phases.deadline) == ("headers", 212.0)
    assert not phases.received(211.0)  # more bytes of the same headers change nothing
    assert phases.deadline == 212.0
    phases.answered(300.0)
    assert phases.expired(330.0, body_whole=True)  # idle too long: closed


def test_a_request_whose_body_is_in_is_answering_at_once():
    phases = Phases(header_s=2.0, body_s=5.0, idle_s=30.0)
    phases.opened(0.0)
    phases.request(1.0, body_whole=True)
    assert (phases.phase, phases.deadline) == ("answering", None)


def test_a_reader_that_stalls_an_answer_is_cut_one_that_reads_never():
    phases = Phases(header_s=2.0, body_s=5.0, idle_s=30.0)
    phases.opened(0.0)
    phases.request(1.0, body_whole=True)
    phases.writes_paused(10.0)  # our send buffer is full: the client reads nothing
    assert phases.next_check == 15.0
    assert not phases.expired(14.9, body_whole=True)
    phases.writes_resumed()  # it read some
    assert phases.next_check is None
    assert not phases.expired(100.0, body_whole=True)
    phases.writes_paused(200.0)
    assert phases.expired(205.0, body_whole=True)


def test_rate_limited_says_once_per_interval_and_counts_the_rest():
    rate = RateLimited(60.0)
    assert rate.allow(0.0) == 0
    assert [rate.allow(t) for t in (1.0, 30.0, 59.9)] == [None, None, None]
    assert rate.allow(60.0) == 3
    assert rate.allow(61.0) is None
    assert rate.allow(500.0) == 1


def test_test_only_limit_knobs():
    assert limits_for_tests({}) == ConnectionLimits()
    limits = limits_for_tests(
        {"EDGEBAC_TEST_HEADER_TIMEOUT_S": "1.5", "EDGEBAC_TEST_MAX_PER_SOURCE": "7"}
    )
    assert (limits.header_timeout_s, limits.max_per_source) == (1.5, 7)
    assert limits.body_timeout_s == ConnectionLimits().body_timeout_s
    with pytest.raises(ConfigError, match="EDGEBAC_TEST_MAX_CONNECTIONS"):
        limits_for_tests({"EDGEBAC_TEST_MAX_CONNECTIONS": "lots"})


HEX = "ab" * 32


@pytest.mark.parametrize(
    "text",
    [HEX, HEX.upper(), f"sha256:{HEX}", f"SHA256:{HEX.upper()}", ":".join(["AB"] * 32)],
)
def test_fingerprints_in_any_usual_spelling(text):
    assert parse_fingerprint(text) == HEX


@pytest.mark.parametrize("text", ["", "ab" * 31, "zz" * 32, f"sha1:{HEX}", HEX + "ab"])
def test_bad_fingerprints_name_the_flag(text):
    with pytest.raises(ConfigError, match="--tls-fingerprint"):
        parse_fingerprint(text)


def test_a_body_that_keeps_moving_keeps_its_connection_and_a_trickle_does_not():
    """An upload over a slow link (at the minimum rate) outlives the body timeout; a body that
    trickles below it is cut about when the timeout says."""
    moving = Phases(header_s=2.0, body_s=5.0, idle_s=30.0, min_body_rate=1000)
    moving.request(100.0, body_whole=False)
    for second in range(1, 60):  # 1,000 bytes a second for a minute
        assert moving.received(100.0 + second, 1000)
        assert not moving.expired(100.0 + second + 0.5, body_whole=False)
    trickle = Phases(header_s=2.0, body_s=5.0, idle_s=30.0, min_body_rate=1000)
    trickle.request(100.0, body_whole=False)
    for second in range(1, 5):
        trickle.received(100.0 + second, 1)  # a byte a second
    assert trickle.expired(105.1, body_whole=False)
