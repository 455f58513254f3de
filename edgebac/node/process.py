"""The node process: wires the data directory, identity, event log and HTTP API together."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from aiohttp import web

from edgebac import __version__
from edgebac.api.access import Access, load_access
from edgebac.api.app import make_app
from edgebac.api.auth import Guard
from edgebac.errors import ConfigError
from edgebac.eventlog.callsig import HEADER, sign_call
from edgebac.eventlog.clock import HybridClock, wall_clock_ms
from edgebac.eventlog.identity import Identity, load_or_create
from edgebac.eventlog.store import EventLog
from edgebac.gossip.envelope import OPEN_NETWORK_KEY, read_network_key
from edgebac.gossip.service import GossipService
from edgebac.node.config import HostPort, NodeConfig
from edgebac.node.datadir import DataDir, open_data_dir
from edgebac.node.listener import (
    Listener,
    listener_of,
    open_listeners,
    runner_options,
    source_host,
    watch_requests,
)
from edgebac.node.members import member_rows
from edgebac.node.policy import Policy, load_policy, narrowed
from edgebac.node.pruning import LogPruner
from edgebac.node.rejoin import rejoin_if_behind
from edgebac.node.retain import Retainer
from edgebac.node.runner import JobRunner
from edgebac.node.tls import ServerTls, client_lines, node_tls
from edgebac.runtime.engines import close_executors, docker_once_it_answers, offered_executors
from edgebac.runtime.executor import Executor
from edgebac.scheduler.requester import RequesterConfig
from edgebac.sinks.serve import add_content_routes
from edgebac.sinks.service import ContentService, s3_client_factory


def machine_resources(data_dir: os.PathLike[str]) -> dict[str, int]:
    """Capacity this machine offers; what is free right now is liveness, not log, material."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpu_millis": (os.cpu_count() or 1) * 1000,
        "memory_bytes": memory,
        "disk_bytes": shutil.disk_usage(data_dir).total,
    }


def _warn(line: str) -> None:
    say_quietly(f"warning: {line}")


def say_quietly(line: str, stream: TextIO | None = None) -> None:
    """Print `line` to `stream` (stderr) if it can be written: a closed pipe (its reader died)
    must not stop the node from running or from stopping."""
    with contextlib.suppress(OSError, ValueError):  # EPIPE, or a stream already closed
        print(line, file=stream or sys.stderr, flush=True)


