"""Job views for people and for scripts: times, not clock numbers; no `None`; no 56 KB lines.

The API returns the projection as it is (hybrid-clock values, inline modules as base64); this
is where the command line turns that into something to read. Pure functions: `now_ms` is
passed in, so they are tested from tables. Times are edgebac.textdata's (`when`), which the
event log's own lines use too.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from edgebac.textdata import when

TEXT_LIMIT = 120  # longer strings are cut in text output
JSON_LIMIT = 4096  # longer strings are a size and digest in JSON output
ACTIVE = ("accepted", "running")


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def shortened(value: Any, limit: int = TEXT_LIMIT) -> Any:
    """Long strings (an inline module) cut to `limit`, with their length and digest."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]}... ({len(value):,} chars, sha256 {_digest(value)[:16]})"
    if isinstance(value, dict):
        return {key: shortened(item, limit) for key, item in value.items()}
    if isinstance(value, list):
        return [shortened(item, limit) for item in value]
    return value


def compact(value: Any, limit: int = JSON_LIMIT) -> Any:
    """For JSON output: a string over `limit` chars becomes {"omitted", "chars", "sha256"}
    (its head, its length, the digest of the whole), so a script can still tell values apart
    without a 56 KB line; the API has the full value."""
    if isinstance(value, str) and len(value) > limit:
        return {"omitted": value[:64], "chars": len(value), "sha256": _digest(value)}
    if isinstance(value, dict):
        return {key: compact(item, limit) for key, item in value.items()}
    if isinstance(value, list):
        return [compact(item, limit) for item in value]
    return value


def dumps(value: Any) -> str:
    return json.dumps(compact(value))


def pretty_spec(spec: Any, indent: str = "  ") -> list[str]:
    """The spec as indented YAML-like lines, long values cut."""
    lines: list[str] = []
    _pretty(shortened(spec), indent, lines)
    return lines


def _pretty(value: Any, indent: str, lines: list[str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{indent}{key}:")
                _pretty(item, indent + "  ", lines)
            else:
                lines.append(f"{indent}{key}: {_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list) and item:
                inner: list[str] = []
                _pretty(item, indent + "  ", inner)
                lines.append(f"{indent}- {inner[0].strip()}")
                lines.extend(inner[1:])
            else:
                lines.append(f"{indent}- {_scalar(item)}")
    else:
        lines.append(f"{indent}{_scalar(value)}")


def _scalar(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return "{}" if isinstance(value, dict) else "[]"
    if isinstance(value, str) and (not value or value != value.strip() or "\n" in value):
        return json.dumps(value)  # one line, and an empty or spaced value stays visible
    return str(value)


def sorted_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """In the log's total order, (hlc, author, seq): the order the projection folds them."""

    def key(event: dict[str, Any]) -> tuple[int, int, str, int]:
        ms, _, counter = str(event.get("hlc", "0")).partition(".")
        return (int(ms or 0), int(counter or 0), event.get("author", ""), event.get("seq", 0))

    return sorted(events, key=key)


def execution_line(execution: dict[str, Any]) -> str:
    """`ID on NODE (attempt N): failed, exit 3: reason`; nothing said twice, no `None`."""
    line = f"{execution['id']} on {execution['node'][:12]}"
    line += f" (attempt {execution.get('attempt', 0)}): {execution['status']}"
    exit_code, reason = execution.get("exit_code"), execution.get("reason")
    if exit_code is not None:
        line += f", exit {exit_code}"
    if reason and reason != f"exit code {exit_code}":
        line += f": {reason}"
    if execution.get("surplus"):
        line += " (surplus: beyond the job's count, its result does not count)"
    return line


def execution_details(execution: dict[str, Any], now_ms: int) -> list[str]:
    """The lines under an execution in `describe`: its times, result and output heads."""
    lines = []
    for label, field in (("started", "started_hlc"), ("ended", "ended_hlc")):
        if execution.get(field) is not None:
            lines.append(f"{label}: {when(execution[field], now_ms)}")
    if execution.get("reference"):
        size = execution.get("size")
        lines.append(
            f"result: {execution['reference']}" + (f" ({size:,} bytes)" if size is not None else "")
        )
    for stream in ("stdout", "stderr"):
        head = execution.get(f"{stream}_head")
        if head:
            lines.append(f"{stream}: " + " | ".join(head.rstrip().splitlines())[:200])
    return lines


def settled(view: dict[str, Any]) -> bool:
    """Whether a job's view holds its final state: ended, no execution still shown as active,
    and every failed attempt its JobFailed lists already known here. A compute node's last
    event may reach this node after the requester's verdict does (gossip takes its own paths),
    and folds in before it (hlc order): until then the view undercounts."""
    if view.get("status") == "canceled":
        return True  # stopped executions may never report: nothing more to wait for
    if view.get("status") not in ("completed", "failed"):
        return False
    executions = view.get("executions") or {}
    if any(e.get("status") in ACTIVE for e in executions.values()):
        return False
    listed = [a.get("execution_id") for a in view.get("attempts") or []]
    return all(i in executions and executions[i]["status"] not in ACTIVE for i in listed)
