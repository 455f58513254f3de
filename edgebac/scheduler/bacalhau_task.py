"""A Bacalhau Task (its Tasks[0]) translated into the engine, inputs, outputs, publisher,
resources, network and timeout of an edgebac spec; see `bacalhau` for the rules.

Bacalhau mounts each InputSource at its Target; edgebac mounts a folder at each input's
target. Most sources are folders in both (s3, urlDownload, ipfs, a local directory); an inline
source is one file at its Target in Bacalhau, so it becomes an edgebac inline input named after
the Target's last part in a folder at the rest. A wasm EntryModule names a path in that same
mounted tree: the InputSource mounted there becomes the module (or a file inside one, when
the source can name it).
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from edgebac.scheduler.bacalhau_sources import Mount, read_mount
from edgebac.scheduler.bacalhau_units import (
    NOT_YET,
    fold,
    go_int,
    normalized_amount,
    parse_humanize_bytes,
    parse_k8s_cpu,
    result_name,
)
from edgebac.scheduler.fieldcheck import Checker, is_str, is_str_map, join
from edgebac.scheduler.quantities import memory_too_small
from edgebac.scheduler.spec import RESULT_FILES

TASK_FIELDS = ("Name", "Engine", "Publisher", "Env", "Meta", "InputSources", "ResultPaths")
TASK_FIELDS += ("Resources", "Network", "Timeouts")
SPEC_CONFIG = ("Type", "Params")
DOCKER = ("Image", "Entrypoint", "Parameters", "EnvironmentVariables", "WorkingDirectory")
WASM = ("EntryModule", "Entrypoint", "Parameters", "ImportModules", "EnvironmentVariables")
S3_PUBLISHER = ("Bucket", "Key", "Endpoint", "Region", "Encoding")
TIMEOUTS = ("ExecutionTimeout", "QueueTimeout", "TotalTimeout")
ENV_PREFIX = "BACALHAU_"
_TASK_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")  # Bacalhau's rule for Task.Env
_ENGINE_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # engines' `K=V` (http_proxy too)
# Network types, case-insensitive; `Default` lets the node choose, and edgebac nodes choose none.
NETWORKS = {"default": "none", "none": "none", "host": "full", "full": "full", "bridge": "full"}
IPFS_WARNING = (
    "Publisher ipfs: results stay in the nodes' content stores under an IPFS-compatible CID "
    "(job get --car exports them), not in an IPFS daemon"
)


def translate_task(
    c: Checker, value: Any, path: str, spec: dict[str, Any], meta: dict[str, Any], warns: list[str]
) -> None:
    """Fill `spec` (edgebac fields) and `meta` (echoed Bacalhau fields) from Tasks[0]."""
    d = fold(c, value, path, TASK_FIELDS)
    name = c.text(d, "Name", path, "")
    if name.strip() == "":
        c.add(join(path, "Name"), "is required (the task's name)")
    meta["task"] = name.strip() or "main"
    meta["task_meta"] = c.get(d, "Meta", path, is_str_map, "a map of strings to strings", {})
    spec["env"] = _task_env(c, d.get("Env"), join(path, "Env"))
    mounts = c.each(d, "InputSources", path, lambda v, p: read_mount(c, v, p, warns))
    meta["aliases"] = {m.target: m.alias for m in mounts if m.alias}
    spec["engine"], used = _engine(c, d.get("Engine"), join(path, "Engine"), mounts)
    meta["entry"] = used.target if used is not None else ""
    inputs = [m.edgebac(c) for m in mounts if m is not used]
    spec["inputs"] = [i for i in inputs if i is not None]
    spec["outputs"], meta["names"] = _outputs(c, d, path)
    spec["publisher"] = _publisher(c, d.get("Publisher"), join(path, "Publisher"), warns)
    spec["resources"] = _resources(c, d.get("Resources", {}), join(path, "Resources"))
    spec["network"] = _network(c, d.get("Network", {}), join(path, "Network"))
    timeout = _timeout(c, d.get("Timeouts", {}), join(path, "Timeouts"), warns)
    if timeout:
        spec["timeout_s"] = timeout


def _env_name_problem(name: str, task: bool) -> str | None:
    if name.upper().startswith(ENV_PREFIX):
        return f"cannot start with {ENV_PREFIX} (the names Bacalhau sets for every execution)"
    if task and not _TASK_ENV_NAME.match(name):
        return "is not a task variable name (upper case letters, digits, _)"
    if not _ENGINE_ENV_NAME.match(name):
        return "is not an environment variable name (letters, digits, _)"
    return None


def _task_env(c: Checker, value: Any, path: str) -> dict[str, str]:
    if value is None:
        return {}
    if not is_str_map(value):
        c.add(path, f"{value!r} is not a map of strings to strings"[:120])
        return {}
    for name, text in value.items():
        if (problem := _env_name_problem(name, task=True)) is not None:
            c.add(join(path, name), problem)
        elif text == "":
            c.add(join(path, name), "has an empty value")
        elif text.startswith("env:"):
            c.add(join(path, name), f"{text!r}: forwarding a host variable {NOT_YET}")
    return dict(value)


def _env_list(c: Checker, value: Any, path: str) -> dict[str, str]:
    """Docker's `["K=V", ...]` (or a map, as older wasm specs wrote it) as an env map."""
    if value is None:
        return {}
    if is_str_map(value):
        pairs = list(value.items())
    elif isinstance(value, list) and all(map(is_str, value)):
        pairs = [tuple(item.split("=", 1)) if "=" in item else (item, None) for item in value]
    else:
        c.add(path, "is not a list of K=V strings")
        return {}
    out = {}
    for i, (name, text) in enumerate(pairs):
        problem = "is not K=V" if text is None else _env_name_problem(name, task=False)
        if problem is not None:
            c.add(join(path, i) if isinstance(value, list) else join(path, name), problem)
        else:
            out[name] = text
    return out


