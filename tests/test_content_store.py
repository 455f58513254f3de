"""The block store on disk, CIDs, codecs and readers: real files, no network."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from edgebac.sinks.blockstore import BlockStore
from edgebac.sinks.car import read_car
from edgebac.sinks.cid import CID, DAG_PB, RAW
from edgebac.sinks.dagpb import PBLink, decode_node, encode_node
from edgebac.sinks.errors import BadCid, BadContent, ContentNotFound, CorruptBlock, WriteFailed
from edgebac.sinks.exporter import links_of
from edgebac.sinks.hamt import murmur3_x64_64
from edgebac.sinks.unixfs import CHUNK_SIZE

EMPTY_RAW = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
EMPTY_DIR = "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"


@pytest.fixture
def store(tmp_path: Path) -> BlockStore:
    return BlockStore(tmp_path / "store")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    files = {
        "stdout": b"hello\n",
        "empty": b"",
        "outputs/big.bin": os.urandom(2 * CHUNK_SIZE + 17),
        "outputs/é.txt": b"unicode",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_cid_text_round_trip() -> None:
    cid = CID.of(RAW, b"")
    assert str(cid) == EMPTY_RAW
    assert CID.parse(EMPTY_RAW) == cid
    assert CID.decode(cid.bytes) == (cid, 36)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", "CIDv0"),
        ("zdj7WWeQ43G6JJvLWQWZpyHuAMq6uYWRjkBXFad11vE2LHhQ7", "base32"),
        ("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyk", "base32|truncated"),
        ("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquv", "truncated"),
        ("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyk!", "base32"),
        ("BAFKREIHDWDCEFGH4DQKJV67UZCMW7OJEE6XEDZDETOJUZJEVTENXQUVYKU", "base32"),
        ("bafyreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku", "codec"),
    ],
)
def test_bad_cid_text_is_refused_with_a_reason(text: str, why: str) -> None:
    with pytest.raises(BadCid, match=why):
        CID.parse(text)


def test_murmur3_vectors_match_the_js_implementation() -> None:
    # from @multiformats/murmur3 murmur364 (the hash ipfs-car's HAMT uses)
    assert murmur3_x64_64(b"").hex() == "0000000000000000"
    assert murmur3_x64_64(b"hello").hex() == "cbd8a7b341bd9b02"
    assert murmur3_x64_64(b"abcdefghijklmnopqrstuvwxyz0123456789").hex() == "f2596f5eb4ff5e3a"
    assert murmur3_x64_64("é".encode()).hex() == "c9187aa411d463e8"


def test_dagpb_round_trip_sorts_links_by_name() -> None:
    a, b = CID.of(RAW, b"a"), CID.of(RAW, b"b")
    block = encode_node([PBLink(b, "z", 1), PBLink(a, "a", 1)], b"\x08\x01")
    links, data = decode_node(block)
    assert [link.name for link in links] == ["a", "z"]
    assert data == b"\x08\x01"
    assert str(CID.of(DAG_PB, encode_node([], b"\x08\x01"))) == EMPTY_DIR


def test_garbage_is_not_a_dagpb_block() -> None:
    with pytest.raises(BadContent, match="not a dag-pb block"):
        decode_node(b"\xff\xff\xff")


def test_put_get_dedup_and_verification(store: BlockStore) -> None:
    cid = CID.of(RAW, b"data")
    assert not store.has(cid)
    assert store.put(cid, b"data")
    assert not store.put(cid, b"data")  # deduplicated
    assert store.get_block(cid) == b"data"
    with pytest.raises(CorruptBlock):
        store.put(CID.of(RAW, b"other"), b"data")
    with pytest.raises(ContentNotFound):
        store.get_block(CID.of(RAW, b"missing"))
    shard = str(cid)[-3:-1]
    assert (store.root / "blocks" / shard / str(cid)).read_bytes() == b"data"


def test_import_export_round_trip(store: BlockStore, folder: Path, tmp_path: Path) -> None:
    link = store.import_path(folder)
    assert link.size == sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert store.holds(link.cid)
    assert store.stat(link.cid).kind == "directory"
    out = tmp_path / "out"
    assert store.export_to(link.cid, out) == link.size
    assert _tree(out) == _tree(folder)
    # the same data again: same CID, no new block
    before = len(list((store.root / "blocks").rglob("*")))
    assert store.import_path(folder).cid == link.cid
    assert len(list((store.root / "blocks").rglob("*"))) == before


def test_export_tar_holds_the_folder(store: BlockStore, folder: Path, tmp_path: Path) -> None:
    cid = store.import_path(folder).cid
    data = b"".join(store.export_tar(cid))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    assert _tree(tmp_path / "x") == _tree(folder)


def test_file_export_and_car(store: BlockStore, folder: Path) -> None:
    big = folder / "outputs" / "big.bin"
    cid = store.import_path(big).cid
    assert store.stat(cid).size == big.stat().st_size
    assert b"".join(store.export_file(cid)) == big.read_bytes()
    roots, blocks = read_car(io.BytesIO(b"".join(store.export_car(cid))))
    assert roots == [cid]
    assert [c for c, _ in blocks] == [cid, *links_of(cid, store.get_block(cid))]
    single = store.import_path(folder / "stdout").cid
    assert single.codec == RAW
    assert b"".join(store.export_file(single)) == b"hello\n"


def test_damaged_block_is_refused_and_removed(store: BlockStore, folder: Path) -> None:
    cid = store.import_path(folder).cid
    leaf = CID.of(RAW, b"hello\n")
    path = store.root / "blocks" / str(leaf)[-3:-1] / str(leaf)
    path.write_bytes(b"jello\n")
    with pytest.raises(CorruptBlock, match=str(leaf)):
        store.get_block(leaf)
    assert not path.exists()
    assert (store.root / "corrupt" / str(leaf)).exists()
    assert not store.holds(cid)
    with pytest.raises(ContentNotFound):
        b"".join(store.export_tar(cid))  # removed on the first read: never served


def test_bad_car_is_refused(store: BlockStore, folder: Path) -> None:
    cid = store.import_path(folder / "stdout").cid
    car = bytearray(b"".join(store.export_car(cid)))
    car[-1] ^= 1
    with pytest.raises(CorruptBlock):
        BlockStore(store.root.parent / "other").import_car(io.BytesIO(bytes(car)))
    with pytest.raises(BadContent, match="not a CAR"):
        store.import_car(io.BytesIO(b"\x05hello"))
    with pytest.raises(BadContent, match="truncated"):
        store.import_car(io.BytesIO(bytes(car[:-3])))


def test_bad_import_input(store: BlockStore, tmp_path: Path) -> None:
    with pytest.raises(BadContent, match="not a file or a folder"):
        store.import_path(tmp_path / "missing")
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / os.fsdecode(b"bad\xffname")).write_bytes(b"x")
    with pytest.raises(BadContent, match="not UTF-8"):
        store.import_path(odd)


def test_export_to_a_folder_that_is_not_writable(
    store: BlockStore, folder: Path, tmp_path: Path
) -> None:
    cid = store.import_path(folder).cid
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(WriteFailed, match="cannot write"):
        store.export_to(cid, tmp_path / "file" / "out")  # a file where a folder must go


def test_empty_folder_is_the_empty_directory(store: BlockStore, tmp_path: Path) -> None:
    (tmp_path / "e").mkdir()
    assert str(store.import_path(tmp_path / "e").cid) == EMPTY_DIR


def test_leftover_temp_files_are_removed(store: BlockStore) -> None:
    (store.root / "tmp" / "half-written").write_bytes(b"x")
    BlockStore(store.root)
    assert not list((store.root / "tmp").iterdir())


def _tree(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def test_files_from_memory_import_as_the_same_folder_on_disk(
    store: BlockStore, tmp_path: Path
) -> None:
    files = {
        "stdout": b"hello\n",
        "stderr": b"",
        "exitCode": b"0\n",
        "big": os.urandom(2 * CHUNK_SIZE + 17),
        "é.txt": b"unicode",
    }
    root = tmp_path / "on-disk"
    root.mkdir()
    for name, data in files.items():
        (root / name).write_bytes(data)
    from_disk = BlockStore(tmp_path / "other").import_path(root)
    from_memory = store.import_files(files)
    assert from_memory == from_disk
    assert store.holds(from_memory.cid)
    assert store.read_entry(from_memory.cid, "big") == files["big"]
    assert store.read_entry(from_memory.cid, "stderr") == b""
    assert store.read_entry(from_memory.cid, "missing") is None
    assert str(store.import_files({}).cid) == EMPTY_DIR


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "nul\0"])
def test_files_from_memory_need_plain_names(store: BlockStore, name: str) -> None:
    with pytest.raises(BadContent, match="not a file name"):
        store.import_files({name: b"x"})
