"""`edgebac access`: what an operator needs to let a client in.

`edgebac access token NAME` makes an API token for a client that cannot sign (curl, scripts,
Bacalhau's clients) and prints the line for the `--access` file: the node keeps only the
token's SHA-256, so the token is shown once, here. `edgebac access key NAME ID` prints the line
for a client that signs (its id from `edgebac client id`).
"""

from __future__ import annotations

import json

import click

from edgebac.cli.options import output_option

CAPABILITIES = ("read", "submit", "cancel", "admin")


def _capabilities(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    can = tuple(dict.fromkeys(item.strip() for item in value.split(",") if item.strip()))
    unknown = [c for c in can if c not in CAPABILITIES]
    if unknown or not can:
        raise click.BadParameter(f"use some of {', '.join(CAPABILITIES)} (comma-separated)")
    return can


_can_option = click.option(
    "--can",
    default="read,submit",
    show_default=True,
    callback=_capabilities,
    help="Capabilities: read, submit, cancel, admin.",
)
_scope_option = click.option(
    "--scope",
    type=click.Choice(["own", "all"]),
    default="own",
    show_default=True,
    help="own: read and cancel only its own jobs.",
)


@click.group()
def access() -> None:
    """Lines for the node's --access file: tokens and client keys."""


@access.command("token")
@click.argument("name")
@_can_option
@_scope_option
@output_option
def access_token(name: str, can: tuple[str, ...], scope: str, output: str) -> None:
    """Make an API token for NAME; print it (once) and its line for the access file."""
    from edgebac.api.access import new_token, token_sha256

    token = new_token()
    entry = {"token_sha256": token_sha256(token), "can": list(can)}
    _show(name, entry, scope, output, token)


@access.command("key")
@click.argument("name")
@click.argument("client_id")
@_can_option
@_scope_option
@output_option
def access_key(name: str, client_id: str, can: tuple[str, ...], scope: str, output: str) -> None:
    """Print the access-file line for a client that signs with key CLIENT_ID."""
    entry = {"key": client_id.strip().lower(), "can": list(can)}
    _show(name, entry, scope, output)


def _show(name: str, entry: dict, scope: str, output: str, token: str | None = None) -> None:
    from edgebac.api.access import parse_access

    if scope != "own":
        entry["scope"] = scope
    parse_access({"clients": {name: entry}}, "the client")  # a bad name or id is said here
    fields = ", ".join(
        f"{key}: [{', '.join(value)}]" if isinstance(value, list) else f"{key}: {value}"
        for key, value in entry.items()
    )
    line = f"  {name}: {{{fields}}}"
    if output == "json":
        click.echo(json.dumps({"name": name, "token": token, "entry": entry, "line": line}))
        return
    if token is not None:
        click.echo(f"token (shown once; give it to {name}): {token}")
        click.echo("line for the access file, under clients:")
    click.echo(line)
