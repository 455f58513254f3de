"""`edgebac client`: the client's own ed25519 key, which signs the jobs it submits and cancels.

The key lives in `$XDG_CONFIG_HOME/edgebac/client.key` (`~/.config/...`, next to the config
file) unless `--client-key FILE` (or
`EDGEBAC_CLIENT_KEY`) names another, in the node key's format, mode 0600. Commands that sign
create the default key on first use and say so once on stderr, so a first job needs no setup;
a key named explicitly must exist.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from edgebac.cli.options import option, output_option
from edgebac.errors import KeyFileError

DEFAULT_CLIENT_KEY = Path("~/.config/edgebac/client.key")  # as shown; see default_key_path


def default_key_path() -> Path:
    """The default key file, where the config file is (`$XDG_CONFIG_HOME/edgebac`)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "edgebac" / "client.key"


def client_key_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    from edgebac.cli.options import note_connection

    return option(
        "--client-key",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        callback=note_connection,
        help=f"This client's signing key [default: {DEFAULT_CLIENT_KEY}, made on first use].",
    )(fn)


def load_client_key(path: Path | None) -> Any:
    """The client's identity: the named key file, or the default one (created if missing)."""
    from edgebac.eventlog.identity import create_key_file, read_key_file

    if path is not None:
        return read_key_file(path.expanduser())
    default = default_key_path()
    if default.exists():
        return read_key_file(default)
    try:
        default.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise KeyFileError(
            f"cannot create a client key in {default.parent}: {exc.strerror}"
        ) from None
    identity = create_key_file(default)
    click.echo(f"edgebac: created a client key in {default} (id {identity.node_id})", err=True)
    return identity


@click.group()
def client() -> None:
    """This client's signing key: create it, show its id (to give an operator)."""


@client.command("keygen")
@client_key_option
@output_option
def client_keygen(client_key: Path | None, output: str) -> None:
    """Create a client key (refuses to overwrite one) and print its id."""
    from edgebac.eventlog.identity import create_key_file

    path = (client_key or default_key_path()).expanduser()
    if not path.parent.exists():
        os.makedirs(path.parent, mode=0o700, exist_ok=True)
    identity = create_key_file(path)
    _show(identity, path, output)


@client.command("id")
@client_key_option
@output_option
def client_id(client_key: Path | None, output: str) -> None:
    """Print this client's id: the public key operators name in policies and access rules."""
    path = (client_key or default_key_path()).expanduser()
    from edgebac.eventlog.identity import read_key_file

    if not path.exists():
        raise KeyFileError(f"no client key in {path}: create one with `edgebac client keygen`")
    _show(read_key_file(path), path, output)


def _show(identity: Any, path: Path, output: str) -> None:
    if output == "json":
        click.echo(json.dumps({"id": identity.node_id, "key_file": str(path)}))
    else:
        click.echo(identity.node_id)
