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
    decided = Decided.of(seen, now, 3600)
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
    assert plan(Decided.of(seen, now, 3600), store, results).blocks == []


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
    sweep = plan(Decided.of(state([]), now, 3600), store, results)
    assert [pin.cid for pin in sweep.pins] == [old]
    assert sweep.summary()["pins"] == 1
    apply(sweep, store)
    assert store.pinned() == [renewed]
    assert not store.holds(old)  # its pin gone, nothing else names it: swept
    assert store.holds(renewed)
    assert store.pins.usage("alice").bytes == 100  # alice's quota is free again of `old`
