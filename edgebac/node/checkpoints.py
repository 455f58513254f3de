"""When the runner saves its projection, and how it starts from the saved one (the format
and its checks are `scheduler.checkpoint`'s, the tables `eventlog.store`'s).

One every `CHECKPOINT_EVENTS` events folded, or every `CHECKPOINT_S` when anything was, and
at a clean stop: a restart then folds at most about that many events (a few seconds at the
fold's ~10k events/s here, several times that on a Pi-class CPU). Taking one copies on the
loop only the held jobs and what changed since the last; packing and writing run on the log
writer's thread. A checkpoint that does not check out is said in one stderr line and the
whole log is folded instead: a wrong one is never trusted.

The projection's ended jobs are read from the rows the checkpoint wrote (`ended_rows`), over
an overlay of what changed since: from a loaded checkpoint on, or from the first one written
after a whole fold (until then they are all in memory, as a fold leaves them).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from edgebac.eventlog.checkpoints import BadCheckpoint, CheckpointAbandoned, CheckpointWrite
from edgebac.eventlog.prune import Prune
from edgebac.eventlog.store import EventLog
from edgebac.scheduler import checkpoint
from edgebac.scheduler.ended_rows import StoredEnded
from edgebac.scheduler.projection import Projection
from edgebac.scheduler.retention import Retention

logger = logging.getLogger(__name__)
CHECKPOINT_EVENTS = 10_000
CHECKPOINT_S = 60.0
STOP_WAIT_S = 3.0  # how long a stop waits for a checkpoint being written before giving it up
# Fewer events than this folded since the last checkpoint: a stop takes none. Any checkpoint
# streams every ended row's digest for its state hash (0.15 s at 1M events: what a stop cost);
# the next start folds these few after the last one instead (a few ms).
STOP_SKIP_EVENTS = 1_000


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Checkpoints:
    def __init__(self, log: EventLog, retention: Retention | None) -> None:
        self.log = log
        self.retention = retention
        self.since = 0  # events folded since the last checkpoint was taken
        self._at = time.monotonic()  # when it was taken
        self._full = True  # the stored rows are not known to match: rewrite them all
        self._task: asyncio.Task[None] | None = None
        self._ready = False  # the whole stored log was folded: only then is a checkpoint right
        # How start-up went: the position loaded (0: none) and how many events followed it.
        self.started_from: dict[str, Any] = {"position": 0, "folded_after": 0}
        self._rows: StoredEnded | None = None  # the stored ended jobs, once trusted
        self._abandon = False  # a stop gave up the checkpoint being written (see `close`)
        self._unpruned: Prune | None = None  # jobs forgotten whose events are still stored

    async def load(self) -> tuple[Projection | None, int]:
        """The stored checkpoint's state and the log position it folds up to, if it checks
        out; else (None, 0), and the whole log is to be folded."""
        try:
            stored = await self.log.read_checkpoint()
            if stored is None:
                return None, 0
            if stored.format != checkpoint.FORMAT:
                raise checkpoint.CheckpointError(
                    f"format {stored.format}, this edgebac writes {checkpoint.FORMAT}"
                )
            rows = StoredEnded(self.log.ended_reader())
            try:
                state = await asyncio.to_thread(
                    checkpoint.load, stored.body, rows, stored.state_hash, self.retention
                )
            except BaseException:
                rows.close()
                raise
        except (BadCheckpoint, checkpoint.CheckpointError) as exc:
            _say(f"checkpoint refused ({exc}): folding the whole log")
            return None, 0
        self._full, self._rows = False, rows
        return state, stored.pos

    def _abandoned(self) -> bool:
        """Read by the writer's thread between batches of rows."""
        return self._abandon

    def started(self, position: int, folded: int, began: float) -> None:
        """The runner folded the stored log: `folded` events after `position`."""
        self.started_from = {"position": position, "folded_after": folded}
        if position:
            _say(
                f"checkpoint: started from log position {position}, folded {folded} events "
                f"after it ({time.monotonic() - began:.2f} s)"
            )
        self.since, self._at, self._ready = folded, time.monotonic(), True

    def due(self) -> bool:
        if self._task is not None or not self.since:
            return False
        waited = time.monotonic() - self._at
        return self.since >= CHECKPOINT_EVENTS or waited >= CHECKPOINT_S

    def can_take(self) -> bool:
        return self.log.last_pos > 0 and self._task is None and self._ready

    def take(self, state: Projection, prune: Prune | None = None) -> None:
        """Take one of `state`, which must be the fold of every event up to `log.last_pos`,
        and write it in the background (one at a time); with `prune`, the events of the jobs
        `state` just forgot go in its transaction (see `eventlog.prune`)."""
        if not self.can_take():
            if prune is not None:
                raise RuntimeError("a prune must come with a checkpoint taken at once")
            return
        pos = self.log.last_pos
        if self._unpruned is not None:  # forgotten by an earlier checkpoint that failed
            prune = self._unpruned if prune is None else merged(self._unpruned, prune)
        snapshot = checkpoint.snapshot(state, self._full)
        self.since, self._at = 0, time.monotonic()
        self._task = asyncio.create_task(
            self._write(pos, snapshot, state, prune), name="checkpoint"
        )

    async def _write(
        self, pos: int, snapshot: checkpoint.Snapshot, state: Projection, prune: Prune | None
    ) -> None:
        try:
            await self.log.write_checkpoint(pos, lambda: to_write(snapshot, self._abandoned, prune))
        except CheckpointAbandoned:  # a stop gave it up: the rows are the last checkpoint's
            state.evicted.failed()
        except Exception:  # the rows are the last checkpoint's still: its changes stay changes
            logger.exception("writing a checkpoint failed")
            state.evicted.failed()
            self._unpruned = prune  # the jobs stay forgotten: their events go with the next
        else:
            self._unpruned = None
            if self._rows is None:  # the first after a whole fold: read the rows from now on
                self._rows = StoredEnded(self.log.ended_reader())
                state.evicted.committed(self._rows)
            else:
                state.evicted.committed()
            self._full = False
        finally:
            self._task = None

    async def close(self, folded: Callable[[], Projection]) -> None:
        """At a clean stop: finish the one being written, then take a last one if more than
        a few events were folded since (`folded()` gives the state with every stored event
        in), or the last was the first after a whole fold, or a prune waits for one. A stop
        waits at most `STOP_WAIT_S` for each, whatever the history: one still being written
        by then (a full one: the first after a whole-log fold rewrites every ended job's row)
        is given up, rolled back, and the next start folds from the one before."""
        if self._task is not None:
            await self._within_stop(self._task)
        wanted = self._full or self._unpruned is not None or self.since >= STOP_SKIP_EVENTS
        if wanted and not self._abandon:
            self.take(folded())
            if self._task is not None:
                await self._within_stop(self._task)
        if self._abandon:
            _say(
                f"checkpoint: given up at this stop after {STOP_WAIT_S:.0f} s (a full one takes "
                "as long as the history; the node writes one while it runs): the next start "
                "folds more of the log"
            )

    async def _within_stop(self, task: asyncio.Task[None]) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_WAIT_S)
        except TimeoutError:
            self._abandon = True  # the writer's thread rolls back at its next look
            await task

    def close_rows(self) -> None:
        """After the last read of the projection's ended jobs (the log is closing)."""
        if self._rows is not None:
            self._rows.close()


def to_write(
    snapshot: checkpoint.Snapshot,
    abandon: Callable[[], bool] = lambda: False,
    prune: Prune | None = None,
) -> CheckpointWrite:
    """What the writer stores of a snapshot (packed on its thread)."""
    packed = checkpoint.pack(snapshot, abandon)
    return CheckpointWrite(
        checkpoint.FORMAT,
        packed.core,
        packed.jobs,
        packed.executions,
        packed.deleted,
        packed.full,
        packed.state_hash,
        abandon,
        prune,
    )


def merged(first: Prune, then: Prune) -> Prune:
    """One prune of both orders' jobs (the second's cut and archive)."""
    reputation = dict(first.reputation)
    for node, (c, f) in then.reputation.items():
        c0, f0 = reputation.get(node, (0, 0))
        reputation[node] = (c0 + c, f0 + f)
    return replace(then, job_ids=[*first.job_ids, *then.job_ids], reputation=reputation)
