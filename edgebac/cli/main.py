"""The `edgebac` command: parse, call one thing, render, set the exit code.

Every flag also reads EDGEBAC_<FLAG> from the environment. Domain errors become one line on
stderr and exit code 1; usage errors exit 2.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from edgebac import __version__
from edgebac.cli_common import api_option, data_dir_option, option, output_option
from edgebac.cli_config import config_option
from edgebac.cli_jobs import job
from edgebac.cli_logs import job_logs
from edgebac.cli_network import network
from edgebac.cli_results import job_get
from edgebac.cli_run import docker_group, wasm_group
from edgebac.errors import EdgebacError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgebac")
@config_option
def cli() -> None:
    """edgebac: compute over data for the edge."""


@cli.group(invoke_without_command=True)
@click.pass_context
@data_dir_option
@option("--listen", default="127.0.0.1:7700", show_default=True, help="HOST:PORT (port 0: any).")
@option("--advertise", default=None, help="HOST:PORT other nodes should use to reach this one.")
@option("--peers", default=None, help="Comma-separated HOST:PORT seeds.")
@option("--network-key", type=click.Path(path_type=Path), default=None, help="Network key file.")
@option("--roles", default="requester,compute", show_default=True, help="requester, compute.")
@option("--labels", default=None, help="Comma-separated key=value labels of this node.")
@option("--preset", default="default", show_default=True, help="Timing preset: default or fast.")
@option("--authority", default=None, help="Public key of the network authority (admission mode).")
@option("--policy", type=click.Path(path_type=Path), default=None, help="Operator policy file.")
def node(
    ctx: click.Context,
    data_dir: Path,
    listen: str,
    advertise: str | None,
    peers: str | None,
    network_key: Path | None,
    roles: str,
    labels: str | None,
    preset: str,
    authority: str | None,
    policy: Path | None,
) -> None:
    """Run a node until SIGINT or SIGTERM (or: edgebac node list)."""
    if ctx.invoked_subcommand is not None:
        return
    from edgebac import config as cfg
    from edgebac.errors import ConfigError
    from edgebac.node import run_node

    if network_key is not None and not network_key.is_file():
        raise ConfigError(f"--network-key: {network_key} is not a readable file")
    node_config = cfg.NodeConfig(
        data_dir=data_dir,
        listen=cfg.parse_host_port(listen, "--listen"),
        advertise=cfg.parse_host_port(advertise, "--advertise") if advertise else None,
        peers=cfg.parse_peers(peers),
        network_key=network_key,
        roles=cfg.parse_roles(roles),
        labels=cfg.parse_labels(labels),
        timing=cfg.parse_preset(preset),
        gossip=cfg.parse_gossip_preset(preset),
        authority=cfg.parse_public_key(authority, "--authority") if authority else None,
        policy=policy,
    )
    asyncio.run(run_node(node_config))


@node.command("list")
@api_option
@output_option
def node_list(api: str, output: str) -> None:
    """Every node the API's node knows: id, addresses, roles, labels, liveness."""
    from edgebac.client import ApiClient

    nodes = ApiClient(api).get("/api/v1/nodes")["nodes"]
    if output == "json":
        click.echo(json.dumps(nodes))
        return
    click.echo(f"{'NODE':<14}{'LIVENESS':<10}{'ADDRESS':<24}{'ROLES':<20}LABELS")
    for row in nodes:
        labels = ",".join(f"{k}={v}" for k, v in sorted(row["labels"].items()))
        click.echo(
            f"{row['id'][:12]:<14}{row['liveness']:<10}{(row['addresses'] or ['-'])[0]:<24}"
            f"{','.join(row['roles']) or '-':<20}{labels or '-'}"
        )


@cli.group()
def log() -> None:
    """Inspect a data directory's event log (works while its node runs)."""


def _log_path(data_dir: Path) -> Path:
    from edgebac.datadir import LOG_FILE

    return data_dir.expanduser() / LOG_FILE


@log.command("verify")
@data_dir_option
@output_option
def log_verify(data_dir: Path, output: str) -> None:
    """Re-check every signature and chain; exit code 1 if anything is wrong."""
    from edgebac.eventlog import offline
    from edgebac.eventlog.verify import check_rows

    path = _log_path(data_dir)
    conn = offline.open_readonly(path)
    try:
        damage = offline.integrity_problems(conn)
        report = check_rows(offline.stored_rows(conn))
        forks = offline.fork_count(conn)
    finally:
        conn.close()
    problems = [f"sqlite: {line}" for line in damage] + report.problems
    if output == "json":
        click.echo(
            json.dumps(
                {
                    "path": str(path),
                    "events": report.events,
                    "authors": report.authors,
                    "forks": forks,
                    "problems": problems,
                    "ok": not problems,
                }
            )
        )
    else:
        click.echo(f"{path}: {report.events} events from {report.authors} authors")
        for problem in problems:
            click.echo(f"  problem: {problem}")
        if forks:
            click.echo(f"  {forks} fork(s) recorded as evidence against their authors")
        click.echo(f"{len(problems)} problem(s)" if problems else "ok")
    if problems:
        sys.exit(1)


@log.command("show")
@data_dir_option
@output_option
@option("--type", "type_", default=None, help="Only events of this type.")
@option("--job", default=None, help="Only events about this job id.")
@option("--limit", type=click.IntRange(min=1), default=None, help="At most this many (newest).")
def log_show(
    data_dir: Path, output: str, type_: str | None, job: str | None, limit: int | None
) -> None:
    """Print events in the order this node stored them."""
    from edgebac.eventlog import offline
    from edgebac.eventlog.encoding import decode
    from edgebac.eventlog.view import event_json, event_line

    conn = offline.open_readonly(_log_path(data_dir))
    try:
        rows = list(offline.stored_by_pos(conn, type_, job))
    finally:
        conn.close()
    if limit is not None:
        rows = rows[-limit:]
    for pos, raw in rows:
        event = decode(raw)
        line = json.dumps(event_json(event, pos)) if output == "json" else event_line(event, pos)
        click.echo(line)


cli.add_command(network)


@cli.command()
@option("--nodes", type=click.IntRange(min=1, max=50), default=3, show_default=True)
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
def devstack(nodes: int, root: Path, listen: str, preset: str) -> None:
    """Run a local private network of NODES node processes until Ctrl-C."""
    from edgebac.config import parse_host_port, parse_preset
    from edgebac.devstack import Devstack

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


job.add_command(job_logs)
cli.add_command(job)
job.add_command(job_get)
cli.add_command(docker_group)
cli.add_command(wasm_group)


def main(argv: list[str] | None = None) -> None:
    try:
        code = cli.main(args=argv, prog_name="edgebac", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except EdgebacError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
