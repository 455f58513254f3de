"""`job run -V k=v -E REGEX`: Bacalhau's spec templating, the part its specs use.

Bacalhau renders a spec file with Go's `text/template` (missing keys are errors) before
parsing it, over the `-V` values and the environment variables `-E` matches (`*`: all; a `-V`
value wins). Its specs use placeholders, `{{.name}}` or `{{ .name }}`; those are rendered here.
Anything else between `{{` and `}}` (pipelines, functions, `if`, `range`) is refused by name
rather than passed on half-rendered. Pure, so each rule is tested directly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from edgebac.errors import BadRequest

_ACTION = re.compile(r"\{\{(-?)(.*?)(-?)\}\}", re.S)
_FIELD = re.compile(r"^\s*\.([A-Za-z_][A-Za-z0-9_]*)\s*$")


def template_values(
    pairs: tuple[str, ...], env_pattern: str | None, environ: Mapping[str, str]
) -> dict[str, str]:
    """The values a template sees: the environment variables `env_pattern` matches, then the
    `-V` pairs over them."""
    values: dict[str, str] = {}
    if env_pattern:
        try:
            pattern = re.compile(".*" if env_pattern == "*" else env_pattern)
        except re.error as exc:
            raise BadRequest(f"-E {env_pattern!r}: not a regular expression ({exc})") from None
        values |= {name: value for name, value in environ.items() if pattern.search(name)}
    from edgebac.cli.run import split_env

    return values | split_env(pairs, "-V")


def render(text: str, values: Mapping[str, str], where: str) -> str:
    """`text` with each `{{.name}}` replaced; BadRequest for a missing name or another action."""

    def replace(match: re.Match[str]) -> str:
        field = _FIELD.match(match[2])
        line = text.count("\n", 0, match.start()) + 1
        if field is None:
            raise BadRequest(
                f"{where}:{line}: template action {match[0]!r}: only placeholders like "
                "{{.name}} are rendered here"
            )
        name = field[1]
        if name not in values:
            raise BadRequest(
                f"{where}:{line}: template: no value for {{{{.{name}}}}} (give -V {name}=VALUE, "
                "or --no-template to send it as written)"
            )
        return values[name]

    rendered = _ACTION.sub(replace, text)
    return rendered
