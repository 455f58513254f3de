"""`POST /api/v1/content`: a client puts a file (or a CAR of a folder) into this node's store.

So that a wasm module or a large input travels as content, fetched block-verified by the
compute nodes, instead of inline in a `JobCreated` that every node keeps forever. The body
streams to a temp file in the store (never held in memory), hashed as it comes; only a body
that hashes to the sha256 the caller named (`Edgebac-Content-Sha256`; a signed call signs that
digest in place of the body, see `auth.STREAMED`) is imported, so a refused upload stores no
block. What is put here is pinned: retention keeps it.

- `Content-Type: application/octet-stream` (or none): one file; `?name=FILE` wraps it in a
  folder as FILE (what `ipfs-car pack FILE` gives; without a name, `ipfs-car pack --no-wrap`).
- `Content-Type: application/vnd.ipld.car`: a CAR of one whole DAG, its root pinned.

The node's cap (`EDGEBAC_MAX_UPLOAD`, default 1 GiB), the caller's quota (`EDGEBAC_UPLOAD_QUOTA`,
default 4 GiB, and at most MAX_PINS uploads, of what its pins hold: `sinks.pins`) and its free
disk (twice the body: the temp file and its blocks) are checked against Content-Length before
a byte is read. Pins go with retention (`--retain`): a caller's quota frees as its uploads age.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, BinaryIO

from aiohttp import ClientPayloadError, web

from edgebac.api import auth
from edgebac.api.protocol import served_node
from edgebac.errors import BadRequest, ConfigError, EdgebacError
from edgebac.eventlog.callsig import DIGEST_HEADER, HEADER, CallRefused
from edgebac.scheduler.quantities import format_size, parse_size
from edgebac.sinks.blockstore import BlockStore
from edgebac.sinks.errors import WriteFailed
from edgebac.sinks.pins import Usage
from edgebac.sinks.serve import CAR_TYPE

PATH = "/api/v1/content"
DEFAULT_MAX_UPLOAD = 1 << 30
DEFAULT_QUOTA = 4 << 30  # what one caller's pins may hold
MAX_PINS = 10_000  # uploads one caller's pins may count: each costs a marker file
FREE_RESERVE = 256 << 20  # left free after an upload: the log and running jobs need disk too
CHUNK = 1 << 20
MAX_UPLOAD_KEY: web.AppKey[int] = web.AppKey("max_upload_bytes", int)
QUOTA_KEY: web.AppKey[int] = web.AppKey("upload_quota_bytes", int)


class InFlight:
    """Disk promised to uploads still arriving: concurrent uploads each pass the free-disk
    check (and each caller's quota) only with room for all of them (one event loop: no lock)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.by_owner: dict[str, int] = {}


IN_FLIGHT_KEY: web.AppKey[InFlight] = web.AppKey("uploads_in_flight", InFlight)
FILE_TYPES = ("application/octet-stream", "")


class TooLarge(EdgebacError):
    code = "too_large"
    http_status = 413


class NoSpace(EdgebacError):
    code = "no_space"
    http_status = 507


class OverQuota(EdgebacError):
    code = "over_quota"
    http_status = 413


class LengthRequired(EdgebacError):
    code = "length_required"
    http_status = 411


class DigestMismatch(BadRequest):
    code = "digest_mismatch"


def max_upload(environ: Any = os.environ) -> int:
    """The node's cap on one upload: `EDGEBAC_MAX_UPLOAD` (a size: `64Mi`, `2G`) or 1 GiB."""
    return _size_setting(environ, "EDGEBAC_MAX_UPLOAD", DEFAULT_MAX_UPLOAD)


def upload_quota(environ: Any = os.environ) -> int:
    """What one caller's pinned uploads may hold: `EDGEBAC_UPLOAD_QUOTA` or 4 GiB."""
    return _size_setting(environ, "EDGEBAC_UPLOAD_QUOTA", DEFAULT_QUOTA)


def _size_setting(environ: Any, name: str, default: int) -> int:
    text = environ.get(name)
    if not text:
        return default
    size = parse_size(text)
    if not size:
        raise ConfigError(f"{name}: {text!r} is not a size (e.g. 512Mi, 2G)")
    return size


def check_quota(owner: str, usage: Usage, length: int, quota: int, arriving: int = 0) -> None:
    """OverQuota unless `owner`'s pins (`usage`, and its uploads still `arriving`) leave room
    for `length` more bytes and one more upload."""
    held = usage.bytes + arriving
    if held + length > quota:
        raise OverQuota(
            f"{owner}'s uploads on this node hold {format_size(held)} of its "
            f"{format_size(quota)} quota (EDGEBAC_UPLOAD_QUOTA): {format_size(length)} more "
            "does not fit; uploads are let go of as the node's retention (--retain) passes them"
        )
    if usage.pins >= MAX_PINS:
        raise OverQuota(f"{owner} has {usage.pins:,} uploads on this node, the most it keeps")


def add_upload_routes(
    app: web.Application, max_bytes: int | None = None, quota: int | None = None
) -> None:
    app[MAX_UPLOAD_KEY] = max_bytes if max_bytes is not None else max_upload()
    app[QUOTA_KEY] = quota if quota is not None else upload_quota()
    app[IN_FLIGHT_KEY] = InFlight()
    app.router.add_post(PATH, post_content)  # its rule: auth.NEEDS (submit), auth.STREAMED


def upload_name(request: web.Request) -> str | None:
    """`?name=`: one file name (the importer refuses what is not), or None."""
    name = request.query.get("name")
    if name is not None and (len(name.encode()) > 255 or name in ("", ".", "..") or "/" in name):
        raise BadRequest(f"name {name[:80]!r}: one file name, at most 255 bytes, no '/'")
    return name


def check_room(length: int | None, limit: int, root: Path, promised: int = 0) -> int:
    """The body's length, once it is known to fit the cap and the disk (less what uploads
    under way were `promised`)."""
    if length is None:
        raise LengthRequired("an upload says its size in Content-Length (no chunked bodies)")
    if length > limit:
        raise TooLarge(
            f"the upload is {format_size(length)}, more than this node takes "
            f"({format_size(limit)}, EDGEBAC_MAX_UPLOAD)"
        )
    free = shutil.disk_usage(root).free - promised
    if free < 2 * length + FREE_RESERVE:
        raise NoSpace(
            f"this node has {format_size(max(free, 0))} free (less uploads under way), too "
            f"little for an upload of "
            f"{format_size(length)} (it needs twice that, and {format_size(FREE_RESERVE)} spare)"
        )
    return length


def expected_digest(request: web.Request) -> bytes | None:
    """The sha256 the body must have: what a signed call signed (the front door checked it;
    an empty body's without the header), or what another caller's header says, if any."""
    if DIGEST_HEADER not in request.headers and HEADER not in request.headers:
        return None
    try:
        return auth.claimed_digest(request)
    except CallRefused as exc:
        raise BadRequest(str(exc)) from None


async def receive(request: web.Request, dest: Path) -> tuple[int, bytes]:
    """Stream the body into `dest`: (bytes, sha256). A body cut short or a disk that fills
    up is the upload's failure, said in the one error shape (not a 500)."""
    digest = hashlib.sha256()
    size = 0
    try:
        stream: BinaryIO = await asyncio.to_thread(open, dest, "wb")
        try:
            async for chunk in request.content.iter_chunked(CHUNK):
                size += len(chunk)
                digest.update(chunk)
                await asyncio.to_thread(stream.write, chunk)
        finally:
            await asyncio.to_thread(stream.close)
    except ClientPayloadError:
        raise BadRequest(f"the body was cut short after {size} bytes") from None
    except OSError as exc:
        if isinstance(exc, ConnectionError):
            raise  # the client left: counted, not reported (api/gone.py)
        raise storage_error(exc) from None
    return size, digest.digest()


def storage_error(exc: OSError) -> EdgebacError:
    error = NoSpace if exc.errno in (errno.ENOSPC, errno.EDQUOT) else WriteFailed
    return error(f"cannot store the upload: {exc.strerror or exc}")


def _usage(store: BlockStore, owner: str, sha256: bytes | None) -> tuple[Usage, bool]:
    again = sha256 is not None and store.pins.holds_for(owner, sha256.hex())
    return store.pins.usage(owner), again


def import_into(
    store: BlockStore, temp: Path, car: bool, name: str | None, owner: str, sha256: str
) -> dict[str, Any]:
    """Import the received body (in a thread), pinned for `owner`: its CID (and a file's
    size)."""
    try:
        if car:
            return {"cid": str(store.import_car_upload(temp, owner, sha256))}
        link = store.import_upload(temp, name, owner, sha256)
    except OSError as exc:
        raise storage_error(exc) from None
    return {"cid": str(link.cid), "size": link.size}


async def post_content(request: web.Request) -> web.Response:
    store = served_node(request).content.store
    car = request.content_type == CAR_TYPE
    if not car and request.content_type not in FILE_TYPES:
        raise BadRequest(f"Content-Type: {FILE_TYPES[0]} (a file) or {CAR_TYPE} (a CAR)")
    name = upload_name(request)
    if car and name is not None:
        raise BadRequest("?name wraps a file; a CAR names its own root")
    expected = expected_digest(request)
    in_flight = request.app[IN_FLIGHT_KEY]
    limit = request.app[MAX_UPLOAD_KEY]
    length = check_room(request.content_length, limit, store.root, in_flight.bytes)
    owner = auth.caller_of(request).name
    usage, again = await asyncio.to_thread(_usage, store, owner, expected)
    arriving = in_flight.by_owner.get(owner, 0)
    if not again:  # a body it pinned already (its digest says so) charges nothing more
        check_quota(owner, usage, length, request.app[QUOTA_KEY], arriving)
    temp = store.temp_path()
    in_flight.bytes += 2 * length
    in_flight.by_owner[owner] = arriving + length
    try:
        size, digest = await receive(request, temp)
        if size != length:  # aiohttp ends the body at Content-Length; a cut one is shorter
            raise BadRequest(f"the body ended after {size} of {length} bytes")
        if expected is not None and digest != expected:
            raise DigestMismatch(
                f"the body's sha256 is {digest.hex()}, not {expected.hex()} as "
                f"{DIGEST_HEADER} said (altered on the way?): nothing was stored"
            )
        answer = await asyncio.to_thread(import_into, store, temp, car, name, owner, digest.hex())
    finally:
        in_flight.bytes -= 2 * length
        if (left := in_flight.by_owner[owner] - length) > 0:
            in_flight.by_owner[owner] = left
        else:
            del in_flight.by_owner[owner]
        temp.unlink(missing_ok=True)
    return web.json_response({**answer, "sha256": digest.hex(), "pinned": True}, status=201)
