"""`http(s)://` inputs, streamed to disk under a size cap.

A checksum rides in the URL's fragment, which is never sent to the server:
`https://host/data.csv#sha256=HEX`. With one, the file is checked and kept in the node's cache
under its digest, so a repeat job does not download it again.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiohttp

from edgebac.runtime.providers import Fetch, InputError, link_or_copy, too_big

CHUNK = 1 << 16
TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10, sock_connect=10, sock_read=60)
_SHA256 = re.compile(r"^sha256=([0-9a-fA-F]{64})$")


def file_name(url: str) -> str:
    """The file's name in the input folder: the URL path's last segment, or `download`."""
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        return "download"
    return name


def expected_sha256(url: str) -> str | None:
    fragment = urlsplit(url).fragment
    if not fragment:
        return None
    match = _SHA256.match(fragment)
    if match is None:
        raise InputError(f"unknown checksum {fragment!r} (use #sha256=HEX)")
    return match.group(1).lower()


async def stage(fetch: Fetch) -> None:
    digest = expected_sha256(fetch.url)
    dest = fetch.dest / file_name(fetch.url)
    cached = fetch.cache / "http" / digest if digest else None
    if cached is not None and cached.is_file():
        link_or_copy(cached, dest)
        return
    got = await _download(fetch, dest)
    if digest is not None:
        if got != digest:
            _discard(dest)
            raise InputError(f"checksum mismatch: got sha256 {got}, expected {digest}")
        assert cached is not None
        cached.parent.mkdir(parents=True, exist_ok=True)
        _keep(dest, cached)


def _keep(path: Path, cached: Path) -> None:
    """Link the checked file into the cache atomically (a concurrent twin may win; fine)."""
    fd, temp = tempfile.mkstemp(dir=cached.parent)
    os.close(fd)
    os.unlink(temp)
    try:
        link_or_copy(path, Path(temp))
        os.replace(temp, cached)
    finally:
        Path(temp).unlink(missing_ok=True)


async def _download(fetch: Fetch, dest: Path) -> str:
    """Stream the body to `dest`; returns its sha256 hex digest."""
    url = fetch.url.split("#", 1)[0]
    hasher = hashlib.sha256()
    try:
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as session,
            session.get(url) as response,
        ):
            if response.status != 200:
                raise InputError(f"HTTP {response.status} {response.reason or ''}".rstrip())
            length = response.content_length
            if length is not None and length > fetch.max_bytes:
                raise too_big(length, fetch.max_bytes)
            size = 0
            with dest.open("wb") as out:
                async for chunk in response.content.iter_chunked(CHUNK):
                    size += len(chunk)
                    if size > fetch.max_bytes:
                        raise too_big(size, fetch.max_bytes)
                    hasher.update(chunk)
                    out.write(chunk)
    except InputError:
        _discard(dest)
        raise
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        _discard(dest)
        raise InputError(f"download failed: {exc or type(exc).__name__}") from None
    return hasher.hexdigest()


def _discard(path: Path) -> None:
    path.unlink(missing_ok=True)
