"""Append to a data directory's event log forever, printing each acknowledged event.

Run by tests/test_crash.py, which SIGKILLs it at a random instant and then checks that every
event printed here is in the log. Not a test module itself (pytest does not collect it).

    python tests/append_loop.py DATA_DIR SEED [--ack-before-commit]

The chain opens with an announcement (committed before the appenders start). Then several
coroutines append at once, in batches of 1 to 50, so the writer's group commit is
exercised. After each `append` returns (the batch is committed), one line per event goes to
stdout, flushed at once:

    ack <seq> <event id hex>

`--ack-before-commit` breaks the store on purpose (each group is acknowledged first and written
50 ms later) so the crash test can show that its checks catch a store that lies.
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path
from typing import Any

from edgebac.eventlog.clock import HybridClock
from edgebac.eventlog.encoding import Event
from edgebac.eventlog.identity import load_or_create
from edgebac.eventlog.store import EventLog
from edgebac.node.datadir import open_data_dir

APPENDERS = 6
MAX_BATCH = 50
MAX_SKEW_MS = 300_000
PAUSE_S = 0.01


# The chain opens with the node's announcement, as a node's does (a first job is refused).
ANNOUNCEMENT = (
    "NodeAnnounced",
    {"addresses": [], "roles": ["requester"], "labels": {}, "resources": {}, "executors": []},
)


def job_items(rng: random.Random, appender: int, batch: int) -> list[tuple[str, dict]]:
    items = []
    for _ in range(batch):
        job_id = f"job-{appender}-{rng.getrandbits(48):012x}"
        spec = {
            "engine": rng.choice(["docker", "wasm"]),
            "image": "alpine:3.20",
            "entrypoint": ["sh", "-c", "echo hello"],
            "count": rng.randint(1, 3),
            "resources": {"cpu": "500m", "memory": "64Mi"},
            "timeout_s": rng.randint(10, 600),
        }
        items.append(("JobCreated", {"job_id": job_id, "spec": spec}))
    return items


def acknowledge(events: list[Event]) -> None:
    """Only once a batch is committed: acknowledge it, in one write, before anything else."""
    sys.stdout.write("".join(f"ack {event.seq} {event.id.hex()}\n" for event in events))
    sys.stdout.flush()


async def appender(log: EventLog, rng: random.Random, index: int) -> None:
    while True:
        batch = 1 if rng.random() < 0.5 else rng.randint(2, MAX_BATCH)
        acknowledge(await log.append(job_items(rng, index, batch)))
        # A pause keeps the log small enough to re-verify after every kill; with six appenders
        # the writer still often finds several requests queued.
        await asyncio.sleep(rng.uniform(0, PAUSE_S))


def break_durability() -> None:
    """Make the store acknowledge each group 50 ms before it writes it (a deliberate bug)."""
    write_rows = EventLog._write_rows
    pending: set[asyncio.Task[None]] = set()
    lock = asyncio.Lock()

    async def write_later(self: EventLog, *args: Any, **kwargs: Any) -> None:
        async def later() -> None:
            await asyncio.sleep(0.05)
            async with lock:
                await write_rows(self, *args, **kwargs)

        task = asyncio.create_task(later())
        pending.add(task)
        task.add_done_callback(pending.discard)

    EventLog._write_rows = write_later  # type: ignore[method-assign]


async def main(data_dir: Path, seed: int) -> None:
    data = open_data_dir(data_dir)
    identity = load_or_create(data.path)
    log = await EventLog.open(data.log_path, HybridClock(MAX_SKEW_MS), identity.key)
    if log.head(identity.public_key) is None:  # a run killed before this was committed: again
        acknowledge(await log.append([ANNOUNCEMENT]))
    rngs = [random.Random(f"{seed}/{index}") for index in range(APPENDERS)]
    await asyncio.gather(*(appender(log, rngs[i], i) for i in range(APPENDERS)))


if __name__ == "__main__":
    if "--ack-before-commit" in sys.argv[3:]:
        break_durability()
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
