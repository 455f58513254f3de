"""Retention (`--retain DURATION`): results and content go once nobody needs them any more.

What is kept is decided from the log alone (`keep_roots`, pure): the results of executions
that ended within the retention, the content of the inputs and modules of jobs that have not
ended, and what clients uploaded (`POST /api/v1/content`, a pin) since the horizon (a pin
uploaded again is young again). Everything else may go:

- results folders in `work/results/` of executions that ended before the horizon (their
  content, if published here, is in the store until it goes in turn);
- content DAGs no kept root names: their `complete` markers first (so the store never claims
  to hold a DAG it is deleting), then every block outside the kept DAGs that is older than the
  horizon itself (a block being written or fetched right now is new, so never swept), then
  the shard folders of `content/blocks/` left empty;
- compiled wasm modules in `work/cache/wasm/` and staged S3 and URL inputs in
  `work/cache/inputs/` not used within the retention (each use touches the file).

Two clocks: what the log dates (when an execution ended) is judged by the node's clock
(`wall_clock_ms`, the one its events carry), what the disk dates (an mtime: a block's last
write or use, a pin's last upload, a cached module's last use) by the real one the file
system stamps it with. Judging an mtime by the node's clock would take a block written a
moment ago for old whenever that clock runs ahead (and keep old files while it runs behind).

Crash-safe by order: a sweep cut short has removed only what nothing needed. Pruning the log
is `node/pruning.py`'s.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgebac.eventlog.clock import wall_clock_ms
from edgebac.sinks.blockstore import BlockStore
from edgebac.sinks.cid import CID
from edgebac.sinks.errors import BadCid, BadContent, ContentNotFound, CorruptBlock
from edgebac.sinks.exporter import dag_members
from edgebac.sinks.pins import Pin

MAX_DAG_BLOCKS = 10_000_000  # a kept DAG larger than this is kept whole, unindexed
FIRST_SWEEP_S = 5.0  # after the node is ready: a restarted node need not wait an interval
WASM_CACHE = Path("cache") / "wasm"  # under the work folder (runtime.engines puts it there)
INPUTS_CACHE = Path("cache") / "inputs"  # staged S3 and URL inputs (runtime.providers)


def _cid(text: str | None) -> CID | None:
    if not text:
        return None
    try:
        return CID.parse(text.removeprefix("ipfs://").strip("/"))
    except (BadCid, ValueError):
        return None  # an S3 prefix, a URL: not this store's


def keep_roots(state: Any, horizon_ms: int) -> set[CID]:
    """The DAGs the log says someone may still want: recent results, and the content inputs
    and modules of jobs not ended. Pure: from the projection and the horizon only."""
    keep: set[CID] = set()
    for execution in state.executions.since(horizon_ms):  # ended jobs' by index
        ended = execution.ended_hlc.ms if execution.ended_hlc is not None else None
        if ended is None or ended >= horizon_ms:
            keep |= {c for c in (_cid(execution.reference), _cid(execution.digest)) if c}
    for job in state.jobs.values():
        if job.terminal or job.spec is None:
            continue
        sources = [i.source.url for i in job.spec.inputs]
        module = getattr(job.spec.engine, "module", None)
        if module is not None:
            sources.append(module.url)
        keep |= {c for c in map(_cid, (s for s in sources if s.startswith("ipfs://"))) if c}
    return keep


def ended_at(state: Any) -> dict[str, int | None]:
    """When each execution the log knows ended (ms; None: not yet)."""
    return state.executions.ended_ms()  # ended jobs' from one column, not their rows


def old_results(ended: dict[str, int | None], names: Iterable[str], horizon_ms: int) -> list[str]:
    """Which results folders (named by execution id) may go: their execution ended before the
    horizon. A folder of an execution the log does not know is left to `plan`'s age check."""
    return sorted(name for name in names if (ms := ended.get(name)) is not None and ms < horizon_ms)


@dataclass
class Sweep:
    """What a sweep removes (or, dry, would)."""

    folders: list[Path] = field(default_factory=list)
    pins: list[Pin] = field(default_factory=list)
    markers: list[Path] = field(default_factory=list)
    blocks: list[Path] = field(default_factory=list)
    cached: list[Path] = field(default_factory=list)
    bytes: int = 0
    shards: int = 0  # emptied shard folders removed (known once applied)

    def summary(self) -> dict[str, Any]:
        return {
            "results_folders": len(self.folders),
            "pins": len(self.pins),
            "dags": len(self.markers),
            "blocks": len(self.blocks),
            "cached_modules": len(self.cached),
            "shard_folders": self.shards,
            "bytes": self.bytes,
        }