class Node:
    def __init__(self, config: NodeConfig, say: Callable[[str], None] | None = None) -> None:
        self.config = config
        self._say = say or (lambda line: say_quietly(line, sys.stdout))
        self.data_dir: DataDir | None = None
        self.identity: Identity
        self.log: EventLog
        self.address: HostPort | None = None
        self.gossip: GossipService
        self.runner: JobRunner
        self.content: ContentService
        self.policy: Policy = Policy()
        self.guard = Guard()
        self._engines: dict[str, Executor] = {}
        self._wanted: Policy = self.policy  # the policy before narrowing to what answers
        self._docker_watch: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._listeners: list[Listener] = []
        self.tls: ServerTls | None = None
        self._announced = asyncio.Event()
        self.ready = False  # folded its log and scheduling: see /readyz
        self.retainer: Retainer | None = None

    async def start(self) -> None:
        """Start, or fail leaving the data dir as it was (no key, log or lock of a failed try)."""
        self.policy = load_policy(self.config.policy)  # before anything is created
        self.guard = self._make_guard()
        self.data_dir = open_data_dir(self.config.data_dir)
        try:
            self.identity = load_or_create(self.data_dir.path)
            clock = HybridClock(self.config.timing.max_clock_skew_ms)
            self.log = await EventLog.open(self.data_dir.log_path, clock, self.identity.key)
            self.gossip = self._make_gossip()
            if self.config.peers and self.log.version_vector():  # long offline, behind?
                log = await rejoin_if_behind(
                    self.log, self.gossip, self.config.join_quorum, self.identity.key, say_quietly
                )
                if log is not self.log:
                    await self.gossip.stop()  # its transport: the new log gets its own
                    self.log = log
                    self.gossip = self._make_gossip()
            self.content = ContentService(
                self.data_dir.path / "content", self.holders, s3_client_factory(), self._sign
            )
            offer = await offered_executors(
                self.policy.node,
                self.data_dir.path / "work",
                self.identity.public_key.hex(),
                _warn,
                content=self.content,
            )
            self._engines = offer.executors
            self._wanted = self.policy
            self.policy = narrowed(self.policy, self._engines)
            self.runner = self._make_runner()
            self.runner.executions.publisher = self.content.publisher
            self.runner.held_inputs.content = self.content
            if not self.log.version_vector():  # a new node: before serving, nothing may reach it
                await self.gossip.join_late(self.config.join_quorum, self.config.join_wait_s)
            await self._serve_http()  # requests wait for the announcement: _after_announcement
            await self.gossip.start([self.advertised])
            await self._announce()
            self._announced.set()
            await self.runner.start()
            self.ready = True
            self._start_retention()
            if offer.retry_docker is not None:
                self._docker_watch = asyncio.create_task(self._watch_docker(offer.retry_docker))
        except BaseException:
            await self.stop(discard_new=True)
            raise
        self._say(
            f"edgebac node {self.identity.node_id[:12]} listening on http://{self.address} "
            f"(data dir {self.data_dir.path})"
        )
        for line in client_lines(self.config.api_listen, self._listeners[-1].address, self.tls):
            self._say(line)

    def _make_gossip(self) -> GossipService:
        config = self.config
        if config.network_key is not None:
            network_key = read_network_key(config.network_key)
        else:
            network_key = OPEN_NETWORK_KEY
            print(
                "warning: no --network-key: this node speaks the open network key, so anyone "
                "who can reach it can join (create a key with: edgebac network init FILE)",
                file=sys.stderr,
                flush=True,
            )
        return GossipService(
            self.log,
            self.identity.key,
            network_key,
            config.gossip,
            seeds=[str(peer) for peer in config.peers],
            authority=config.authority,
            local_host=source_host(config.listen.host),
            max_skew_ms=config.timing.max_clock_skew_ms,
        )

    async def _watch_docker(self, retry: Callable[[], Awaitable[Executor | None]]) -> None:
        """Offer docker jobs once the engine answers: bid on them and say so in a new
        announcement (the requesters' eligible bidders follow it)."""
        self._engines["docker"] = await docker_once_it_answers(retry, _warn)  # the runner's too
        self.policy = narrowed(self._wanted, self._engines)
        self.runner.policy = self.policy
        await self._announce()
        say_quietly("docker engine answers now: docker jobs are offered")

    def _start_retention(self) -> None:
        if self.config.retain_log_s is not None:
            self.runner.pruner = LogPruner(
                self.log, self.config.retain_log_s, self.config.log_archive
            )
        if self.config.retain_s is None:
            return
        assert self.data_dir is not None
        results = self.data_dir.path / "work" / "results"
        self.retainer = Retainer(
            self.config.retain_s, self.runner.refresh, self.content.store, results, _warn
        )
        self.retainer.start()

    def _make_guard(self) -> Guard:
        config = self.config
        if config.insecure_open_api:
            _warn("--insecure-open-api: anyone who can reach the API is served as an admin")
        return Guard(
            self._read_access(),
            open_api=config.insecure_open_api,
            window_ms=config.timing.max_clock_skew_ms,
            tls=config.tls is not None,
            body_timeout_s=config.limits.body_timeout_s,
            min_body_rate=config.limits.min_body_rate,
        )

    def _read_access(self) -> Access | None:
        path = self.config.access
        if path is None:
            return None
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"--access: cannot read {path}: {exc.strerror}") from None
        return load_access(text, f"--access {path}")

    def reload_access(self) -> None:
        """Read the access rules again (SIGHUP); a file that does not parse changes nothing."""
        if self.config.access is None:
            return
        try:
            access = self._read_access()
        except ConfigError as exc:
            _warn(f"access rules not reloaded, the old ones stay: {exc}")
            return
        self.guard.access = access
        count = len(access.clients) if access is not None else 0
        say_quietly(f"access: reloaded {self.config.access} ({count} clients)")

    def _sign(self, method: str, path: str) -> dict[str, str]:
        """Headers that sign a call of this node's to another (block fetches)."""
        return {HEADER: sign_call(self.identity.key, method, path, b"", wall_clock_ms())}

    def _executors(self) -> dict[str, Executor]:
        """The engines this node runs: those the policy allows and this machine can offer."""
        return dict(self._engines)

    def _make_runner(self) -> JobRunner:
        assert self.data_dir is not None
        timing = self.config.timing
        membership = self.gossip.gossiper.membership

        def lost_nodes() -> frozenset[bytes]:
            return frozenset(membership.dead(wall_clock_ms()))

        return JobRunner(
            self.log,
            self.identity.public_key,
            self.config.roles,
            self.policy,
            self._engines,  # shared: an engine that answers later joins it
            self.data_dir.path / "work",
            lost_nodes,
            timing.runner_tick_s,
            RequesterConfig(
                bid_window_ms=timing.bid_window_ms, hook=self.policy.accept_hook is not None
            ),
        )

    def holders(self, cid: str) -> list[str]:
        """Where a CID may be: first the nodes that published it, then every other node."""
        state = self.runner.state
        publishers = [e.node for e in state.executions.holding(cid)]
        others = [n for n in state.nodes if n not in publishers and n != self.identity.public_key]
        urls: list[str] = []
        for node_id in publishers + others:
            info = state.nodes.get(node_id)
            urls += [f"http://{address}" for address in (info.addresses if info else [])]
        return list(dict.fromkeys(urls))

    @property
    def roles(self) -> frozenset[str]:
        return self.config.roles

    @property
    def advertised(self) -> str:
        return str(self.config.advertise or self.address)

    @web.middleware
    async def _after_announcement(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Hold requests until the node has announced itself: the announcement names the port,
        so it follows the bind, yet it must be the node's first event (a job submitted in
        between would be refused)."""
        await self._announced.wait()
        return await handler(request)

    async def _serve_http(self) -> None:
        app = make_app(self, self.guard, first=[self._after_announcement])
        self.gossip.add_routes(app)
        add_content_routes(app, self.content.store)
        app.middlewares.insert(0, watch_requests)  # first: it starts each body's deadline
        self._runner = web.AppRunner(
            app,
            handle_signals=False,
            shutdown_timeout=self.config.timing.shutdown_grace_s,
            **runner_options(),
        )
        await self._runner.setup()
        assert self.data_dir is not None
        self.tls = node_tls(self.config, self.data_dir.path)
        context = self.tls.context if self.tls else None
        self._listeners = open_listeners(self._runner.server, self.config, context, _warn)
        self.address = self._listeners[0].address
        if self.config.api_listen is not None:  # the node listener then serves peers only
            scheme = "https" if self.tls else "http"
            self.guard.api_url = f"{scheme}://{self._listeners[-1].address}"
            self.guard.listener_of = listener_of

    def announcement(self) -> dict[str, Any]:
        assert self.data_dir is not None
        return {
            "addresses": [self.advertised],
            "roles": sorted(self.config.roles),
            "labels": dict(self.config.labels),
            "resources": machine_resources(self.data_dir.path),
            "executors": sorted(self._executors()),
            "version": __version__,
        }

    async def _announce(self) -> None:
        """Say who we are when it changed since our last announcement; restarts stay quiet."""
        body = self.announcement()
        last = await self.log.latest(self.identity.public_key, "NodeAnnounced")
        if last is None or last.body != body:
            await self.log.append([("NodeAnnounced", body)])

    async def describe(self) -> dict[str, Any]:
        return {
            "id": self.identity.node_id,
            "public_key": self.identity.public_key.hex(),
            "version": __version__,
            "roles": sorted(self.config.roles),
            "labels": dict(self.config.labels),
            "addresses": [self.advertised],
            "version_vector": {a.hex(): seq for a, seq in self.log.version_vector().items()},
            "events": await self.log.count(),
            "gossip": self.gossip.stats(),
            "unreachable": self.gossip.unreachable(),
            "tls": {"fingerprint": self.tls.fingerprint} if self.tls else None,
            "retention": self.retainer.describe() if self.retainer else None,
            "checkpoint": dict(self.runner.checkpoints.started_from),  # where this start began
            "pruning": self.runner.pruner.describe() if self.runner.pruner else None,
            "evidence": {
                author.hex(): dict(sorted(reasons.items()))
                for author, reasons in sorted(self.runner.refresh().evidence().items())
            },
        }

    async def known_nodes(self) -> list[dict[str, Any]]:
        """Ourselves and every member: id, addresses, roles, labels, liveness (what each
        announced last, from the projection: reading every announcement from the log took
        seconds in a network of 10,000 authors)."""
        me = {"id": self.identity.node_id, "addresses": [self.advertised], "liveness": "self"}
        nodes = self.runner.refresh().nodes
        members = self.gossip.members()
        return member_rows(me, members, nodes.get, self.gossip.unreachable())

    async def stop(self, discard_new: bool = False) -> None:
        """Stop serving, finish every queued append, close the log, release the data dir
        (removing what this node created in it, with `discard_new`: a start that failed)."""
        if self._docker_watch is not None:
            self._docker_watch.cancel()
            await asyncio.gather(self._docker_watch, return_exceptions=True)
        if self.retainer is not None:
            await self.retainer.stop()
        if getattr(self, "runner", None) is not None:
            await self.runner.stop()
        await close_executors(self._engines)
        if getattr(self, "gossip", None) is not None:
            await self.gossip.stop()
        for listener in self._listeners:
            await listener.close()
        self._listeners = []
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if getattr(self, "runner", None) is not None:
            # Before the log: its writer, closing last, removes the WAL and its -shm (the
            # ended jobs' reader is read-only: closing last, it leaves them). Nothing reads
            # ended jobs any more: the runner and the API have stopped.
            self.runner.checkpoints.close_rows()
        if getattr(self, "log", None) is not None:
            await self.log.close()
            del self.log
        if self.data_dir is not None:
            self.data_dir.release(discard_new)
            self.data_dir = None


async def run_node(config: NodeConfig) -> None:
    """Run until SIGINT or SIGTERM, then shut down cleanly."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    node = Node(config)
    loop.add_signal_handler(signal.SIGHUP, node.reload_access)
    # A signal during start (a long first fold) stops it there: a stop that waited for the
    # fold would take as long as the history is.
    starting = asyncio.create_task(node.start())
    signalled = asyncio.create_task(stopping.wait())
    await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        say_quietly("edgebac node stopping (it had not finished starting)")
        starting.cancel()  # start's own cleanup stops what it started, appends finished
        await asyncio.gather(starting, return_exceptions=True)
        return
    signalled.cancel()
    starting.result()  # a start that failed says why
    try:
        await stopping.wait()
    finally:
        say_quietly("edgebac node stopping")
        await node.stop()
