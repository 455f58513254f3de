"""The private network key and the sealed envelope every gossip body travels in.

    sealed = SecretBox(network_key).encrypt(plain)
    plain  = msgpack([sender: bin(32), sent_ms: uint, message])              (format 1: 0x93...)
           | b"Z" + deflate(msgpack([...]), ZDICT_V1)                       (format 2)

Without the key a body can be neither read nor forged. Each body carries its sender and send
time, and each nonce is accepted once within the window a body may be dated in: from `max_age`
plus the allowed clock skew ago to the allowed skew ahead. The window must hold every clock the
event log tolerates (5 minutes by default): a node whose clock is off by less must take part,
not be cut off as a replay; beyond it both sides are told the measured offset. A node started
without `--network-key` uses the well-known open key, so it can only ever talk to other open
nodes.

Compression happens inside the seal (compress, then seal; open, then inflate), so a body is
inflated only once it is known to come from a member, and never past `max_bytes`, the limit of
an uncompressed body: a member's zip bomb is refused (`too_large_inflated`), never held in
memory. Format 2 is raw deflate with a preset dictionary (gossip/zdict.py), used only when it
is the smaller. The first byte tells the formats apart. Nodes before format 2 read only format
1, so a node compresses only to a peer that said it can inflate (a header, see gossip/http),
and answers in the format it was asked in: a network upgrading node by node keeps talking.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from edgebac.errors import ConfigError
from edgebac.eventlog.clock import wall_clock_ms
from edgebac.gossip.zdict import ZDICT_V1

KEY_BYTES = SecretBox.KEY_SIZE
NONCE_BYTES = SecretBox.NONCE_SIZE
OPEN_NETWORK_KEY = hashlib.sha256(b"edgebac/open-network/v1").digest()
DEFAULT_SKEW_MS = 30_000  # for envelopes not told the node's tolerance (tests, tools)
ZLIB_TAG = ord("Z")  # format 2; format 1 starts with 0x93, msgpack's 3-element array
ZLIB_LEVEL = 6  # a 1 MiB page of job events in ~10 ms, several-fold smaller
RAW_DEFLATE = -15  # wbits: no zlib header and checksum (the seal's MAC covers the bytes)


def deflate(plain: bytes) -> bytes:
    deflater = zlib.compressobj(ZLIB_LEVEL, zlib.DEFLATED, RAW_DEFLATE, zdict=ZDICT_V1)
    return deflater.compress(plain) + deflater.flush()


class EnvelopeError(ValueError):
    """A body refused before anything in it was trusted; `reason` is a stable code."""

    def __init__(self, reason: str, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.reason = reason
        self.status = status


def clock_verdict(sent_ms: int, now_ms: int, max_age_ms: int, max_skew_ms: int) -> str | None:
    """Why a body sent at `sent_ms` (the sender's clock) cannot be taken at `now_ms` (ours), or
    None. Pure: the whole time rule of the envelope, tested from a table."""
    offset = sent_ms - now_ms
    if offset > max_skew_ms:
        return (
            f"body is dated {offset / 1000:.1f} s ahead of this node's clock "
            f"(max skew {max_skew_ms / 1000:.0f} s): check the clocks"
        )
    if -offset > max_age_ms + max_skew_ms:
        return (
            f"body is {-offset / 1000:.1f} s old: the sender's clock is behind this node's "
            f"(max skew {max_skew_ms / 1000:.0f} s), or it is a replay"
        )
    return None


@dataclass(frozen=True, slots=True)
class Opened:
    sender: bytes
    sent_ms: int
    message: Any
    compressed: bool = False


def inflate(data: bytes, limit: int) -> bytes:
    """`data` inflated, refused past `limit` bytes without ever holding more than that."""
    inflater = zlib.decompressobj(RAW_DEFLATE, zdict=ZDICT_V1)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error:
        raise EnvelopeError("malformed", "sealed body is not valid zlib") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise EnvelopeError("too_large_inflated", f"body inflates past {limit} bytes", 413)
    if not inflater.eof or inflater.unused_data:
        raise EnvelopeError("malformed", "sealed body is cut off or has bytes after its end")
    return out


def write_network_key(path: Path) -> None:
    """A new 32-byte key, mode 0600; refuses to overwrite (that would split the network)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; remove it first to make a new key") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the network key: {exc.strerror}") from None
    try:
        os.write(fd, os.urandom(KEY_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)


def read_network_key(path: Path) -> bytes:
    """32 raw bytes, or 64 hex digits (so a key can also be pasted into a file)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--network-key: {path}: {exc.strerror}") from None
    if len(data) == KEY_BYTES:
        return data
    text = data.strip()
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    raise ConfigError(f"--network-key: {path} is not a network key (32 bytes or 64 hex digits)")


class Envelope:
    """Seals outgoing bodies and opens incoming ones for one node."""

    def __init__(
        self,
        key: bytes,
        sender: bytes,
        max_age_ms: int,
        max_bytes: int,
        clock_ms: Callable[[], int] = wall_clock_ms,
        max_skew_ms: int = DEFAULT_SKEW_MS,
    ) -> None:
        self._box = SecretBox(key)
        self._sender = sender
        self._max_age_ms = max_age_ms
        self._max_skew_ms = max_skew_ms
        self._max_bytes = max_bytes
        self._clock_ms = clock_ms
        self._seen: OrderedDict[bytes, int] = OrderedDict()  # nonce -> sent_ms, oldest first

    def seal(self, message: Any, compress: bool = False) -> bytes:
        return self.seal_sized(message, compress)[0]

    def seal_sized(self, message: Any, compress: bool = False) -> tuple[bytes, int]:
        """(the sealed body, the size of its plain msgpack before compression)."""
        plain = msgpack.packb([self._sender, self._clock_ms(), message], use_bin_type=True)
        size = len(plain)
        if compress:
            packed = bytes((ZLIB_TAG,)) + deflate(plain)
            plain = packed if len(packed) < len(plain) else plain
        return bytes(self._box.encrypt(plain)), size

    def open(self, body: bytes) -> Opened:
        if len(body) > self._max_bytes:
            raise EnvelopeError("too_large", f"body of {len(body)} bytes is too large", 413)
        if len(body) < NONCE_BYTES + SecretBox.MACBYTES:
            raise EnvelopeError("not_sealed", "body is too short to be sealed")
        try:
            plain = self._box.decrypt(body)
        except CryptoError:
            raise EnvelopeError(
                "wrong_network_key",
                "body does not open with this network's key (sealed with another network key?)",
                403,
            ) from None
        compressed = plain[:1] == bytes((ZLIB_TAG,))
        if compressed:
            plain = inflate(plain[1:], self._max_bytes)
        opened = _parse(plain, compressed)
        self._check_fresh(body[:NONCE_BYTES], opened.sent_ms)
        return opened

    def _check_fresh(self, nonce: bytes, sent_ms: int) -> None:
        now = self._clock_ms()
        oldest = now - self._max_age_ms - self._max_skew_ms
        while self._seen and next(iter(self._seen.values())) < oldest:
            self._seen.popitem(last=False)
        refusal = clock_verdict(sent_ms, now, self._max_age_ms, self._max_skew_ms)
        if refusal is not None:
            raise EnvelopeError("clock_skew", refusal, 403)
        if nonce in self._seen:
            raise EnvelopeError("replay", "body was already received (replay)", 403)
        self._seen[nonce] = max(sent_ms, oldest)
        if len(self._seen) > 1_000_000:  # a flood within one window: forget the oldest
            self._seen.popitem(last=False)


def _parse(plain: bytes, compressed: bool) -> Opened:
    try:
        fields = msgpack.unpackb(plain, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException):
        raise EnvelopeError("malformed", "sealed body is not msgpack") from None
    if not (
        isinstance(fields, list)
        and len(fields) == 3
        and isinstance(fields[0], bytes)
        and len(fields[0]) == 32
        and type(fields[1]) is int
    ):
        raise EnvelopeError("malformed", "sealed body is not [sender, sent_ms, message]")
    return Opened(fields[0], fields[1], fields[2], compressed)
