"""Fetch a DAG by CID from peers over HTTP, block by block, verifying every block.

`Fetcher(store).fetch(cid, peers)` asks every peer (`http://host:port`) whether it holds the
whole DAG (`HEAD /api/v1/content/{cid}`), then pulls the blocks it lacks from those holders
(`GET /api/v1/blocks/{cid}`), several at once, spreading blocks across holders. A block that
does not hash to its CID is refused and its peer is dropped for the rest of the fetch; a
peer that fails to answer is dropped too; the block is then asked of another holder. When no
holder is left, peers are asked again with backoff until `wait` seconds have passed, then
ContentUnavailable says who was asked and why each one failed. The blocks fetched may not pass
`max_bytes` in all (ContentTooLarge before the block that would pass it is stored), since a peer
chooses how large a DAG it serves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import urlencode, urlsplit

import aiohttp
from yarl import URL

from edgebac.errors import BadRequest
from edgebac.gossip.bodies import read_body
from edgebac.sinks.blockstore import MAX_BLOCK_SIZE, BlockStore
from edgebac.sinks.cid import CID
from edgebac.sinks.errors import ContentNotFound, ContentUnavailable, CorruptBlock
from edgebac.sinks.exporter import DEFAULT_MAX_BYTES, ContentTooLarge, links_of

log = logging.getLogger(__name__)


@dataclass
class FetchResult:
    cid: CID
    blocks_fetched: int = 0
    bytes_fetched: int = 0
    dropped: dict[str, str] = field(default_factory=dict)  # peer -> why it was dropped


def normalize_peer(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadRequest(f"peer {url!r} is not an http://host:port URL")
    return f"{parts.scheme}://{parts.netloc}"


class _Run:
    """One fetch: the peers, who was dropped and why, and the blocks still to get."""

    def __init__(
        self, fetcher: Fetcher, root: CID, peers: list[str], wait: float, max_bytes: int | None
    ) -> None:
        self.fetcher, self.root, self.peers = fetcher, root, peers
        self.max_bytes = max_bytes
        self.deadline = time.monotonic() + wait
        self.result = FetchResult(root)
        self.holders: list[str] = []
        self.misses: dict[str, str] = {}
        self._probing: asyncio.Lock = asyncio.Lock()

    def _why(self) -> str:
        reasons = {**self.misses, **self.result.dropped}
        return "; ".join(f"{p}: {reasons.get(p, 'no answer')}" for p in self.peers) or "no peers"

    async def probe(self) -> None:
        """Find the live holders of the root, waiting with backoff until the deadline."""
        delay = 0.1
        while True:
            candidates = [p for p in self.peers if p not in self.result.dropped]
            answers = await asyncio.gather(*(self.fetcher.holds(p, self.root) for p in candidates))
            self.misses = {
                p: why for p, (ok, why) in zip(candidates, answers, strict=True) if not ok
            }
            self.holders = [p for p, (ok, _) in zip(candidates, answers, strict=True) if ok]
            if self.holders:
                return
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise ContentUnavailable(f"no peer could provide {self.root} ({self._why()})")
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 2.0)

    async def block(self, cid: CID) -> bytes:
        """The verified block: from the store, or from a holder (stored before returning)."""
        store = self.fetcher.store
        if store.has(cid):
            try:
                return await asyncio.to_thread(store.get_block, cid)
            except (ContentNotFound, CorruptBlock):
                pass  # damaged here: removed by the store, fetch it again
        delay = 0.1
        while True:
            tried = self._live()
            start = int.from_bytes(cid.digest[:4], "big") % max(1, len(tried))
            for peer in tried[start:] + tried[:start]:  # spread blocks across holders
                data = await self._from_peer(peer, cid)
                if data is not None:
                    return data
            async with self._probing:  # one prober at a time; the others reuse its answer
                if self._live() != tried:
                    continue
                left = self.deadline - time.monotonic()
                if left <= 0:
                    raise ContentUnavailable(
                        f"no peer could provide block {cid} of {self.root} ({self._why()})"
                    )
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, 2.0)
                await self.probe()

    def _live(self) -> list[str]:
        return [p for p in self.holders if p not in self.result.dropped]

    async def _from_peer(self, peer: str, cid: CID) -> bytes | None:
        try:
            data = await self.fetcher.get_block(peer, cid)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self.drop(peer, f"failed to serve block {cid}: {exc or type(exc).__name__}")
            return None
        if data is None:
            self.holders = [p for p in self.holders if p != peer]
            self.misses[peer] = f"lacks block {cid}"
            return None
        fetched = self.result.bytes_fetched + len(data)
        if self.max_bytes is not None and fetched > self.max_bytes:
            raise ContentTooLarge(
                f"{self.root} is more than the limit of {self.max_bytes:,} bytes of blocks"
            )
        self.result.bytes_fetched = fetched  # counted before storing: workers run meanwhile
        try:
            await asyncio.to_thread(self.fetcher.verify_and_put, cid, data)
        except CorruptBlock:
            self.result.bytes_fetched -= len(data)
            self.drop(peer, f"served a corrupt block {cid}")
            return None
        self.result.blocks_fetched += 1
        return data

    def drop(self, peer: str, why: str) -> None:
        if peer not in self.result.dropped:
            log.warning("dropping peer %s while fetching %s: %s", peer, self.root, why)
            self.result.dropped[peer] = why

    async def run(self, concurrency: int) -> FetchResult:
        await self.probe()
        queue: asyncio.Queue[CID] = asyncio.Queue()
        queue.put_nowait(self.root)
        seen = {self.root}

        async def worker() -> None:
            while True:
                cid = await queue.get()
                try:
                    for child in links_of(cid, await self.block(cid)):
                        if child not in seen:
                            seen.add(child)
                            queue.put_nowait(child)
                finally:
                    queue.task_done()

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        joined = asyncio.create_task(queue.join())
        done, _ = await asyncio.wait([joined, *workers], return_when=asyncio.FIRST_COMPLETED)
        for task in [joined, *workers]:
            task.cancel()
        await asyncio.gather(joined, *workers, return_exceptions=True)
        for task in done:
            if task is not joined:
                task.result()  # a worker's error ends the fetch
        await asyncio.to_thread(self.fetcher.store.mark_complete, self.root)
        return self.result


Sign = Callable[[str, str], dict[str, str]]


async def _said(resp: aiohttp.ClientResponse) -> str:
    """`: <the node's error message>` when it answered in the API's error shape."""
    try:
        return ": " + str((await resp.json(content_type=None))["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError, aiohttp.ClientError):
        return ""


class Fetcher:
    """Fetches DAGs into `store`; use as `async with Fetcher(store) as f: await f.fetch(...)`."""

    def __init__(
        self,
        store: BlockStore,
        session: aiohttp.ClientSession | None = None,
        *,
        concurrency: int = 4,  # blocks in flight; more only adds contention on 2 cores
        request_timeout: float = 30.0,
        sign: Sign | None = None,
        job_id: str | None = None,
    ) -> None:
        self.store = store
        self.sign = sign  # headers that sign a call (method, path): holders serve who they know
        self.job_id = job_id  # the job whose results these are: what a client may read
        self._session = session
        self._own_session = session is None
        self.concurrency = concurrency
        self._timeout = aiohttp.ClientTimeout(total=request_timeout, sock_connect=5)

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def fetch(
        self,
        cid: CID | str,
        peers: Sequence[str],
        *,
        wait: float = 30.0,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
    ) -> FetchResult:
        """Make the store hold the whole DAG of `cid`; see the module docstring."""
        root = CID.parse(cid) if isinstance(cid, str) else cid
        urls = list(dict.fromkeys(normalize_peer(p) for p in peers))
        if await asyncio.to_thread(self.store.holds, root):
            return FetchResult(root)
        return await _Run(self, root, urls, wait, max_bytes).run(self.concurrency)

    def _call(self, method: str, peer: str, path: str) -> tuple[URL, dict[str, str]]:
        if self.job_id is not None:
            path += "?" + urlencode({"job": self.job_id})
        headers = self.sign(method, path) if self.sign is not None else {}
        return URL(peer + path, encoded=True), headers  # sent as signed, not re-quoted

    async def holds(self, peer: str, cid: CID) -> tuple[bool, str]:
        """(whether `peer` says it holds the DAG of `cid`, why not)."""
        url, headers = self._call("HEAD", peer, f"/api/v1/content/{cid}")
        try:
            async with self.session.head(url, headers=headers) as resp:
                if resp.status in (401, 403):  # a HEAD answer has no message to show
                    return False, f"answered {resp.status}: its access rules refuse this caller"
                return resp.status == 200, f"answered {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return False, f"unreachable ({exc or type(exc).__name__})"

    async def get_block(self, peer: str, cid: CID) -> bytes | None:
        """The bytes `peer` serves for block `cid` (unverified), None if it lacks it."""
        url, headers = self._call("GET", peer, f"/api/v1/blocks/{cid}")
        async with self.session.get(url, headers=headers) as resp:
            if resp.status == 404:
                return None
            if resp.status != 200:
                raise ValueError(f"answered {resp.status}{await _said(resp)}")
            if resp.content_length is not None and resp.content_length > MAX_BLOCK_SIZE:
                raise ValueError(f"block of {resp.content_length} bytes is too large")
            return await read_body(resp.content, MAX_BLOCK_SIZE)  # BodyTooLarge: a ValueError

    def verify_and_put(self, cid: CID, data: bytes) -> None:
        cid.verify(data)
        self.store.put(cid, data, verified=True)
