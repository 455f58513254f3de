"""Small typed readers for validating nested dicts, collecting problems with their field paths.

Each reader returns the value (or a default) and records a problem instead of raising, so one
pass over a spec reports everything that is wrong with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
MISSING: Any = object()


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class Checker:
    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append((path, message))

    def obj(self, value: Any, path: str, keys: list[str] | tuple[str, ...]) -> dict[str, Any]:
        """A map with only the known `keys` (an empty dict after a problem)."""
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            self.add(path or "spec", f"{_show(value)} is not a map")
            return {}
        for key in value:
            if key not in keys:
                self.add(join(path, key), "unknown field")
        return value

    def get(
        self,
        d: dict[str, Any],
        key: str,
        path: str,
        check: Callable[[Any], bool],
        what: str,
        default: Any = MISSING,
    ) -> Any:
        """`d[key]` if `check` accepts it; `default` when absent (a problem if no default)."""
        where = join(path, key)
        if key not in d or (d[key] is None and default is not MISSING):
            if default is MISSING:
                self.add(where, "is required")
            return None if default is MISSING else default
        value = d[key]
        if not check(value):
            self.add(where, f"{_show(value)} is not {what}")
            return None if default is MISSING else default
        return value

    def text(self, d: dict[str, Any], key: str, path: str, default: Any = MISSING) -> Any:
        return self.get(d, key, path, is_str, "a string", default)

    def integer(
        self, d: dict[str, Any], key: str, path: str, minimum: int, default: Any = MISSING
    ) -> Any:
        value = self.get(d, key, path, is_int, "an integer", default)
        if is_int(value) and value < minimum:
            self.add(join(path, key), f"{value} is less than {minimum}")
            return default if default is not MISSING else None
        return value

    def str_list(self, d: dict[str, Any], key: str, path: str, default: Any = MISSING) -> Any:
        return self.get(d, key, path, is_str_list, "a list of strings", default)

    def env(self, d: dict[str, Any], key: str, path: str, name_ok: Callable[[str], bool]) -> Any:
        value = self.get(d, key, path, is_str_map, "a map of strings to strings", {})
        for name in value:
            if not name_ok(name):
                self.add(join(join(path, key), name), "is not a valid environment variable name")
        return value

    def each(
        self, d: dict[str, Any], key: str, path: str, parse: Callable[[Any, str], T | None]
    ) -> list[T]:
        """Parse every item of the list `d[key]` (absent: empty), keeping the good ones."""
        value = self.get(d, key, path, lambda v: isinstance(v, list), "a list", [])
        out = []
        for i, item in enumerate(value):
            parsed = parse(item, join(join(path, key), i))
            if parsed is not None:
                out.append(parsed)
        return out


def is_str(value: Any) -> bool:
    return isinstance(value, str)


def is_int(value: Any) -> bool:
    return type(value) is int


def is_number(value: Any) -> bool:
    return type(value) in (int, float)


def is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def is_str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
