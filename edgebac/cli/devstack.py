"""`edgebac devstack`: a local private network of real node processes, for trying things out.

All data lives in one folder (a network key, access rules and one data dir per node). The
first node listens on the default API address, so client commands work without `--api`; the
others pick free ports on loopback and find each other through it. The access rules let this
client's key (made if missing) in as an admin, as an operator would. Ctrl-C (or SIGTERM) stops
them all.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import click

from edgebac.cli.options import option
from edgebac.errors import EdgebacError

LISTENING = re.compile(r"listening on http://(\S+)")
START_TIMEOUT_S = 30.0


def self_command() -> list[str]:
    """How to run this very edgebac again: the .pyz itself, or the installed package."""
    entry = sys.argv[0] if sys.argv else ""
    if entry.endswith(".pyz") and os.path.isfile(entry):
        return [sys.executable, entry]
    return [sys.executable, "-m", "edgebac"]


@dataclass
class StackNode:
    name: str
    process: subprocess.Popen[str]
    address: str = ""


def let_this_client_in(access: Path) -> str:
    """Make sure the access rules admit this client's key as an admin; its id."""
    from edgebac.api.access import load_access
    from edgebac.cli.identity import load_client_key

    named = os.environ.get("EDGEBAC_CLIENT_KEY")
    identity = load_client_key(Path(named) if named else None)
    text = access.read_text() if access.exists() else "clients:\n"
    if load_access(text, str(access)).client_of_key(identity.public_key) is None:
        name = f"devstack-{identity.node_id[:8]}"
        line = (
            f"  {name}: {{key: {identity.node_id}, can: [read, submit, cancel, admin], scope: all}}"
        )
        access.write_text(text.rstrip("\n") + "\n" + line + "\n")
    return identity.node_id


class Devstack:
    def __init__(self, root: Path, nodes: int, listen: str, preset: str) -> None:
        self.root = root
        self.count = nodes
        self.listen = listen
        self.preset = preset
        self.nodes: list[StackNode] = []
        self.client_id = ""

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        key = self.root / "network.key"
        if not key.exists():
            from edgebac.gossip.envelope import write_network_key

            write_network_key(key)
        access = self.root / "access.yaml"
        self.client_id = let_this_client_in(access)
        host = self.listen.rpartition(":")[0]
        for index in range(self.count):
            listen = self.listen if index == 0 else f"{host}:0"
            flags = ["--network-key", str(key), "--preset", self.preset, "--listen", listen]
            flags += ["--access", str(access)]
            if index:
                flags += ["--peers", self.nodes[0].address]
            self._spawn(f"node{index + 1}", flags)

    def _spawn(self, name: str, flags: list[str]) -> None:
        data_dir = self.root / name
        command = [*self_command(), "node", "--data-dir", str(data_dir), *flags]
        log = (self.root / f"{name}.log").open("a")
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True
        )
        node = StackNode(name, process)
        self.nodes.append(node)
        node.address = self._wait_listening(node)
        threading.Thread(target=self._drain, args=(node,), daemon=True).start()

    def _wait_listening(self, node: StackNode) -> str:
        assert node.process.stdout is not None
        timer = threading.Timer(START_TIMEOUT_S, node.process.kill)
        timer.start()
        try:
            for line in node.process.stdout:
                match = LISTENING.search(line)
                if match:
                    return match.group(1)
        finally:
            timer.cancel()
        self.stop()
        raise EdgebacError(f"{node.name} did not start (see {self.root / (node.name + '.log')})")

    @staticmethod
    def _drain(node: StackNode) -> None:
        assert node.process.stdout is not None
        for _ in node.process.stdout:
            pass

    def describe(self) -> str:
        api = f"http://{self.nodes[0].address}"
        lines = [f"devstack: {len(self.nodes)} nodes, data in {self.root}"]
        lines += [
            f"  access rules: {self.root / 'access.yaml'} (admin: client {self.client_id[:12]})"
        ]
        lines += [f"  {n.name}: http://{n.address} (pid {n.process.pid})" for n in self.nodes]
        lines += [
            "try:",
            f"  edgebac node list --api {api}",
            f"  edgebac job run SPEC.yaml --wait --api {api}",
            "Ctrl-C stops every node.",
        ]
        return "\n".join(lines)

    def wait(self) -> int:
        """Until a signal or until a node dies; returns the exit code devstack should end with."""
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        while not stop.wait(0.5):
            dead = [n for n in self.nodes if n.process.poll() is not None]
            if dead:
                print(f"devstack: {dead[0].name} exited; stopping the others", file=sys.stderr)
                return 1
        return 0

    def stop(self) -> None:
        for node in self.nodes:
            if node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)
        for node in self.nodes:
            try:
                node.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()


@click.command("devstack")
@option(
    "--nodes",
    type=click.IntRange(min=1, max=50),
    default=3,
    show_default=True,
    help="Node processes to start.",
)
@option(
    "--dir",
    "root",
    type=click.Path(path_type=Path),
    default="edgebac-devstack",
    show_default=True,
    help="Folder for the network key and the nodes' data dirs.",
)
@option("--listen", default="127.0.0.1:7700", show_default=True, help="The first node's API.")
@option("--preset", default="fast", show_default=True, help="Timing preset of the nodes.")
def devstack_command(nodes: int, root: Path, listen: str, preset: str) -> None:
    """Run a local private network of NODES node processes until Ctrl-C."""
    from edgebac.node import parse_host_port, parse_preset

    parse_host_port(listen, "--listen")
    parse_preset(preset)
    stack = Devstack(root.absolute(), nodes, listen, preset)
    try:
        stack.start()
        click.echo(stack.describe())
        code = stack.wait()
    finally:
        stack.stop()
    click.echo("devstack: stopped", err=True)
    sys.exit(code)
