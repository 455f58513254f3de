"""A late node catches up on megabytes of real job history, from its only seed, over real
processes: bodies far larger than a socket buffer must arrive whole (issue 12).

Node A is a requester holding several MB of `JobCreated` events made the way users make them
(`POST /api/v1/jobs`): wasm jobs with inline modules of 10-500 KB (a real module grown with a
custom section) or large args, and one job whose `JobCreated` is exactly the largest event the
log accepts. No node runs compute, so the history holds still while others copy it.
"""

from __future__ import annotations

import base64
import concurrent.futures
import os
import time
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from edgebac.eventlog.clock import HybridClock
from edgebac.eventlog.encoding import MAX_EVENT_BYTES, seal
from edgebac.gossip.envelope import Envelope
from edgebac.scheduler.spec import parse_spec
from tests.netfix import host_port, info, post_json, sealed_post, vv
from tests.procs import NodeProcess, Nodes, nodes_fixture, wait_for

nodes = nodes_fixture()
WASM = Path(__file__).resolve().parent.parent / "fixtures" / "wasm"
HISTORY_BYTES = 6 << 20
SIZES_KB = (10, 30, 60, 120, 250, 380, 500)
CATCH_UP_S = 45.0  # a few seconds when well; generous for a machine shared by many tests


def _leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def grown_module(size: int) -> bytes:
    """exit3.wasm with a custom section appended: still a valid module, `size` bytes or so."""
    module = (WASM / "exit3.wasm").read_bytes()
    name = b"padding"
    payload = _leb128(len(name)) + name + b"\xa5" * max(0, size - len(module) - 16)
    return module + b"\x00" + _leb128(len(payload)) + payload


def wasm_spec(module: bytes, **engine: Any) -> dict[str, Any]:
    source = "inline:base64:" + base64.b64encode(module).decode()
    return {"engine": {"type": "wasm", "module": source, **engine}, "retries": 0}


def job_created_bytes(spec: dict[str, Any]) -> int:
    """About the size of the `JobCreated` a requester writes for `spec` (its own fields aside)."""
    body = {"job_id": "j-" + "0" * 16, "spec": parse_spec(spec).to_dict()}
    key = SigningKey.generate()
    return len(seal(key, 2, bytes(32), HybridClock(60_000).now(), "JobCreated", body).raw)