@dataclass(frozen=True)
class Decided:
    """What the log says, taken on the event loop so the disk work can run in a thread:
    `horizon_ms` by the node's clock, for what the log dates; `files_before_s` by the real
    clock, for mtimes."""

    horizon_ms: int
    roots: frozenset[CID]
    ended: dict[str, int | None]
    files_before_s: float

    @classmethod
    def of(
        cls, state: Any, now_ms: int, retain_s: float, real_now_s: float | None = None
    ) -> Decided:
        """At `now_ms` of the node's clock and `real_now_s` (default: now) of the real one."""
        horizon_ms = now_ms - int(retain_s * 1000)
        real = time.time() if real_now_s is None else real_now_s
        roots = frozenset(keep_roots(state, horizon_ms))
        return cls(horizon_ms, roots, ended_at(state), real - retain_s)


def plan(
    decided: Decided,
    store: BlockStore,
    results: Path,
    cache: Path | None = None,
    halted: Callable[[], bool] = lambda: False,
) -> Sweep:
    """What may go now (reads the disk; changes nothing). `cache`: the compiled modules'
    folder (default: `work/cache/wasm` beside `results`). Cut short once `halted()` (what
    it found so far is no less right: `apply` then stops too)."""
    sweep = Sweep()
    _plan_folders(decided, results, sweep, halted)
    _plan_content(decided, store, sweep, halted)
    cache = results.parent / WASM_CACHE if cache is None else cache
    for entry in sorted(cache.iterdir()) if cache.is_dir() else []:
        if entry.is_file() and _mtime(entry) < decided.files_before_s:  # unused, or a part
            sweep.cached.append(entry)
            sweep.bytes += entry.lstat().st_size
    inputs = results.parent / INPUTS_CACHE  # each use touches a file: unused ones go
    for entry in sorted(inputs.rglob("*")) if inputs.is_dir() else []:
        if halted():
            break
        if entry.is_file() and _mtime(entry) < decided.files_before_s:
            sweep.cached.append(entry)
            sweep.bytes += entry.lstat().st_size
    return sweep


def _plan_content(
    decided: Decided, store: BlockStore, sweep: Sweep, halted: Callable[[], bool]
) -> None:
    horizon_s = decided.files_before_s
    roots = set(decided.roots)
    for pin in store.pins.all():  # a pin not uploaded again since the horizon goes
        if pin.at_s >= horizon_s:
            roots.add(pin.cid)
        else:
            sweep.pins.append(pin)
    kept = _kept_blocks(store, roots, halted)
    if halted():  # `kept` may be short: no block is judged by it
        return
    complete = store.root / "complete"
    for marker in sorted(complete.iterdir()) if complete.is_dir() else []:
        if _cid(marker.name) not in roots:
            sweep.markers.append(marker)
    for block in sorted((store.root / "blocks").rglob("*")):
        if halted():
            return
        if block.is_file() and _cid(block.name) not in kept and _mtime(block) < horizon_s:
            sweep.blocks.append(block)
            sweep.bytes += block.stat().st_size


def _kept_blocks(store: BlockStore, roots: set[CID], halted: Callable[[], bool]) -> set[CID]:
    kept: set[CID] = set()
    for root in roots:
        if halted():
            break
        try:
            kept |= dag_members(store.get_block, root, MAX_DAG_BLOCKS)
        except (ContentNotFound, CorruptBlock, BadContent):
            kept.add(root)  # not (all) here, or too large to index: keep what there is
    return kept


def _plan_folders(
    decided: Decided, results: Path, sweep: Sweep, halted: Callable[[], bool]
) -> None:
    if not results.is_dir():
        return
    paths = list(results.iterdir())
    old = set(old_results(decided.ended, [p.name for p in paths], decided.horizon_ms))
    for path in paths:
        if halted():
            return
        unknown = path.name not in decided.ended  # not in the log: by its age alone
        if path.name in old or (unknown and _mtime(path) < decided.files_before_s):
            sweep.folders.append(path)
            sweep.bytes += _tree_size(path)


