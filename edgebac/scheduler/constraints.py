"""Label constraints: `key=value`, `key!=value`, `key in (a,b)`, `key notin (a,b)`, `key exists`,
`!key`, `key gt 4`, `key lt 4` (or `key>4`, `key<4`) — the selector syntax users know from
Kubernetes, parsed once into typed values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_KEY = r"[A-Za-z0-9][A-Za-z0-9_./-]*"
_VALUE = r"[A-Za-z0-9_./:-]+"
_NOT_EXISTS = re.compile(rf"^!\s*({_KEY})$")
_EXISTS = re.compile(rf"^({_KEY})\s+exists$")
_SET = re.compile(rf"^({_KEY})\s+(in|notin)\s*\((.*)\)$")
_EQ = re.compile(rf"^({_KEY})\s*(!=|==|=)\s*({_VALUE})$")
_CMP = re.compile(rf"^({_KEY})(?:\s+(gt|lt)\s+|\s*([<>])\s*)(-?[0-9]+)$")  # linear time
_VALUE_RE = re.compile(rf"^{_VALUE}$")


@dataclass(frozen=True)
class Constraint:
    """One selector; `op` is one of `=`, `!=`, `in`, `notin`, `exists`, `!exists`, `gt`, `lt`."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        if self.op == "exists":
            return value is not None
        if self.op == "!exists":
            return value is None
        if self.op in ("gt", "lt"):  # as Kubernetes: both sides integers, else no match
            if value is None or not re.fullmatch(r"-?[0-9]+", value):
                return False
            diff = int(value) - int(self.values[0])
            return diff > 0 if self.op == "gt" else diff < 0
        if self.op in ("=", "in"):
            return value is not None and value in self.values
        # `!=` and `notin` also match nodes without the label, as in Kubernetes.
        return value not in self.values

    def __str__(self) -> str:
        if self.op == "exists":
            return f"{self.key} exists"
        if self.op == "!exists":
            return f"!{self.key}"
        if self.op in ("in", "notin"):
            return f"{self.key} {self.op} ({','.join(self.values)})"
        if self.op in ("gt", "lt"):
            return f"{self.key} {self.op} {self.values[0]}"
        return f"{self.key}{self.op}{self.values[0]}"


def parse_constraint(text: str) -> Constraint:
    """Parse one selector; ValueError says what is wrong."""
    text = text.strip()
    if match := _NOT_EXISTS.match(text):
        return Constraint(match.group(1), "!exists")
    if match := _EXISTS.match(text):
        return Constraint(match.group(1), "exists")
    if match := _SET.match(text):
        values = tuple(v.strip() for v in match.group(3).split(","))
        bad = [v for v in values if not _VALUE_RE.match(v)]
        if bad or not values:
            raise ValueError(f"{text!r}: bad value list ({match.group(3)!r})")
        return Constraint(match.group(1), match.group(2), values)
    if match := _EQ.match(text):
        op = "=" if match.group(2) == "==" else match.group(2)
        return Constraint(match.group(1), op, (match.group(3),))
    if match := _CMP.match(text):
        op = match.group(2) or {">": "gt", "<": "lt"}[match.group(3)]
        return Constraint(match.group(1), op, (str(int(match.group(4))),))
    raise ValueError(
        f"{text!r} is not a constraint like key=value, key!=value, key in (a,b), "
        "key notin (a,b), key exists, !key, key gt N or key lt N"
    )


def all_match(constraints: tuple[Constraint, ...], labels: Mapping[str, str]) -> bool:
    return all(c.matches(labels) for c in constraints)
