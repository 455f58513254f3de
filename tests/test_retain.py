"""Retention's decisions from the log (pure) and its plan over a real block store."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

from edgebac.node.retain import Decided, apply, keep_roots, old_results, plan
from edgebac.scheduler.ended import EndedStore, Executions
from edgebac.sinks.blockstore import BlockStore

NOW_MS = 1_800_000_000_000
HOUR = 3_600_000


def execution(eid: str, ended_ms: int | None, cid: str | None = None):
    ended = SimpleNamespace(ms=ended_ms) if ended_ms is not None else None
    return SimpleNamespace(
        id=eid, ended_hlc=ended, reference=f"ipfs://{cid}" if cid else None, digest=cid
    )


def job(terminal: bool, inputs=(), module: str | None = None):
    engine = SimpleNamespace(module=SimpleNamespace(url=module) if module else None)
    spec = SimpleNamespace(
        inputs=[SimpleNamespace(source=SimpleNamespace(url=u)) for u in inputs], engine=engine
    )
    return SimpleNamespace(terminal=terminal, spec=spec)


def state(executions=(), jobs=()):
    held = Executions({e.id: e for e in executions}, EndedStore())
    return SimpleNamespace(executions=held, jobs={str(i): j for i, j in enumerate(jobs)})


def stored(store: BlockStore, text: str):
    return store.import_files({"stdout": text.encode()}).cid


def test_recent_results_and_the_content_of_unended_jobs_are_kept(tmp_path):
    store = BlockStore(tmp_path)
    old, recent, running, module, ended_input = (stored(store, t) for t in "abcde")
    seen = state(
        [
            execution("old", NOW_MS - 2 * HOUR, str(old)),
            execution("recent", NOW_MS - 10, str(recent)),
            execution("running", None, str(running)),  # not ended: its reference is kept
        ],
        [
            job(False, [f"ipfs://{module}"]),
            job(False, module=f"ipfs://{module}"),
            job(True, [f"ipfs://{ended_input}"]),
        ],
    )
    assert keep_roots(seen, NOW_MS - HOUR) == {recent, running, module}


def test_results_folders_go_when_their_execution_ended_before_the_horizon():
    ended = {"a": NOW_MS - 2 * HOUR, "b": NOW_MS, "c": None}
    assert old_results(ended, ["a", "b", "c", "unknown"], NOW_MS - HOUR) == ["a"]


def age(path: Path, seconds: float) -> None:
    when = time.time() - seconds
    os.utime(path, (when, when))


def test_a_plan_sweeps_old_unkept_dags_and_keeps_pinned_recent_and_shared_blocks(tmp_path):
    store = BlockStore(tmp_path / "content")
    results = tmp_path / "results"
    (results / "old-exec").mkdir(parents=True)
    (results / "old-exec" / "stdout").write_text("x" * 100)
    (results / "new-exec").mkdir()
    gone = stored(store, "gone")
    orphan = stored(store, "orphan")
    pinned = stored(store, "pinned")
    store.pin(pinned)
    shared = store.import_files({"stdout": b"gone", "extra": b"more"}).cid  # shares a leaf
    for cid in (gone, orphan, pinned, shared):
        store.mark_complete(cid)
    for block in (tmp_path / "content" / "blocks").rglob("*"):
        if block.is_file():
            age(block, 7200)
    now = time.time()
    seen = state(
        [
            execution("old-exec", int((now - 7200) * 1000), str(gone)),
            execution("new-exec", int(now * 1000), str(shared)),
        ]
    )
    decided = Decided.of(seen, int(now * 1000), 3600, now)
    sweep = plan(decided, store, results)
    assert [p.name for p in sweep.folders] == ["old-exec"]
    assert {p.name for p in sweep.markers} == {str(gone), str(orphan)}
    apply(sweep, store)
    assert not (results / "old-exec").exists()
    assert (results / "new-exec").exists()
    assert not store.holds(gone)  # its root block went; its leaf stays, shared with `shared`
    assert store.holds(shared)
    assert store.holds(pinned)
    assert not store.holds(orphan)  # named by no execution nor pin: old, so gone
    assert plan(Decided.of(seen, int(now * 1000), 3600, now), store, results).blocks == []


def test_a_block_used_again_is_young_again(tmp_path):
    from edgebac.sinks.cid import CID

    store = BlockStore(tmp_path)
    stored(store, "again")
    blocks = [b for b in (tmp_path / "blocks").rglob("*") if b.is_file()]
    assert blocks
    for block in blocks:
        age(block, 7200)
        store.put(CID.parse(block.name), block.read_bytes(), verified=True)  # already held
        assert block.stat().st_mtime > time.time() - 60


def test_a_pin_goes_once_its_last_upload_is_older_than_the_horizon(tmp_path):
    store = BlockStore(tmp_path / "content")
    results = tmp_path / "results"
    old, renewed = stored(store, "old upload"), stored(store, "uploaded again")
    for cid in (old, renewed):
        store.pin(cid, "alice", 100)
        store.mark_complete(cid)
    for path in (tmp_path / "content").rglob("*"):
        if path.is_file():
            age(path, 7200)
    store.pin(renewed, "alice", 100)  # uploaded again just now: young again
    now = time.time()
    sweep = plan(Decided.of(state([]), int(now * 1000), 3600, now), store, results)
    assert [pin.cid for pin in sweep.pins] == [old]
    assert sweep.summary()["pins"] == 1
    apply(sweep, store)
    assert store.pinned() == [renewed]
    assert not store.holds(old)  # its pin gone, nothing else names it: swept
    assert store.holds(renewed)
    assert store.pins.usage("alice").bytes == 100  # alice's quota is free again of `old`


def test_the_log_is_judged_by_the_node_clock_and_files_by_the_real_one(tmp_path):
    """A node whose clock runs 2 h ahead: an execution that ended an hour and a half ago by
    that clock is past a 1-hour retention (its results folder goes) though its folder and
    blocks were written moments ago; those blocks stay, as an mtime is real time (a block
    written now must never look old because the node's clock runs ahead)."""
    store = BlockStore(tmp_path / "content")
    results = tmp_path / "work" / "results"
    (results / "ran").mkdir(parents=True)
    (results / "stray").mkdir()  # not in the log: by its real age only
    done = stored(store, "its result")
    store.mark_complete(done)
    now = time.time()
    ahead_ms = int(now * 1000) + 2 * HOUR
    seen = state([execution("ran", ahead_ms - 90 * 60_000, str(done))])
    decided = Decided.of(seen, ahead_ms, 3600, now)
    assert decided.horizon_ms == ahead_ms - HOUR
    sweep = plan(decided, store, results)
    assert [p.name for p in sweep.folders] == ["ran"]
    assert [m.name for m in sweep.markers] == [str(done)]  # no root names it any more
    assert sweep.blocks == []  # written just now, by the real clock
    files = [b for b in (tmp_path / "content" / "blocks").rglob("*") if b.is_file()]
    for block in files:
        age(block, 7200)  # as they will be once the real clock has moved on too
    assert sorted(plan(decided, store, results).blocks) == sorted(files)


def test_a_sweep_removes_the_shard_folders_it_empties_and_a_put_makes_one_again(tmp_path):
    store = BlockStore(tmp_path / "content")
    results = tmp_path / "results"
    kept = stored(store, "kept")
    store.pin(kept)
    for name in ("a", "b", "c"):
        stored(store, name)
    blocks = tmp_path / "content" / "blocks"
    for path in blocks.rglob("*"):
        age(path, 7200)
    store.pin(kept)  # young again
    before = {p.name for p in blocks.iterdir()}
    now = time.time()
    sweep = plan(Decided.of(state([]), int(now * 1000), 3600, now), store, results)
    assert len(sweep.blocks) == 6  # a folder block and a leaf each
    apply(sweep, store, now - 3600)
    left = {p.name for p in blocks.iterdir()}
    assert left == {p.parent.name for p in blocks.rglob("*") if p.is_file()}  # none empty
    assert sweep.summary()["shard_folders"] == len(before - left) > 0
    assert store.holds(kept)
    again = stored(store, "a")  # into a shard folder the sweep removed: made again
    assert store.holds(again)
    assert str(again)[-3:-1] in before - left  # (this store had made that folder before)


def test_a_block_used_again_after_the_plan_is_not_removed(tmp_path):
    store = BlockStore(tmp_path / "content")
    gone = stored(store, "used again")
    for path in (tmp_path / "content" / "blocks").rglob("*"):
        age(path, 7200)
    now = time.time()
    sweep = plan(Decided.of(state([]), int(now * 1000), 3600, now), store, tmp_path / "r")
    assert sweep.blocks
    stored(store, "used again")  # a new DAG of the same block, between plan and apply
    apply(sweep, store, now - 3600)
    assert store.holds(gone)


def test_compiled_modules_unused_within_the_retention_go(tmp_path):
    from edgebac.runtime.wasm_cache import ModuleCache

    work = tmp_path / "work"
    cache = ModuleCache(work / "cache" / "wasm")
    module = (Path(__file__).parent.parent / "fixtures" / "wasm" / "hello.wasm").read_bytes()
    old = cache.artifact(module)
    used = ModuleCache(work / "cache" / "wasm", fuel=True).artifact(module)
    part = work / "cache" / "wasm" / ".part-cut-short"
    part.write_bytes(b"half an artifact")
    for path in (old, used, part):
        age(path, 7200)
    assert ModuleCache(work / "cache" / "wasm", fuel=True).artifact(module) == used  # used now
    store = BlockStore(tmp_path / "content")
    now = time.time()
    sweep = plan(Decided.of(state([]), int(now * 1000), 3600, now), store, work / "results")
    assert sorted(sweep.cached) == sorted([old, part])
    apply(sweep, store, now - 3600)
    assert not old.exists()
    assert not part.exists()
    assert used.exists()
    assert cache.artifact(module) == old  # the next job compiles it again
    assert old.exists()


def test_a_sweep_stops_between_two_removals_in_its_crash_safe_order(tmp_path):
    """A node stopping halts its sweep (a backlog can take minutes): what went by then is a
    prefix of the crash-safe order (results folders first, blocks last)."""
    store = BlockStore(tmp_path / "content")
    results = tmp_path / "results"
    for name in ("a", "b", "c"):
        (results / name).mkdir(parents=True)
    stored(store, "unkept")
    for path in [*results.rglob("*"), *(tmp_path / "content").rglob("*")]:
        age(path, 7200)
    now = time.time()
    decided = Decided.of(state([]), int(now * 1000), 3600, now)
    assert plan(decided, store, results, halted=lambda: True).folders == []
    sweep = plan(decided, store, results)
    assert len(sweep.folders) == 3
    assert sweep.blocks
    looks = iter([False, True])
    assert not apply(sweep, store, now - 3600, lambda: next(looks, True))
    assert len(list(results.iterdir())) == 2  # one folder went, then it stopped
    assert all(block.exists() for block in sweep.blocks)
    assert apply(sweep, store, now - 3600)  # the next sweep finishes the job
    assert not list(results.iterdir())


async def test_staged_inputs_unused_within_the_retention_go(tmp_path):
    """`work/cache/inputs` (S3 objects and checked URL downloads) grew for ever. A staging
    that finds its input cached marks it used; those unused within the retention go."""
    import hashlib

    from edgebac.runtime.providers import Fetch
    from edgebac.runtime.providers.http import stage

    work = tmp_path / "work"
    inputs = work / "cache" / "inputs"
    body = b"a downloaded input"
    digest = hashlib.sha256(body).hexdigest()
    used, unused = inputs / "http" / digest, inputs / "http" / ("0" * 64)
    s3_object = inputs / "s3" / "ab" / ("ab" + "1" * 62)
    for path in (used, unused, s3_object):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        age(path, 7200)
    dest = tmp_path / "job" / "inputs"
    dest.mkdir(parents=True)
    url = f"http://127.0.0.1:9/input#sha256={digest}"  # found in the cache: never dialled
    await stage(Fetch(url, dest, inputs, 1 << 20), None)  # type: ignore[arg-type]
    assert (dest / "input").read_bytes() == body
    store = BlockStore(tmp_path / "content")
    now = time.time()
    sweep = plan(Decided.of(state([]), int(now * 1000), 3600, now), store, work / "results")
    assert sorted(sweep.cached) == sorted([unused, s3_object])
    apply(sweep, store, now - 3600)
    assert used.exists()
    assert not unused.exists()
    assert not s3_object.exists()
