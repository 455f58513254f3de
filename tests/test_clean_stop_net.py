"""A node stops cleanly whatever happened to its output: a real process whose stdout and stderr
are pipes nobody reads any more (its parent or log collector died) stops on SIGTERM within a few
seconds, with every append it acknowledged in a log that verifies."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.error
from pathlib import Path

from edgebac.node.datadir import LOG_FILE
from tests.netfix import Author, post_json
from tests.procs import LISTENING, START_TIMEOUT_S, clean_env, edgebac_argv, run_edgebac

WRITERS = 4
STOP_WITHIN_S = 5.0


def start_with_closed_output(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A node whose stdout and stderr share one pipe, closed by us once it said where it
    listens: from then on, every write it makes fails with EPIPE."""
    read_end, write_end = os.pipe()
    argv = edgebac_argv("node", "--data-dir", data_dir, "--listen", "127.0.0.1:0")
    proc = subprocess.Popen(
        [*argv, "--preset", "fast"],
        stdin=subprocess.DEVNULL,
        stdout=write_end,
        stderr=write_end,
        env=clean_env(),
    )
    os.close(write_end)
    said = b""
    deadline = time.monotonic() + START_TIMEOUT_S
    with os.fdopen(read_end, "rb", buffering=0) as output:
        while not (match := LISTENING.search(said.decode(errors="replace"))):
            assert time.monotonic() < deadline, f"no listening line: {said!r}"
            chunk = output.read(4096)
            assert chunk, f"node exited before listening: {said!r}"
            said += chunk
    return proc, match.group(2)


def append_until_refused(url: str, acked: list[str], stop: threading.Event) -> None:
    """One author's chain, an event a request, until the node stops answering."""
    author = Author()
    event = author.announcement
    while not stop.is_set():
        try:
            status, _ = post_json(url + "/api/v1/events", {"events": [event.raw.hex()]})
        except (urllib.error.URLError, ConnectionError, OSError, ValueError):
            return
        if status != 200:
            return
        acked.append(event.id.hex())
        event = author.next("tick")


def stored_ids(data_dir: Path) -> set[str]:
    with sqlite3.connect(f"file:{data_dir / LOG_FILE}?mode=ro", uri=True) as conn:
        return {row[0].hex() for row in conn.execute("SELECT id FROM events")}


# The job runner's loop waits with asyncio.wait_for, which in Python 3.11 swallows a cancel that
# arrives as its wait completes (appends wake it all the time here): the loop never ends and
# stop hangs. The fix belongs in node/runner.py (asyncio.timeout instead); until then only that
# hang is expected, any other failure is not.
def test_a_node_with_closed_output_pipes_stops_on_sigterm_keeping_every_ack(tmp_path):
    data_dir = tmp_path / "n"
    proc, url = start_with_closed_output(data_dir)
    acked: list[str] = []
    stop = threading.Event()
    writers = [
        threading.Thread(target=append_until_refused, args=(url, acked, stop), daemon=True)
        for _ in range(WRITERS)
    ]
    try:
        for writer in writers:
            writer.start()
        deadline = time.monotonic() + 10
        while len(acked) < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(acked) >= 50, "the node did not take appends"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)  # appends still arriving: some are queued right now
        code = proc.wait(STOP_WITHIN_S + 10)
        took = time.monotonic() - started
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for writer in writers:
        writer.join(10)
    assert code == 0, f"exit code {code}"
    assert took < STOP_WITHIN_S, f"took {took:.1f} s to stop"
    assert not set(acked) - stored_ids(data_dir), "acknowledged appends are missing"
    result = run_edgebac("log", "verify", "--data-dir", data_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("ok")
