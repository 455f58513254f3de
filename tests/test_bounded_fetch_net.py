"""Downloads are bounded: crafted DAGs (made with the project's own encoders, served by a real
content server on loopback) that claim more than they hold, or more than a cap, are refused
before more than the cap is written; a normal result still downloads."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from edgebac.sinks.blockstore import BlockStore
from edgebac.sinks.cid import CID, DAG_PB, RAW
from edgebac.sinks.dagpb import DIRECTORY, FILE, PBLink, UnixFSData, encode_node, encode_unixfs
from edgebac.sinks.errors import BadContent, WriteFailed
from edgebac.sinks.exporter import ContentTooLarge, write_tree
from edgebac.sinks.fetch import Fetcher
from edgebac.sinks.unixfs import CHUNK_SIZE
from tests.procs import run_edgebac
from tests.test_content_net import content_app, serving

LEAF = 64 * 1024


def put(store: BlockStore, codec: int, block: bytes) -> CID:
    cid = CID.of(codec, block)
    store.put(cid, block)
    return cid


def file_node(store: BlockStore, parts: list[tuple[CID, int]], filesize: int) -> CID:
    """A UnixFS file node linking `parts` (cid, declared size) and declaring `filesize`."""
    meta = UnixFSData(FILE, filesize=filesize, blocksizes=tuple(n for _, n in parts))
    links = [PBLink(cid, "", n) for cid, n in parts]
    return put(store, DAG_PB, encode_node(links, encode_unixfs(meta)))


def folder(store: BlockStore, entries: dict[str, CID]) -> CID:
    links = [PBLink(cid, name, 0) for name, cid in entries.items()]
    return put(store, DAG_PB, encode_node(links, encode_unixfs(UnixFSData(DIRECTORY))))


def repeated(store: BlockStore, levels: int) -> tuple[CID, int]:
    """A file of one 64 KiB leaf linked 1024 times per level: about 150 KB of blocks that
    declare, honestly, 64 KiB * 1024**levels."""
    cid, size = put(store, RAW, b"x" * LEAF), LEAF
    for _ in range(levels):
        cid, size = file_node(store, [(cid, size)] * 1024, size * 1024), size * 1024
    return cid, size


def written(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0


async def fetched(holder: BlockStore, root: CID, tmp_path: Path, **kw: Any) -> BlockStore:
    store = BlockStore(tmp_path / "here")
    async with serving(content_app(holder)) as url, Fetcher(store) as fetcher:
        await fetcher.fetch(root, [url], wait=2.0, **kw)
    return store


async def test_a_file_holding_more_than_it_declares_stops_at_its_size(tmp_path: Path) -> None:
    holder = BlockStore(tmp_path / "there")
    leaf = put(holder, RAW, os.urandom(LEAF))
    small = file_node(holder, [(leaf, 10)], 10)  # says 10 bytes, links 64 KiB
    split = file_node(holder, [(leaf, 10), (leaf, 10)], 40)  # sizes that do not add up
    root = folder(holder, {"small": small, "split": split})
    store = await fetched(holder, root, tmp_path)
    for name, cid, why in [("small", small, "declared as 10"), ("split", split, "declares 40")]:
        out = tmp_path / name
        with pytest.raises(BadContent, match=why):
            write_tree(store.get_block, cid, out)
        assert written(out) == 0  # refused before a byte past the declared size


async def test_a_small_dag_declaring_more_than_the_cap_is_refused(tmp_path: Path) -> None:
    holder = BlockStore(tmp_path / "there")
    huge, size = repeated(holder, 2)  # 64 GiB declared, more than the 10 GiB default cap
    vast, _ = repeated(holder, 3)  # 64 TiB: more than any disk here
    root = folder(holder, {"huge": huge, "vast": vast})
    store = await fetched(holder, root, tmp_path)
    out = tmp_path / "out"
    with pytest.raises(ContentTooLarge, match="limit of 10,737,418,240 bytes"):
        write_tree(store.get_block, root, out)
    with pytest.raises(ContentTooLarge, match="limit of 1,000,000 bytes"):
        write_tree(store.get_block, huge, out, limit=1_000_000)
    with pytest.raises(WriteFailed, match=r"bytes do not fit in the [\d,]+ bytes free"):
        write_tree(store.get_block, vast, out, limit=None)
    assert written(out) == 0
    assert size == 64 << 30


async def test_fetch_stops_at_max_bytes(tmp_path: Path) -> None:
    holder = BlockStore(tmp_path / "there")
    root = holder.import_files({"big": os.urandom(3 * CHUNK_SIZE)}).cid
    with pytest.raises(ContentTooLarge, match="limit of 1,500,000 bytes of blocks"):
        await fetched(holder, root, tmp_path, max_bytes=1_500_000)
    assert written(tmp_path / "here") <= 1_500_000
    store = await fetched(holder, root, tmp_path, max_bytes=4 * CHUNK_SIZE)
    assert store.holds(root)


def results_app(holder: BlockStore, results: dict[str, dict[str, Any]]) -> web.Application:
    """A requester's results route and content routes, nothing else: what `job get` reads."""

    async def job_results(request: web.Request) -> web.Response:
        job = request.match_info["job_id"]
        result = {"node": "n1", "holders": [], **results[job], "execution_id": f"e-{job}"}
        return web.json_response({"job_id": job, "status": "completed", "results": [result]})

    app = content_app(holder)
    app.router.add_get("/api/v1/jobs/{job_id}/results", job_results)
    return app