def _engine(c: Checker, value: Any, path: str, mounts: list[Mount]) -> tuple[Any, Mount | None]:
    if value is None:
        c.add(path, "is required")
        return None, None
    d = fold(c, value, path, SPEC_CONFIG)
    kind = c.text(d, "Type", path, "").strip().lower()
    params = c.get(d, "Params", path, lambda v: isinstance(v, dict), "a map", {})
    where = join(path, "Params")
    if kind == "docker":
        return _docker(c, params, where), None
    if kind == "wasm":
        return _wasm(c, params, where, mounts)
    if kind == "noop":
        fold(c, params, where, ())
        return {"type": "noop"}, None
    if kind == "":
        c.add(join(path, "Type"), "is required (docker, wasm)")
    elif isinstance(value, dict):
        c.add(join(path, "Type"), f"{d['Type']!r} is not an engine edgebac runs (docker, wasm)")
    return None, None


def _docker(c: Checker, params: dict[str, Any], path: str) -> dict[str, Any]:
    p = fold(c, params, path, DOCKER)
    image = c.text(p, "Image", path)
    if image == "":
        c.add(join(path, "Image"), "is empty")
    out: dict[str, Any] = {"type": "docker", "image": image or "-"}
    if entrypoint := c.str_list(p, "Entrypoint", path, None):
        out["entrypoint"] = entrypoint
    out["args"] = c.str_list(p, "Parameters", path, [])
    out["env"] = _env_list(c, p.get("EnvironmentVariables"), join(path, "EnvironmentVariables"))
    if workdir := c.text(p, "WorkingDirectory", path, ""):
        if not workdir.startswith("/"):
            c.add(join(path, "WorkingDirectory"), f"{workdir!r} is not an absolute path")
        out["workdir"] = workdir
    return out


def _wasm(
    c: Checker, params: dict[str, Any], path: str, mounts: list[Mount]
) -> tuple[dict[str, Any], Mount | None]:
    p = fold(c, params, path, WASM)
    legacy = isinstance(p.get("EntryModule"), dict)
    if legacy:
        old = "the older form with a Source inside is not accepted (nor by Bacalhau v1.9)"
        c.add(join(path, "EntryModule"), f"{old}: mount it as an InputSource, name its Target")
    entry = None if legacy else c.text(p, "EntryModule", path)
    if c.str_list(p, "ImportModules", path, []):
        c.add(join(path, "ImportModules"), f"wasm import modules {NOT_YET}")
    module, used = _entry_module(c, entry, join(path, "EntryModule"), mounts)
    out = {
        "type": "wasm",
        "module": module or "inline:",
        "args": c.str_list(p, "Parameters", path, []),
    }
    out["entrypoint"] = c.text(p, "Entrypoint", path, "_start") or "_start"
    out["env"] = _env_list(c, p.get("EnvironmentVariables"), join(path, "EnvironmentVariables"))
    return out, used


