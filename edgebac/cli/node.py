"""`edgebac node`: run a node (through the node's entry point), and list the nodes one knows."""

from __future__ import annotations

import json
from pathlib import Path

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
    from edgebac import node as node_entry

    node_entry.run(
        node_entry.from_flags(
            data_dir=data_dir,
            listen=listen,
            advertise=advertise,
            peers=peers,
            network_key=network_key,
            roles=roles,
            labels=labels,
            preset=preset,
            authority=authority,
            policy=policy,
        )
    )


@node.command("list")
@api_option
@output_option
def node_list(api: str, output: str) -> None:
    """Every node the API's node knows: id, addresses, roles, labels, liveness."""
    from edgebac.cli.client import ApiClient

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
