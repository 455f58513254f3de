"""The command line: click commands, one module per command group, and the API client."""

from edgebac.cli.main import cli, main

__all__ = ["cli", "main"]
