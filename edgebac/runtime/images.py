"""The docker images present on this machine, kept fresh in the background.

Bidding reads `tags` on every decision round, so it must be a plain attribute, never a call to
the engine: a task lists the images every few seconds (and at once after `poke`, e.g. when an
execution found an image gone) and swaps in the new set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

logger = logging.getLogger(__name__)
REFRESH_S = 3.0


class ImageSet:
    def __init__(self, client: Any, refresh_s: float = REFRESH_S) -> None:
        self.client = client
        self.refresh_s = refresh_s
        self.tags: frozenset[str] = frozenset()
        self._poked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="docker-images")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def poke(self) -> None:
        self._poked.set()

    async def refresh(self) -> None:
        try:
            self.tags = await asyncio.to_thread(self._list)
        except Exception as exc:  # the engine went away: keep the last set, say so
            logger.warning("cannot list docker images: %s", exc)

    def _list(self) -> frozenset[str]:
        tags: set[str] = set()
        for image in self.client.images.list():
            tags.update(image.tags)
            tags.update(image.attrs.get("RepoDigests") or ())
        return frozenset(tags)

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):  # not wait_for: see JobRunner._loop
                async with asyncio.timeout(self.refresh_s):
                    await self._poked.wait()
            self._poked.clear()
            await self.refresh()
