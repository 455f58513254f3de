"""The one place that turns events into bytes and back, signs them and checks signatures.

Wire and storage format (version 1), both canonical msgpack:

    raw     = [payload: bin, sig: bin(64)]
    payload = [1, author: bin(32), seq: uint, prev: bin(32) | nil, hlc: uint, type: str, body: map]

The signature is ed25519 over SIGNING_CONTEXT + payload; the event id is sha256(raw). Canonical
means maps have str keys in sorted order, ints and lengths use their shortest form, floats are
float64 and no extension types appear. Decoding re-encodes and compares, so any other spelling of
the same event is refused: one event has exactly one byte string, hence one id.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey

from edgebac.eventlog.clock import Hlc

FORMAT_VERSION = 1
# Domain separation: a signature over an event can never be replayed as one over another message.
SIGNING_CONTEXT = b"edgebac/event/v1\x00"
KEY_BYTES = 32
SIG_BYTES = 64
ID_BYTES = 32
MAX_EVENT_BYTES = 1 << 20  # job specs with small inline inputs fit; a gossip page holds many
MAX_TYPE_LEN = 64
BAD_SIGNATURE = "signature does not verify under its author's key"


class EncodingError(ValueError):
    """Bytes that are not a well-formed, canonical event. `reason` is a stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Event:
    """A signed event. `raw` are the exact bytes that were signed, stored and sent.

    `body` is a plain dict for speed and msgpack friendliness; treat it as read-only.
    """

    author: bytes
    seq: int
    prev: bytes | None
    hlc: Hlc
    type: str
    body: dict[str, Any]
    sig: bytes
    raw: bytes = field(repr=False, compare=False)
    id: bytes = field(repr=False, compare=False)

    @property
    def job_id(self) -> str | None:
        job_id = self.body.get("job_id")
        return job_id if isinstance(job_id, str) else None

    def __str__(self) -> str:
        return f"{self.type}#{self.seq} by {self.author.hex()[:12]} ({self.id.hex()[:12]})"


def event_id(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


_BIN_HEADERS = {0xC4: 1, 0xC5: 2, 0xC6: 4}  # msgpack bin8/16/32: bytes of length after the tag
_UINT_TAGS = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}


def peek_key(raw: bytes) -> tuple[bytes, int] | None:
    """(author, seq) read from the first bytes of a canonical event, without decoding it; None
    when they are not laid out as a canonical event's. Trust it only to skip what is held: a
    peek that lies says "held" of an event that would have been refused anyway."""
    if len(raw) < 40 or raw[0] != 0x92:
        return None
    size = _BIN_HEADERS.get(raw[1])
    if size is None:
        return None
    at = 2 + size  # the payload: [1, bin(32) author, seq, ...]
    if raw[at : at + 4] != bytes((0x97, FORMAT_VERSION, 0xC4, KEY_BYTES)):
        return None
    author, tag = raw[at + 4 : at + 36], raw[at + 36 : at + 37]
    if len(author) != KEY_BYTES or not tag:
        return None
    if tag[0] < 0x80:
        return author, tag[0]
    width = _UINT_TAGS.get(tag[0])
    if width is None:
        return None
    return author, int.from_bytes(raw[at + 37 : at + 37 + width], "big")


