"""Which executors this node offers: those the policy enables and this machine can run.

Docker may be absent on an edge node: then the node does not offer it and says why at start.
An engine that is installed but not answering yet (dockerd starting after the node, as boot
order often has it) is looked for again until it answers: `Offer.retry_docker`.
An engine the policy does not enable is never imported (the docker SDK and wasmtime cost
hundreds of milliseconds to import, and may not even be installed in a trimmed build).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from edgebac.runtime.executor import Executor, NoopExecutor
from edgebac.runtime.staging import Stager
from edgebac.scheduler.compute import NodePolicy


@dataclass
class Offer:
    executors: dict[str, Executor]
    # One more try at the Docker engine, when it was enabled and installed but did not answer:
    # the executor once it answers, else None.
    retry_docker: Callable[[], Awaitable[Executor | None]] | None = None


async def offered_executors(
    policy: NodePolicy,
    work_dir: Path,
    node_key: str,
    warn: Callable[[str], None],
    content: object = None,
) -> Offer:
    """Build and start the enabled executors; `warn` hears why one is not offered."""
    offer = Offer({})
    offered = offer.executors
    if "noop" in policy.engines:
        offered["noop"] = NoopExecutor()
    stager = Stager(work_dir / "cache" / "inputs", policy.paths, content=content, urls=policy.urls)
    if "docker" in policy.engines:
        docker, unreachable = await _docker(stager, node_key, policy)
        if docker is not None:
            offered["docker"] = docker
        elif not unreachable:
            warn("docker engine not offered: the docker SDK is not installed")
        else:
            warn(
                f"docker engine not offered: cannot reach a Docker engine ({unreachable}); "
                "docker jobs will be taken as soon as it answers"
            )

            async def retry_docker() -> Executor | None:
                return (await _docker(stager, node_key, policy))[0]

            offer.retry_docker = retry_docker
    if "wasm" in policy.engines:
        try:
            from edgebac.runtime.wasm_executor import WasmExecutor
        except ImportError as exc:
            warn(f"wasm engine not offered: wasmtime is not installed ({exc})")
        else:
            offered["wasm"] = WasmExecutor(stager, work_dir / "cache" / "wasm")
    return offer


async def _docker(stager: Stager, node_key: str, policy: NodePolicy) -> tuple[Executor | None, str]:
    """The docker executor, or None and why: '' when the docker SDK is not installed (no
    engine will ever answer then), else the engine's error."""
    try:
        from docker.errors import DockerException

        from edgebac.runtime import docker_executor
    except ImportError:
        return None, ""
    try:
        client, info = await asyncio.to_thread(docker_executor.connect)
        executor = docker_executor.DockerExecutor(
            client,
            info,
            stager,
            node_key,
            policy.network,
            pull=policy.pull,
            capabilities=policy.capabilities,
            user=policy.user,
        )
        await executor.start()
    except DockerException as exc:
        return None, _short(exc)
    return executor, ""


DOCKER_RETRY_FIRST_S = 1.0  # an engine that did not answer at start: looked for again ...
DOCKER_RETRY_MAX_S = 30.0  # ... at doubling intervals up to this


async def docker_once_it_answers(
    retry: Callable[[], Awaitable[Executor | None]], warn: Callable[[str], None]
) -> Executor:
    """`Offer.retry_docker` until it gives the executor (at doubling intervals)."""
    delay = DOCKER_RETRY_FIRST_S
    while True:
        await asyncio.sleep(delay)
        try:
            executor = await retry()
        except Exception as exc:  # whatever a half-started engine answers: try again
            executor = None
            warn(f"docker engine still not offered: {type(exc).__name__}: {exc}")
        if executor is not None:
            return executor
        delay = min(delay * 2, DOCKER_RETRY_MAX_S)


async def close_executors(executors: Mapping[str, Executor]) -> None:
    for executor in executors.values():
        close = getattr(executor, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()


def present_images(executors: Mapping[str, Executor]) -> frozenset[str]:
    """Docker images present locally, as the docker executor last saw them."""
    return getattr(executors.get("docker"), "images", frozenset())


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