async def test_job_get_is_bounded_and_still_gets_a_normal_result(tmp_path: Path) -> None:
    holder = BlockStore(tmp_path / "there")
    files = {"stdout": b"ok\n", "data.bin": os.urandom(2 * CHUNK_SIZE + 7)}
    normal = holder.import_files(files)
    huge = folder(holder, {"stdout": repeated(holder, 2)[0]})
    results = {
        "normal": {"reference": str(normal.cid), "digest": str(normal.cid), "size": normal.size},
        "lied": {"reference": str(huge), "digest": str(huge), "size": 1000},
        "recorded": {"reference": str(huge), "digest": str(huge), "size": 64 << 30},
    }
    async with serving(results_app(holder, results)) as api:

        async def get(job: str, *flags: str) -> Any:
            out = tmp_path / job
            args = ("job", "get", job, "--output-dir", out, "--api", api, *flags)
            return await asyncio.to_thread(run_edgebac, *args), out

        done, out = await get("normal")
        assert done.returncode == 0, done.stderr
        assert (out / "e-normal" / "data.bin").read_bytes() == files["data.bin"]
        lied, out = await get("lied")
        assert lied.returncode == 1
        assert "declares more than the limit of 1,000" in lied.stderr
        assert written(out) <= 1000 + 200_000  # the blocks fetched, no file bytes
        recorded, out = await get("recorded")
        assert recorded.returncode == 1
        assert "68,719,476,736 bytes, more than --max-size 10,737,418,240" in recorded.stderr
        capped, out = await get("normal", "--max-size", "1M")
        assert capped.returncode == 1
        assert "more than --max-size 1,048,576" in capped.stderr
        assert written(out) == 0


async def test_an_input_dag_past_the_cap_is_an_input_error(tmp_path: Path) -> None:
    """Staging an `ipfs://` input that declares more than the cap fails the execution with an
    input error that says so, not an internal one."""
    from edgebac.runtime.providers import InputError
    from edgebac.sinks.service import ContentService

    holder = BlockStore(tmp_path / "there")
    huge, _ = repeated(holder, 2)  # 64 GiB declared
    async with serving(content_app(holder)) as url:
        service = ContentService(tmp_path / "here", lambda cid: [url], lambda: None)
        with pytest.raises(InputError, match="limit of 10,737,418,240 bytes"):
            await service.stage(f"ipfs://{huge}", tmp_path / "in", wait_s=2.0)
    assert written(tmp_path / "in") == 0