def _canonical(value: Any, path: str) -> Any:
    """A copy of `value` whose maps iterate in key order; refuses what msgpack can't say once."""
    if value is None or isinstance(value, bool | str | bytes):
        return value
    if isinstance(value, int):
        if not -(1 << 63) <= value < (1 << 64):
            raise EncodingError("bad_body", f"{path}: integer {value} does not fit 64 bits")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EncodingError("bad_body", f"{path}: {value} is not a finite number")
        return value
    if isinstance(value, list):
        return [_canonical(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise EncodingError("bad_body", f"{path}: map key {key!r} is not a string")
        return {key: _canonical(value[key], f"{path}.{key}") for key in sorted(value)}
    raise EncodingError("bad_body", f"{path}: {type(value).__name__} cannot be encoded")


class _Unusual(Exception):
    """`_plain` met something only `_canonical` may judge (or name the path of)."""


_LEAVES = frozenset({str, bytes, bool, type(None)})  # taken as they are, without a call
_INT_RANGE = range(-(1 << 63), 1 << 64)


def _plain(value: Any) -> Any:
    """`_canonical` for the plain dicts, lists and scalars of nearly every body, minus the path
    strings (signing an event walks its whole body: this is most of an append's Python time)."""
    kind = type(value)
    if kind is dict:
        if not set(map(type, value)) <= _STR_ONLY:
            raise _Unusual
        ordered = {}
        for key in sorted(value):
            item = value[key]
            ordered[key] = item if type(item) in _LEAVES else _plain(item)
        return ordered
    if kind is list:
        return [item if type(item) in _LEAVES else _plain(item) for item in value]
    if kind in _LEAVES or (kind is int and value in _INT_RANGE):
        return value
    if kind is float and math.isfinite(value):
        return value
    raise _Unusual


def canonical_body(body: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return _plain(body)
    except _Unusual:
        return _canonical(body, "body")  # the full walk: accepts or names the value at fault


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def pack_payload(
    author: bytes, seq: int, prev: bytes | None, hlc: Hlc, type_: str, body: Mapping[str, Any]
) -> bytes:
    return _pack([FORMAT_VERSION, author, seq, prev, hlc.pack(), type_, canonical_body(body)])


def seal(
    key: SigningKey, seq: int, prev: bytes | None, hlc: Hlc, type_: str, body: Mapping[str, Any]
) -> Event:
    """Build and sign a new event of this key's author."""
    author = bytes(key.verify_key)
    body = canonical_body(body)
    payload = _pack([FORMAT_VERSION, author, seq, prev, hlc.pack(), type_, body])
    sig = key.sign(SIGNING_CONTEXT + payload).signature
    raw = _pack([payload, sig])
    if len(raw) > MAX_EVENT_BYTES:
        raise EncodingError("too_large", f"event is {len(raw)} bytes (max {MAX_EVENT_BYTES})")
    return Event(author, seq, prev, hlc, type_, body, sig, raw, event_id(raw))


_STR_ONLY = frozenset({str})


def _sorted_map(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    # Called for every map of every event received: C-level loops only, no generator per map.
    mapping = dict(pairs)
    keys = list(mapping)
    if not set(map(type, keys)) <= _STR_ONLY:
        raise EncodingError("malformed", "map keys must be strings")
    if len(keys) != len(pairs) or keys != sorted(keys):  # a repeated key collapses in `mapping`
        raise EncodingError("not_canonical", "map keys are not in strictly increasing order")
    return mapping


def _no_ext(code: int, data: bytes) -> Any:
    raise EncodingError("malformed", f"msgpack extension type {code} is not allowed")


def _unpack(data: bytes, what: str) -> Any:
    try:
        return msgpack.unpackb(
            data, raw=False, use_list=True, object_pairs_hook=_sorted_map, ext_hook=_no_ext
        )
    except EncodingError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise EncodingError("malformed", f"{what} is not valid msgpack: {exc}") from None


def _split(raw: bytes) -> tuple[bytes, bytes]:
    outer = _unpack(raw, "event")
    if not (
        isinstance(outer, list)
        and len(outer) == 2
        and isinstance(outer[0], bytes)
        and isinstance(outer[1], bytes)
    ):
        raise EncodingError("malformed", "event is not [payload, signature]")
    payload, sig = outer
    if len(sig) != SIG_BYTES:
        raise EncodingError("malformed", f"signature is {len(sig)} bytes, not {SIG_BYTES}")
    if _pack(outer) != raw:
        raise EncodingError("not_canonical", "event envelope is not canonically encoded")
    return payload, sig


def _check_fields(fields: Any) -> None:
    if not isinstance(fields, list) or len(fields) != 7:
        raise EncodingError("malformed", "payload is not a list of 7 fields")
    version, author, seq, prev, hlc, type_, body = fields
    if version != FORMAT_VERSION:
        raise EncodingError("malformed", f"unsupported event format version {version!r}")
    if not isinstance(author, bytes) or len(author) != KEY_BYTES:
        raise EncodingError("malformed", "author is not a 32-byte public key")
    if type(seq) is not int or seq < 1:
        raise EncodingError("malformed", f"seq {seq!r} is not a positive integer")
    if not (prev is None or (isinstance(prev, bytes) and len(prev) == ID_BYTES)):
        raise EncodingError("malformed", "prev is neither nil nor a 32-byte event id")
    if type(hlc) is not int:
        raise EncodingError("malformed", f"hlc {hlc!r} is not an integer")
    if not isinstance(type_, str) or not 0 < len(type_) <= MAX_TYPE_LEN:
        raise EncodingError("malformed", "type is not a short string")
    if not isinstance(body, dict):
        raise EncodingError("malformed", "body is not a map")


def _decode(raw: bytes) -> tuple[Event, bytes]:
    if len(raw) > MAX_EVENT_BYTES:
        raise EncodingError("too_large", f"event is {len(raw)} bytes (max {MAX_EVENT_BYTES})")
    payload, sig = _split(raw)
    fields = _unpack(payload, "payload")
    _check_fields(fields)
    if _pack(fields) != payload:
        raise EncodingError("not_canonical", "event payload is not canonically encoded")
    _, author, seq, prev, hlc, type_, body = fields
    try:
        hlc_value = Hlc.unpack(hlc)
    except ValueError as exc:
        raise EncodingError("malformed", str(exc)) from None
    return Event(author, seq, prev, hlc_value, type_, body, sig, raw, event_id(raw)), payload


def decode(raw: bytes) -> Event:
    """Parse signed bytes into an Event, refusing anything not in canonical form.

    Does not check the signature: `Verifier.open` does both.
    """
    return _decode(raw)[0]


def decode_signed(raw: bytes) -> tuple[Event, bytes]:
    """`decode`, and the signed message libsodium checks (`signature_valid`): decoding is
    Python, checking is C, and a batch goes faster with the two done apart (see `opening`)."""
    event, payload = _decode(raw)
    return event, event.sig + SIGNING_CONTEXT + payload


def signature_valid(author: bytes, signed: bytes) -> bool:
    """Whether `signed` (from `decode_signed`) carries a good signature of `author`. An author
    is its raw ed25519 public key, which libsodium takes as it is."""
    try:
        crypto_sign_open(signed, author)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


class Verifier:
    """Checks signatures, one event at a time (a store checks batches in parallel)."""

    def _valid(self, author: bytes, payload: bytes, sig: bytes) -> bool:
        return signature_valid(author, sig + SIGNING_CONTEXT + payload)

    def open(self, raw: bytes) -> Event:
        """Decode and check the signature: the way into the node for bytes from elsewhere."""
        event, payload = _decode(raw)
        if not self._valid(event.author, payload, event.sig):
            raise EncodingError("bad_signature", BAD_SIGNATURE)
        return event

    def verify(self, event: Event) -> bool:
        payload, sig = _split(event.raw)
        return self._valid(event.author, payload, sig)
