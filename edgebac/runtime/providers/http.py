"""`http(s)://` inputs, streamed to disk under a size cap.

A checksum rides in the URL's fragment, which is never sent to the server:
`https://host/data.csv#sha256=HEX`. With one, the file is checked and kept in the node's cache
under its digest, so a repeat job does not download it again.

Every connection, the first and each redirect's (followed here, at most `MAX_REDIRECTS`), goes
only where the policy's `Destinations` allow: an address in the URL is checked before the
request, a name's resolved addresses by the session's resolver, which also serves aiohttp's
connection, so a name cannot resolve to one address when checked and another when used.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from edgebac.runtime.providers import Fetch, InputError, link_or_copy, too_big, used
from edgebac.runtime.providers.destinations import Destinations, address_of

CHUNK = 1 << 16
TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10, sock_connect=10, sock_read=60)
_SHA256 = re.compile(r"^sha256=([0-9a-fA-F]{64})$")
MAX_REDIRECTS = 10
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class _CheckedResolver(AbstractResolver):
    """Resolves as aiohttp would, keeping only the addresses `allowed` lets it connect to."""

    def __init__(self, allowed: Destinations) -> None:
        self.allowed = allowed
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        why = [self.allowed.refusal(host, port, item["host"]) for item in found]
        kept = [item for item, refused in zip(found, why, strict=True) if refused is None]
        if not kept:
            raise InputError(next((w for w in why if w), f"refused: {host} has no address"))
        return kept

    async def close(self) -> None:
        await self._inner.close()


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


async def stage(fetch: Fetch, allowed: Destinations) -> None:
    digest = expected_sha256(fetch.url)
    dest = fetch.dest / file_name(fetch.url)
    cached = fetch.cache / "http" / digest if digest else None
    if cached is not None and cached.is_file():
        link_or_copy(used(cached), dest)
        return
    got = await _download(fetch, dest, allowed)
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


def _check_literal(url: str, allowed: Destinations) -> None:
    """aiohttp does not resolve an address written in the URL: check it here."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"refused: redirect to {url!r}, not an http(s) URL")
    if address_of(parts.hostname) is not None:
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise InputError(f"refused: {url!r} has no valid port") from None
        refused = allowed.refusal(parts.hostname, port, parts.hostname)
        if refused is not None:
            raise InputError(refused)


async def _get(session: aiohttp.ClientSession, url: str, allowed: Destinations) -> Any:
    """The final response, redirects followed by hand so each hop's address is checked."""
    for _ in range(MAX_REDIRECTS + 1):
        _check_literal(url, allowed)
        response = await session.get(url, allow_redirects=False)
        if response.status not in _REDIRECTS or "Location" not in response.headers:
            return response
        response.release()
        url = urljoin(url, response.headers["Location"]).split("#", 1)[0]
    raise InputError(f"more than {MAX_REDIRECTS} redirects")


async def _download(fetch: Fetch, dest: Path, allowed: Destinations) -> str:
    """Stream the body to `dest`; returns its sha256 hex digest."""
    url = fetch.url.split("#", 1)[0]
    hasher = hashlib.sha256()
    connector = aiohttp.TCPConnector(resolver=_CheckedResolver(allowed))
    try:
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT, connector=connector) as session,
            await _get(session, url, allowed) as response,
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
