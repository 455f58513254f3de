"""Canonical encoding, signatures and tamper detection of single events."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from edgebac.eventlog.clock import Hlc
from edgebac.eventlog.encoding import (
    FORMAT_VERSION,
    MAX_EVENT_BYTES,
    SIGNING_CONTEXT,
    EncodingError,
    Verifier,
    canonical_body,
    decode,
    event_id,
    seal,
)
from tests.strategies import bodies

KEY = SigningKey(b"\x01" * 32)
OTHER = SigningKey(b"\x02" * 32)


def make(body: dict, seq: int = 1, type_: str = "JobCreated", key: SigningKey = KEY):
    return seal(key, seq, None if seq == 1 else b"\x00" * 32, Hlc(1000, seq), type_, body)


@given(bodies)
def test_round_trip_is_exact(body):
    event = make(body)
    decoded = Verifier().open(event.raw)
    assert decoded == event
    assert decoded.body == body
    assert decoded.raw == event.raw
    assert decoded.id == event.id == event_id(event.raw)


@given(bodies)
def test_same_event_always_same_bytes(body):
    # Dict insertion order must not matter: reverse it and encode again.
    reversed_body = dict(reversed(list(body.items())))
    assert make(body).raw == make(body).raw == make(reversed_body).raw


@given(bodies, st.data())
def test_any_flipped_byte_of_a_received_event_is_refused(body, data):
    event = make(body)
    position = data.draw(st.integers(0, len(event.raw) - 1))
    bit = data.draw(st.integers(0, 7))
    tampered = bytearray(event.raw)
    tampered[position] ^= 1 << bit
    with pytest.raises(EncodingError):
        Verifier().open(bytes(tampered))


def _sign_payload(fields: list, key: SigningKey = KEY) -> bytes:
    payload = msgpack.packb(fields, use_bin_type=True)
    sig = key.sign(SIGNING_CONTEXT + payload).signature
    return msgpack.packb([payload, sig], use_bin_type=True)


def _sign_bytes(payload: bytes) -> bytes:
    sig = KEY.sign(SIGNING_CONTEXT + payload).signature
    return msgpack.packb([payload, sig], use_bin_type=True)


def _non_minimal_seq_payload() -> bytes:
    """The canonical payload with seq 1 spelled as uint16 instead of a fixint."""
    parts = [msgpack.packb(field, use_bin_type=True) for field in _fields()]
    parts[2] = b"\xcd\x00\x01"
    return b"\x97" + b"".join(parts)


def _fields(**overrides):
    fields = {
        "version": FORMAT_VERSION,
        "author": bytes(KEY.verify_key),
        "seq": 1,
        "prev": None,
        "hlc": Hlc(1000, 0).pack(),
        "type": "JobCreated",
        "body": {"job_id": "j", "spec": {}},
    }
    fields.update(overrides)
    return list(fields.values())


def test_signed_by_hand_in_canonical_form_is_accepted():
    assert Verifier().open(_sign_payload(_fields())).body == {"job_id": "j", "spec": {}}


@pytest.mark.parametrize(
    ("raw_maker", "reason"),
    [
        # Unsorted map keys: same meaning, different bytes.
        (lambda: _sign_payload(_fields(body={"spec": {}, "job_id": "j"})), "not_canonical"),
        # A non-minimal integer (uint16 for 1).
        (lambda: _sign_bytes(_non_minimal_seq_payload()), "not_canonical"),
        (lambda: _sign_payload(_fields(version=2)), "malformed"),
        (lambda: _sign_payload(_fields(seq=0)), "malformed"),
        (lambda: _sign_payload(_fields(seq=True)), "malformed"),
        (lambda: _sign_payload(_fields(author=b"short")), "malformed"),
        (lambda: _sign_payload(_fields(prev=b"x" * 5)), "malformed"),
        (lambda: _sign_payload(_fields(body=[1])), "malformed"),
        (lambda: _sign_payload(_fields(type="")), "malformed"),
        (lambda: _sign_payload(_fields()[:6]), "malformed"),
        (lambda: _sign_payload(_fields(body={1: 2})), "malformed"),
        (lambda: _sign_payload(_fields(body={"t": msgpack.ExtType(1, b"x")})), "malformed"),
        (lambda: b"\xc1garbage", "malformed"),
        (lambda: b"", "malformed"),
        (lambda: msgpack.packb({"a": 1}), "malformed"),
        (lambda: msgpack.packb([b"x", b"short-sig"]), "malformed"),
        # Signed by someone else than the author it names ("wrong author").
        (lambda: _sign_payload(_fields(), key=OTHER), "bad_signature"),
    ],
)
def test_malformed_or_non_canonical_bytes_are_refused_with_reason(raw_maker, reason):
    with pytest.raises(EncodingError) as caught:
        Verifier().open(raw_maker())
    assert caught.value.reason == reason


def test_float32_is_not_canonical():
    payload_fields = _fields(body={"job_id": "j", "spec": {}, "x": 1.5})
    canonical = _sign_payload(payload_fields)
    # Re-spell the float64 1.5 as float32 and re-sign: the decoder must refuse the spelling.
    packer = msgpack.Packer(use_bin_type=True, use_single_float=True)
    payload = packer.pack(payload_fields)
    sig = KEY.sign(SIGNING_CONTEXT + payload).signature
    raw = msgpack.packb([payload, sig], use_bin_type=True)
    assert raw != canonical
    with pytest.raises(EncodingError) as caught:
        Verifier().open(raw)
    assert caught.value.reason == "not_canonical"


def test_signature_is_over_a_domain_separated_message():
    event = make({"job_id": "j", "spec": {}})
    payload = msgpack.unpackb(event.raw)[0]
    plain_sig = KEY.sign(payload).signature
    forged = msgpack.packb([payload, plain_sig], use_bin_type=True)
    with pytest.raises(EncodingError) as caught:
        Verifier().open(forged)
    assert caught.value.reason == "bad_signature"


@pytest.mark.parametrize(
    "body",
    [{"x": float("nan")}, {"x": float("inf")}, {"x": (1, 2)}, {1: "a"}, {"x": 1 << 64}, {"x": {3}}],
)
def test_bodies_that_cannot_be_canonical_are_refused_when_sealing(body):
    with pytest.raises(EncodingError) as caught:
        canonical_body(body)
    assert caught.value.reason == "bad_body"


def test_oversized_events_are_refused_both_ways():
    with pytest.raises(EncodingError) as caught:
        make({"blob": b"x" * MAX_EVENT_BYTES})
    assert caught.value.reason == "too_large"
    with pytest.raises(EncodingError) as caught:
        decode(b"\x00" * (MAX_EVENT_BYTES + 1))
    assert caught.value.reason == "too_large"


def test_verify_checks_stored_events_against_their_author():
    event = make({"job_id": "j", "spec": {}})
    assert Verifier().verify(event)
    other = make({"job_id": "j", "spec": {}}, key=OTHER)
    # The bytes of another author's event filed under this author: refused.
    assert not Verifier().verify(dataclasses.replace(event, raw=other.raw))
