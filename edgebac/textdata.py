"""Files people write by hand (job specs, policies): JSON, or YAML when it is not JSON."""

from __future__ import annotations

import json
from typing import Any


def load_json_or_yaml(text: str) -> Any:
    """The data in `text`; ValueError saying why in one line when it is neither JSON nor YAML.

    JSON is tried first (it is valid YAML too, but the JSON parser is faster and needs no
    import); PyYAML is imported only for YAML.
    """
    try:
        return json.loads(text)
    except ValueError:
        pass
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML (nor JSON): {yaml_error_line(exc)}") from None


def yaml_error_line(exc: Exception) -> str:
    """PyYAML's several-line message (`in "<unicode string>"`, a caret) as one line:
    `line 3, column 2: expected <block end>, but found '<block mapping start>'`."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem is None:
        return " ".join(str(exc).split())
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    if context and context_mark is not None:
        problem += f" ({context} at line {context_mark.line + 1})"
    elif context:
        problem += f" ({context})"
    return " ".join((where + problem).split())
