"""Options every `edgebac` command spells the same way."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

DEFAULT_DATA_DIR = "~/.edgebac"


def option(*names: str, **kwargs: Any) -> Callable[[Any], Any]:
    """A click option that also reads EDGEBAC_<LONG_NAME> from the environment."""
    long_name = next(name for name in names if name.startswith("--"))
    envvar = "EDGEBAC_" + long_name[2:].upper().replace("-", "_")
    return click.option(*names, envvar=envvar, show_envvar=True, **kwargs)


data_dir_option = option(
    "--data-dir",
    default=DEFAULT_DATA_DIR,
    show_default=True,
    type=click.Path(path_type=Path),
    help="Where the node keeps its key and event log.",
)
output_option = option(
    "--output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json for scripts.",
)

api_option = option(
    "--api",
    default="http://127.0.0.1:7700",
    show_default=True,
    help="URL of a node's API.",
)
