"""The job spec: what a client asks for, parsed once into frozen values and validated whole.

`parse_spec` collects every problem with the path of the field at fault (`resources.memory`,
`inputs[1].target`) so a user fixes a spec in one go. `JobSpec.to_dict()` is the canonical form
that goes into the `JobCreated` body: every field spelled out, amounts normalised (cpu in
millicores `"500m"`, sizes in bytes), sources normalised; parsing it back gives an equal spec.

Defaults where the issue was silent: name `""`, type `batch`, count 1, resources 0 (no claim),
timeout 600 s, network `none`, retries 2, publisher `local`, bid window from the requester.
For `ops` jobs `count` is ignored: they run once on every matching node.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edgebac.errors import BadRequest
from edgebac.scheduler.bacalhau_meta import BacalhauMeta, parse_bacalhau_meta
from edgebac.scheduler.constraints import Constraint, parse_constraint
from edgebac.scheduler.fieldcheck import MISSING, Checker, is_number, join
from edgebac.scheduler.ids import is_file_name
from edgebac.scheduler.quantities import memory_too_small, parse_cpu, parse_size
from edgebac.scheduler.sources import Source, parse_source
from edgebac.textdata import load_json_or_yaml

DEFAULT_TIMEOUT_S = 600
DEFAULT_RETRIES = 2
# Files every results folder holds: an output volume may not take their names.
RESULT_FILES = frozenset({"stdout", "stderr", "exitCode"})
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOP_KEYS = ("name", "type", "count", "constraints", "resources", "engine", "inputs", "outputs")
_TOP_KEYS += ("publisher", "env", "timeout_s", "network", "retries", "bid_window_ms")
_TOP_KEYS += ("bacalhau",)  # see bacalhau_meta


class SpecError(BadRequest):
    """A spec with problems; `problems` lists (field path, message) for each."""

    code = "bad_spec"

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {message}" for path, message in problems))


@dataclass(frozen=True)
class Resources:
    cpu_millis: int = 0
    memory_bytes: int = 0
    disk_bytes: int = 0
    gpu: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpu": f"{self.cpu_millis}m",
            "memory": self.memory_bytes,
            "disk": self.disk_bytes,
            "gpu": self.gpu,
        }

    def amounts(self) -> dict[str, int]:
        """Keyed like a node's announced resources and a bid's `free`."""
        return {
            "cpu_millis": self.cpu_millis,
            "memory_bytes": self.memory_bytes,
            "disk_bytes": self.disk_bytes,
            "gpu": self.gpu,
        }


# What an execution takes when its spec names no amount: the limits its engine then sets (the
# docker executor's CPU quota and memory limit, a wasm store's memory limit and its one thread).
# A node counts them when it decides what fits, so a job that names nothing is neither
# unbounded where it runs nor free to run a thousand of at once.
ENGINE_DEFAULTS: Mapping[str, Mapping[str, int]] = {
    "docker": {"cpu_millis": 500, "memory_bytes": 512 << 20},
    "wasm": {"cpu_millis": 1000, "memory_bytes": 512 << 20},
}


def engine_default(engine: str, key: str) -> int:
    return ENGINE_DEFAULTS.get(engine, {}).get(key, 0)


@dataclass(frozen=True)
class DockerEngine:
    image: str
    entrypoint: tuple[str, ...] | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    type: str = "docker"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "docker", "image": self.image, "args": list(self.args)}
        out["env"] = dict(self.env)
        if self.entrypoint is not None:
            out["entrypoint"] = list(self.entrypoint)
        if self.workdir is not None:
            out["workdir"] = self.workdir
        return out


@dataclass(frozen=True)
class WasmEngine:
    module: Source
    entrypoint: str = "_start"
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    fuel: int | None = None  # instructions budget (wasmtime fuel units); None: no metering
    type: str = "wasm"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "wasm",
            "module": self.module.url,
            "entrypoint": self.entrypoint,
            "args": list(self.args),
            "env": dict(self.env),
        }
        if self.fuel is not None:
            out["fuel"] = self.fuel
        return out


@dataclass(frozen=True)
class NoopEngine:
    """Runs nothing: for tests and for checking a network end to end."""

    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""
    duration_ms: int = 0
    type: str = "noop"

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "noop",
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "duration_ms": self.duration_ms,
        }


Engine = DockerEngine | WasmEngine | NoopEngine


@dataclass(frozen=True)
class Input:
    source: Source
    target: str
    name: str | None = None  # the file an inline input becomes in its folder (else `inline`)

    def to_dict(self) -> dict[str, str]:
        named = {"name": self.name} if self.name is not None else {}
        return {"source": self.source.url, "target": self.target, **named}


@dataclass(frozen=True)
class Output:
    name: str
    path: str


PUBLISH_FORMATS = ("files", "tar.gz")


@dataclass(frozen=True)
class Publisher:
    type: str = "local"
    bucket: str | None = None
    prefix: str = ""
    format: str = "files"  # s3: each file under the prefix, or one gzipped tar ("tar.gz")

    def to_dict(self) -> dict[str, Any]:
        if self.type == "s3":
            out = {"type": "s3", "bucket": self.bucket, "prefix": self.prefix}
            if self.format != "files":  # absent for files: specs written before keep their ids
                out["format"] = self.format
            return out
        return {"type": self.type}


@dataclass(frozen=True)
class JobSpec:
    engine: Engine
    name: str = ""
    type: str = "batch"
    count: int = 1
    constraints: tuple[Constraint, ...] = ()
    resources: Resources = Resources()
    inputs: tuple[Input, ...] = ()
    outputs: tuple[Output, ...] = ()
    publisher: Publisher = Publisher()
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_s: int | float = DEFAULT_TIMEOUT_S
    network: str = "none"
    retries: int = DEFAULT_RETRIES
    bid_window_ms: int | None = None
    bacalhau: BacalhauMeta | None = None  # a job translated from Bacalhau's format (see there)

    @property
    def timeout_ms(self) -> int:
        return int(self.timeout_s * 1000)

    def claims(self) -> dict[str, int]:
        """What an execution of this job takes of a node: the amounts it names, its engine's
        defaults for those it does not (`ENGINE_DEFAULTS`)."""
        amounts = self.resources.amounts()
        return {k: v or engine_default(self.engine.type, k) for k, v in amounts.items()}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "count": self.count,
            "constraints": [str(c) for c in self.constraints],
            "resources": self.resources.to_dict(),
            "engine": self.engine.to_dict(),
            "inputs": [i.to_dict() for i in self.inputs],
            "outputs": [{"name": o.name, "path": o.path} for o in self.outputs],
            "publisher": self.publisher.to_dict(),
            "env": dict(self.env),
            "timeout_s": self.timeout_s,
            "network": self.network,
            "retries": self.retries,
        }
        if self.bid_window_ms is not None:
            out["bid_window_ms"] = self.bid_window_ms
        if self.bacalhau is not None:
            out["bacalhau"] = self.bacalhau.to_dict()
        return out


def parse_spec_text(text: str) -> JobSpec:
    """Parse a spec written as JSON or YAML."""
    try:
        data = load_json_or_yaml(text)
    except ValueError as exc:
        raise SpecError([("spec", str(exc))]) from None
    return parse_spec(data)


def parse_spec(data: Any) -> JobSpec:
    """Validate and parse a spec dict; raises SpecError listing every problem."""
    c = Checker()
    d = c.obj(data, "", _TOP_KEYS)
    if not isinstance(data, dict):
        raise SpecError(c.problems)
    job_type = c.text(d, "type", "", "batch")
    if job_type not in ("batch", "ops"):
        c.add("type", f"{job_type!r} is not batch or ops")
    network = c.text(d, "network", "", "none")
    if network not in ("none", "full"):
        c.add("network", f"{network!r} is not none or full")
    timeout = c.get(d, "timeout_s", "", is_number, "a number of seconds", DEFAULT_TIMEOUT_S)
    if timeout <= 0:
        c.add("timeout_s", f"{timeout} is not more than 0")
    window = c.integer(d, "bid_window_ms", "", 1, None)
    spec = JobSpec(
        engine=_engine(c, d.get("engine"), "engine"),
        name=c.text(d, "name", "", ""),
        type=job_type,
        count=c.integer(d, "count", "", 1, 1),
        constraints=tuple(c.each(d, "constraints", "", lambda v, p: _constraint(c, v, p))),
        resources=_resources(c, d.get("resources", {}), "resources"),
        inputs=tuple(c.each(d, "inputs", "", lambda v, p: _input(c, v, p))),
        outputs=tuple(c.each(d, "outputs", "", lambda v, p: _output(c, v, p))),
        publisher=_publisher(c, d.get("publisher", "local"), "publisher"),
        env=c.env(d, "env", "", _ENV_RE.match),
        timeout_s=int(timeout) if float(timeout).is_integer() else timeout,
        network=network,
        retries=c.integer(d, "retries", "", 0, DEFAULT_RETRIES),
        bid_window_ms=window,
        bacalhau=parse_bacalhau_meta(c, d.get("bacalhau"), "bacalhau"),
    )
    _check_unique(c, spec)
    if c.problems:
        raise SpecError(c.problems)
    return spec


def _check_unique(c: Checker, spec: JobSpec) -> None:
    seen: set[str] = set()
    for i, output in enumerate(spec.outputs):
        if output.name in seen:
            c.add(f"outputs[{i}].name", f"{output.name!r} is used twice")
        seen.add(output.name)
    targets: set[str] = set()
    for i, item in enumerate(spec.inputs):
        if item.target in targets:
            c.add(f"inputs[{i}].target", f"{item.target!r} is used twice")
        targets.add(item.target)


def _abs_path(c: Checker, d: dict[str, Any], key: str, path: str, default: Any = MISSING) -> Any:
    value = c.text(d, key, path, default)
    if isinstance(value, str) and not value.startswith("/"):
        c.add(join(path, key), f"{value!r} is not an absolute path")
    return value


def _source(c: Checker, d: dict[str, Any], key: str, path: str) -> Source | None:
    text = c.text(d, key, path)
    if text is None:
        return None
    try:
        return parse_source(text)
    except ValueError as exc:
        c.add(join(path, key), str(exc))
        return None


def _engine(c: Checker, value: Any, path: str) -> Any:
    if value is None:
        c.add(path, "is required")
        return None
    if not isinstance(value, dict):
        c.add(path, f"{value!r} is not a map")
        return None
    kind = value.get("type")
    parse = _ENGINES.get(kind) if isinstance(kind, str) else None
    if parse is None:
        c.add(join(path, "type"), f"{kind!r} is not an engine (docker, wasm, noop)")
        return None
    return parse(c, value, path)


def _docker(c: Checker, value: dict[str, Any], path: str) -> DockerEngine:
    d = c.obj(value, path, ("type", "image", "entrypoint", "args", "env", "workdir"))
    image = c.text(d, "image", path)
    if image == "":
        c.add(join(path, "image"), "is empty")
    entrypoint = c.str_list(d, "entrypoint", path, None)
    return DockerEngine(
        image=image,
        entrypoint=tuple(entrypoint) if entrypoint is not None else None,
        args=tuple(c.str_list(d, "args", path, [])),
        env=c.env(d, "env", path, _ENV_RE.match),
        workdir=_abs_path(c, d, "workdir", path, None),
    )


def _wasm(c: Checker, value: dict[str, Any], path: str) -> WasmEngine:
    d = c.obj(value, path, ("type", "module", "entrypoint", "args", "env", "fuel"))
    return WasmEngine(
        module=_source(c, d, "module", path),  # type: ignore[arg-type]
        entrypoint=c.text(d, "entrypoint", path, "_start"),
        args=tuple(c.str_list(d, "args", path, [])),
        env=c.env(d, "env", path, _ENV_RE.match),
        fuel=c.integer(d, "fuel", path, 1, None),
    )


def _noop(c: Checker, value: dict[str, Any], path: str) -> NoopEngine:
    d = c.obj(value, path, ("type", "exit_code", "stdout", "stderr", "duration_ms"))
    exit_code = c.integer(d, "exit_code", path, 0, 0)
    if exit_code > 255:
        c.add(join(path, "exit_code"), f"{exit_code} is more than 255")
    return NoopEngine(
        exit_code=exit_code,
        stdout=c.text(d, "stdout", path, ""),
        stderr=c.text(d, "stderr", path, ""),
        duration_ms=c.integer(d, "duration_ms", path, 0, 0),
    )


_ENGINES = {"docker": _docker, "wasm": _wasm, "noop": _noop}


def _constraint(c: Checker, value: Any, path: str) -> Constraint | None:
    if not isinstance(value, str):
        c.add(path, f"{value!r} is not a string")
        return None
    try:
        return parse_constraint(value)
    except ValueError as exc:
        c.add(path, str(exc))
        return None


def _resources(c: Checker, value: Any, path: str) -> Resources:
    d = c.obj(value, path, ("cpu", "memory", "disk", "gpu"))
    cpu = parse_cpu(d.get("cpu", 0))
    if cpu is None:
        c.add(join(path, "cpu"), f"{d['cpu']!r} is not a CPU amount like 500m or 2")
    sizes = {}
    for key in ("memory", "disk"):
        sizes[key] = parse_size(d.get(key, 0))
        if sizes[key] is None:
            c.add(join(path, key), f"{d[key]!r} is not a size like 512Mi or 1G")
    if (too_small := memory_too_small(d.get("memory"), sizes["memory"])) is not None:
        c.add(join(path, "memory"), too_small)
    return Resources(
        cpu_millis=cpu or 0,
        memory_bytes=sizes["memory"] or 0,
        disk_bytes=sizes["disk"] or 0,
        gpu=c.integer(d, "gpu", path, 0, 0),
    )


def _input(c: Checker, value: Any, path: str) -> Input | None:
    d = c.obj(value, path, ("source", "target", "name"))
    source, target = _source(c, d, "source", path), _abs_path(c, d, "target", path)
    name = c.text(d, "name", path, None)
    if name is not None and not is_file_name(name):
        c.add(join(path, "name"), f"{name!r} is not a file name of [A-Za-z0-9_.-] (no leading dot)")
    elif name is not None and source is not None and source.kind != "inline":
        c.add(join(path, "name"), "only names an inline input's file")
    return Input(source, target, name) if source is not None and target is not None else None


def _output(c: Checker, value: Any, path: str) -> Output | None:
    d = c.obj(value, path, ("name", "path"))
    name = c.text(d, "name", path)
    if isinstance(name, str) and not is_file_name(name):
        c.add(join(path, "name"), f"{name!r} is not a name of [A-Za-z0-9_.-] (no leading dot)")
    elif name in RESULT_FILES:
        c.add(join(path, "name"), f"{name!r} is the name of a results file; choose another")
    out_path = _abs_path(c, d, "path", path)
    return Output(name, out_path) if name is not None and out_path is not None else None


def _publisher(c: Checker, value: Any, path: str) -> Publisher:
    if isinstance(value, str):
        value = {"type": value}
    d = c.obj(value, path, ("type", "bucket", "prefix", "format"))
    kind = c.text(d, "type", path, "local")
    if kind == "local":
        for key in ("bucket", "prefix", "format"):
            if key in d:
                c.add(join(path, key), "only applies to the s3 publisher")
        return Publisher()
    if kind != "s3":
        c.add(join(path, "type"), f"{kind!r} is not a publisher (local, s3)")
        return Publisher()
    form = c.text(d, "format", path, "files")
    if form not in PUBLISH_FORMATS:
        c.add(join(path, "format"), f"{form!r} is not {' or '.join(PUBLISH_FORMATS)}")
        form = "files"
    return Publisher("s3", c.text(d, "bucket", path), c.text(d, "prefix", path, ""), form)
