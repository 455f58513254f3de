"""The `edgebac` command: parse, call one thing, render, set the exit code.

Every flag also reads EDGEBAC_<FLAG> from the environment. Domain errors become one line on
stderr and exit code 1; usage errors exit 2.
"""

from __future__ import annotations

import sys

import click

from edgebac import __version__
from edgebac.cli.config import config_option
from edgebac.cli.devstack import devstack_command
from edgebac.cli.job import job
from edgebac.cli.log import log
from edgebac.cli.logs import job_logs
from edgebac.cli.network import network
from edgebac.cli.node import node
from edgebac.cli.results import job_get
from edgebac.cli.run import docker_group, wasm_group
from edgebac.errors import EdgebacError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgebac")
@config_option
def cli() -> None:
    """edgebac: compute over data for the edge."""


cli.add_command(node)
cli.add_command(log)
cli.add_command(network)
cli.add_command(devstack_command)
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
