"""An execution's results: the folder an executor writes them into, or memory (a noop job's
streams), and the ResultPublished event they become. Helpers of the runner's executions."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgebac.runtime.executor import Executor, NoopExecutor, Task
from edgebac.scheduler import events as ev
from edgebac.scheduler.state import Execution

HEAD_BYTES = 1024  # of stdout/stderr carried in ResultPublished, for `job describe`


def stream_head(data: bytes) -> str:
    """What ResultPublished carries of a stream."""
    return data[:HEAD_BYTES].decode(errors="replace")


def _head_of(path: Path) -> str:
    try:
        with path.open("rb") as stream:
            return stream_head(stream.read(HEAD_BYTES))
    except OSError:
        return ""


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def fresh_folders(results: Path, scratch: Path | None) -> None:
    shutil.rmtree(results, ignore_errors=True)
    results.mkdir(parents=True)
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)


def finish_results(results: Path, exit_code: int, task: Task) -> tuple[int, str, str]:
    """Write `exitCode`; (size of the results, head of stdout, head of stderr)."""
    (results / "exitCode").write_text(f"{exit_code}\n")
    return _size(results), _head_of(task.stdout), _head_of(task.stderr)


def results_in_memory(spec: Any, publisher: Any) -> bool:
    """Whether an execution's results can skip the results folder: they are only the streams
    and the exit code (no output volumes), and go only to the node's own store."""
    return publisher is not None and not spec.outputs and spec.publisher.type == "local"


def instant_execution(executor: Executor, spec: Any, publisher: Any) -> bool:
    """A noop execution that takes no time and keeps its results in memory: it starts and
    ends within one step of the event loop's work, with no file or container to wait for."""
    return (
        isinstance(executor, NoopExecutor)
        and spec.engine.duration_ms == 0
        and results_in_memory(spec, publisher)
    )


def result_event(
    execution: Execution,
    exit_code: int,
    published: Mapping[str, Any],
    stdout_head: str,
    stderr_head: str,
) -> ev.Planned:
    return ev.RESULT_PUBLISHED, {
        "job_id": execution.job_id,
        "execution_id": execution.id,
        "exit_code": exit_code,
        **published,
        "stdout_head": stdout_head,
        "stderr_head": stderr_head,
    }
