"""Options every `edgebac` command spells the same way."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

DEFAULT_DATA_DIR = "~/.edgebac"


def option(*names: str, **kwargs: Any) -> Callable[[Any], Any]:
    """A click option that also reads EDGEBAC_<LONG_NAME> from the environment."""
    long_name = next(name for name in names if name.startswith("--")).split("/")[0]
    envvar = "EDGEBAC_" + long_name[2:].upper().replace("-", "_")  # --wait/--no-wait: _WAIT
    return click.option(*names, envvar=envvar, show_envvar=True, **kwargs)


data_dir_option = option(
    "--data-dir",
    default=DEFAULT_DATA_DIR,
    show_default=True,
    type=click.Path(path_type=Path),
    help="Where the node keeps its key and event log.",
)
OUTPUT: dict[str, str | None] = {"format": None}  # as resolved, for rendering a failure


def _note_output(ctx: click.Context, param: click.Parameter, value: str) -> str:
    OUTPUT["format"] = value
    return value


output_option = option(
    "--output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    callback=_note_output,
    help="json for scripts (errors too: the API's error shape on stdout).",
)


def api_url(ctx: click.Context | None, param: click.Parameter | None, value: str) -> str:
    """`HOST:PORT` is taken as `http://HOST:PORT` (what `--listen` printed, minus the scheme);
    any other scheme is refused here rather than failing to connect."""
    from urllib.parse import urlsplit

    url = value.strip()
    if "://" not in url:
        url = "http://" + url
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"{value!r} is not a URL like http://127.0.0.1:7700")
    return url.rstrip("/")


# How every API client of this command connects, as resolved (see `cli.client.ApiClient`).
CONNECTION: dict[str, Any] = dict.fromkeys(("client_key", "token", "ca", "tls_fingerprint"))


def note_connection(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if param.name is not None and value is not None:
        CONNECTION[param.name] = value
    return value


_connection_options = (
    option(
        "--api",
        default="http://127.0.0.1:7700",
        show_default=True,
        callback=api_url,
        help="URL of a node's API (HOST:PORT means http://HOST:PORT).",
    ),
    option(
        "--client-key",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        expose_value=False,
        callback=note_connection,
        help="This client's signing key [default: ~/.config/edgebac/client.key, made if missing].",
    ),
    option(
        "--token",
        default=None,
        expose_value=False,
        callback=note_connection,
        help="An API token (sent as Authorization: Bearer) instead of signing with a key.",
    ),
    option(
        "--ca",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        default=None,
        expose_value=False,
        callback=note_connection,
        help="CA certificate (PEM) that signed an https:// node's certificate.",
    ),
    option(
        "--tls-fingerprint",
        default=None,
        expose_value=False,
        callback=note_connection,
        help="SHA-256 fingerprint an https:// node's certificate must have (self-signed).",
    ),
)


def api_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`--api URL`, and how to reach it and who calls: `--client-key` (signs every call) or
    `--token`, and `--ca` or `--tls-fingerprint` for an https:// node."""
    for decorate in reversed(_connection_options):
        fn = decorate(fn)
    return fn
