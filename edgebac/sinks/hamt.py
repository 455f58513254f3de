"""HAMT-sharded UnixFS directories, as @ipld/unixfs (via @perma/map) builds them.

`ipfs-car` shards a directory of more than 1,000 entries. Each shard has 256 slots; an entry's
slot at depth d is byte d of its name's hash, where the hash is murmur3-x64-64 of the UTF-8
name (the first 8 bytes of murmur3 x64 128, h1 big-endian) and, past 8 levels, of the name with
the frame number appended. A slot holding one entry links to it as `XX<name>` (XX the slot in
upper-case hex); a slot holding several links to a child shard named `XX`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgebac.sinks.cid import CID, DAG_PB
from edgebac.sinks.dagpb import (
    HAMT_SHARD,
    MURMUR3_X64_64,
    PBLink,
    UnixFSData,
    encode_node,
    encode_unixfs,
)

FANOUT = 256
_M = 0xFFFFFFFFFFFFFFFF
_C1, _C2 = 0x87C37B91114253D5, 0x4CF5AD432745937F

Put = Callable[[CID, "bytes | memoryview"], None]


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M


def _fmix(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _M
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _M
    return k ^ (k >> 33)


def _mix_k1(k1: int) -> int:
    return (_rotl((k1 * _C1) & _M, 31) * _C2) & _M


def _mix_k2(k2: int) -> int:
    return (_rotl((k2 * _C2) & _M, 33) * _C1) & _M


def murmur3_x64_128(data: bytes, seed: int = 0) -> bytes:
    """MurmurHash3 x64 128 (a non-cryptographic hash), h1 then h2, each big-endian."""
    h1 = h2 = seed
    n = len(data)
    full = n - n % 16
    for i in range(0, full, 16):
        h1 ^= _mix_k1(int.from_bytes(data[i : i + 8], "little"))
        h1 = (((_rotl(h1, 27) + h2) & _M) * 5 + 0x52DCE729) & _M
        h2 ^= _mix_k2(int.from_bytes(data[i + 8 : i + 16], "little"))
        h2 = (((_rotl(h2, 31) + h1) & _M) * 5 + 0x38495AB5) & _M
    tail = data[full:]
    if len(tail) > 8:
        h2 ^= _mix_k2(int.from_bytes(tail[8:], "little"))
    if tail:
        h1 ^= _mix_k1(int.from_bytes(tail[:8], "little"))
    h1 ^= n
    h2 ^= n
    h1 = (h1 + h2) & _M
    h2 = (h2 + h1) & _M
    h1, h2 = _fmix(h1), _fmix(h2)
    h1 = (h1 + h2) & _M
    h2 = (h2 + h1) & _M
    return h1.to_bytes(8, "big") + h2.to_bytes(8, "big")


def murmur3_x64_64(data: bytes) -> bytes:
    return murmur3_x64_128(data)[:8]


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    cid: CID
    tsize: int


class _Slots:
    """Slot of a name at each depth, hashing each (name, frame) once."""

    def __init__(self) -> None:
        self._frames: dict[tuple[bytes, int], bytes] = {}

    def at(self, key: bytes, depth: int) -> int:
        frame = depth // 8
        digest = self._frames.get((key, frame))
        if digest is None:
            digest = murmur3_x64_64(key if frame == 0 else key + bytes([frame]))
            self._frames[(key, frame)] = digest
        return digest[depth % 8]


def build_sharded_directory(entries: Sequence[Entry], put: Put) -> tuple[CID, int]:
    """Write every shard block through `put`; return the root shard's CID and DAG size."""
    return _shard([(e.name.encode("utf-8"), e) for e in entries], 0, put, _Slots())


def _shard(
    items: list[tuple[bytes, Entry]], depth: int, put: Put, slots: _Slots
) -> tuple[CID, int]:
    if depth > 255:
        raise ValueError("HAMT too deep: duplicate directory entry names?")
    groups: dict[int, list[tuple[bytes, Entry]]] = {}
    for item in items:
        groups.setdefault(slots.at(item[0], depth), []).append(item)
    links, bitmap = [], 0
    for slot in sorted(groups):
        bitmap |= 1 << slot
        group = groups[slot]
        prefix = f"{slot:02X}"
        if len(group) == 1:
            entry = group[0][1]
            links.append(PBLink(entry.cid, prefix + entry.name, entry.tsize))
        else:
            cid, tsize = _shard(group, depth + 1, put, slots)
            links.append(PBLink(cid, prefix, tsize))
    bitfield = bitmap.to_bytes((bitmap.bit_length() + 7) // 8, "big")
    data = UnixFSData(HAMT_SHARD, bitfield, hash_type=MURMUR3_X64_64, fanout=FANOUT)
    block = encode_node(links, encode_unixfs(data))
    cid = CID.of(DAG_PB, block)
    put(cid, block)
    return cid, len(block) + sum(link.tsize for link in links)
