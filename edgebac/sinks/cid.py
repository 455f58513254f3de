"""CIDv1 for the two codecs UnixFS uses (raw 0x55, dag-pb 0x70), sha2-256, base32 text.

Only what an `ipfs-car` DAG needs: anything else (CIDv0, other codecs or hashes, other
multibases) is refused with a clear error rather than half supported.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from edgebac.sinks.errors import BadCid, CorruptBlock

RAW = 0x55
DAG_PB = 0x70
SHA2_256 = 0x12
CODEC_NAMES = {RAW: "raw", DAG_PB: "dag-pb"}
_PREFIX = {RAW: bytes([1, RAW, SHA2_256, 32]), DAG_PB: bytes([1, DAG_PB, SHA2_256, 32])}
CID_LEN = 36  # version, codec, hash code, digest length: one byte each here, then 32 bytes


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128, as multiformats and protobuf spell integers."""
    if value < 0:
        raise ValueError("varint must not be negative")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(buf: bytes | memoryview, pos: int = 0) -> tuple[int, int]:
    """Return (value, position after it); ValueError if truncated or longer than 64 bits."""
    value = shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


@dataclass(frozen=True, slots=True)
class CID:
    """A CIDv1 with a sha2-256 multihash; `str()` is the base32 form (`bafy...`, `bafk...`)."""

    codec: int
    digest: bytes

    def __post_init__(self) -> None:
        if self.codec not in _PREFIX:
            raise BadCid(f"unsupported codec 0x{self.codec:x} (only raw and dag-pb)")
        if len(self.digest) != 32:
            raise BadCid("a sha2-256 digest is 32 bytes")

    @classmethod
    def of(cls, codec: int, data: bytes | bytearray | memoryview) -> CID:
        return cls(codec, hashlib.sha256(data).digest())

    @property
    def bytes(self) -> bytes:
        return _PREFIX[self.codec] + self.digest

    def __str__(self) -> str:
        return "b" + base64.b32encode(self.bytes).decode("ascii").rstrip("=").lower()

    def __repr__(self) -> str:
        return f"CID({self})"

    def verify(self, data: bytes | bytearray | memoryview) -> None:
        """Raise CorruptBlock unless `data` hashes to this CID."""
        if hashlib.sha256(data).digest() != self.digest:
            raise CorruptBlock(f"block {self} does not match its hash")

    @classmethod
    def decode(cls, buf: bytes | memoryview, pos: int = 0) -> tuple[CID, int]:
        """Read a binary CID at `pos`; return it and the position after it."""
        try:
            version, pos = decode_varint(buf, pos)
            codec, pos = decode_varint(buf, pos)
            hash_code, pos = decode_varint(buf, pos)
            length, pos = decode_varint(buf, pos)
        except ValueError as exc:
            raise BadCid(f"bad CID bytes: {exc}") from None
        if version != 1:
            raise BadCid(f"CID version {version} is not supported (only CIDv1)")
        if hash_code != SHA2_256 or length != 32:
            raise BadCid(f"multihash 0x{hash_code:x}/{length} is not supported (only sha2-256)")
        if pos + 32 > len(buf):
            raise BadCid("truncated CID")
        return cls(codec, bytes(buf[pos : pos + 32])), pos + 32

    @classmethod
    def parse(cls, text: str) -> CID:
        """Parse the base32 text form; any other spelling is a BadCid with the reason."""
        if not isinstance(text, str) or not text:
            raise BadCid("empty CID")
        if text.startswith("Qm"):
            raise BadCid(f"{text!r} is a CIDv0; only CIDv1 (bafy...) is supported")
        if text[0] != "b" or len(text) > 100:
            raise BadCid(f"{text!r} is not a base32 CIDv1 (bafy... or bafk...)")
        body = text[1:].upper()
        try:
            raw = base64.b32decode(body + "=" * (-len(body) % 8))
        except ValueError:
            raise BadCid(f"{text!r} is not valid base32") from None
        cid, end = cls.decode(raw)
        if end != len(raw):
            raise BadCid(f"{text!r} has trailing bytes")
        if str(cid) != text:
            raise BadCid(f"{text!r} is not in canonical form (lowercase base32, no padding)")
        return cid
