"""The docker executor: one container per execution, through the docker SDK in threads.

Inputs are bind-mounted read-only at their targets, output volumes read-write from fresh
folders under the results folder. No network unless the job asks for `full` and the node
allows it. Containers carry `edgebac.node=<node key>` labels, so a node that restarts removes
what its previous run left behind. The runner enforces the timeout by cancelling `run`, which
kills the container; `cleanup` removes it in every case.

A job must not hurt the host: every container runs with `no-new-privileges`, every capability
dropped but `BASE_CAPABILITIES` (and those the policy adds), a pids limit (a fork bomb stops at
it), memory and CPU limits always (the job's, else the node's defaults, as Bacalhau's 500m CPU /
512 MB), never privileged, and no mounts but its staged inputs (read-only) and outputs; as the
policy's `user` if it names one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import Mount

from edgebac.runtime.executor import STREAM_CAP_BYTES, TRUNCATED_MARK, ExecutionError, Task
from edgebac.runtime.images import ImageSet
from edgebac.runtime.staging import Stager
from edgebac.runtime.threads import in_thread
from edgebac.scheduler.quantities import format_size
from edgebac.scheduler.spec import DockerEngine, engine_default

logger = logging.getLogger(__name__)
NODE_LABEL = "edgebac.node"
SIGKILLED = 128 + 9  # the exit status of a process killed by SIGKILL
EXECUTION_LABEL = "edgebac.execution"
PROBE_TIMEOUT_S = 5
LOGS_JOIN_TIMEOUT_S = 30  # for the log copiers to catch up once the container has stopped
# What ordinary jobs need as root inside their container (own and write their files, whatever
# their owner; switch user; signal their own processes); Docker's defaults also grant raw
# sockets, device nodes, chroot, low ports, file capabilities and audit writes, which they do not.
BASE_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID")
PIDS_LIMIT = 512  # processes and threads per container: enough for builds, not for a fork bomb
# A job that names no CPU gets half a core and 512 MiB, so no job is ever unbounded (and the
# scheduler counts them: spec.ENGINE_DEFAULTS).
DEFAULT_CPU_MILLIS = engine_default("docker", "cpu_millis")
DEFAULT_MEMORY_BYTES = engine_default("docker", "memory_bytes")


def connect() -> tuple[Any, dict[str, Any]]:
    """A docker client and the engine's info; DockerException when there is no engine."""
    client = docker.from_env(timeout=PROBE_TIMEOUT_S)
    info = client.info()
    client.api.timeout = 60
    return client, info


