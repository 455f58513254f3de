"""The `edgebac` command: parse, call one thing, render, set the exit code.

Every flag also reads EDGEBAC_<FLAG> from the environment. Domain errors become one line on
stderr and exit code 1; usage errors exit 2.
"""

from __future__ import annotations

import json
import os
import sys
from typing import NoReturn

import click

from edgebac import __version__
from edgebac.cli.access import access
from edgebac.cli.config import config_option
from edgebac.cli.devstack import devstack_command
from edgebac.cli.identity import client
from edgebac.cli.job import job
from edgebac.cli.log import log
from edgebac.cli.logs import job_logs
from edgebac.cli.network import network
from edgebac.cli.node import node
from edgebac.cli.options import OUTPUT
from edgebac.cli.results import job_get
from edgebac.cli.run import docker_group, wasm_group
from edgebac.errors import EdgebacError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgebac")
@config_option
def cli() -> None:
    """edgebac: compute over data for the edge."""


cli.add_command(node)
cli.add_command(client)
cli.add_command(access)
cli.add_command(log)
cli.add_command(network)
cli.add_command(devstack_command)
job.add_command(job_logs)
cli.add_command(job)
job.add_command(job_get)
cli.add_command(docker_group)
cli.add_command(wasm_group)


def _wants_json(argv: list[str]) -> bool:
    """Whether the failed command was asked for JSON: by its --output option (flag,
    environment or config file, as resolved), else by the words given (a usage error can come
    before the option is resolved)."""
    if OUTPUT["format"] is not None:
        return OUTPUT["format"] == "json"
    for index, word in enumerate(argv):
        if word == "--output=json" or (
            word == "--output" and argv[index + 1 : index + 2] == ["json"]
        ):
            return True
    return os.environ.get("EDGEBAC_OUTPUT") == "json"


def fail(message: str, code: str, exit_code: int, as_json: bool) -> NoReturn:
    """The one way a command fails: one line on stderr, or the API's error shape on stdout
    for `--output json` (so a script reads an answer where it reads answers)."""
    if as_json:
        click.echo(json.dumps({"error": {"code": code, "message": message}}))
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(exit_code)


def _usage_message(exc: click.UsageError) -> str:
    message = " ".join(exc.format_message().split())
    if exc.ctx is not None:
        message += f" (see: {exc.ctx.command_path} --help)"
    return message


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    OUTPUT["format"] = None
    try:
        code = cli.main(args=args, prog_name="edgebac", standalone_mode=False)
    except click.UsageError as exc:
        fail(_usage_message(exc), "usage", exc.exit_code, _wants_json(args))
    except click.ClickException as exc:
        fail(" ".join(exc.format_message().split()), "error", exc.exit_code, _wants_json(args))
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except EdgebacError as exc:
        fail(" ".join(str(exc).split()), exc.code, 1, _wants_json(args))
    sys.exit(code if isinstance(code, int) else 0)
