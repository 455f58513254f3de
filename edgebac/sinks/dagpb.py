"""The dag-pb codec (PBNode / PBLink) and the UnixFS `Data` message, as protobuf bytes.

Encoding follows @ipld/dag-pb and @ipld/unixfs byte for byte, since the CIDs depend on it:
links come before `Data`; every link writes Hash, Name (even when empty) and Tsize; links are
sorted by the UTF-8 bytes of their names (stable, so unnamed file links keep their order);
UnixFS fields are written in field order and only when set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from edgebac.sinks.cid import CID, decode_varint, encode_varint
from edgebac.sinks.errors import BadCid, BadContent

# UnixFS Data.DataType
RAW_NODE, DIRECTORY, FILE, METADATA, SYMLINK, HAMT_SHARD = range(6)
MURMUR3_X64_64 = 0x22


@dataclass(frozen=True, slots=True)
class PBLink:
    cid: CID
    name: str
    tsize: int  # cumulative byte size of the linked DAG (the "dagByteLength")


@dataclass(frozen=True, slots=True)
class UnixFSData:
    type: int
    data: bytes = b""
    filesize: int | None = None
    blocksizes: tuple[int, ...] = field(default_factory=tuple)
    hash_type: int | None = None
    fanout: int | None = None


def _bytes_field(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + encode_varint(len(value)) + value


def encode_unixfs(d: UnixFSData) -> bytes:
    out = [b"\x08" + encode_varint(d.type)]
    if d.data:
        out.append(_bytes_field(0x12, d.data))
    if d.filesize is not None:
        out.append(b"\x18" + encode_varint(d.filesize))
    out.extend(b"\x20" + encode_varint(size) for size in d.blocksizes)
    if d.hash_type is not None:
        out.append(b"\x28" + encode_varint(d.hash_type))
    if d.fanout is not None:
        out.append(b"\x30" + encode_varint(d.fanout))
    return b"".join(out)


def encode_node(links: Sequence[PBLink], data: bytes) -> bytes:
    """A PBNode; `links` are sorted here by name bytes as dag-pb requires."""
    out = []
    for link in sorted(links, key=lambda item: item.name.encode("utf-8")):
        body = (
            _bytes_field(0x0A, link.cid.bytes)
            + _bytes_field(0x12, link.name.encode("utf-8"))
            + b"\x18"
            + encode_varint(link.tsize)
        )
        out.append(_bytes_field(0x12, body))
    out.append(_bytes_field(0x0A, data))
    return b"".join(out)


Field = tuple[int, int | bytes]


def _fields(buf: bytes | memoryview) -> list[Field]:
    """Split protobuf bytes into (field number, int or bytes) pairs (wire types 0 and 2 only)."""
    pos, end, out = 0, len(buf), []
    while pos < end:
        key, pos = decode_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = decode_varint(buf, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = decode_varint(buf, pos)
            if pos + length > end:
                raise ValueError("truncated field")
            out.append((number, bytes(buf[pos : pos + length])))
            pos += length
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def _decode_link(buf: bytes) -> PBLink:
    cid, name, tsize = None, "", 0
    for number, value in _fields(buf):
        if number == 1 and isinstance(value, bytes):
            cid, end = CID.decode(value)
            if end != len(value):
                raise ValueError("trailing bytes after link CID")
        elif number == 2 and isinstance(value, bytes):
            name = value.decode("utf-8")
        elif number == 3 and isinstance(value, int):
            tsize = value
        else:
            raise ValueError(f"unexpected PBLink field {number}")
    if cid is None:
        raise ValueError("link without a hash")
    return PBLink(cid, name, tsize)


def decode_node(block: bytes | memoryview) -> tuple[list[PBLink], bytes]:
    """Return (links, data) of a dag-pb block; BadContent if it is not one."""
    links, data = [], b""
    try:
        for number, value in _fields(block):
            if number == 2 and isinstance(value, bytes):
                links.append(_decode_link(value))
            elif number == 1 and isinstance(value, bytes):
                data = value
            else:
                raise ValueError(f"unexpected PBNode field {number}")
    except (ValueError, UnicodeDecodeError, BadCid) as exc:
        raise BadContent(f"not a dag-pb block: {exc}") from None
    return links, data


def _ints(value: int | bytes) -> list[int]:
    """A repeated uint64, unpacked (one int) or packed (bytes of varints)."""
    if isinstance(value, int):
        return [value]
    pos, out = 0, []
    while pos < len(value):
        item, pos = decode_varint(value, pos)
        out.append(item)
    return out


def decode_unixfs(buf: bytes) -> UnixFSData:
    """The UnixFS Data message in a dag-pb node's Data; BadContent if it is not one."""
    ints: dict[int, int] = {}
    data, sizes = b"", []
    try:
        for number, value in _fields(buf):
            if number == 2 and isinstance(value, bytes):
                data = value
            elif number == 4:
                sizes.extend(_ints(value))
            elif isinstance(value, int):
                ints[number] = value
    except ValueError as exc:
        raise BadContent(f"bad UnixFS data: {exc}") from None
    if 1 not in ints:
        raise BadContent("UnixFS data without a type")
    return UnixFSData(ints[1], data, ints.get(3), tuple(sizes), ints.get(5), ints.get(6))