class DockerExecutor:
    engine = "docker"

    def __init__(
        self,
        client: Any,
        info: dict[str, Any],
        stager: Stager,
        node_key: str,
        network_allowed: bool,
        pull: bool = False,
        capabilities: tuple[str, ...] = (),
        user: str | None = None,
    ) -> None:
        self.capabilities = tuple(dict.fromkeys((*BASE_CAPABILITIES, *capabilities)))
        self.user = user  # None: the image's own user
        self.pull = pull  # missing images are pulled (edge networks usually have no registry)
        self.client = client
        self.stager = stager
        self.node_key = node_key
        self.network_allowed = network_allowed
        self.cpu_limits = bool(info.get("CpuCfsQuota"))
        self.image_set = ImageSet(client)
        self._containers: dict[str, Any] = {}

    @property
    def images(self) -> frozenset[str]:
        """Image tags present on this machine (refreshed in the background)."""
        return self.image_set.tags

    async def start(self) -> None:
        removed = await asyncio.to_thread(self._remove_leftovers)
        if removed:
            logger.warning("removed %d container(s) left by a previous run", removed)
        await self.image_set.start()

    async def close(self) -> None:
        await self.image_set.stop()

    def _remove_leftovers(self) -> int:
        found = self.client.containers.list(
            all=True, filters={"label": f"{NODE_LABEL}={self.node_key}"}
        )
        for container in found:
            with contextlib.suppress(DockerException):
                container.remove(force=True)
        return len(found)

    # ----- the executor interface ---------------------------------------------------------------

    async def prepare(self, task: Task) -> None:
        engine = task.spec.engine
        assert isinstance(engine, DockerEngine)
        if task.spec.network == "full" and not self.network_allowed:
            raise ExecutionError("network access is not allowed on this node")
        await self._check_image(engine.image, task.spec.timeout_s)
        staged = await self.stager.stage_inputs(task)
        mounts = [Mount(s.target, str(s.host), type="bind", read_only=True) for s in staged]
        for output in task.spec.outputs:
            folder = task.results / output.name
            folder.mkdir(parents=True, exist_ok=True)
            if self.user is not None:
                folder.chmod(0o777)  # the job's user is not the node's: let it write there
            mounts.append(Mount(output.path, str(folder), type="bind"))
        try:
            container = await asyncio.to_thread(self._create, task, engine, mounts)
        except ImageNotFound:
            raise ExecutionError(f"image not present: {engine.image}") from None
        except APIError as exc:
            raise ExecutionError(f"docker refused the container: {_explain(exc)}") from None
        self._containers[task.execution_id] = container

    async def _check_image(self, image: str, timeout_s: float) -> None:
        try:
            await asyncio.to_thread(self.client.images.get, image)
            return
        except ImageNotFound:
            self.image_set.poke()
            if not self.pull:
                raise ExecutionError(f"image not present: {image}") from None
        try:
            await asyncio.wait_for(asyncio.to_thread(self.client.images.pull, image), timeout_s)
        except TimeoutError:
            raise ExecutionError(f"cannot pull {image}: timed out") from None
        except (APIError, ImageNotFound) as exc:
            raise ExecutionError(f"cannot pull {image}: {_explain(exc)}") from None
        self.image_set.poke()

    def _create(self, task: Task, engine: DockerEngine, mounts: list[Mount]) -> Any:
        memory = memory_limit(task)
        limits: dict[str, Any] = {"mem_limit": memory, "memswap_limit": memory}  # no swap past it
        if self.cpu_limits:
            limits["nano_cpus"] = (task.spec.resources.cpu_millis or DEFAULT_CPU_MILLIS) * 1_000_000
        if self.user is not None:
            limits["user"] = self.user
        return self.client.containers.create(
            engine.image,
            command=list(engine.args) or None,
            entrypoint=list(engine.entrypoint) if engine.entrypoint is not None else None,
            environment={**task.spec.env, **engine.env},
            working_dir=engine.workdir,
            mounts=mounts,
            network_mode="bridge" if task.spec.network == "full" else "none",
            labels={
                NODE_LABEL: self.node_key,
                EXECUTION_LABEL: task.execution_id,
                "edgebac.job": task.job_id,
            },
            name=f"edgebac-{task.execution_id}",
            security_opt=["no-new-privileges"],
            cap_drop=["ALL"],
            cap_add=list(self.capabilities),
            pids_limit=PIDS_LIMIT,
            privileged=False,
            **limits,
        )

    async def run(self, task: Task) -> int:
        container = self._containers[task.execution_id]
        try:
            await asyncio.to_thread(container.start)
        except APIError as exc:
            raise ExecutionError(f"container did not start: {_explain(exc)}") from None
        copiers = self._follow_logs(container, task)
        try:
            result = await in_thread(_wait, container, name=f"wait-{task.execution_id}")
        except asyncio.CancelledError:
            await asyncio.to_thread(_kill, container)
            await asyncio.to_thread(_join, copiers)
            raise
        await asyncio.to_thread(_join, copiers)
        status = await asyncio.to_thread(_state, container)
        code = int(result.get("StatusCode", -1))
        limit = memory_limit(task)
        if status.get("OOMKilled"):
            raise ExecutionError(f"out of memory: killed at its {format_size(limit)} memory limit")
        if code == SIGKILLED:
            # Docker does not always set OOMKilled (cgroup v2 reports the kill on the cgroup,
            # not always on the container's state): a SIGKILL we did not send, under the memory
            # limit every container has, is the kernel's OOM killer.
            raise ExecutionError(
                f"out of memory (killed by signal 9 at its {format_size(limit)} memory limit)"
            )
        return code

    async def cleanup(self, task: Task) -> None:
        container = self._containers.pop(task.execution_id, None)
        if container is not None:
            await asyncio.to_thread(_remove, container)

    def _follow_logs(self, container: Any, task: Task) -> list[threading.Thread]:
        """Copy stdout and stderr into the results folder while the container runs (so
        `job logs --follow` sees them live), each in a thread of its own until it stops."""
        copiers = [
            threading.Thread(
                target=self._save_stream,
                args=(container, task, which, path),
                name=f"logs-{which}-{task.execution_id}",
                daemon=True,
            )
            for path, which in ((task.stdout, "stdout"), (task.stderr, "stderr"))
        ]
        for copier in copiers:
            copier.start()
        return copiers

    def _save_stream(self, container: Any, task: Task, which: str, path: Path) -> None:
        try:
            _write_stream(container, which, path)
        except DockerException as exc:
            logger.warning("no %s for %s: %s", which, task.execution_id, exc)


def memory_limit(task: Task) -> int:
    """The job's memory, or the node's default when it names none."""
    return task.spec.resources.memory_bytes or DEFAULT_MEMORY_BYTES


def _join(copiers: list[threading.Thread]) -> None:
    for copier in copiers:
        copier.join(LOGS_JOIN_TIMEOUT_S)


def _write_stream(container: Any, which: str, path: Path, cap: int = STREAM_CAP_BYTES) -> None:
    """Copy one of the container's streams to `path` as it comes, cut (and marked) past `cap`
    bytes; returns when the container stops (or the cap is reached)."""
    chunks = container.logs(
        stdout=which == "stdout", stderr=which == "stderr", stream=True, follow=True
    )
    written = 0
    with path.open("wb") as out:
        try:
            for chunk in chunks:
                if written + len(chunk) > cap:
                    out.write(chunk[: cap - written])
                    out.write(TRUNCATED_MARK)
                    break
                out.write(chunk)
                out.flush()  # readers follow the file
                written += len(chunk)
        finally:
            with contextlib.suppress(Exception):
                chunks.close()


def _wait(container: Any) -> dict[str, Any]:
    return container.wait(timeout=None)  # no read timeout: jobs may run for hours


def _state(container: Any) -> dict[str, Any]:
    container.reload()
    return container.attrs.get("State", {})


def _kill(container: Any) -> None:
    with contextlib.suppress(NotFound, APIError):
        container.kill()


def _remove(container: Any) -> None:
    with contextlib.suppress(NotFound):
        try:
            container.remove(force=True)
        except APIError as exc:
            logger.warning("could not remove container %s: %s", container.id[:12], exc)


def _explain(exc: APIError) -> str:
    return str(getattr(exc, "explanation", None) or exc)
