"""The variables Bacalhau sets in every execution of a job translated from its format:
`BACALHAU_JOB_ID`, `BACALHAU_EXECUTION_ID`, `BACALHAU_JOB_TYPE`, `BACALHAU_PARTITION_INDEX`,
`BACALHAU_PARTITION_COUNT`. They win over the task's own (as in Bacalhau, which also refuses
task variables named `BACALHAU_*`).

A batch job of count N has N partitions; each execution takes one. The index is a pure function
of the log: executions in acceptance order (hlc, id) take the lowest index that no execution
accepted before them holds — one still running or completed when it was accepted, since a
retry takes over the partition of the execution that failed. The requester had seen that
failure when it accepted the retry, so its hlc is earlier; but the node starting the retry
may not have heard of it yet (gossip is not causal across authors), and then it takes another
free partition or shares one. Executions past the count (surplus bids the requester accepted)
share the partition of the earliest one still holding it.
An ops job runs once per node: one partition each, index 0 and count 0 (as Bacalhau has it).
"""

from __future__ import annotations

import dataclasses

from edgebac.scheduler.spec import JobSpec
from edgebac.scheduler.state import Execution, Job


def partition_index(job: Job, execution: Execution) -> int:
    """The partition `execution` works on (0 for ops jobs and for specs that do not parse)."""
    if job.spec is None or job.spec.type != "batch":
        return 0
    held: dict[str, int] = {}
    for other in sorted(job.executions.values(), key=lambda e: (e.accepted_hlc, e.id)):
        free = _free_partition(job, other, held)
        held[other.id] = free if free is not None else _oldest_holder(job, other, held)
        if other.id == execution.id:
            return held[other.id]
    return 0


def _free_partition(job: Job, new: Execution, held: dict[str, int]) -> int | None:
    """The lowest partition no earlier execution held when `new` was accepted, if any is left
    (found among the held ones, never by counting up to the job's count: any client picks it)."""
    taken = {index for other, index in held.items() if _holds(job.executions[other], new)}
    lowest = next(i for i in range(len(taken) + 1) if i not in taken)
    assert job.spec is not None
    return lowest if lowest < job.spec.count else None


def _holds(execution: Execution, when: Execution) -> bool:
    """Whether `execution` still held its partition when `when` was accepted."""
    ended = execution.ended_hlc
    gave_up = execution.status in ("failed", "lost", "canceled")
    return not (gave_up and ended is not None and ended < when.accepted_hlc)


def _oldest_holder(job: Job, new: Execution, held: dict[str, int]) -> int:
    holders = [job.executions[i] for i in held if _holds(job.executions[i], new)]
    first = min(holders, key=lambda e: (e.accepted_hlc, e.id), default=None)
    return held[first.id] if first is not None else 0


def bacalhau_env(job: Job, execution: Execution) -> dict[str, str]:
    assert job.spec is not None
    count = job.spec.count if job.spec.type == "batch" else 0
    return {
        "BACALHAU_JOB_ID": job.id,
        "BACALHAU_EXECUTION_ID": execution.id,
        "BACALHAU_JOB_TYPE": job.spec.type,
        "BACALHAU_PARTITION_INDEX": str(partition_index(job, execution)),
        "BACALHAU_PARTITION_COUNT": str(count),
    }


def execution_spec(job: Job, execution: Execution) -> JobSpec:
    """The spec an execution runs: the job's, plus Bacalhau's variables for a Bacalhau job."""
    assert job.spec is not None
    if job.spec.bacalhau is None:
        return job.spec
    system = bacalhau_env(job, execution)
    engine = job.spec.engine
    if any(name in system for name in getattr(engine, "env", {})):  # engine env wins in runs
        kept = {k: v for k, v in engine.env.items() if k not in system}  # type: ignore[union-attr]
        engine = dataclasses.replace(engine, env=kept)
    return dataclasses.replace(job.spec, env={**job.spec.env, **system}, engine=engine)
