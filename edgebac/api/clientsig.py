"""What a requester makes of a client's request: a signed submission or cancel, checked, or a
bare one it vouches for.

A client that holds a key signs `{"spec", "nonce"}` (kind SUBMIT) or `{"job_id", "nonce",
"reason"}` (kind CANCEL), bound to this requester's key (`edgebac.eventlog.signed`); the
requester checks the signature once and carries it into the event verbatim, so every compute
node can check it again. A caller that cannot sign (a plain `curl` today, an API token next)
gets a job the requester vouches for under a name (`"unsigned"`): compute nodes may refuse
those. Pure: no I/O, so each rule is tested directly.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgebac.errors import BadRequest, EdgebacError
from edgebac.eventlog.signed import CANCEL, SUBMIT, job_id_for, request_valid, spec_digest
from edgebac.scheduler.spec import parse_spec

UNSIGNED = "unsigned"  # the name a requester vouches for when the caller did not sign
SIGNED_KEYS = frozenset({"spec", "nonce", "client", "signature"})
MAX_NONCE = 128
MAX_REASON = 1000


class BadClientSignature(EdgebacError):
    code = "bad_client_signature"
    http_status = 401


class NotTheJobsClient(EdgebacError):
    code = "not_the_jobs_client"
    http_status = 403


@dataclass(frozen=True)
class Submission:
    """A checked submission: what `JobCreated` carries, minus the requester's clock."""

    job_id: str
    spec: dict[str, Any]
    nonce: str
    client: bytes | None = None  # a signed request: the client's key and signature
    client_sig: bytes | None = None
    vouched: str | None = None  # an unsigned one: who the requester vouches for

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"job_id": self.job_id, "spec": self.spec, "nonce": self.nonce}
        if self.client is not None:
            body.update(client=self.client, client_sig=self.client_sig)
        else:
            body["vouched"] = self.vouched
        return body


def is_signed(body: Any) -> bool:
    """A signed request wraps the spec (`{"spec", "nonce", "client", "signature"}`); anything
    else is a bare spec."""
    return isinstance(body, dict) and ("signature" in body or "client" in body)


def submission(requester: bytes, body: Any, vouched: str = UNSIGNED) -> Submission:
    """The submission in a request body: checked if signed, vouched for as `vouched` if not.
    A spec that does not parse raises SpecError; a bad signature, BadClientSignature."""
    if not is_signed(body):
        spec = parse_spec(body).to_dict()
        nonce = uuid.uuid4().hex
        return Submission(job_id_for(requester, vouched, spec, nonce), spec, nonce, vouched=vouched)
    extra = sorted(set(body) - SIGNED_KEYS)
    if extra:
        raise BadRequest(f"a signed submission has no field {extra[0]!r} (only {_keys()})")
    client, sig, nonce = _key(body), _signature(body), _nonce(body)
    spec = body.get("spec")
    canonical = parse_spec(spec).to_dict()
    if spec_digest(spec) != spec_digest(canonical):
        raise BadRequest(
            "spec: a signed spec must be in its canonical form (sign "
            "parse_spec(spec).to_dict(), as edgebac's client does), not as written"
        )
    if not request_valid(client, sig, SUBMIT, requester, {"spec": spec, "nonce": nonce}):
        raise BadClientSignature(
            f"signature: not client {client.hex()[:12]}'s signature of this submission to "
            f"requester {requester.hex()[:12]} (signed for another node, or altered?)"
        )
    return Submission(job_id_for(requester, client, spec, nonce), spec, nonce, client, sig)


def cancel_fields(
    requester: bytes, job_id: str, job_client: bytes | None, body: Mapping[str, Any], reason: str
) -> dict[str, Any]:
    """What a cancel request adds to `JobCanceled`: the client's key, nonce and signature for
    a signed one (`{}` for an unsigned one). A job a client signed is canceled only by that
    client's signed request; a vouched job also by an unsigned one, for now."""
    if not is_signed(body):
        if job_client is not None:
            raise NotTheJobsClient(
                f"job {job_id} was submitted by client {job_client.hex()[:12]}: only a cancel "
                "signed by that client cancels it (edgebac job cancel --client-key FILE)"
            )
        return {}
    extra = sorted(set(body) - {"reason", "nonce", "client", "signature"})
    if extra:
        raise BadRequest(f"a signed cancel has no field {extra[0]!r}")
    client, sig, nonce = _key(body), _signature(body), _nonce(body)
    fields = {"job_id": job_id, "nonce": nonce, "reason": reason}
    if not request_valid(client, sig, CANCEL, requester, fields):
        raise BadClientSignature(
            f"signature: not client {client.hex()[:12]}'s signature of a cancel of {job_id} "
            f"with this reason and nonce, to requester {requester.hex()[:12]}"
        )
    if job_client is not None and client != job_client:
        raise NotTheJobsClient(
            f"job {job_id} was submitted by client {job_client.hex()[:12]}, not by "
            f"{client.hex()[:12]}: only its own client may cancel it"
        )
    return {"client": client, "nonce": nonce, "client_sig": sig}


def cancel_reason(body: Mapping[str, Any], default: str) -> str:
    reason = body.get("reason", default)
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise BadRequest(f"reason: must be text of at most {MAX_REASON} characters")
    return reason


def _keys() -> str:
    return ", ".join(sorted(SIGNED_KEYS))


def _hex(body: Mapping[str, Any], name: str, size: int, what: str) -> bytes:
    value = body.get(name)
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise BadRequest(f"{name}: {what} is {size * 2} hex digits, got {_shown(value)}")
    return raw


def _key(body: Mapping[str, Any]) -> bytes:
    return _hex(body, "client", 32, "a client id (its ed25519 public key)")


def _signature(body: Mapping[str, Any]) -> bytes:
    return _hex(body, "signature", 64, "an ed25519 signature")


def _nonce(body: Mapping[str, Any]) -> str:
    nonce = body.get("nonce")
    if not isinstance(nonce, str) or not 0 < len(nonce) <= MAX_NONCE or not nonce.isprintable():
        raise BadRequest(f"nonce: must be printable text of 1 to {MAX_NONCE} characters")
    return nonce


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return f"{len(value)} characters" if len(value) > 40 else repr(value)
    return "nothing" if value is None else type(value).__name__
