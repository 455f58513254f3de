"""`edgebac node`: run a node (through the node's entry point), and list the nodes one knows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from edgebac.cli.options import api_option, data_dir_option, option, output_option


@click.group(invoke_without_command=True)
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
@option("--access", type=click.Path(path_type=Path), default=None, help="Client access rules.")
@option(
    "--insecure-open-api",
    is_flag=True,
    default=False,
    help="Serve every caller of the client API as an admin (no --access).",
)
@option("--api-listen", default=None, help="HOST:PORT of the client API (default: --listen).")
@option("--tls", default=None, help="self-signed: TLS for the client API with a made certificate.")
@option("--tls-cert", type=click.Path(path_type=Path), default=None, help="TLS certificate (PEM).")
@option("--tls-key", type=click.Path(path_type=Path), default=None, help="TLS private key (PEM).")
@option("--retain", default=None, help="Drop results and content older than this (30m, 7d).")
@option(
    "--retain-log",
    default=None,
    help="Prune the events of jobs that ended longer ago than this (30d; default: keep all).",
)
@option(
    "--log-archive",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder that pruned events are written to before they go.",
)
@option(
    "--join-quorum",
    type=int,
    default=0,
    show_default=True,
    help="Seeds that must agree on a pruned network's horizon to join it (0: every one reached).",
)
@option(
    "--join-wait",
    default=None,
    help="How long a new node asks its seeds to agree before it refuses to start (default 60s).",
)
def node(ctx: click.Context, **flags: Any) -> None:
    """Run a node until SIGINT or SIGTERM (or: edgebac node list)."""
    if ctx.invoked_subcommand is not None:
        return
    from edgebac import node as node_entry

    node_entry.run(node_entry.from_flags(**flags))  # it names the flag at fault


@node.command("gc")
@data_dir_option
@option("--retain", default=None, help="Keep results and content younger than this (1h, 7d).")
@option(
    "--retain-log",
    default=None,
    help="With --dry-run: say which events a node pruning its log so would remove now.",
)
@option("--dry-run", is_flag=True, default=False, help="Say what would go; remove nothing.")
@output_option
def node_gc(
    data_dir: Path, retain: str | None, retain_log: str | None, dry_run: bool, output: str
) -> None:
    """Remove a stopped node's results folders and content older than --retain (what a node
    started with --retain does as it runs); --dry-run shows what would go, and with
    --retain-log which events pruning would remove (a node prunes its own log as it runs)."""
    from edgebac import node as node_entry

    if retain is None and retain_log is None:
        raise click.UsageError("give --retain, --retain-log (with --dry-run) or both")
    if retain_log is not None and not dry_run:
        raise click.UsageError(
            "--retain-log: a node prunes its own log as it runs (edgebac node --retain-log); "
            "add --dry-run to see what it would remove"
        )
    done = node_entry.gc(data_dir, retain, dry_run, retain_log)
    if output == "json":
        click.echo(json.dumps(done))
        return
    verb = "would remove" if dry_run else "removed"
    if retain is not None:
        click.echo(
            f"{verb} {done['results_folders']} results folders, {done['dags']} content DAGs "
            f"and {done['blocks']} blocks ({done['bytes']:,} bytes)"
        )
    if "log" in done:
        log = done["log"]
        click.echo(
            f"{verb} {log['events']} events of {log['jobs']} jobs ended before "
            f"{log['cut']} from the log ({log['bytes']:,} bytes)"
        )


@node.command("list")
@api_option
@output_option
def node_list(api: str, output: str) -> None:
    """Every node the API's node knows: id, liveness, address, roles, engines, resources,
    version, labels."""
    from edgebac.cli.client import ApiClient

    nodes = ApiClient(api).get("/api/v1/nodes")["nodes"]
    if output == "json":
        click.echo(json.dumps(nodes))
        return
    header = ("NODE", "LIVENESS", "ADDRESS", "ROLES", "ENGINES", "RESOURCES", "VERSION", "LABELS")
    table = [header, *(_node_row(row) for row in nodes)]
    widths = [max(len(line[i]) for line in table) + 2 for i in range(len(header) - 1)]
    for line in table:
        click.echo(
            "".join(cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True))
            + line[-1]
        )


def _node_row(row: dict[str, Any]) -> tuple[str, ...]:
    labels = ",".join(f"{k}={v}" for k, v in sorted(row.get("labels", {}).items()))
    return (
        (row["id"] or "-")[:12],  # a configured peer that never answered has no id yet
        row["liveness"],
        (row["addresses"] or ["-"])[0],
        ",".join(row.get("roles", [])) or "-",
        ",".join(row.get("engines", [])) or "-",
        resources_text(row.get("resources", {})),
        row.get("version") or "-",
        labels or row.get("error") or "-",
    )


def resources_text(resources: dict[str, int]) -> str:
    """`4 cpu, 15.5Gi mem, 250Gi disk` (what a node announced it has, not what is free)."""
    from edgebac.scheduler.quantities import format_size

    parts = []
    if "cpu_millis" in resources:
        parts.append(f"{resources['cpu_millis'] / 1000:g} cpu")
    for key, name in (("memory_bytes", "mem"), ("disk_bytes", "disk")):
        if key in resources:
            parts.append(f"{format_size(resources[key])} {name}")
    if resources.get("gpu"):
        parts.append(f"{resources['gpu']} gpu")
    return ", ".join(parts) or "-"
