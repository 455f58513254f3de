"""The node's content: its block store, publishing results, and staging content-id inputs.

Which peers may hold a CID is the caller's knowledge (the log says which node published it,
and the node list says where every node is); this module fetches from them, verifying every
block, and lays the content out for an executor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgebac.runtime.providers import InputError
from edgebac.sinks.blockstore import BlockStore
from edgebac.sinks.cid import CID
from edgebac.sinks.errors import BadCid, BadContent, ContentUnavailable, WriteFailed
from edgebac.sinks.exporter import DEFAULT_MAX_BYTES, ContentTooLarge
from edgebac.sinks.publish import Publisher

FETCH_WAIT_S = 30.0  # how long to look for a holder before the input fails


def cid_of(url: str) -> str:
    """`ipfs://CID`, `ipfs://CID/` or a bare CID -> the CID text."""
    return url.removeprefix("ipfs://").strip("/")


class ContentService:
    def __init__(
        self,
        root: Path,
        holders: Callable[[str], Sequence[str]],
        s3_client: Callable[[], Any] | None = None,
        sign: Callable[[str, str], dict[str, str]] | None = None,
    ) -> None:
        self.store = BlockStore(root)
        self.publisher = Publisher(self.store, s3_client)
        self._holders = holders
        self._sign = sign  # signs this node's block fetches: holders serve members

    def presigned(self, bucket: str, key: str) -> str | None:
        return self.publisher.presigned_url(bucket, key)

    def holds(self, url: str) -> bool:
        """Whether the whole DAG of an `ipfs://` source is here (a bid's data locality)."""
        try:
            return self.store.holds(CID.parse(cid_of(url)))
        except (BadCid, ValueError):
            return False

    async def stage(
        self,
        url: str,
        dest: Path,
        wait_s: float = FETCH_WAIT_S,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
    ) -> None:
        """Fetch the DAG of `url` from its holders (verified) and write it out under `dest`;
        its blocks may not pass `max_bytes` (the input's or the module's cap)."""
        from edgebac.sinks.fetch import Fetcher

        try:
            cid = CID.parse(cid_of(url))
        except (BadCid, ValueError) as exc:
            raise InputError(f"not a content id: {exc}") from None
        try:
            async with Fetcher(self.store, sign=self._sign) as fetcher:
                holders = list(self._holders(str(cid)))
                await fetcher.fetch(cid, holders, wait=wait_s, max_bytes=max_bytes)
            item = await asyncio.to_thread(self.store.stat, cid)
            if max_bytes is not None and item.size > max_bytes:  # held here already, unfetched
                raise ContentTooLarge(
                    f"{cid} declares {item.size:,} bytes, more than the limit of "
                    f"{max_bytes:,} bytes"
                )
            target = dest / str(cid) if item.kind == "file" else dest  # a lone file keeps its CID
            await asyncio.to_thread(self.store.export_to, cid, target)
        except (ContentUnavailable, BadContent, WriteFailed) as exc:
            # A DAG that lies about its sizes, or passes the cap, is the input's fault.
            raise InputError(str(exc)) from None


def s3_client_factory() -> Callable[[], Any]:
    """A maker of this node's S3 client (AWS environment + EDGEBAC_S3_*), for publishing."""

    def make() -> Any:
        from edgebac.runtime.providers.s3 import S3Provider, S3Settings

        return S3Provider(S3Settings.from_env()).client()

    return make
