"""Which jobs the next decision round should look at, so a round costs O(what changed).

Decisions are pure functions of the whole state, and idempotent: a job whose events did not
change since it was last looked at gives nothing new, unless time alone moves it (a bid window
ends, a timeout passes) or something every job depends on changed (a node announced or was
lost, free resources grew, a hook answered). So the shell looks at:

- the jobs whose events changed (what `Projection.apply` returns),
- the jobs whose next time limit has come (`due_at`, from `requester.next_deadline`),
- every live job when told that something shared changed, and every `full_every_ms` anyway
  (a safety net: it costs one full look, and catches anything the rules above forgot).

This is bookkeeping of the shell, never state: losing it costs one full look.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable


class Attention:
    def __init__(self, full_every_ms: int) -> None:
        self.full_every_ms = full_every_ms
        self._changed: set[str] = set()
        self._all = True
        self._next_full_ms = 0
        self._due: list[tuple[int, str]] = []  # heap of (ms, job id)
        self._due_of: dict[str, int] = {}  # the earliest pending entry of each job

    def changed(self, job_ids: Iterable[str]) -> None:
        self._changed.update(job_ids)

    def everything(self) -> None:
        """Something all jobs depend on changed: look at every live job next time."""
        self._all = True

    def due_at(self, ms: int, job_id: str) -> None:
        """Look at `job_id` again once the clock reaches `ms`."""
        known = self._due_of.get(job_id)
        if known is None or ms < known:
            self._due_of[job_id] = ms
            heapq.heappush(self._due, (ms, job_id))

    def take(self, now_ms: int) -> set[str] | None:
        """The job ids to look at now (None: all of them), and forget them."""
        while self._due and self._due[0][0] <= now_ms:
            ms, job_id = heapq.heappop(self._due)
            if self._due_of.get(job_id) == ms:  # else a later entry, overtaken by an earlier one
                del self._due_of[job_id]
                self._changed.add(job_id)
        if self._all or now_ms >= self._next_full_ms:
            self._all = False
            self._next_full_ms = now_ms + self.full_every_ms
            self._changed = set()
            return None
        taken, self._changed = self._changed, set()
        return taken