def _entry_module(
    c: Checker, entry: str | None, path: str, mounts: list[Mount]
) -> tuple[str | None, Mount | None]:
    """The module's source: the InputSource mounted at EntryModule (`wasm.main` is
    `/wasm.main`), or a file inside one whose source can name it."""
    if entry is None:
        return None, None
    if entry.strip() == "":
        c.add(path, "is empty")
        return None, None
    want = posixpath.normpath("/" + entry.strip().lstrip("/"))
    for mount in mounts:
        if mount.target == want:
            return mount.source, mount
    for mount in mounts:
        folder = mount.target.rstrip("/") + "/"
        if want.startswith(folder) and (inner := mount.inner(want[len(folder) :])):
            return inner, None
    c.add(path, f"{entry!r} is not the Target of an InputSource (nor a file inside one)")
    return None, None


def _outputs(c: Checker, d: dict[str, Any], path: str) -> tuple[list[dict[str, str]], dict]:
    outputs: list[dict[str, str]] = []
    names: dict[str, str] = {}
    used, suffix = set(RESULT_FILES), {}  # folders taken; the last suffix given to each name
    for i, value in enumerate(
        c.get(d, "ResultPaths", path, lambda v: isinstance(v, list), "a list", [])
    ):
        where = join(join(path, "ResultPaths"), i)
        item = fold(c, value, where, ("Name", "Path"))
        name, out_path = c.text(item, "Name", where, ""), c.text(item, "Path", where, "")
        for key, text in (("Name", name), ("Path", out_path)):
            if text.strip() == "":
                c.add(join(where, key), "is required")
        if not out_path.strip().startswith("/"):
            if out_path.strip():
                c.add(join(where, "Path"), f"{out_path!r} is not an absolute path")
            continue
        folder = base = result_name(name)
        while folder in used:  # `x`, `x_2`, ... (a counter per name: never quadratic)
            suffix[base] = suffix.get(base, 1) + 1
            folder = f"{base}_{suffix[base]}"
        used.add(folder)
        if folder != name:
            names[folder] = name
        outputs.append({"name": folder, "path": posixpath.normpath(out_path.strip())})
    return outputs, names


def _publisher(c: Checker, value: Any, path: str, warns: list[str]) -> dict[str, Any]:
    d = fold(c, value if value is not None else {}, path, SPEC_CONFIG)
    kind = c.text(d, "Type", path, "").strip().lower()
    params = c.get(d, "Params", path, lambda v: isinstance(v, dict), "a map", {})
    where = join(path, "Params")
    if kind in ("", "noop", "local", "ipfs"):
        fold(c, params, where, ())
        if kind == "ipfs":
            warns.append(IPFS_WARNING)
        return {"type": "local"}
    if kind == "s3":
        return _s3_publisher(c, fold(c, params, where, S3_PUBLISHER), where, warns)
    what = "s3managed publishing" if kind == "s3managed" else f"the {kind!r} publisher"
    c.add(join(path, "Type"), f"{what} {NOT_YET} (local, ipfs, noop, s3)")
    return {"type": "local"}


