"""Text to and from people, shared by the parts and the shells: files they write by hand (job
specs, policies: JSON, or YAML when it is not JSON), and times they read (a local ISO time with
its age, not a hybrid-clock number). Pure functions; `now_ms` is passed in.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

COUNTER_BITS = 16  # an hlc packs (wall ms << 16 | counter); see edgebac.eventlog.clock


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


def hlc_ms(value: Any) -> int | None:
    """Wall milliseconds of an hlc as the API spells it: a packed int, or "ms.counter"."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value >> COUNTER_BITS
    if isinstance(value, str):
        head = value.split(".", 1)[0]
        return int(head) if head.isdigit() else None
    return None


def age(seconds: float) -> str:
    """`4 s ago`, `3 min ago`, `2 h ago`, `5 d ago`; `in 3 s` for a time ahead of ours."""
    ahead, seconds = seconds < 0, abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            amount = f"{seconds // size:.0f} {unit}"
            break
    else:
        amount = f"{seconds:.0f} s"
    return f"in {amount}" if ahead else f"{amount} ago"


def when(value: Any, now_ms: int) -> str:
    """Local ISO time to the second, with its age: `2026-03-01T10:12:17+01:00 (4 s ago)`."""
    ms = hlc_ms(value)
    if ms is None:
        return "-"
    local = datetime.fromtimestamp(ms / 1000).astimezone().isoformat(timespec="seconds")
    return f"{local} ({age((now_ms - ms) / 1000)})"
