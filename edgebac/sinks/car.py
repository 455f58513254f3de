"""CARv1 (content-addressed archive): a DAG-CBOR header `{"roots": [...], "version": 1}`, then
each block as varint(length) + CID bytes + block bytes. Only what a UnixFS DAG needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from edgebac.sinks.cid import CID, decode_varint, encode_varint
from edgebac.sinks.errors import BadContent

MAX_HEADER = 1 << 16
MAX_BLOCK = 4 << 20  # ipfs-car writes blocks of at most 1 MiB of data


def _cbor_head(major: int, value: int) -> bytes:
    if value < 24:
        return bytes([major << 5 | value])
    if value < 0x100:
        return bytes([major << 5 | 24, value])
    return bytes([major << 5 | 25]) + value.to_bytes(2, "big")


def car_header(roots: list[CID]) -> bytes:
    """The CARv1 header, length-prefixed; map keys in DAG-CBOR order (shorter first)."""
    body = bytearray(_cbor_head(5, 2))
    body += _cbor_head(3, 5) + b"roots" + _cbor_head(4, len(roots))
    for root in roots:
        link = b"\x00" + root.bytes  # a CID in DAG-CBOR: tag 42 over 0x00 + binary CID
        body += b"\xd8\x2a" + _cbor_head(2, len(link)) + link
    body += _cbor_head(3, 7) + b"version" + b"\x01"
    return encode_varint(len(body)) + bytes(body)


def block_prefix(cid: CID, size: int) -> bytes:
    """What goes before a block's bytes in a CAR."""
    raw = cid.bytes
    return encode_varint(len(raw) + size) + raw


class _Cbor:
    """Just enough DAG-CBOR to read a CAR header (maps, arrays, strings, bytes, ints, tag 42)."""

    def __init__(self, buf: bytes) -> None:
        self.buf, self.pos = buf, 0

    def _head(self) -> tuple[int, int]:
        first = self.buf[self.pos]
        self.pos += 1
        major, info = first >> 5, first & 31
        if info < 24:
            return major, info
        if info > 27:
            raise ValueError("indefinite lengths are not DAG-CBOR")
        n = 1 << (info - 24)
        value = int.from_bytes(self.buf[self.pos : self.pos + n], "big")
        self.pos += n
        return major, value

    def item(self) -> object:
        major, value = self._head()
        if major == 0:
            return value
        if major in (2, 3):
            raw = self.buf[self.pos : self.pos + value]
            self.pos += value
            return raw if major == 2 else raw.decode("utf-8")
        if major == 4:
            return [self.item() for _ in range(value)]
        if major == 5:
            return {self.item(): self.item() for _ in range(value)}
        if major == 6 and value == 42:
            link = self.item()
            if not isinstance(link, bytes) or link[:1] != b"\x00":
                raise ValueError("bad CID link")
            return CID.decode(link, 1)[0]
        raise ValueError(f"unsupported CBOR major type {major}")


def _read_exact(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise BadContent("CAR file is truncated")
    return data


def _read_varint(f: BinaryIO) -> int | None:
    raw = bytearray()
    while True:
        byte = f.read(1)
        if not byte:
            if raw:
                raise BadContent("CAR file is truncated")
            return None
        raw += byte
        if byte[0] < 0x80:
            return decode_varint(raw)[0]
        if len(raw) > 9:
            raise BadContent("bad varint in CAR file")


def read_car(f: BinaryIO) -> tuple[list[CID], Iterator[tuple[CID, bytes]]]:
    """The roots of a CARv1 and an iterator of its blocks, each verified against its CID."""
    size = _read_varint(f)
    if size is None or size > MAX_HEADER:
        raise BadContent("not a CAR file (bad header length)")
    try:
        header = _Cbor(_read_exact(f, size)).item()
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise BadContent(f"not a CAR file: {exc}") from None
    if not isinstance(header, dict) or header.get("version") != 1:
        raise BadContent("not a CARv1 file")
    roots = header.get("roots")
    if not isinstance(roots, list) or not all(isinstance(r, CID) for r in roots):
        raise BadContent("CAR header has no valid roots")
    return roots, _blocks(f)


def _blocks(f: BinaryIO) -> Iterator[tuple[CID, bytes]]:
    while (size := _read_varint(f)) is not None:
        if size > MAX_BLOCK:
            raise BadContent(f"CAR block of {size} bytes is too large")
        section = _read_exact(f, size)
        cid, pos = CID.decode(section)
        data = section[pos:]
        cid.verify(data)
        yield cid, data
