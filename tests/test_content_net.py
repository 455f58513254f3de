"""Serving and fetching content between real aiohttp servers on loopback sockets."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import tarfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from edgebac.api.app import errors_middleware
from edgebac.sinks.blockstore import BlockStore
from edgebac.sinks.car import read_car
from edgebac.sinks.cid import CID, RAW
from edgebac.sinks.errors import ContentUnavailable, CorruptBlock
from edgebac.sinks.fetch import Fetcher
from edgebac.sinks.serve import add_content_routes
from edgebac.sinks.unixfs import CHUNK_SIZE


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def content_app(store: BlockStore) -> web.Application:
    app = web.Application(middlewares=[errors_middleware])
    add_content_routes(app, store)
    return app


def liar_app() -> web.Application:
    """A peer that claims to hold everything and serves every block with one bit flipped."""

    async def head(request: web.Request) -> web.Response:
        return web.Response()

    async def block(request: web.Request) -> web.Response:
        return web.Response(body=b"\x00" * 64)

    app = web.Application()
    app.router.add_route("HEAD", "/api/v1/content/{cid}", head)
    app.router.add_get("/api/v1/blocks/{cid}", block)
    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    for name, data in {
        "stdout": b"out\n",
        "stderr": b"",
        "outputs/big.bin": os.urandom(3 * CHUNK_SIZE + 5),
        "outputs/ü.txt": b"u",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.fixture
def holder(tmp_path: Path, folder: Path) -> tuple[BlockStore, CID]:
    store = BlockStore(tmp_path / "a")
    return store, store.import_path(folder).cid


def _tree(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


async def test_content_routes(holder: tuple[BlockStore, CID], folder: Path, tmp_path: Path) -> None:
    store, root = holder
    big = store.import_path(folder / "outputs" / "big.bin").cid
    async with serving(content_app(store)) as url, aiohttp.ClientSession() as http:
        async with http.head(f"{url}/api/v1/content/{root}") as resp:
            assert resp.status == 200
        async with http.get(f"{url}/api/v1/content/{root}") as resp:
            assert resp.headers["Content-Type"] == "application/x-tar"
            with tarfile.open(fileobj=io.BytesIO(await resp.read())) as tar:
                tar.extractall(tmp_path / "x", filter="data")
        assert _tree(tmp_path / "x") == _tree(folder)
        async with http.get(f"{url}/api/v1/content/{big}") as resp:
            assert resp.content_length == 3 * CHUNK_SIZE + 5
            assert await resp.read() == (folder / "outputs" / "big.bin").read_bytes()
        async with http.get(f"{url}/api/v1/content/{root}?format=car") as resp:
            roots, blocks = read_car(io.BytesIO(await resp.read()))
            assert roots == [root]
            assert len(list(blocks)) == 10  # 2 folders, 3 small files, big.bin: node + 4 leaves
        async with http.get(f"{url}/api/v1/blocks/{root}") as resp:
            root.verify(await resp.read())


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/v1/content/bafynotacid", 400, "bad_cid"),
        ("/api/v1/content/QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", 400, "bad_cid"),
        (f"/api/v1/content/{CID.of(RAW, b'nobody')}", 404, "content_not_found"),
        (f"/api/v1/blocks/{CID.of(RAW, b'nobody')}", 404, "content_not_found"),
    ],
)
async def test_errors_have_the_one_shape(path: str, status: int, code: str, tmp_path: Path) -> None:
    async with (
        serving(content_app(BlockStore(tmp_path / "s"))) as url,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(url + path) as resp:
            assert resp.status == status
            body = await resp.json()
            assert body["error"]["code"] == code
            assert body["error"]["message"]
        async with http.head(url + path.replace("blocks", "content")) as resp:
            assert resp.status == status


async def test_bad_format_is_refused(holder: tuple[BlockStore, CID]) -> None:
    store, root = holder
    async with (
        serving(content_app(store)) as url,
        aiohttp.ClientSession() as http,
        http.get(f"{url}/api/v1/content/{root}?format=zip") as resp,
    ):
        assert resp.status == 400
        assert "format" in (await resp.json())["error"]["message"]


async def test_fetch_from_a_peer(
    holder: tuple[BlockStore, CID], folder: Path, tmp_path: Path
) -> None:
    store, root = holder
    mine = BlockStore(tmp_path / "b")
    async with serving(content_app(store)) as url, Fetcher(mine) as fetcher:
        result = await fetcher.fetch(str(root), [url])
        assert result.blocks_fetched == 10
        assert not result.dropped
        assert mine.holds(root)
        again = await fetcher.fetch(root, [url])
        assert again.blocks_fetched == 0  # held already
    mine.export_to(root, tmp_path / "out")
    assert _tree(tmp_path / "out") == _tree(folder)


async def test_corrupt_peer_is_dropped_and_another_holder_used(
    holder: tuple[BlockStore, CID], folder: Path, tmp_path: Path
) -> None:
    store, root = holder
    mine = BlockStore(tmp_path / "b")
    async with serving(liar_app()) as liar, serving(content_app(store)) as good:
        peers = [liar, good] if int.from_bytes(root.digest[:4], "big") % 2 == 0 else [good, liar]
        async with Fetcher(mine) as fetcher:  # the root block is asked of the liar first
            result = await fetcher.fetch(root, peers)
    assert result.dropped == {liar: f"served a corrupt block {root}"}
    mine.export_to(root, tmp_path / "out")
    assert _tree(tmp_path / "out") == _tree(folder)


async def test_only_corrupt_or_missing_peers_give_a_clear_error(
    holder: tuple[BlockStore, CID], tmp_path: Path
) -> None:
    _, root = holder
    empty = BlockStore(tmp_path / "empty")
    dead = f"http://127.0.0.1:{free_port()}"
    async with (
        serving(liar_app()) as liar,
        serving(content_app(empty)) as lacking,
        Fetcher(BlockStore(tmp_path / "b")) as fetcher,
    ):
        started = time.monotonic()
        with pytest.raises(ContentUnavailable) as caught:
            await fetcher.fetch(root, [liar, lacking, dead], wait=1.0)
        assert time.monotonic() - started < 10
    message = str(caught.value)
    assert str(root) in message
    assert f"{liar}: served a corrupt block" in message
    assert f"{lacking}: answered 404" in message
    assert f"{dead}: unreachable" in message


async def test_no_peers_at_all(tmp_path: Path) -> None:
    async with Fetcher(BlockStore(tmp_path / "b")) as fetcher:
        with pytest.raises(ContentUnavailable, match="no peers"):
            await fetcher.fetch(CID.of(RAW, b"x"), [], wait=0.2)


async def test_damaged_local_block_is_fetched_again(
    holder: tuple[BlockStore, CID], folder: Path, tmp_path: Path
) -> None:
    store, root = holder
    mine = BlockStore(tmp_path / "b")
    mine.import_path(folder)
    leaf = CID.of(RAW, b"out\n")
    (mine.root / "blocks" / str(leaf)[-3:-1] / str(leaf)).write_bytes(b"bad\n")
    with pytest.raises(CorruptBlock):  # found when read: removed, and the DAG no longer held
        mine.export_to(root, tmp_path / "out")
    async with serving(content_app(store)) as url, Fetcher(mine) as fetcher:
        result = await fetcher.fetch(root, [url])
    assert result.blocks_fetched == 1
    assert mine.get_block(leaf) == b"out\n"


async def test_a_stream_that_meets_a_damaged_block_is_cut_short(
    holder: tuple[BlockStore, CID], folder: Path
) -> None:
    store, _ = holder
    big = store.import_path(folder / "outputs" / "big.bin").cid
    tail = (folder / "outputs" / "big.bin").read_bytes()[3 * CHUNK_SIZE :]
    leaf = store.root / "blocks" / str(CID.of(RAW, tail))[-3:-1] / str(CID.of(RAW, tail))
    async with serving(content_app(store)) as url, aiohttp.ClientSession() as http:
        for query in ("", "?format=tar", "?format=car"):
            store.put(CID.of(RAW, tail), tail)
            assert store.holds(big)
            leaf.write_bytes(b"xxxxx")  # damaged after the node said it holds the DAG
            async with http.get(f"{url}/api/v1/content/{big}{query}") as resp:
                assert resp.status == 200
                with pytest.raises(aiohttp.ClientPayloadError):
                    await resp.read()
