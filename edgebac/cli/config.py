"""Option defaults from a config file, for every `edgebac` command.

Precedence: a flag, then its EDGEBAC_<FLAG> environment variable, then the file, then the
built-in default (click's own order, with the file as the context's `default_map`).

The file is `--config FILE` (before the command: `edgebac --config FILE job list`) or
`EDGEBAC_CONFIG`, else `$XDG_CONFIG_HOME/edgebac/config.yaml` (`~/.config/...`) when it exists.
YAML or JSON, a mapping:

    api: http://10.0.0.5:7700     # flat keys: for every command that has the option
    output: json
    job:                          # a section per command group or command, nested
      logs:
        follow: true

Keys are option names as spelled on the command line (`data-dir` or `data_dir`). A key that
no command in its scope takes, a section that is no command, or a value the option refuses is
an error naming the file and the key.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from edgebac.errors import ConfigError

NOT_CONFIGURABLE = {"help", "version", "config"}


def default_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "edgebac" / "config.yaml"


def read_config(path: Path) -> dict[str, Any]:
    import yaml

    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        from edgebac.textdata import yaml_error_line

        first = yaml_error_line(exc)
        raise ConfigError(f"config file {path}: not valid {_kind(path)}: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: must be a mapping of option names to values")
    return data


def _kind(path: Path) -> str:
    return "JSON" if path.suffix == ".json" else "YAML"


def _norm(key: Any) -> str:
    return str(key).strip().lower().replace("-", "_")


def _options(command: click.Command) -> dict[str, click.Option]:
    """The configurable options of a command by every name a key may use."""
    names: dict[str, click.Option] = {}
    for param in command.params:
        if not isinstance(param, click.Option) or param.name in NOT_CONFIGURABLE:
            continue
        assert param.name is not None
        names[_norm(param.name)] = param
        for opt in param.opts:
            if opt.startswith("--"):
                names[_norm(opt[2:])] = param
    return names


class _Builder:
    """Walks the command tree once, giving each command the keys in scope that it takes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.used: set[tuple[str, str]] = set()
        self.defined: dict[tuple[str, str], str] = {}  # (section, key) -> key as written

    def build(self, command: click.Command, section: dict[str, Any], where: str, inherited: dict):
        scope = dict(inherited)  # normalized key -> (value, section it came from, key as written)
        subcommands = command.commands if isinstance(command, click.Group) else {}
        for key, value in section.items():
            if isinstance(value, dict):
                if key not in subcommands:
                    raise ConfigError(
                        f"config file {self.path}: {self._at(where, key)} is not a command "
                        "(sections are command names, e.g. job: {logs: {follow: true}})"
                    )
                continue
            scope[_norm(key)] = (value, where, str(key))
            self.defined[(where, _norm(key))] = str(key)
        result: dict[str, Any] = {}
        for name, param in _options(command).items():
            if name in scope:
                value, origin, written = scope[name]
                result[param.name] = self._checked(command, param, value, origin, written)
                self.used.add((origin, name))
        for name, sub in subcommands.items():
            inner = section.get(name) if isinstance(section.get(name), dict) else {}
            result[name] = self.build(sub, inner, f"{where} {name}".strip(), scope)
        return result

    def _at(self, where: str, key: str) -> str:
        return f"key {key!r}" + (f" in section {where!r}" if where else "")

    def _checked(
        self, command: click.Command, param: click.Option, value: Any, where: str, key: str
    ) -> Any:
        """The value as click should get it (numbers as text, lists for multiple options),
        converted once here so a bad one is named with its file and key."""
        at = f"config file {self.path}: {self._at(where, key)}"
        if param.multiple:
            value = [_scalar(item, at) for item in (value if isinstance(value, list) else [value])]
        elif isinstance(value, list):
            raise ConfigError(f"{at}: takes one value, not a list")
        else:
            value = _scalar(value, at)
        try:
            param.type_cast_value(click.Context(command), value)
        except click.BadParameter as exc:
            raise ConfigError(f"{at}: {' '.join(exc.message.split())}") from None
        return value

    def check_unused(self) -> None:
        for (where, name), key in self.defined.items():
            if (where, name) not in self.used:
                raise ConfigError(
                    f"config file {self.path}: unknown {self._at(where, key)}: "
                    "no command there takes that option"
                )


def _scalar(value: Any, at: str) -> str | bool:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return str(value)
    raise ConfigError(f"{at}: expected a value such as text, a number or true/false")


def default_map(root: click.Command, data: dict[str, Any], path: Path) -> dict[str, Any]:
    """click's `default_map` for `root` and every command under it, from a config mapping."""
    builder = _Builder(path)
    result = builder.build(root, data, "", {})
    builder.check_unused()
    return result


def _load(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    path = value
    if path is None:
        candidate = default_config_path()
        if not candidate.is_file():
            return
        path = candidate
    path = path.expanduser()
    ctx.default_map = default_map(ctx.command, read_config(path), path)


config_option = click.option(
    "--config",
    envvar="EDGEBAC_CONFIG",
    show_envvar=True,
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    is_eager=True,
    expose_value=False,
    callback=_load,
    help="Config file of option defaults (YAML or JSON) [default: ~/.config/edgebac/config.yaml].",
)
