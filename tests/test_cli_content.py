"""What `wasm run` and `-i` upload instead of inlining, and the store's side of an upload:
pure decisions from tables, imports against the store's own `import_path` (ipfs-car's CIDs)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgebac.cli.content import INLINE_MAX, local_path, module_source, pack_car, upload_input
from edgebac.errors import BadRequest
from edgebac.sinks.blockstore import BlockStore
from edgebac.sinks.car import block_prefix, car_header
from edgebac.sinks.errors import BadContent


class Recorder:
    """Stands in for the API node: says which upload each input asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def file(self, path: Path, name: str | None = None) -> str:
        self.calls.append(("file", path.name, name))
        return "ipfs://FILE"

    def data(self, data: bytes, name: str) -> str:
        self.calls.append(("data", len(data), name))
        return "ipfs://DATA"

    def folder(self, path: Path) -> str:
        self.calls.append(("folder", path.name))
        return "ipfs://DIR"


BIG = "x" * INLINE_MAX


@pytest.mark.parametrize(
    ("item", "expect", "call"),
    [
        ({"source": "inline:small", "target": "/in"}, None, None),
        ({"source": "s3://b/k", "target": "/in"}, None, None),
        ({"source": "/srv/data", "target": "/in"}, None, None),  # a path on the compute node
        ({"source": "ipfs://bafyx", "target": "/in"}, None, None),
        ({"source": "nothere.csv", "target": "/in"}, None, None),  # the spec says what is wrong
        (
            {"source": f"inline:{BIG}", "target": "/in"},
            {"source": "ipfs://DATA", "target": "/in"},
            ("data", INLINE_MAX, "inline"),
        ),
        (
            {"source": f"inline:{BIG}", "target": "/in", "name": "a.csv"},
            {"source": "ipfs://DATA", "target": "/in"},
            ("data", INLINE_MAX, "a.csv"),
        ),
        (
            {"source": "data.csv", "target": "/in"},
            {"source": "ipfs://FILE", "target": "/in"},
            ("file", "data.csv", "data.csv"),
        ),
        (
            {"source": "data.csv", "target": "/in/renamed.csv"},
            {"source": "ipfs://FILE", "target": "/in"},
            ("file", "data.csv", "renamed.csv"),
        ),
        (
            {"source": "folder", "target": "/in"},
            {"source": "ipfs://DIR", "target": "/in"},
            ("folder", "folder"),
        ),
    ],
)
def test_which_inputs_are_uploaded_and_where_the_job_finds_them(
    item, expect, call, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    Path("data.csv").write_text("a,b\n")
    Path("folder").mkdir()
    (Path("folder") / "f").write_text("f")
    recorder = Recorder()
    assert upload_input(item, recorder) == (expect or item)
    assert recorder.calls == ([call] if call else [])


def test_a_small_module_stays_inline_and_a_big_one_is_uploaded(tmp_path):
    small, big = tmp_path / "small.wasm", tmp_path / "big.wasm"
    small.write_bytes(b"\0asm\1\0\0\0")
    big.write_bytes(b"\0asm\1\0\0\0" + bytes(INLINE_MAX))
    recorder = Recorder()
    assert module_source(str(small), recorder).startswith("inline:base64:")
    assert module_source(str(big), recorder) == "ipfs://FILE"
    assert recorder.calls == [("file", "big.wasm", None)]
    with pytest.raises(BadRequest, match="too big to send inline"):
        module_source(str(big))


def test_local_paths_are_relative_ones_that_exist_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("here.txt").write_text("x")
    assert local_path("here.txt") == Path("here.txt")
    for not_local in ("/etc/hostname", "inline:here.txt", "https://h/here.txt", "gone.txt", ""):
        assert local_path(not_local) is None


names = st.text(st.characters(codec="utf-8", exclude_characters="/\0"), min_size=1, max_size=8)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.dictionaries(names.filter(lambda n: n not in (".", "..")), st.binary(), min_size=1))
def test_a_packed_folder_uploads_as_the_dag_the_store_imports(tmp_path_factory, files):
    folder = tmp_path_factory.mktemp("folder")
    for name, data in files.items():
        (folder / name).write_bytes(data)
    car = io.BytesIO()
    pack_car(folder, car)
    upload = tmp_path_factory.mktemp("up") / "car"
    upload.write_bytes(car.getvalue())
    store = BlockStore(tmp_path_factory.mktemp("store"))
    root = store.import_car_upload(upload)
    assert root == BlockStore(tmp_path_factory.mktemp("ref")).import_path(folder).cid
    assert store.pinned() == [root]


def test_an_uploaded_file_named_is_the_folder_ipfs_car_packs_and_is_pinned(tmp_path):
    (tmp_path / "in").mkdir()
    body = tmp_path / "in" / "data.csv"
    body.write_bytes(b"a,b\n" * 300_000)  # more than one 1 MiB leaf
    store = BlockStore(tmp_path / "store")
    named = store.import_upload(body, "data.csv")
    bare = store.import_upload(body)
    reference = BlockStore(tmp_path / "ref")
    assert named.cid == reference.import_path(tmp_path / "in").cid  # ipfs-car pack FILE
    assert bare.cid == reference.import_path(body).cid  # ipfs-car pack --no-wrap FILE
    assert store.pinned() == sorted([named.cid, bare.cid], key=str)
    (store.root / "pinned" / "stray").touch()  # not a CID: names nothing
    assert len(store.pinned()) == 2
    with pytest.raises(BadContent):
        store.import_upload(body, "a/b")


def test_a_car_missing_blocks_of_its_dag_is_refused_and_pins_nothing(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    for name in ("a", "b"):
        (folder / name).write_bytes(name.encode() * 10)
    reference = BlockStore(tmp_path / "ref")
    root = reference.import_path(folder).cid
    block = reference.get_block(root)  # the folder's node, without its files' blocks
    cut = tmp_path / "cut.car"
    cut.write_bytes(car_header([root]) + block_prefix(root, len(block)) + block)
    store = BlockStore(tmp_path / "store")
    with pytest.raises(BadContent, match="lacks blocks"):
        store.import_car_upload(cut)
    assert store.pinned() == []
