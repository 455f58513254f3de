"""Requests a client signs: what it asks a requester to do, bound to that requester.

A client holds an ed25519 key of its own. It signs each job submission and cancel request; the
requester carries the signature into the event it writes (`JobCreated`, `JobCanceled`), so any
node can check that a client asked for exactly this, of exactly this requester — a compromised
requester can neither invent a job nor replay one meant for another requester.

The signed message is the canonical msgpack of `[version, kind, requester, fields]` behind a
domain tag of its own, so a request signature can never pass for an event's, nor the reverse.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import msgpack
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey

from edgebac.eventlog.encoding import KEY_BYTES, SIG_BYTES, canonical_body

REQUEST_CONTEXT = b"edgebac/client-request/v1\x00"
REQUEST_VERSION = 1
SUBMIT = "submit"
CANCEL = "cancel"


def request_message(kind: str, requester: bytes, fields: Mapping[str, Any]) -> bytes:
    """The bytes a client signs for a request of `kind` to `requester`."""
    packed = msgpack.packb(
        [REQUEST_VERSION, kind, requester, canonical_body(fields)], use_bin_type=True
    )
    return REQUEST_CONTEXT + packed


def sign_request(key: SigningKey, kind: str, requester: bytes, fields: Mapping[str, Any]) -> bytes:
    return key.sign(request_message(kind, requester, fields)).signature


def request_valid(
    client: object, sig: object, kind: str, requester: bytes, fields: Mapping[str, Any]
) -> bool:
    """Whether `sig` is `client`'s signature of this request (any malformed part: False)."""
    if not isinstance(client, bytes) or len(client) != KEY_BYTES:
        return False
    if not isinstance(sig, bytes) or len(sig) != SIG_BYTES:
        return False
    try:
        crypto_sign_open(sig + request_message(kind, requester, fields), client)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


def spec_digest(spec: Mapping[str, Any]) -> bytes:
    """sha256 of the canonical msgpack of a spec: what a job id commits to."""
    return hashlib.sha256(msgpack.packb(canonical_body(spec), use_bin_type=True)).digest()


def job_id_for(requester: bytes, client: bytes | str, spec: Mapping[str, Any], nonce: str) -> str:
    """The job id a submission names: a hash of who was asked, who asked (a client key, or the
    name a requester vouches for), what, and the client's nonce. Two different submissions never
    share an id, and an id that does not match its event's content counts for nothing."""
    packed = msgpack.packb([requester, client, spec_digest(spec), nonce], use_bin_type=True)
    return "j-" + hashlib.sha256(packed).hexdigest()[:16]
