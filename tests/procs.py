"""Real edgebac processes for tests: start them on loopback, wait on conditions, always kill them.

    from tests.procs import nodes_fixture, run_edgebac

    nodes = nodes_fixture()          # a fixture named `nodes` in the importing module

    def test_x(nodes, tmp_path):
        node = nodes.start(tmp_path / "a")            # waits for "listening on http://..."
        status, body = node.get_json("/healthz")
        assert node.stop(signal.SIGTERM) == 0

Every process a test starts through `Nodes` is killed in teardown, whatever the test did. Waits
are conditions with deadlines: a test that would hang fails instead, with what the process said.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0
LISTENING = re.compile(r"edgebac node (\S+) listening on (http://\S+)")


class ProcessTimeout(AssertionError):
    """A condition on a process did not come true in time."""


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise ProcessTimeout(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def session_config_home() -> str:
    """A config folder of the test session's own: no config file (only explicit flags count)
    and a client key made ahead (client commands sign, and never touch the user's key)."""
    global _CONFIG_HOME
    if _CONFIG_HOME is None:
        import atexit
        import shutil
        import tempfile

        from edgebac.eventlog.identity import create_key_file

        home = tempfile.mkdtemp(prefix="edgebac-tests-config-")
        atexit.register(shutil.rmtree, home, ignore_errors=True)
        os.mkdir(os.path.join(home, "edgebac"), 0o700)
        create_key_file(Path(home, "edgebac", "client.key"))
        _CONFIG_HOME = home
    return _CONFIG_HOME


_CONFIG_HOME: str | None = None


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment without EDGEBAC_* variables nor the user's config folder
    (~/.config/edgebac: config file, client key), so only explicit flags count."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEBAC_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["XDG_CONFIG_HOME"] = session_config_home()
    env.update(extra or {})
    return env


def edgebac_argv(*args: str | os.PathLike[str]) -> list[str]:
    return [sys.executable, "-m", "edgebac", *map(str, args)]


def find_python311() -> str | None:
    """A CPython 3.11 outside any venv (the system's, else the venv's base), for running the
    pyz as an operator would; None when there is none."""
    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    for candidate in ("/usr/bin/python3", "/usr/bin/python3.11", base):
        probe = [candidate, "-I", "-c", "import sys; print(sys.version_info[:2] == (3, 11))"]
        if os.path.exists(candidate):
            answer = subprocess.run(probe, capture_output=True, text=True, check=False)
            if answer.stdout.strip() == "True":
                return candidate
    return None


def run_edgebac(
    *args: str | os.PathLike[str], timeout: float = 60.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one `edgebac` command to completion and capture what it said."""
    return subprocess.run(
        edgebac_argv(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(env),
        stdin=subprocess.DEVNULL,
        check=False,
    )


class Process:
    """A child process whose stdout and stderr lines are collected as they arrive."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        self._lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._changed = threading.Condition()
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(env),
        )
        self._readers = [
            threading.Thread(target=self._read, args=(name, stream), daemon=True)
            for name, stream in (("stdout", self.popen.stdout), ("stderr", self.popen.stderr))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, name: str, stream: Any) -> None:
        for line in stream:
            with self._changed:
                self._lines[name].append(line)
                self._changed.notify_all()
        stream.close()

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def lines(self, name: str = "stdout") -> list[str]:
        """Lines so far, each with its newline unless the process died mid-line."""
        with self._changed:
            return list(self._lines[name])

    @property
    def stdout(self) -> str:
        return "".join(self.lines("stdout"))

    @property
    def stderr(self) -> str:
        return "".join(self.lines("stderr"))

    def wait(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """Wait for the exit and for every byte of output; return the exit code."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise ProcessTimeout(
                f"{self.argv[2:4]} still running after {timeout} s; stderr:\n{self.stderr}"
            ) from None
        for reader in self._readers:
            reader.join(timeout)
        return code

    def send(self, signum: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int:
        """Ask the process to stop with `signum`; return its exit code."""
        self.send(signum)
        return self.wait(timeout)

    def kill(self) -> int:
        """SIGKILL: no chance to clean up (the crash tests' whole point)."""
        self.send(signal.SIGKILL)
        return self.wait()

    def wait_for_line(
        self, pattern: re.Pattern[str], timeout: float, name: str = "stdout"
    ) -> re.Match[str]:
        """The first line matching `pattern`; fails early, with stderr, if the process exits."""

        def seen() -> re.Match[str] | None:
            for line in self._lines[name]:
                match = pattern.search(line)
                if match:
                    return match
            return None

        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                match = seen()
                if match:
                    return match
                if self.popen.poll() is not None and not any(r.is_alive() for r in self._readers):
                    raise ProcessTimeout(
                        f"process exited with {self.popen.returncode} before printing "
                        f"{pattern.pattern!r}; stderr:\n{''.join(self._lines['stderr'])}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ProcessTimeout(
                        f"no line matching {pattern.pattern!r} within {timeout} s; "
                        f"stderr:\n{''.join(self._lines['stderr'])}"
                    )
                self._changed.wait(min(left, 0.1))


class NodeProcess(Process):
    """`edgebac node` on loopback, port 0 unless told otherwise."""

    def __init__(
        self,
        data_dir: Path,
        *args: str,
        listen: str = "127.0.0.1:0",
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.url = ""
        self.short_id = ""
        super().__init__(
            edgebac_argv(
                "node", "--data-dir", data_dir, "--listen", listen, "--preset", "fast", *args
            ),
            env,
        )

    def wait_listening(self, timeout: float = START_TIMEOUT_S) -> NodeProcess:
        match = self.wait_for_line(LISTENING, timeout)
        self.short_id, self.url = match.group(1), match.group(2)
        return self

    def request(self, path: str, method: str = "GET") -> tuple[int, bytes, str]:
        """(status, body, content type) of one HTTP request to this node."""
        assert self.url, "wait_listening() first"
        request = urllib.request.Request(self.url + path, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read(), response.headers.get_content_type()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read(), exc.headers.get_content_type()

    def get_json(self, path: str, method: str = "GET") -> tuple[int, Any]:
        status, body, content_type = self.request(path, method)
        assert content_type == "application/json", (status, content_type, body[:200])
        return status, json.loads(body)


class Nodes:
    """Every node process a test started; `kill_all` in teardown leaves none behind."""

    def __init__(self) -> None:
        self.started: list[Process] = []

    def spawn(self, data_dir: Path, *args: str, **kwargs: Any) -> NodeProcess:
        """Start a node without waiting for it (for nodes expected to fail)."""
        node = NodeProcess(data_dir, *args, **kwargs)
        self.started.append(node)
        return node

    def start(self, data_dir: Path, *args: str, **kwargs: Any) -> NodeProcess:
        """Start a node and wait until it listens."""
        return self.spawn(data_dir, *args, **kwargs).wait_listening()

    def process(self, argv: Sequence[str], env: dict[str, str] | None = None) -> Process:
        """Any other child process, killed in teardown like the nodes."""
        proc = Process(argv, env)
        self.started.append(proc)
        return proc

    def kill_all(self) -> None:
        for proc in self.started:
            if proc.returncode is None:
                proc.kill()
        self.started.clear()


def nodes_fixture(name: str = "nodes") -> Any:
    """A pytest fixture (named `name`) yielding a `Nodes` that kills its processes afterwards.

    Assign it at module level: `nodes = nodes_fixture()`.
    """

    @pytest.fixture(name=name)
    def fixture() -> Iterator[Nodes]:
        nodes = Nodes()
        try:
            yield nodes
        finally:
            nodes.kill_all()

    return fixture
