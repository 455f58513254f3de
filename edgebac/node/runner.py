"""The job loop on each node: fold new events, run the pure decisions, append what they say,
and start or stop the executions the log assigns to this node.

Everything it acts on comes from the projection of the log; the only state of its own is what
cannot be in the log: the executions running in this process and the answers of policy hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from edgebac.eventlog.clock import wall_clock_ms
from edgebac.eventlog.encoding import Event
from edgebac.eventlog.store import EventLog
from edgebac.node.checkpoints import Checkpoints
from edgebac.node.executions import Executions, failure
from edgebac.node.policy import Policy
from edgebac.node.pruning import LogPruner
from edgebac.runtime.engines import present_images
from edgebac.runtime.executor import Executor
from edgebac.runtime.staging import HeldInputs
from edgebac.scheduler import compute, requester
from edgebac.scheduler import events as ev
from edgebac.scheduler.attention import Attention
from edgebac.scheduler.projection import Projection
from edgebac.scheduler.pruning import start_from
from edgebac.scheduler.requester import RequesterConfig, Verdict
from edgebac.scheduler.retention import Retention
from edgebac.scheduler.state import Execution, Job

logger = logging.getLogger(__name__)
MAX_ROUNDS = 32  # decide/append rounds per step; each round moves every job one step
FULL_LOOK_TICKS = 8  # look at every live job at least this often (in ticks), as a safety net
SHARED_TYPES = (ev.NODE_ANNOUNCED, ev.NODE_LOST)  # events that may change every job's decision
# Ended jobs are let go of (down to a summary) a minute after their end, or beyond the 32 most
# recently ended: a node's memory must not grow with every job it ever saw. Their events stay
# in the log, read again when a late event may change one, or when a client asks for it.
RETENTION = Retention(ended_ms=60_000, ended_max=32)
JOB_EVENTS_MAX = 1_000_000  # read back for one job: all of them
# The start-up fold reads pages of the log and folds each in slices, looking at the loop
# between two: a SIGTERM (or a /healthz) waits for one slice (~50 ms), not a page (0.5-2 s).
FOLD_PAGE = 5000
FOLD_SLICE = 500


def wall_ms() -> int:
    return wall_clock_ms()  # the node's one wall clock (a test may shift it)


class _Watch:
    """Long polls waiting on one job: woken with the job as the fold that changed it left it."""

    __slots__ = ("changed", "job")

    def __init__(self) -> None:
        self.changed = asyncio.Event()
        self.job: Job | None = None


class JobRunner:
    def __init__(
        self,
        log: EventLog,
        me: bytes,
        roles: frozenset[str],
        policy: Policy,
        executors: Mapping[str, Executor],
        work_dir: Path,
        lost_nodes: Callable[[], frozenset[bytes]],
        tick_s: float,
        requester_config: RequesterConfig,
    ) -> None:
        self.log = log
        self.me = me
        self.roles = roles
        self.policy = policy
        self.executors = executors
        self.work_dir = work_dir
        self.lost_nodes = lost_nodes
        self.tick_s = tick_s
        self.requester_config = requester_config
        self.state = Projection(RETENTION)
        self._pending: list[Event] = []
        self._wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._bid_verdicts: dict[tuple[str, int], Verdict] = {}
        self._accept_verdicts: dict[tuple[str, int, bytes], Verdict] = {}
        self._signatures: dict[str, bool] = {}  # job id -> its client signature verifies
        self._asking: set[Any] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._folded = asyncio.Event()  # replaced after each fold: long polls wait on it
        self._watchers: dict[str, _Watch] = {}  # job id -> woken when that job changes
        self._attention = Attention(int(tick_s * 1000 * FULL_LOOK_TICKS))
        self._seen_shared: tuple[Any, ...] = ()  # liveness and images, as last looked at
        self._claimed: dict[str, int] = {}  # what my executions and bids claimed, as last seen
        self.held_inputs = HeldInputs(policy.node.paths)
        self.executions = Executions(log, me, executors, work_dir)
        self.checkpoints = Checkpoints(log, RETENTION)
        self.pruner: LogPruner | None = None  # set by the node when it prunes its log

    # ----- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        # Listen first, then read what is stored: an event committed while the reader's
        # snapshot was being taken would otherwise be in neither (and this node's projection
        # would lack it for good). Events in both are folded once.
        self.log.add_listener(self._on_events)
        began = time.monotonic()
        loaded, after = await self.checkpoints.load()  # then only the events after it fold
        if loaded is not None:
            self.state = loaded
        elif (horizon := await self.log.read_horizon()) is not None:
            start_from(self.state, horizon)  # what the events pruning removed added
        start, folded = after, 0
        while rows := await self.log.since(after, FOLD_PAGE):
            for at in range(0, len(rows), FOLD_SLICE):
                self.state.apply(event for _, event in rows[at : at + FOLD_SLICE])
                await asyncio.sleep(0)  # a stop cancels the fold here; /healthz answers
            after, folded = rows[-1][0], folded + len(rows)
        self.checkpoints.started(start, folded, began)
        await self._reload()
        await self._recover()
        self._loop_task = asyncio.create_task(self._loop(), name="job-runner")

    async def _recover(self) -> None:
        """Executions this node had started before it stopped cannot be resumed: say so."""
        held = self.state.executions.held.values()  # an ended job has none running
        interrupted = [e for e in held if e.node == self.me and e.status == "running"]
        failed = [
            (ev.EXECUTION_FAILED, failure(e, "interrupted: the node restarted"))
            for e in interrupted
        ]
        if failed:
            await self.log.append(failed)
        for leftover in (self.work_dir / "scratch").glob("*"):
            shutil.rmtree(leftover, ignore_errors=True)

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
        tasks = [*self._tasks, *self._running.values()]
        if self._loop_task is not None:
            tasks.append(self._loop_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.executions.close()
        await self.checkpoints.close(self.refresh)  # a clean stop starts fast next time

    def _on_events(self, events: list[Event]) -> None:
        self._pending.extend(events)
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            # Not wait_for: on 3.11 it swallows a cancel that lands as the wait completes,
            # and the loop (so the node's stop) would never end.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.tick_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.step()
                if self.checkpoints.due():
                    self.checkpoints.take(self.refresh())
                elif self.pruner is not None and self.pruner.due():
                    await self.pruner.run(self.refresh, self.checkpoints)
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad step must not stop the node's scheduling for good
                logger.exception("job runner step failed")
                self._attention.everything()

    # ----- one step -----------------------------------------------------------------------------

    def refresh(self) -> Projection:
        """The projection with every stored event folded in: what readers should see."""
        self._fold()
        return self.state

    def _fold(self) -> None:
        if self._pending:
            events, self._pending = self._pending, []
            changed = self.state.apply(events)
            self.checkpoints.since += len(events)
            if any(event.type in SHARED_TYPES for event in events):
                self._attention.everything()
            self._changed(changed)

    def _changed(self, job_ids: set[str]) -> None:
        self._attention.changed(job_ids)
        for job_id in job_ids:
            watch = self._watchers.pop(job_id, None)
            if watch is not None:
                watch.job = self.state.jobs.get(job_id) or self.state.released.get(job_id)
                watch.changed.set()
        self._folded.set()
        self._folded = asyncio.Event()

    async def _reload(self) -> None:
        """Fold again, from the log, the evicted jobs a late event may have changed (see
        `Projection.reload`): before anything decides on them."""
        while self.state.needs_reload:
            job_id = min(self.state.needs_reload)
            events = await self.log.by_job(job_id, limit=JOB_EVENTS_MAX)
            self._changed(self.state.reload(job_id, events))

    async def full_job(self, job_id: str) -> Job | None:
        """The job in full: from the projection, or folded from the log if it was let go of."""
        job = self.refresh().jobs.get(job_id)
        if job is not None or job_id not in self.state.evicted:
            return job
        return self.state.rebuild(job_id, await self.log.by_job(job_id, limit=JOB_EVENTS_MAX))

    def _forget_verdicts(self) -> None:
        """Hook answers matter while their job is live; without this they pile up."""
        for verdicts in (self._bid_verdicts, self._accept_verdicts):
            for key in [key for key in verdicts if key[0] not in self.state.live]:
                del verdicts[key]
        for job_id in [job_id for job_id in self._signatures if job_id not in self.state.live]:
            del self._signatures[job_id]

    def _verify_clients(self, job_ids: Iterable[str] | None) -> None:
        """Check the client signature of each job about to be decided on once per node (one
        ed25519 verify), not at every step: `compute.decide` reads the verdict from the facts."""
        live = self.state.live
        jobs = live.values() if job_ids is None else (live[i] for i in job_ids if i in live)
        for job in jobs:
            if job.client is not None and job.id not in self._signatures:
                self._signatures[job.id] = compute.client_signed(job)

    async def wait_folded(self, timeout_s: float) -> None:
        """Until the projection next changes (or the timeout passes)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._folded.wait()

    async def wait_job(self, job_id: str, timeout_s: float) -> Job | None:
        """Until the projection of `job_id` next changes (or the timeout passes). Long polls of
        many jobs wait here rather than on `wait_folded`: a fold wakes only its jobs' polls.

        Returns the job as that fold left it (None on timeout, or if the fold let go of it):
        under load an ended job is often let go of before its poll runs again, and reading
        it back from the log would be most of what the poll costs."""
        watch = self._watchers.get(job_id)
        if watch is None:
            watch = self._watchers[job_id] = _Watch()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await watch.changed.wait()
        return watch.job

    async def step(self) -> None:
        for _ in range(MAX_ROUNDS):
            self._fold()
            await self._reload()
            planned = self._decide()
            if not planned:
                break
            await self.log.append(planned)
        self._fold()
        await self._reload()
        self._forget_verdicts()
        self._act()

    def facts(self) -> compute.LocalFacts:
        return compute.LocalFacts(
            images=present_images(self.executors),
            local_inputs=self.held_inputs,
            running=frozenset(self._running),
            verdicts=dict(self._bid_verdicts),
            signatures=MappingProxyType(self._signatures),
        )

    def _decide(self) -> list[ev.Planned]:
        now = wall_ms()
        lost, facts, claimed = self.lost_nodes(), self.facts(), self.state.claimed(self.me)
        freed = any(claimed[key] < self._claimed.get(key, 0) for key in claimed)
        if freed or (lost, facts.images) != self._seen_shared:  # what every job depends on
            self._attention.everything()
            self._seen_shared = (lost, facts.images)
        self._claimed = claimed
        job_ids = self._attention.take(now)  # None: every live job
        planned: list[ev.Planned] = []
        if "requester" in self.roles:
            planned += requester.decide(
                self.state,
                now,
                self.me,
                self.requester_config,
                lost_nodes=lost,
                verdicts=self._accept_verdicts,
                job_ids=job_ids,
            )
            self._note_deadlines(now, job_ids)
        if "compute" in self.roles:
            self._verify_clients(job_ids)
            planned += compute.decide(self.state, now, self.me, self.policy.node, facts, job_ids)
        return planned

    def _note_deadlines(self, now: int, job_ids: set[str] | None) -> None:
        """Have the jobs just looked at looked at again when a time limit of theirs comes."""
        live = self.state.live
        jobs = live.values() if job_ids is None else (live[i] for i in job_ids if i in live)
        for job in jobs:
            if job.requester == self.me:
                due = requester.next_deadline(job, now, self.requester_config)
                if due is not None:
                    self._attention.due_at(due, job.id)

    def _act(self) -> None:
        facts = self.facts()
        for execution in compute.to_stop(self.state, self.me, facts):
            self._running[execution.id].cancel()
        for execution in compute.to_start(self.state, self.me, facts, self.policy.node):
            task = asyncio.create_task(self._execute(execution), name=execution.id)
            self._running[execution.id] = task
        self._ask_hooks(facts)

    # ----- hooks --------------------------------------------------------------------------------

    def _ask_hooks(self, facts: compute.LocalFacts) -> None:
        if self.policy.bid_hook is not None and "compute" in self.roles:
            for key in compute.awaiting_verdict(self.state, self.me, self.policy.node, facts):
                job = self.state.jobs[key[0]]
                self._ask(self.policy.bid_hook, key, self._bid_verdicts, job.spec_dict)
        if self.policy.accept_hook is not None and "requester" in self.roles:
            for key, bid in requester.bids_awaiting_verdict(self.state, self.me):
                job = self.state.jobs[key[0]]
                payload = {"job_id": job.id, "spec": job.spec_dict, "bid": bid.to_dict()}
                self._ask(self.policy.accept_hook, key, self._accept_verdicts, payload)

    def _ask(self, hook: Any, key: Any, answers: dict[Any, Verdict], payload: Any) -> None:
        if key in self._asking or key in answers:
            return
        self._asking.add(key)

        async def ask() -> None:
            try:
                answers[key] = await hook.ask(payload)
            finally:
                self._asking.discard(key)
                self._attention.changed([key[0]])
                self._wake.set()

        self._spawn(ask())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ----- executions ---------------------------------------------------------------------------

    def results_dir(self, execution_id: str) -> Path:
        return self.executions.results_dir(execution_id)

    async def _execute(self, execution: Execution) -> None:
        try:
            await self.executions.execute(execution, self.state.jobs[execution.job_id])
        finally:
            self._running.pop(execution.id, None)
            self._wake.set()