def apply(
    sweep: Sweep,
    store: BlockStore,
    files_before_s: float | None = None,
    halted: Callable[[], bool] = lambda: False,
) -> bool:
    """Remove in the crash-safe order: folders, pins, then markers, then blocks (with
    `files_before_s`, only those still older than it: a block used again since the plan
    stays), then the shard folders left empty; cached modules (apart: nothing names them).
    Stops between two removals once `halted()` (a node stopping: a sweep of a backlog takes
    minutes, and a stop must not wait for it); the order makes that as safe as a crash.
    False if it stopped so."""
    for folder in sweep.folders:
        if halted():
            return False
        shutil.rmtree(folder, ignore_errors=True)
    for pin in sweep.pins:
        store.pins.remove(pin)
    for path in sweep.markers:
        path.unlink(missing_ok=True)
    for path in [*sweep.blocks, *sweep.cached]:
        if halted():
            return False
        if files_before_s is None or _mtime(path) < files_before_s:
            path.unlink(missing_ok=True)
    sweep.shards = store.drop_empty_shards()
    return True


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return time.time()


def _tree_size(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    total = 0
    for folder, _, files in os.walk(path):
        total += sum(Path(folder, f).lstat().st_size for f in files)
    return total


class Retainer:
    """Sweeps a running node's results and store every so often (a thread does the disk)."""

    def __init__(
        self,
        retain_s: float,
        state: Callable[[], Any],
        store: BlockStore,
        results: Path,
        say: Callable[[str], None],
    ) -> None:
        self.retain_s = retain_s
        self.interval_s = min(max(retain_s / 4, 1.0), 600.0)
        self._state, self._store, self._results = state, store, results
        self._say = say
        self._task: asyncio.Task[None] | None = None
        self._stopping = threading.Event()  # read by the sweep's thread between removals
        self.last: dict[str, Any] = {}

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="retention")

    def describe(self) -> dict[str, Any]:
        return {"retain_s": self.retain_s, "every_s": self.interval_s, "last_sweep": self.last}

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        """The first sweep soon after start (a node restarted after a long stop has a backlog
        to sweep), then one every interval."""
        await asyncio.sleep(min(FIRST_SWEEP_S, self.interval_s))
        while True:
            try:
                await self.sweep_once()
            except OSError as exc:  # a disk error: said, and tried again next time
                self._say(f"retention sweep failed: {exc}")
            await asyncio.sleep(self.interval_s)

    async def sweep_once(self) -> dict[str, Any]:
        decided = Decided.of(self._state(), wall_clock_ms(), self.retain_s)
        halted, began = self._stopping.is_set, time.monotonic()
        sweep = await asyncio.to_thread(plan, decided, self._store, self._results, None, halted)
        done = await asyncio.to_thread(apply, sweep, self._store, decided.files_before_s, halted)
        if done:
            took = round(time.monotonic() - began, 3)
            self.last = {**sweep.summary(), "at_ms": wall_clock_ms(), "took_s": took}
        return self.last


def collect_offline(data_dir: Path, retain_s: float, dry_run: bool) -> dict[str, Any]:
    """`edgebac node gc`: the same sweep on a stopped node's data dir (its lock held), from a
    fold of its whole log. What went (or, dry, would go)."""
    from edgebac.eventlog import offline
    from edgebac.eventlog.encoding import decode
    from edgebac.node.datadir import LOG_FILE, open_data_dir
    from edgebac.scheduler.projection import Projection
    from edgebac.scheduler.pruning import start_from

    folder = open_data_dir(data_dir)  # refuses a data dir a running node holds
    try:
        conn = offline.open_readonly(folder.path / LOG_FILE)
        try:
            state = Projection()
            horizon = offline.stored_horizon(conn)
            if horizon is not None:  # a pruned log: its fold starts from what pruning took
                start_from(state, horizon)
            state.apply(decode(raw) for _, raw in offline.stored_by_pos(conn))
        finally:
            conn.close()
        store = BlockStore(folder.path / "content")
        decided = Decided.of(state, wall_clock_ms(), retain_s)
        sweep = plan(decided, store, folder.path / "work" / "results")
        if not dry_run:
            apply(sweep, store, decided.files_before_s)
    finally:
        folder.release(False)
    return {**sweep.summary(), "dry_run": dry_run}
