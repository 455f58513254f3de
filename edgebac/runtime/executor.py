"""The executor interface (prepare -> run -> clean up) and the noop executor.

The runner owns the results folder of an execution: it writes `exitCode` and hands the folder
to a publisher. An executor stages what its engine needs in `prepare`, runs the job in `run`
writing `stdout` and `stderr` (capped) and each named output volume under the results folder,
and removes everything it made in `cleanup`, which runs after failures too. Failures the user
should read raise `ExecutionError` with the reason; anything else is a bug in the executor.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edgebac.scheduler.spec import JobSpec, NoopEngine

STREAM_CAP_BYTES = 16 << 20  # stdout/stderr kept per execution; past it they are truncated
TRUNCATED_MARK = b"\n[edgebac: output truncated]\n"


class ExecutionError(Exception):
    """An execution failed for a reason its user should see (timeout, missing image, ...).

    `permanent`: the same job would fail the same way on any node (an invalid module, a fuel
    budget the spec sets), so the requester fails it rather than spend its retries."""

    def __init__(self, reason: str, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


@dataclass(frozen=True)
class Task:
    execution_id: str
    job_id: str
    spec: JobSpec
    scratch: Path  # the executor's own space; removed after the execution
    results: Path  # stdout, stderr, exitCode and one folder per output volume

    @property
    def stdout(self) -> Path:
        return self.results / "stdout"

    @property
    def stderr(self) -> Path:
        return self.results / "stderr"


class Executor(Protocol):
    engine: str

    async def prepare(self, task: Task) -> None:
        """Stage inputs and the image/module; raise ExecutionError when one is missing."""
        ...

    async def run(self, task: Task) -> int:
        """Run to the end and return the exit code; the runner enforces the job's timeout by
        cancelling this coroutine, which must then stop what it started."""
        ...

    async def cleanup(self, task: Task) -> None:
        """Remove containers and staged files; must not raise."""
        ...


def capped(data: bytes, cap: int = STREAM_CAP_BYTES) -> bytes:
    return data[:cap] + TRUNCATED_MARK if len(data) > cap else data


def _write_files(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (folder / name).write_bytes(data)


class NoopExecutor:
    """Runs nothing: the spec says what it 'printed', how long it took and its exit code."""

    engine = "noop"

    async def prepare(self, task: Task) -> None:
        for output in task.spec.outputs:
            (task.results / output.name).mkdir(parents=True, exist_ok=True)

    async def run(self, task: Task) -> int:
        exit_code, streams = await self.run_in_memory(task)
        await asyncio.to_thread(_write_files, task.results, streams)  # file creation blocks
        return exit_code

    async def run_in_memory(self, task: Task) -> tuple[int, dict[str, bytes]]:
        """As `run`, but the streams come back ({name: bytes}) rather than written: for a job
        without output volumes the runner publishes them with no results folder at all (file
        creations are most of what a noop job costs on a busy disk)."""
        engine = task.spec.engine
        assert isinstance(engine, NoopEngine)
        if engine.duration_ms:
            await asyncio.sleep(engine.duration_ms / 1000)
        streams = {"stdout": engine.stdout.encode(), "stderr": engine.stderr.encode()}
        return engine.exit_code, {name: capped(data) for name, data in streams.items()}

    async def cleanup(self, task: Task) -> None:
        return None
