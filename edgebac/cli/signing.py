"""The client side of signed requests: what `job run`, `docker run`, `wasm run` and `job cancel`
send, signed with this client's key and bound to the requester that will carry it.

The spec is signed in its canonical parsed form (what the requester stores and every compute
node checks), with a random nonce: the same file submitted twice is two jobs, while a retry of
one signed request names the same job.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from edgebac.errors import BadRequest


def requester_key(client: Any) -> bytes:
    """The public key of the node behind the API: the requester a request is signed for."""
    answer = client.get("/api/v1/node")
    try:
        return bytes.fromhex(answer["public_key"])
    except (TypeError, KeyError, ValueError):
        raise BadRequest(f"{client.base_url} did not say its public key") from None


def signed_submission(client: Any, key_path: Path | None, spec: Any) -> dict[str, Any]:
    """`{"spec", "nonce", "client", "signature"}` for POST /api/v1/jobs; the bare spec for a
    client calling with a token."""
    from edgebac.cli.identity import load_client_key
    from edgebac.eventlog.signed import SUBMIT, sign_request
    from edgebac.scheduler.spec import parse_spec

    canonical = parse_spec(spec).to_dict()  # a spec error is said here, field by field
    if getattr(client, "token", None):  # the caller is its token's client: the requester
        return canonical  # vouches for it so (signed, it would be the key's, not the caller's)
    requester = requester_key(client)
    identity = load_client_key(key_path)
    nonce = secrets.token_hex(16)
    fields = {"spec": canonical, "nonce": nonce}
    signature = sign_request(identity.key, SUBMIT, requester, fields)
    return {**fields, "client": identity.node_id, "signature": signature.hex()}


def signed_cancel(client: Any, key_path: Path | None, job_id: str, reason: str) -> dict[str, Any]:
    """`{"reason", "nonce", "client", "signature"}` for POST /api/v1/jobs/{id}/cancel, where
    `job_id` is the full id (a prefix names different jobs as the log grows)."""
    from edgebac.cli.identity import load_client_key
    from edgebac.eventlog.signed import CANCEL, sign_request

    requester = requester_key(client)
    identity = load_client_key(key_path)
    nonce = secrets.token_hex(16)
    fields = {"job_id": job_id, "nonce": nonce, "reason": reason}
    signature = sign_request(identity.key, CANCEL, requester, fields)
    return {
        "reason": reason,
        "nonce": nonce,
        "client": identity.node_id,
        "signature": signature.hex(),
    }
