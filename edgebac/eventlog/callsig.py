"""Signed API calls: who sent this HTTP request, and that it is this request, sent once.

A client (or a member node fetching blocks from another) signs each call it makes: the method,
the path with its query exactly as sent, a digest of the body, its clock and a fresh nonce. The
signature travels in one header, `Edgebac-Signature: v1 key=<hex> ts=<ms> nonce=<hex>
sig=<hex>`. The node that answers checks it, refuses a clock outside its window and a nonce it
has seen (`NonceCache`), so a captured request cannot be replayed nor altered.

The signed message has a domain tag of its own: a call signature never passes for an event's
or a job request's, nor the reverse.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections import deque
from dataclasses import dataclass

import msgpack
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey

from edgebac.eventlog.encoding import KEY_BYTES, SIG_BYTES

HEADER = "Edgebac-Signature"
# A streamed body's sha256 (64 hex), signed in its place: the route checks the body against it.
DIGEST_HEADER = "Edgebac-Content-Sha256"
CALL_CONTEXT = b"edgebac/api-call/v1\x00"
MAX_NONCE_CHARS = 64
_HEADER_SHAPE = re.compile(
    r"^v1 key=(?P<key>[0-9a-f]{64}) ts=(?P<ts>[0-9]{1,16}) "
    r"nonce=(?P<nonce>[0-9A-Za-z_-]{8,64}) sig=(?P<sig>[0-9a-f]{128})$"
)


class CallRefused(Exception):
    """Why a signed call does not count; `code` is the API's error code for it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class SignedCall:
    key: bytes
    ts_ms: int
    nonce: str
    sig: bytes


def call_message(method: str, path_qs: str, body_digest: bytes, ts_ms: int, nonce: str) -> bytes:
    packed = msgpack.packb([method.upper(), path_qs, body_digest, ts_ms, nonce], use_bin_type=True)
    return CALL_CONTEXT + packed


def sign_call(
    key: SigningKey,
    method: str,
    path_qs: str,
    body: bytes,
    now_ms: int,
    *,
    digest: bytes | None = None,
) -> str:
    """The header value that signs this call; `digest` (the body's sha256) stands for a body
    too big to hold, which the caller streams (an upload: see `edgebac.api.uploads`)."""
    nonce = secrets.token_hex(16)
    digest = digest if digest is not None else hashlib.sha256(body).digest()
    sig = key.sign(call_message(method, path_qs, digest, now_ms, nonce)).signature
    public = bytes(key.verify_key).hex()
    return f"v1 key={public} ts={now_ms} nonce={nonce} sig={sig.hex()}"


def parse_header(value: str) -> SignedCall:
    match = _HEADER_SHAPE.match(value.strip())
    if match is None:
        raise CallRefused(
            "bad_signature",
            f"{HEADER}: not 'v1 key=<64 hex> ts=<ms> nonce=<8-64 of [0-9A-Za-z_-]> sig=<128 hex>'",
        )
    return SignedCall(
        bytes.fromhex(match["key"]), int(match["ts"]), match["nonce"], bytes.fromhex(match["sig"])
    )


def check_call(
    call: SignedCall,
    method: str,
    path_qs: str,
    body: bytes,
    now_ms: int,
    window_ms: int,
    *,
    digest: bytes | None = None,
) -> None:
    """Raise CallRefused unless `call` signs exactly this request within the clock window
    (the nonce is the caller's to remember: `NonceCache.admit`). A streamed body is checked
    by its claimed `digest` here, and against it by the route as it arrives."""
    skew = call.ts_ms - now_ms
    if abs(skew) > window_ms:
        side = "ahead of" if skew > 0 else "behind"
        raise CallRefused(
            "signature_expired",
            f"{HEADER}: signed {abs(skew) / 1000:.1f} s {side} this node's clock (the window is "
            f"{window_ms / 1000:g} s): check the client's clock",
        )
    assert len(call.key) == KEY_BYTES, "parse_header checks the sizes"
    assert len(call.sig) == SIG_BYTES
    digest = digest if digest is not None else hashlib.sha256(body).digest()
    message = call_message(method, path_qs, digest, call.ts_ms, call.nonce)
    try:
        crypto_sign_open(call.sig + message, call.key)
    except (BadSignatureError, ValueError, TypeError):
        raise CallRefused(
            "bad_signature",
            f"{HEADER}: not key {call.key.hex()[:12]}'s signature of {method} {path_qs[:80]} "
            "with this body (altered on the way, or signed for another request?)",
        ) from None


class NonceCache:
    """Nonces seen within the window, so each signed call counts once.

    Bounded: when full of unexpired nonces it refuses new calls (`busy`) rather than forget
    one, which would let that call be replayed.
    """

    def __init__(self, window_ms: int, capacity: int = 200_000) -> None:
        self.window_ms = window_ms
        self.capacity = capacity
        self._seen: set[tuple[bytes, str]] = set()
        self._order: deque[tuple[int, tuple[bytes, str]]] = deque()

    def __len__(self) -> int:
        return len(self._seen)

    def admit(self, key: bytes, nonce: str, ts_ms: int, now_ms: int) -> None:
        self._expire(now_ms)
        entry = (key, nonce)
        if entry in self._seen:
            raise CallRefused(
                "replayed", f"{HEADER}: nonce {nonce[:16]} was used already (a replayed request)"
            )
        if len(self._seen) >= self.capacity:
            raise CallRefused("busy", "too many signed calls in the window; retry shortly")
        self._seen.add(entry)
        # Kept until the later of its signing time and now leaves the window: a nonce signed
        # ahead of our clock stays valid, so stays remembered, as long.
        self._order.append((max(ts_ms, now_ms) + self.window_ms, entry))

    def _expire(self, now_ms: int) -> None:
        order = self._order
        while order and order[0][0] < now_ms:
            self._seen.discard(order.popleft()[1])
