"""Bacalhau v1 jobs (its `job run` files and API bodies, v1.9.3) translated into edgebac specs.

Pure: a dict in (from YAML or JSON), an edgebac spec dict out that `parse_spec` accepts, or a
`SpecError` listing every field at fault by its Bacalhau path (`Tasks[0].Engine.Params.Image`).
Keys match case-insensitively, as Go's encoding/json decodes them (`name:` is `Name`; of two
spellings the later wins). What edgebac cannot do yet (daemon and service jobs, HTTP-domain
networks, port mappings, wasm import modules, S3 filters, versions and partitioning, read-write
local inputs, `env:` host variables) is refused naming the field, never dropped; what edgebac
does differently but safely (an S3 Region, results kept rather than pushed to IPFS) comes back
as a warning, as Bacalhau's own submission warnings do.

Choices where the two differ: Network `Default` (Bacalhau: the node decides) is `none`, which
is what an edgebac node decides; absent Timeouts keep edgebac's default; extra Tasks are
ignored with a warning, as Bacalhau does. The task's sources live in `bacalhau_task`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from edgebac.scheduler import bacalhau_task as task_mod
from edgebac.scheduler.bacalhau_meta import DEFAULT_NAMESPACE
from edgebac.scheduler.bacalhau_units import MAX_AMOUNT, fold, go_int
from edgebac.scheduler.constraints import parse_constraint
from edgebac.scheduler.fieldcheck import Checker, is_str_list, is_str_map, join
from edgebac.scheduler.spec import SpecError, parse_spec

JOB_FIELDS = ("ID", "Name", "Namespace", "Type", "Priority", "Count", "Constraints", "Meta")
JOB_FIELDS += ("Labels", "Tasks", "State", "Version", "Revision", "CreateTime", "ModifyTime")
# Set by the server: refused in a spec file (as `bacalhau job run` does), ignored with a
# warning in an API body (the Go CLI sends `"ID": ""`, `"State": {...}` with every job).
SERVER_FIELDS = ("ID", "State", "Version", "Revision", "CreateTime", "ModifyTime")
# Their warnings in Bacalhau's words (models.Job.SanitizeSubmission), which its docs quote.
SERVER_FIELD_WORDS = {"ID": "ID", "State": "state", "Version": "version"}
SERVER_FIELD_WORDS |= {"Revision": "revision", "CreateTime": "create time"}
SERVER_FIELD_WORDS |= {"ModifyTime": "modify time"}
CONSTRAINT_FIELDS = ("Key", "Operator", "Values")
# A PUT /api/v1/orchestrator/jobs body: the Job, and what both clients send beside it.
REQUEST_FIELDS = ("Job", "Namespace", "Credential", "IdempotencyToken", "Force")
RESERVED_META = "bacalhau.org/"
# k8s selection operators as Bacalhau's LabelSelectorRequirement takes them (exact strings).
_NO_VALUES = {"exists": "exists", "!": "!exists"}
_SET_OPS = ("in", "notin")
_ONE_VALUE = {"=": "=", "==": "=", "!=": "!=", "gt": " gt ", "lt": " lt "}  # -> separator


@dataclass(frozen=True)
class Translation:
    spec: dict[str, Any]  # an edgebac spec, as parse_spec takes it
    warnings: tuple[str, ...] = ()
    force: bool = False  # a submission's Force: update a Name's job even if nothing changed


def looks_like_bacalhau(data: Any) -> bool:
    """A Bacalhau Job rather than an edgebac spec: it has `Tasks` (any case), or keys spelled
    as Bacalhau does and edgebac never does (`Type`, `Name`, `Count`)."""
    if not isinstance(data, dict) or "engine" in data:
        return False
    keys = [k for k in data if isinstance(k, str)]
    return any(k.lower() == "tasks" for k in keys) or any(k in JOB_FIELDS for k in keys)


def translate(data: Any, from_api: bool = False) -> Translation:
    """The edgebac spec for a Bacalhau Job; SpecError names every field at fault."""
    c, warnings = Checker(), []
    d = fold(c, data, "", JOB_FIELDS)
    for name in SERVER_FIELDS:
        if name in d and not from_api:
            c.add(name, "is set by the server, not in a job spec: remove it")
        elif name in d and d[name] not in ("", 0, {}, {"StateType": "Undefined"}):
            kind = "a batch job" if name == "ID" else "a job"  # batch or ops, as Bacalhau says
            warnings.append(f"job {SERVER_FIELD_WORDS[name]} is ignored when submitting {kind}")
    job_type = _job_type(c, d)
    spec: dict[str, Any] = {"type": job_type, "count": _count(c, d, job_type)}
    spec["name"] = c.text(d, "Name", "", "")
    spec["constraints"] = c.each(d, "Constraints", "", lambda v, p: _constraint(c, v, p))
    meta = {
        "namespace": c.text(d, "Namespace", "", DEFAULT_NAMESPACE) or DEFAULT_NAMESPACE,
        "priority": go_int(c, d, "Priority", "", -MAX_AMOUNT, 0),
        "labels": c.get(d, "Labels", "", is_str_map, "a map of strings to strings", {}),
        "meta": _job_meta(c, d, warnings),
    }
    tasks = c.get(d, "Tasks", "", lambda v: isinstance(v, list) and v != [], "a list of tasks")
    if tasks:
        if len(tasks) > 1:
            warnings.append(
                f"only one task is supported per job: Tasks[1:] ({len(tasks) - 1}) ignored"
            )
        task_mod.translate_task(c, tasks[0], "Tasks[0]", spec, meta, warnings)
    spec["bacalhau"] = meta
    if c.problems:
        raise SpecError(c.problems)
    parse_spec(spec)  # what it still refuses is named in edgebac's terms
    return Translation(spec, tuple(warnings))


def translate_submission(body: Any) -> Translation:
    """A Bacalhau submission (`{"Job": {...}, "Namespace", "Credential", "IdempotencyToken",
    "Force"}`, as the Go CLI and the Python SDK send it) translated; problems name `Job.<field>`.
    Of the fields beside the Job only Force counts (see `bacalhau_versions`): edgebac's clients
    sign requests instead of sending credentials, and Bacalhau itself acts on no
    IdempotencyToken."""
    c = Checker()
    d = fold(c, body, "", REQUEST_FIELDS)
    if "Job" not in d and not c.problems:
        c.add("Job", "is required")
    force = d.get("Force", False)
    if type(force) is not bool:
        c.add("Force", f"{force!r} is not true or false")
    if c.problems:
        raise SpecError(c.problems)
    try:
        translated = translate(d["Job"], from_api=True)
    except SpecError as exc:
        problems = [(join("Job", path) if path else "Job", m) for path, m in exc.problems]
        raise SpecError(problems) from None
    return replace(translated, force=force)


def _job_type(c: Checker, d: dict[str, Any]) -> str:
    job_type = c.text(d, "Type", "", "")
    if job_type in ("daemon", "service"):
        c.add(
            "Type",
            f"{job_type} jobs (long-running) are not supported by edgebac yet: use batch or ops",
        )
    elif job_type == "":
        c.add("Type", "is required (batch or ops)")
    elif job_type not in ("batch", "ops"):
        c.add("Type", f"{job_type!r} is not a job type (batch, ops)")
    return job_type if job_type in ("batch", "ops") else "batch"


def _count(c: Checker, d: dict[str, Any], job_type: str) -> int:
    count = go_int(c, d, "Count", "", 0, 1)
    if job_type == "ops":
        if count > 1:
            c.add("Count", f"{count}: ops jobs run on every matching node, Count may be 0 or 1")
        return 1
    if count == 0:
        c.add("Count", "0 stops a job's executions in Bacalhau; a new edgebac job needs 1 or more")
        return 1
    return count


def _job_meta(c: Checker, d: dict[str, Any], warnings: list[str]) -> dict[str, str]:
    meta = c.get(d, "Meta", "", is_str_map, "a map of strings to strings", {})
    for key in [k for k in meta if k.startswith(RESERVED_META)]:
        warnings.append(f"job meta key {key!r} is reserved and will be ignored")
    return {k: v for k, v in meta.items() if not k.startswith(RESERVED_META)}


def _constraint(c: Checker, value: Any, path: str) -> str | None:
    """`{Key, Operator, Values}` as an edgebac selector string (`key gt 4`, `!key`, ...)."""
    d = fold(c, value, path, CONSTRAINT_FIELDS)
    key, op = c.text(d, "Key", path), c.text(d, "Operator", path)
    values = c.get(d, "Values", path, is_str_list, "a list of strings", [])
    if not key or op is None:
        if key == "":
            c.add(join(path, "Key"), "is empty")
        return None
    if op in _NO_VALUES:
        text = f"!{key}" if op == "!" else f"{key} exists"
        wanted = not values
    elif op in _SET_OPS:
        text, wanted = f"{key} {op} ({','.join(values)})", bool(values)
    elif op in _ONE_VALUE:
        wanted = len(values) == 1
        text = f"{key}{_ONE_VALUE[op]}{values[0]}" if wanted else ""
    else:
        c.add(
            join(path, "Operator"),
            f"{op!r} is not an operator (=, ==, !=, in, notin, exists, !, gt, lt)",
        )
        return None
    if not wanted:
        c.add(join(path, "Values"), f"{values!r} is not the number of values {op!r} takes")
        return None
    try:
        return str(parse_constraint(text))
    except ValueError as exc:
        c.add(path, str(exc))
        return None
