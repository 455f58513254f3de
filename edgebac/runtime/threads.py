"""Blocking calls that may last as long as a job (a container's wait, a running wasm guest).

They get a thread of their own rather than one of asyncio's default pool: that pool has
min(32, cpus + 4) workers, and a few long jobs would starve every short blocking call behind
them (S3 requests, docker inspects). Cancelling the awaitable does not stop the thread; the
caller must make the blocking call return (kill the container, interrupt the guest).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def in_thread(fn: Callable[..., T], *args: Any, name: str = "edgebac-job") -> asyncio.Future[T]:
    """Run `fn(*args)` in a new daemon thread; the future holds its result or exception."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def body() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:  # handed to the awaiting coroutine, not lost
            _post(loop, settle, None, exc)
        else:
            _post(loop, settle, result, None)

    threading.Thread(target=body, name=name, daemon=True).start()
    return future


def _post(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed: nobody awaits it any more
        loop.call_soon_threadsafe(fn, *args)