def _s3_publisher(c: Checker, p: dict[str, Any], path: str, warns: list[str]) -> dict[str, Any]:
    bucket, key = c.text(p, "Bucket", path), c.text(p, "Key", path)
    if p.get("Endpoint"):
        c.add(join(path, "Endpoint"), f"a job's own S3 endpoint {NOT_YET} (nodes use theirs)")
    if p.get("Region"):
        warns.append(f"{join(path, 'Region')}: nodes use the S3 region they are configured with")
    encoding = c.text(p, "Encoding", path, "")
    if encoding not in ("", "gzip", "plain"):
        c.add(join(path, "Encoding"), f"{encoding!r} is not gzip or plain")
    prefix = (key or "").replace("{", "{{").replace("}", "}}")
    for theirs, ours in (("jobID", "job_id"), ("executionID", "execution_id")):
        prefix = prefix.replace("{{" + theirs + "}}", "{" + ours + "}")
    for placeholder in re.findall(r"\{\{(\w+)\}\}", prefix):
        c.add(
            join(path, "Key"), f"{{{placeholder}}} in a key {NOT_YET} ({{jobID}}, {{executionID}})"
        )
    archive = encoding != "plain"  # Bacalhau's default: one gzipped tar per execution
    if key and "{" not in prefix.replace("{{", "").replace("}}", ""):
        where = key.removesuffix(".tar.gz").rstrip("/") + "/JOB/EXECUTION"
        where += ".tar.gz" if archive else "/"
        warns.append(f"{path}: each execution's results go to {where}")
    if bucket == "" or key == "":
        c.add(join(path, "Bucket" if bucket == "" else "Key"), "is empty")
    publisher = {"type": "s3", "bucket": bucket or "-", "prefix": prefix}
    return publisher | {"format": "tar.gz"} if archive else publisher


def _resources(c: Checker, value: Any, path: str) -> dict[str, Any]:
    d = fold(c, value, path, ("CPU", "Memory", "Disk", "GPU"))
    out: dict[str, Any] = {}
    if cpu := c.text(d, "CPU", path, ""):
        millis = parse_k8s_cpu(cpu)
        if millis is None:
            c.add(join(path, "CPU"), f"{cpu!r} is not a CPU amount like 500m, 0.5 or 2")
        out["cpu"] = f"{millis or 0}m"
    for key in ("Memory", "Disk"):
        if text := c.text(d, key, path, ""):
            size = parse_humanize_bytes(normalized_amount(text))
            if size is None:
                c.add(join(path, key), f"{text!r} is not a size like 512Mb, 1Gb or 1GiB")
            elif key == "Memory" and (small := memory_too_small(text, size)) is not None:
                c.add(join(path, key), small)
            out[key.lower()] = size or 0
    if gpu := c.text(d, "GPU", path, ""):
        count = normalized_amount(gpu)
        if not re.fullmatch(r"[0-9]{1,6}", count):  # ASCII digits: `²`.isdigit() too
            c.add(join(path, "GPU"), f"{gpu!r} is not a number of GPUs")
        out["gpu"] = int(count) if re.fullmatch(r"[0-9]{1,6}", count) else 0
    return out


def _network(c: Checker, value: Any, path: str) -> str:
    d = fold(c, value, path, ("Type", "Domains", "Ports"))
    kind = c.text(d, "Type", path, "Default")
    network = NETWORKS.get(kind.strip().lower())
    if kind.strip().lower() == "http":
        c.add(join(path, "Type"), f"HTTP networks (limited to Domains) {NOT_YET}: use Full or None")
    elif network is None:
        c.add(
            join(path, "Type"),
            f"{kind!r} is not a network type (Default, None, Full, Host, Bridge)",
        )
    elif d.get("Domains"):
        c.add(join(path, "Domains"), "only apply to HTTP networks, which edgebac does not run yet")
    if d.get("Ports"):
        c.add(join(path, "Ports"), f"port mappings {NOT_YET}")
    return network or "none"


def _timeout(c: Checker, value: Any, path: str, warns: list[str]) -> int | None:
    """edgebac's one timeout: TotalTimeout, else ExecutionTimeout (+ QueueTimeout)."""
    d = fold(c, value, path, TIMEOUTS)
    execution, queue, total = (go_int(c, d, key, path, 0, 0) for key in TIMEOUTS)
    if total and execution + queue > total:
        c.add(join(path, "ExecutionTimeout"), "with QueueTimeout, is more than TotalTimeout")
    if total:
        if 0 < execution < total:
            warns.append(f"{path}: one timeout of {total} s (TotalTimeout) bounds each execution")
        return total
    if queue and not execution:
        warns.append(f"{path}: QueueTimeout alone is not enforced (edgebac's timeout is 600 s)")
        return None
    return execution + queue or None
