"""A clean stop exits without tearing the interpreter down, and still runs exit handlers (#17).

Stop time grew with history because, after the node had stopped, the interpreter freed its heap
object by object (2.5 s of a 2.6 s stop at 100k events after a whole fold; `bench/stop.py`).
A real node process runs here under a small wrapper that registers an exit handler and holds
an object whose `__del__` only teardown would call; with a worker thread still alive at the
end, the ordinary exit (which joins it) is kept.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from tests.procs import LISTENING, Process

WRAPPER = """
import atexit, os, sys, threading, time
from pathlib import Path

out = Path(sys.argv[1])


class Teardown:
    # Called when the interpreter clears module globals at teardown; the fd and the bound
    # os.write stay usable then, whatever else is gone.
    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        self.write = os.write

    def __del__(self):
        self.write(self.fd, b"torn down")


kept = Teardown(out / "teardown")
atexit.register(lambda: (out / "atexit").write_text("ran"))
if sys.argv[2] == "thread":  # a non-daemon thread that ends only once the main thread does
    def work():
        while threading.main_thread().is_alive():
            time.sleep(0.02)

    threading.Thread(target=work, name="worker").start()

from edgebac.cli.main import main

main(["node", "--data-dir", str(out / "node"), "--listen", "127.0.0.1:0", "--preset", "fast"])
"""


@pytest.mark.parametrize("threads", ["none", "thread"])
def test_a_clean_stop_runs_exit_handlers_and_skips_teardown_unless_a_thread_is_alive(
    tmp_path: Path, threads: str
):
    script = tmp_path / "wrapper.py"
    script.write_text(WRAPPER)
    node = Process([sys.executable, str(script), str(tmp_path), threads])
    try:
        node.wait_for_line(LISTENING, 60)
        assert node.stop(signal.SIGTERM) == 0, node.stderr
    finally:
        if node.returncode is None:
            node.kill()
    assert "edgebac node stopping" in node.stderr
    assert (tmp_path / "atexit").read_text() == "ran"
    torn_down = (tmp_path / "teardown").read_bytes()
    assert torn_down == (b"torn down" if threads == "thread" else b"")
    assert not (tmp_path / "node" / "node.lock").exists()
