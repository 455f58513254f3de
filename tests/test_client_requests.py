"""What a requester makes of a client's request (`api/clientsig`), tested directly: signed
submissions and cancels checked, bare specs vouched for, each refusal with its own message."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from edgebac.api.clientsig import (
    BadClientSignature,
    NotTheJobsClient,
    cancel_fields,
    submission,
)
from edgebac.errors import BadRequest
from edgebac.eventlog.signed import CANCEL, SUBMIT, job_id_for, sign_request
from edgebac.scheduler.spec import SpecError, parse_spec

CLIENT = SigningKey(b"a-client-key-for-request-tests!!")
REQUESTER = bytes(SigningKey(b"the-requester-of-request-tests!!").verify_key)
SPEC = parse_spec({"engine": {"type": "noop"}}).to_dict()


def signed(spec=SPEC, nonce="n1", key=CLIENT, requester=REQUESTER, **changes):
    sig = sign_request(key, SUBMIT, requester, {"spec": spec, "nonce": nonce})
    body = {"spec": spec, "nonce": nonce, "client": key.verify_key.encode().hex()}
    return {**body, "signature": sig.hex(), **changes}


def test_a_signed_submission_is_carried_verbatim_with_its_derived_id():
    asked = submission(REQUESTER, signed())
    client = bytes(CLIENT.verify_key)
    assert asked.job_id == job_id_for(REQUESTER, client, SPEC, "n1")
    assert asked.body() == {
        "job_id": asked.job_id,
        "spec": SPEC,
        "nonce": "n1",
        "client": client,
        "client_sig": sign_request(CLIENT, SUBMIT, REQUESTER, {"spec": SPEC, "nonce": "n1"}),
    }
    assert submission(REQUESTER, signed()).job_id == asked.job_id  # a retry: the same job


def test_a_bare_spec_is_vouched_for_with_a_fresh_nonce():
    first, second = (
        submission(REQUESTER, {"engine": {"type": "noop"}}),
        submission(REQUESTER, {"engine": {"type": "noop"}}),
    )
    assert first.body()["vouched"] == "unsigned"
    assert "client" not in first.body()
    assert first.spec == SPEC
    assert first.job_id == job_id_for(REQUESTER, "unsigned", SPEC, first.nonce)
    assert first.job_id != second.job_id
    named = submission(REQUESTER, {"engine": {"type": "noop"}}, vouched="token:ci@0123abcd")
    assert named.body()["vouched"] == "token:ci@0123abcd"


@pytest.mark.parametrize(
    ("body", "error", "says"),
    [
        (signed(requester=bytes(32)), BadClientSignature, "signed for another node"),
        (signed(nonce="other", signature=signed()["signature"]), BadClientSignature, "altered"),
        (signed(client="zz"), BadRequest, "client: a client id"),
        (signed(signature="00" * 10), BadRequest, "signature: an ed25519 signature is 128"),
        (signed(nonce=""), BadRequest, "nonce: must be printable text"),
        (signed(nonce=7), BadRequest, "nonce: must be printable text"),
        (signed(extra=1), BadRequest, "no field 'extra'"),
        (signed(spec={"engine": "noop"}), SpecError, "engine"),
        (signed(spec={"engine": {"type": "noop"}}), BadRequest, "canonical form"),
    ],
)
def test_each_bad_submission_has_its_message(body, error, says):
    with pytest.raises(error) as raised:
        submission(REQUESTER, body)
    assert says in str(raised.value)


@given(st.binary(min_size=64, max_size=64))
def test_no_other_signature_passes(sig):
    body = signed()
    if sig.hex() != body["signature"]:
        with pytest.raises(BadClientSignature):
            submission(REQUESTER, {**body, "signature": sig.hex()})


def signed_cancel(job_id="j-0123456789abcdef", reason="stop", key=CLIENT, nonce="c1"):
    fields = {"job_id": job_id, "nonce": nonce, "reason": reason}
    sig = sign_request(key, CANCEL, REQUESTER, fields)
    client = key.verify_key.encode().hex()
    return {"reason": reason, "nonce": nonce, "client": client, "signature": sig.hex()}


def test_cancels():
    job_id, client = "j-0123456789abcdef", bytes(CLIENT.verify_key)
    carried = cancel_fields(REQUESTER, job_id, client, signed_cancel(), "stop")
    assert carried["client"] == client
    assert carried["nonce"] == "c1"
    assert len(carried["client_sig"]) == 64
    assert cancel_fields(REQUESTER, job_id, None, {}, "stop") == {}  # a vouched job, for now
    with pytest.raises(NotTheJobsClient, match="only a cancel signed by that client"):
        cancel_fields(REQUESTER, job_id, client, {}, "stop")
    other = SigningKey(b"someone-else-entirely-signing!!!")
    with pytest.raises(NotTheJobsClient, match="only its own client may cancel it"):
        cancel_fields(REQUESTER, job_id, client, signed_cancel(key=other), "stop")
    with pytest.raises(BadClientSignature):  # the reason is part of what was signed
        cancel_fields(REQUESTER, job_id, client, signed_cancel(), "another reason")
    with pytest.raises(BadClientSignature):  # so is the job
        cancel_fields(REQUESTER, "j-fedcba9876543210", client, signed_cancel(), "stop")
