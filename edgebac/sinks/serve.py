"""HTTP routes that serve the block store (aiohttp).

- `GET /api/v1/content/{cid}`: a file's bytes, or a tar of a folder's content;
  `?format=tar` forces a tar (a lone file is named by its CID), `?format=car` gives a CARv1
  of the whole DAG. 404 unless this node holds the whole DAG.
- `HEAD /api/v1/content/{cid}`: 200 if this node holds the whole DAG, else 404.
- `GET /api/v1/blocks/{cid}`: one raw block (`HEAD`: whether the block is here).

Every block is verified as it is read; a damaged block is never sent (the store removes
it), so a stream that meets one is cut short and the client's own verification fails.
Errors are EdgebacError subclasses, for the app's one error renderer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

from aiohttp import web

from edgebac.errors import BadRequest
from edgebac.sinks.blockstore import BlockStore
from edgebac.sinks.cid import CID
from edgebac.sinks.errors import ContentNotFound, CorruptBlock

log = logging.getLogger(__name__)
STORE_KEY: web.AppKey[BlockStore] = web.AppKey("content_store", BlockStore)
BATCH = 1024 * 1024  # bytes gathered per thread hop when streaming
CAR_TYPE = "application/vnd.ipld.car"
RAW_TYPE = "application/vnd.ipld.raw"


def add_content_routes(app: web.Application, store: BlockStore) -> None:
    """Serve `store` from `app` (call before the app starts)."""
    app[STORE_KEY] = store
    app.router.add_route("GET", "/api/v1/content/{cid}", get_content)
    app.router.add_route("HEAD", "/api/v1/content/{cid}", head_content)
    app.router.add_route("GET", "/api/v1/blocks/{cid}", get_block)
    app.router.add_route("HEAD", "/api/v1/blocks/{cid}", head_block)


def _cid(request: web.Request) -> CID:
    return CID.parse(request.match_info["cid"])


async def head_content(request: web.Request) -> web.Response:
    held = await asyncio.to_thread(request.app[STORE_KEY].holds, _cid(request))
    return web.Response(status=200 if held else 404)


async def head_block(request: web.Request) -> web.Response:
    held = await asyncio.to_thread(request.app[STORE_KEY].has, _cid(request))
    return web.Response(status=200 if held else 404)


async def get_block(request: web.Request) -> web.Response:
    cid = _cid(request)
    try:
        data = await asyncio.to_thread(request.app[STORE_KEY].get_block, cid)
    except CorruptBlock:
        raise ContentNotFound(f"block {cid} was damaged on this node and was removed") from None
    return web.Response(body=data, content_type=RAW_TYPE)


async def get_content(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE_KEY]
    cid = _cid(request)
    fmt = request.query.get("format", "")
    if fmt not in ("", "tar", "car"):
        raise BadRequest(f"format must be tar or car, not {fmt!r}")
    if not await asyncio.to_thread(store.holds, cid):
        raise ContentNotFound(f"content {cid} is not held by this node")
    headers = {"X-Content-Cid": str(cid)}
    if fmt == "car":
        chunks, ctype, length = store.export_car(cid), CAR_TYPE, None
    else:
        item = await asyncio.to_thread(store.stat, cid)
        headers["X-Content-Kind"] = item.kind
        if item.kind == "file" and fmt != "tar":
            chunks, ctype, length = store.export_file(cid), "application/octet-stream", item.size
        else:
            chunks, ctype, length = store.export_tar(cid), "application/x-tar", None
    return await stream_chunks(request, chunks, ctype, length, headers)


def _next_batch(chunks: Iterator[bytes]) -> list[bytes]:
    batch, size = [], 0
    for piece in chunks:
        batch.append(piece)
        size += len(piece)
        if size >= BATCH:
            break
    return batch


async def stream_chunks(
    request: web.Request,
    chunks: Iterator[bytes],
    content_type: str,
    length: int | None,
    headers: dict[str, str],
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": content_type, **headers})
    if length is not None:
        response.content_length = length
    first = await asyncio.to_thread(_next_batch, chunks)  # errors before any byte get a status
    await response.prepare(request)
    batch = first
    while batch:
        for piece in batch:
            await response.write(piece)
        try:
            batch = await asyncio.to_thread(_next_batch, chunks)
        except Exception:
            log.exception("streaming %s stopped; cutting the response short", request.path)
            if request.transport is not None:
                request.transport.close()  # so no client mistakes the cut for a whole body
            return response
    await response.write_eof()
    return response
