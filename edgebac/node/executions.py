"""One execution the log assigned to this node, from its start to the event that ends it.

Stages nothing itself (the executor does), runs the executor under the job's timeout, turns
what it left into a results folder (or, for instant noop runs, straight from memory into the
store), publishes it, and appends `ExecutionStarted` and `ResultPublished`/`ExecutionFailed`.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from edgebac.eventlog.store import EventLog
from edgebac.node.results import (
    finish_results,
    fresh_folders,
    instant_execution,
    result_event,
    results_in_memory,
    stream_head,
)
from edgebac.runtime.executor import ExecutionError, Executor, NoopExecutor, Task
from edgebac.scheduler import events as ev
from edgebac.scheduler.bacalhau_env import execution_spec
from edgebac.scheduler.ids import child_path
from edgebac.scheduler.state import Execution, Job

logger = logging.getLogger(__name__)
T = TypeVar("T")
FOLDER_THREADS = 4  # for executions' folders (metadata waits on the disk, not on the CPU)


def failure(execution: Execution, reason: str, permanent: bool = False) -> dict[str, Any]:
    """The body of an `ExecutionFailed` for an execution; `permanent` when it would fail on any
    node (the requester then does not retry it)."""
    body: dict[str, Any] = {"job_id": execution.job_id, "execution_id": execution.id}
    body["reason"] = reason
    if permanent:
        body["permanent"] = True
    return body


class Executions:
    def __init__(
        self, log: EventLog, me: bytes, executors: Mapping[str, Executor], work_dir: Path
    ) -> None:
        self.log = log
        self.me = me
        self.executors = executors
        self.work_dir = work_dir
        self.publisher: Any = None  # the node's results publisher (sinks.publish.Publisher)
        # Creating and removing an execution's folders costs milliseconds on a busy disk (every
        # metadata change waits for the journal): never on the event loop, nor in the pool
        # that verifies gossip.
        self._folders = ThreadPoolExecutor(FOLDER_THREADS, thread_name_prefix="edgebac-folders")

    def close(self) -> None:
        self._folders.shutdown(wait=False)

    def results_dir(self, execution_id: str) -> Path:
        """Ids are data: only an id of the one safe form becomes a folder (UnsafeName else)."""
        return child_path(self.work_dir / "results", execution_id)

    def scratch_dir(self, execution_id: str) -> Path:
        return child_path(self.work_dir / "scratch", execution_id)

    async def execute(self, execution: Execution, job: Job) -> None:
        assert job.spec is not None
        executor = self.executors.get(job.spec.engine.type)
        try:
            if executor is None:
                reason = f"engine {job.spec.engine.type} is not enabled on this node"
                await self.log.append([(ev.EXECUTION_FAILED, failure(execution, reason))])
                return
            started = (ev.EXECUTION_STARTED, {"job_id": job.id, "execution_id": execution.id})
            spec = execution_spec(job, execution)  # with BACALHAU_* variables for its jobs
            if instant_execution(executor, spec, self.publisher):
                # Nothing happens in between: its start and its result take one append.
                outcome = await self._run(executor, execution, spec)
                await self.log.append([started, outcome])
                return
            await self.log.append([started])
            outcome = await self._run(executor, execution, spec)
            await self.log.append([outcome])
        except asyncio.CancelledError:
            raise  # stopped because the log says the execution is over: nothing to add
        except Exception as exc:
            logger.exception("execution %s failed inside edgebac", execution.id)
            reason = f"internal error: {exc}"
            await self.log.append([(ev.EXECUTION_FAILED, failure(execution, reason))])

    async def _run(self, executor: Executor, execution: Execution, spec: Any) -> ev.Planned:
        if isinstance(executor, NoopExecutor) and results_in_memory(spec, self.publisher):
            return await self._run_in_memory(executor, execution, spec)
        results = self.results_dir(execution.id)
        scratch = self.scratch_dir(execution.id)
        # noop never touches its scratch folder; a file creation costs ~1 ms of some disks.
        make_scratch = spec.engine.type != "noop"
        await self._in_folders(fresh_folders, results, scratch if make_scratch else None)
        task = Task(execution.id, execution.job_id, spec, scratch, results)
        try:
            await executor.prepare(task)
            try:
                exit_code = await asyncio.wait_for(executor.run(task), spec.timeout_s)
            except TimeoutError:
                raise ExecutionError(f"timed out after {spec.timeout_s:g} s") from None
            size, stdout_head, stderr_head = await self._in_folders(
                finish_results, results, exit_code, task
            )
            published = {"reference": f"node:{self.me.hex()}/{execution.id}", "size": size}
            if self.publisher is not None:
                where = await self.publisher.publish(
                    results, spec.publisher, execution.job_id, execution.id
                )
                published = where.body()
            return result_event(execution, exit_code, published, stdout_head, stderr_head)
        except ExecutionError as exc:
            return ev.EXECUTION_FAILED, failure(execution, exc.reason, exc.permanent)
        finally:
            await executor.cleanup(task)
            await self._in_folders(shutil.rmtree, scratch, True)

    async def _run_in_memory(
        self, executor: NoopExecutor, execution: Execution, spec: Any
    ) -> ev.Planned:
        """Results that go from memory into the store, with no results folder (the logs API
        reads them back from the store)."""
        scratch = self.scratch_dir(execution.id)  # never made
        task = Task(execution.id, execution.job_id, spec, scratch, self.results_dir(execution.id))
        try:
            exit_code, files = await asyncio.wait_for(executor.run_in_memory(task), spec.timeout_s)
        except TimeoutError:
            reason = f"timed out after {spec.timeout_s:g} s"
            return ev.EXECUTION_FAILED, failure(execution, reason)
        files["exitCode"] = f"{exit_code}\n".encode()
        where = await self.publisher.publish_files(files)
        heads = [stream_head(files[name]) for name in ("stdout", "stderr")]
        return result_event(execution, exit_code, where.body(), *heads)

    async def _in_folders(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._folders, fn, *args)
