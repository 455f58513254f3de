"""Root CIDs equal what the real `ipfs-car pack` prints, and our CARs unpack with ipfs-car."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from edgebac.sinks.blockstore import BlockStore
from edgebac.sinks.cid import CID
from edgebac.sinks.unixfs import CHUNK_SIZE, import_path
from tests import ipfscar

MiB = CHUNK_SIZE


def _write(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def _pattern(size: int, seed: int = 0) -> bytes:
    block = bytes((i * 31 + seed) % 251 for i in range(4096))
    return (block * (size // len(block) + 1))[:size]


def _ours(path: Path, *, hidden: bool = True) -> CID:
    return import_path(path, lambda cid, data: None, hidden=hidden).cid


def _empty_files(d: Path) -> None:
    _write(d, {"a": b"", "b/c": b"", "d.txt": b"not empty"})


def _big_files(d: Path) -> None:
    _write(
        d, {"exact": _pattern(MiB), "plus1": _pattern(MiB + 1, 1), "big": _pattern(3 * MiB + 5, 2)}
    )


def _nested(d: Path) -> None:
    _write(d, {"a/b/c/d.txt": b"deep", "a/x": b"x", "top": b"t", "a/b/e": b"e"})
    (d / "a" / "empty").mkdir()  # ipfs-car drops empty folders


def _sort_order(d: Path) -> None:
    # path order ("a-b" < "a.txt" < "a/x") differs from name order; UTF-16 and UTF-8 differ too
    _write(
        d, {"a/x": b"1", "a-b": b"2", "a.txt": b"3", "\uff5e": b"4", "\U0001f600": b"5", "B": b"6"}
    )


def _unicode(d: Path) -> None:
    _write(d, {"é/日本語.txt": b"ja", "naïve café": b"c", "Ω/ψ": b"o", "space name.txt": b"s"})


def _flat_1000(d: Path) -> None:
    _write(d, {f"f{i:04d}": str(i).encode() for i in range(1000)})


def _sharded(d: Path) -> None:
    _write(d, {f"file-{i}.txt": str(i).encode() for i in range(1001)})
    _write(d, {f"sub/n{i}": b"" for i in range(2500)})  # deep enough for nested shards


def _collapsed(d: Path) -> None:
    _write(d, {"only/inner/f1": b"1", "only/inner/f2": b"2"})


def _empty_folder(d: Path) -> None:
    (d / "nothing" / "here").mkdir(parents=True)


def _with_symlink(d: Path) -> None:
    _write(d, {"real": b"r"})
    (d / "link").symlink_to(d / "real")  # ipfs-car skips symlinks inside folders


CASES: dict[str, Callable[[Path], None]] = {
    "empty_files": _empty_files,
    "big_files": _big_files,
    "nested": _nested,
    "sort_order": _sort_order,
    "unicode": _unicode,
    "flat_1000_entries": _flat_1000,
    "sharded_1001_and_2500_entries": _sharded,
    "collapsed_single_folder": _collapsed,
    "empty_folder": _empty_folder,
    "symlink": _with_symlink,
}


@pytest.mark.parametrize("case", list(CASES))
def test_folder_root_cid_equals_ipfs_car(case: str, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    CASES[case](folder)
    expected = ipfscar.pack(folder, tmp_path / "x.car", "--hidden")
    assert str(_ours(folder)) == expected


def test_hidden_files_follow_the_flag(tmp_path: Path) -> None:
    folder = _write(tmp_path / "data", {".hidden": b"h", "seen": b"s", ".dir/f": b"f"})
    assert str(_ours(folder)) == ipfscar.pack(folder, tmp_path / "1.car", "--hidden")
    assert str(_ours(folder, hidden=False)) == ipfscar.pack(folder, tmp_path / "2.car")


@pytest.mark.parametrize("size", [0, 1, MiB - 1, MiB, MiB + 1, 2 * MiB + 3])
def test_single_file_equals_no_wrap(size: int, tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(_pattern(size, size % 7))
    ours = _ours(path)
    assert str(ours) == ipfscar.pack(path, tmp_path / "f.car", "--no-wrap")
    assert (ours.codec == 0x55) == (size <= MiB)  # one chunk: the raw leaf is the file


def test_our_car_unpacks_with_ipfs_car(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _big_files(src)
    _unicode(src)
    _empty_files(src)
    _sharded(src / "many")
    store = BlockStore(tmp_path / "store")
    root = store.import_path(src).cid
    car = tmp_path / "ours.car"
    with open(car, "wb") as f:
        for piece in store.export_car(root):
            f.write(piece)
    assert ipfscar.run("roots", car).split() == [str(root)]
    out = tmp_path / "out"
    ipfscar.run("unpack", car, "--output", out)
    assert _tree(out) == _tree(src)


def test_ipfs_car_car_imports_into_our_store(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _nested(src)
    _sharded(src)
    car = tmp_path / "theirs.car"
    expected = ipfscar.pack(src, car, "--hidden")
    store = BlockStore(tmp_path / "store")
    with open(car, "rb") as f:
        roots = store.import_car(f)
    assert [str(r) for r in roots] == [expected]
    assert store.holds(roots[0])
    out = tmp_path / "out"
    store.export_to(roots[0], out)
    assert _tree(out) == {k: v for k, v in _tree(src).items() if not k.endswith("empty")}


def _tree(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[os.path.relpath(os.path.join(dirpath, name), root)] = None
        for name in filenames:
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, root)] = Path(path).read_bytes()
    return out
