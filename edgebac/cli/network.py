"""`edgebac network ...`: the private network's key and, in authority mode, who may write."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from edgebac.cli.options import api_option, option, output_option


@click.group()
def network() -> None:
    """Create a network key; admit and revoke nodes (authority mode)."""


@network.command("init")
@click.argument("key_file", type=click.Path(path_type=Path))
def network_init(key_file: Path) -> None:
    """Write a new 32-byte network key to KEY_FILE (mode 0600); give it to every node."""
    from edgebac.gossip.envelope import write_network_key

    write_network_key(key_file)
    click.echo(f"wrote network key {key_file}; start nodes with --network-key {key_file}")


@network.command("authority")
@click.argument("key_file", type=click.Path(path_type=Path))
def network_authority(key_file: Path) -> None:
    """Create (or show) the authority key in KEY_FILE; print its public key for --authority."""
    from edgebac.eventlog.identity import create_key_file, read_key_file

    identity = read_key_file(key_file) if key_file.exists() else create_key_file(key_file)
    click.echo(identity.node_id)


def _sign_admission(api: str, key_file: Path, type_: str, node_id: str, reason: str | None) -> dict:
    from edgebac.cli.client import ApiClient
    from edgebac.eventlog.clock import Hlc, wall_clock_ms
    from edgebac.eventlog.encoding import seal
    from edgebac.eventlog.identity import parse_public_key, read_key_file

    node = parse_public_key(node_id, "NODE_ID")
    authority = read_key_file(key_file)
    client = ApiClient(api)
    head = client.get(f"/api/v1/authors/{authority.node_id}/head")
    after = Hlc.unpack(head["hlc"])
    hlc = max(Hlc(wall_clock_ms()), Hlc(after.ms, after.counter + 1))
    prev = bytes.fromhex(head["id"]) if head["id"] else None
    body: dict = {"node": node}
    if reason:
        body["reason"] = reason
    event = seal(authority.key, head["seq"] + 1, prev, hlc, type_, body)
    result = client.post("/api/v1/events", {"events": [event.raw.hex()]})
    if result["rejected"]:
        from edgebac.errors import EdgebacError

        first = result["rejected"][0]
        raise EdgebacError(f"the node refused the event: {first['reason']}: {first['detail']}")
    return {"event": event.id.hex(), "type": type_, "node": node_id, "at": time.time()}


@network.command("admit")
@click.argument("node_id")
@option("--authority-key", type=click.Path(path_type=Path), required=True, help="Key file.")
@api_option
@output_option
def network_admit(node_id: str, authority_key: Path, api: str, output: str) -> None:
    """Admit NODE_ID (its public key) to a network run with --authority."""
    result = _sign_admission(api, authority_key, "NodeAdmitted", node_id, None)
    click.echo(json.dumps(result) if output == "json" else f"admitted {node_id}")


@network.command("revoke")
@click.argument("node_id")
@option("--authority-key", type=click.Path(path_type=Path), required=True, help="Key file.")
@option("--reason", default=None, help="Why, for the record.")
@api_option
@output_option
def network_revoke(
    node_id: str, authority_key: Path, reason: str | None, api: str, output: str
) -> None:
    """Revoke NODE_ID: its new events are refused from now on."""
    result = _sign_admission(api, authority_key, "NodeRevoked", node_id, reason)
    click.echo(json.dumps(result) if output == "json" else f"revoked {node_id}")