def history_specs() -> list[dict[str, Any]]:
    """Jobs of 10-500 KB, until HISTORY_BYTES."""
    specs: list[dict[str, Any]] = []
    total, turn = 0, 0
    while total < HISTORY_BYTES:
        size = SIZES_KB[turn % len(SIZES_KB)] << 10
        if turn % 3 == 2:  # big args instead of a big module
            spec = wasm_spec(grown_module(0), args=[f"{i:08d}" * 16 for i in range(size // 128)])
        else:
            spec = wasm_spec(grown_module(size * 3 // 4))  # base64 grows it by a third
        specs.append(spec)
        total += job_created_bytes(spec)
        turn += 1
    return specs


def submit(node: NodeProcess, spec: dict[str, Any]) -> str:
    status, body = post_json(node.url + "/api/v1/jobs", spec)
    assert status == 201, body
    return body["job_id"]


def padded(pad: int) -> dict[str, Any]:
    return wasm_spec((WASM / "exit3.wasm").read_bytes(), env={"PAD": "p" * pad})


def submit_largest(node: NodeProcess) -> None:
    """A job whose `JobCreated` is exactly MAX_EVENT_BYTES, padded in one long env value: the
    size of a first such event, as the node wrote it, says how much padding fills the rest.
    (Past 64 KiB a string's header no longer grows, so size is linear in the padding.)"""
    probe = 900_000
    (first,) = raw_sizes(node, "JobCreated", submit(node, padded(probe)))
    (largest,) = raw_sizes(
        node, "JobCreated", submit(node, padded(probe + MAX_EVENT_BYTES - first))
    )
    assert largest == MAX_EVENT_BYTES


def raw_sizes(node: NodeProcess, type_: str, job_id: str = "") -> list[int]:
    """The sizes of a node's events of one type (of one job), as stored."""
    sizes: list[int] = []
    after = 0
    query = f"limit=20&raw=1&type={type_}" + (f"&job_id={job_id}" if job_id else "")
    while True:
        _, page = node.get_json(f"/api/v1/events?after={after}&{query}")
        sizes.extend(len(event["raw"]) // 2 for event in page["events"])
        if not page["more"]:
            return sizes
        after = page["next"]


def holder(nodes: Nodes, tmp_path: Path) -> tuple[NodeProcess, dict[str, int]]:
    """Node A with its history written through its API; (A, its version vector)."""
    a = nodes.start(tmp_path / "a", "--roles", "requester", listen="127.0.0.2:0")
    specs = history_specs()
    for spec in specs[:4]:
        submit(a, spec)
    submit_largest(a)  # in the middle of the history
    for spec in specs[4:]:
        submit(a, spec)
    sizes = raw_sizes(a, "JobCreated")
    assert sum(sizes) >= 5 << 20
    assert max(sizes) == MAX_EVENT_BYTES
    assert min(sizes) < 20 << 10
    return a, vv(a)


def refused_bodies(node: NodeProcess) -> dict[str, int]:
    """The node's counts of gossip bodies refused unread, by cause (`refused_body_<code>`)."""
    return {k: v for k, v in info(node)["gossip"].items() if k.startswith("refused_body") and v}


def caught_up(node: NodeProcess, target: dict[str, int]) -> bool:
    held = vv(node)
    return all(held.get(author, 0) >= seq for author, seq in target.items())


def test_an_empty_node_catches_up_on_megabytes_of_jobs(nodes, tmp_path):
    a, target = holder(nodes, tmp_path)
    started = time.monotonic()
    b = nodes.start(tmp_path / "b", "--roles", "requester", "--peers", host_port(a))
    wait_for(lambda: caught_up(b, target), CATCH_UP_S, "the late node to hold A's history")
    print(f"caught up on {info(a)['events']} events in {time.monotonic() - started:.1f} s")
    wait_for(lambda: vv(a) == vv(b), CATCH_UP_S, "equal version vectors")
    # No body refused, whatever the cause: one cut off on the way fails to open and counts as
    # sealed with another key (the seal cannot tell the two apart), or as cut.
    assert refused_bodies(a) == refused_bodies(b) == {}
    # The counter the assertion reads is the one a refused body moves (names change).
    stranger = Envelope(os.urandom(32), bytes(SigningKey.generate().verify_key), 60_000, 1 << 20)
    assert sealed_post(b.url, stranger.seal({"t": "sums"}))[0] == 403
    assert refused_bodies(b) == {"refused_body_wrong_network_key": 1}


def test_a_node_killed_halfway_through_catch_up_resumes_after_restart(nodes, tmp_path):
    a, target = holder(nodes, tmp_path)
    author = info(a)["public_key"]
    b = nodes.start(tmp_path / "b", "--roles", "requester", "--peers", host_port(a))
    address = host_port(b)

    def partway() -> bool:
        return 1 < vv(b).get(author, 0) < target[author]

    wait_for(partway, CATCH_UP_S, "the late node to hold part of A's history")
    b.kill()
    b = nodes.start(b.data_dir, "--roles", "requester", "--peers", host_port(a), listen=address)
    wait_for(lambda: caught_up(b, target), CATCH_UP_S, "the restarted node to hold A's history")
    wait_for(lambda: vv(a) == vv(b), CATCH_UP_S, "equal version vectors")


def test_a_burst_of_large_jobs_is_pushed_in_bodies_the_peer_accepts(nodes, tmp_path):
    """Jobs submitted at once are appended in one batch; pushed as one body, it would pass the
    peer's limit and be refused (the peer then suspected), leaving the work to the next pull."""
    a = nodes.start(tmp_path / "a", "--roles", "requester", listen="127.0.0.2:0")
    b = nodes.start(tmp_path / "b", "--roles", "requester", "--peers", host_port(a))
    wait_for(lambda: vv(a) == vv(b) and len(vv(a)) == 2, CATCH_UP_S, "the two to meet")
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda pad: submit(a, padded(pad)), range(900_000, 900_016)))
    wait_for(lambda: vv(a) == vv(b), CATCH_UP_S, "equal version vectors")
    assert refused_bodies(b) == {}
    assert info(a)["gossip"].get("push_failed", 0) == 0
