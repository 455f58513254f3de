"""Which executors this node offers: those the policy enables and this machine can run.

Docker may be absent on an edge node: then the node does not offer it and says why at start.
An engine the policy does not enable is never imported (the docker SDK and wasmtime cost
hundreds of milliseconds to import, and may not even be installed in a trimmed build).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path

from edgebac.runtime.executor import Executor, NoopExecutor
from edgebac.runtime.staging import Stager
from edgebac.scheduler.compute import NodePolicy


async def offered_executors(
    policy: NodePolicy,
    work_dir: Path,
    node_key: str,
    warn: Callable[[str], None],
    content: object = None,
) -> dict[str, Executor]:
    """Build and start the enabled executors; `warn` hears why one is not offered."""
    offered: dict[str, Executor] = {}
    if "noop" in policy.engines:
        offered["noop"] = NoopExecutor()
    stager = Stager(work_dir / "cache" / "inputs", policy.paths, content=content, urls=policy.urls)
    if "docker" in policy.engines:
        docker = await _docker(stager, node_key, policy, warn)
        if docker is not None:
            offered["docker"] = docker
    if "wasm" in policy.engines:
        try:
            from edgebac.runtime.wasm_executor import WasmExecutor
        except ImportError as exc:
            warn(f"wasm engine not offered: wasmtime is not installed ({exc})")
        else:
            offered["wasm"] = WasmExecutor(stager, work_dir / "cache" / "wasm")
    return offered


async def _docker(
    stager: Stager, node_key: str, policy: NodePolicy, warn: Callable[[str], None]
) -> Executor | None:
    try:
        from docker.errors import DockerException

        from edgebac.runtime import docker_executor
    except ImportError as exc:
        warn(f"docker engine not offered: the docker SDK is not installed ({exc})")
        return None
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
        warn(f"docker engine not offered: cannot reach a Docker engine ({_short(exc)})")
        return None
    return executor


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
