"""When the node prunes its log (`--retain-log`): the events of jobs that ended longer ago
than that go, a batch at a time, each batch in a checkpoint's transaction (`eventlog.prune`),
the projection forgetting those jobs at the moment the checkpoint is taken (`scheduler.pruning`).

Off unless asked for: a node that prunes can no longer give a node that joins late the whole
history (see the README, "History"), so the operator chooses it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from edgebac.eventlog.clock import Hlc
from edgebac.eventlog.store import EventLog
from edgebac.node.checkpoints import Checkpoints
from edgebac.scheduler.projection import Projection
from edgebac.scheduler.pruning import forget

BATCH = 5_000  # jobs per prune: bounds one checkpoint's transaction


class LogPruner:
    def __init__(self, log: EventLog, retain_s: float, archive: Path | None) -> None:
        self.log = log
        self.retain_s = retain_s
        self.archive = archive
        self.every_s = min(600.0, max(1.0, retain_s / 4))  # how far the cut moves at a time
        # How often to look between moves: jobs let go of since (ended rows of a later
        # checkpoint) are pruned at the cut the other nodes used, not at the next one.
        self.look_s = min(60.0, self.every_s)
        self._last = 0.0  # monotonic time of the last look (0: look at once)
        self._last_cut: Hlc | None = None
        self.pruned = {"jobs": 0, "batches": 0}
        log.horizon_moving = True  # until a look finds nothing due (joiners wait for it)
        log.horizon_move = self.next_move

    def due(self) -> bool:
        """A look every period, and at once when the cut moves on: nodes with the same
        retention then prune the same jobs within moments of each other."""
        return time.monotonic() - self._last >= self.look_s or self.cut() != self._last_cut

    def _retained_from(self) -> tuple[int, int]:
        """(retention ago in ms, the pruner's period in ms)."""
        ago = max(0, self.log.clock.wall_ms() - int(self.retain_s * 1000))
        return ago, int(self.every_s * 1000)

    def cut(self) -> Hlc:
        """Retention ago, rounded down to the pruner's period: a cut every node with the same
        `--retain-log` computes alike, so their horizons agree (a node joining late needs its
        seeds to agree, gossip.late) but for the moments after the cut moves."""
        ms, step = self._retained_from()
        return Hlc(ms - ms % step, 0)

    def next_move(self) -> tuple[int, int]:
        """(ms until the cut next moves, the pruner's period in ms): a joiner that adopted the
        horizon just before a move could meet its seeds pruning what it has not fetched yet,
        so it waits for the move (gossip.late)."""
        ms, step = self._retained_from()
        return step - ms % step, step

    async def run(self, refresh: Callable[[], Projection], checkpoints: Checkpoints) -> int:
        """Prune one batch if any job is due and a checkpoint can be taken now; returns how
        many jobs went. After a batch it looks again as soon as that checkpoint is written."""
        if not checkpoints.can_take():  # one is being written: look again next tick
            return 0
        self._last = time.monotonic()
        cut = self._last_cut = self.cut()
        ids = await self.log.prunable(cut, BATCH)
        if not ids:
            self.log.horizon_moving = False
            return 0
        if not checkpoints.can_take():  # one began meanwhile: this look did not happen
            self._last, self._last_cut = 0.0, None
            return 0
        state = refresh()  # from here on nothing awaits: forget and take see one state
        gone, reputation = forget(state, ids)
        if not gone:
            return 0
        order = self.log.prune_order(gone, cut, reputation, self._archive_file(cut))
        checkpoints.take(state, order)
        self.pruned["jobs"] += len(gone)
        self.pruned["batches"] += 1
        # Look again once this checkpoint is written (`can_take`): the next batch, or nothing
        # left, which says the horizon has stopped moving.
        self.log.horizon_moving = True
        self._last = 0.0
        return len(gone)

    def _archive_file(self, cut: Hlc) -> Path | None:
        if self.archive is None:
            return None
        day = datetime.fromtimestamp(cut.ms / 1000, UTC).strftime("%Y-%m-%d")
        return self.archive / f"pruned-{day}.db"

    def describe(self) -> dict[str, object]:
        return {
            "retain_log_s": self.retain_s,
            "archive": str(self.archive or ""),
            **self.pruned,
            "moving": self.log.horizon_moving,  # a prune of many batches under way
            "asked_for_pruned": self.log.pruned_asked,  # peers that cannot catch up from here
        }


def preview_offline(log_file: Path, retain_s: float) -> dict[str, object]:
    """`edgebac node gc --retain-log --dry-run`: what a prune would remove from a data dir's
    log now (read only: works while its node runs)."""
    from edgebac.eventlog import offline
    from edgebac.eventlog.prune import preview

    cut = Hlc(int((time.time() - retain_s) * 1000))
    conn = offline.open_readonly(log_file)
    try:
        jobs, events, size = preview(conn, cut)
    finally:
        conn.close()
    day = datetime.fromtimestamp(cut.ms / 1000, UTC).isoformat(timespec="seconds")
    return {"jobs": len(jobs), "events": events, "bytes": size, "cut": day}
