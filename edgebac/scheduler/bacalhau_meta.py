"""What a job translated from a Bacalhau spec carries beyond edgebac's own fields.

The spec's `bacalhau` map marks a job as Bacalhau's: its executions get Bacalhau's
`BACALHAU_*` variables, and the compat API echoes back what the user wrote and edgebac does not
act on (Namespace, Priority, Labels, Meta, the task's name and Meta, input aliases, result
names as written). It is part of the signed spec, so every node reads the same values from
the log. Absent (None) for edgebac's own specs, whose canonical form is then unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edgebac.scheduler.fieldcheck import Checker, is_str_map, join

KEYS = ("namespace", "priority", "labels", "meta", "task", "task_meta", "aliases", "names")
KEYS += ("entry", "version", "replaces")
DEFAULT_NAMESPACE = "default"
DEFAULT_TASK = "main"


@dataclass(frozen=True)
class BacalhauMeta:
    namespace: str = DEFAULT_NAMESPACE
    priority: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    meta: Mapping[str, str] = field(default_factory=dict)
    task: str = DEFAULT_TASK
    task_meta: Mapping[str, str] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)  # input target -> Alias
    names: Mapping[str, str] = field(default_factory=dict)  # output name -> Name as written
    entry: str = ""  # a wasm EntryModule whose InputSource became the module (its Target)
    # A resubmission under a Name the client's earlier job has: Bacalhau's job update, here a
    # new job (its version) that replaced that one (whose id this is; it was stopped).
    version: int = 1
    replaces: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = self._fields()
        if self.version != 1:  # absent at version 1: earlier jobs' specs (and ids) unchanged
            out |= {"version": self.version, "replaces": self.replaces}
        return out

    def _fields(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "priority": self.priority,
            "labels": dict(self.labels),
            "meta": dict(self.meta),
            "task": self.task,
            "task_meta": dict(self.task_meta),
            "aliases": dict(self.aliases),
            "names": dict(self.names),
            "entry": self.entry,
        }


def parse_bacalhau_meta(c: Checker, value: Any, path: str) -> BacalhauMeta | None:
    """The spec's `bacalhau` map (None when absent), problems recorded in `c`."""
    if value is None:
        return None
    d = c.obj(value, path, KEYS)
    maps = {}
    for key in ("labels", "meta", "task_meta", "aliases", "names"):
        maps[key] = c.get(d, key, path, is_str_map, "a map of strings to strings", {})
    priority = d.get("priority", 0)
    if type(priority) is not int:
        c.add(join(path, "priority"), f"{priority!r} is not an integer")
        priority = 0
    version = d.get("version", 1)
    if type(version) is not int or version < 1:
        c.add(join(path, "version"), f"{version!r} is not a version (1, 2, ...)")
        version = 1
    replaces = c.text(d, "replaces", path, "")
    if (version == 1) != (replaces == ""):
        c.add(join(path, "replaces"), "names the job a version after the first replaced")
    return BacalhauMeta(
        namespace=c.text(d, "namespace", path, DEFAULT_NAMESPACE),
        priority=priority,
        task=c.text(d, "task", path, DEFAULT_TASK),
        entry=c.text(d, "entry", path, ""),
        version=version,
        replaces=replaces,
        **maps,
    )
