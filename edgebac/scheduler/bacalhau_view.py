"""An edgebac job shown as Bacalhau v1.9.3's API shows one: Job, Execution and JobHistory JSON.

Pure functions of a job's view (`api.jobs.job_view`: its canonical spec, status, executions,
hlcs) and its events (`eventlog.view.event_json`), for the compat API. The encodings are Go's
(see BACALHAU.md §2): job state a string, execution compute/desired states integers, create
and modify times int64 nanoseconds, history times RFC 3339, Resources strings in a Task and
numbers in AllocatedResources, RunOutput's `stderr` lower-case. A job written in edgebac's own
format is shown too, with Bacalhau's defaults for what its spec does not say.

Hybrid clock values become nanoseconds as `ms * 10^6 + counter`, so two events in one
millisecond keep their order.
"""

from __future__ import annotations

import base64
import math
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from edgebac.scheduler.bacalhau_meta import DEFAULT_NAMESPACE, DEFAULT_TASK
from edgebac.scheduler.constraints import parse_constraint
from edgebac.scheduler.spec import SpecError, parse_spec

HEAD_BYTES = 1024  # what ResultPublished carries of each stream (node.results.HEAD_BYTES)
JOB_STATES = {"pending": "Queued", "bidding": "Pending", "running": "Running"}
JOB_STATES |= {"completed": "Completed", "failed": "Failed", "canceled": "Stopped"}
# Bacalhau's ExecutionStateType and ExecutionDesiredStateType, as the integers Go sends.
COMPUTE_STATES = {"accepted": 5, "running": 6, "completed": 9, "failed": 10, "lost": 10}
COMPUTE_STATES |= {"canceled": 11}
DESIRED_RUNNING, DESIRED_STOPPED = 1, 2
_OPERATORS = {"=": "=", "!=": "!=", "in": "in", "notin": "notin", "exists": "exists"}
_OPERATORS |= {"!exists": "!", "gt": "gt", "lt": "lt"}
_SIZE_UNITS = ((10**9, "gb"), (1 << 30, "gib"), (10**6, "mb"), (1 << 20, "mib"), (1000, "kb"))


def hlc_ns(packed: int | None) -> int:
    """A packed hybrid clock value (ms << 16 | counter) as Bacalhau's int64 nanoseconds."""
    if not packed:
        return 0
    return (packed >> 16) * 1_000_000 + (packed & 0xFFFF)


def rfc3339(ns: int) -> str:
    """Go's time.Time in JSON (RFC 3339, UTC, nanoseconds)."""
    when = datetime.fromtimestamp(ns // 1_000_000_000, UTC)
    return f"{when:%Y-%m-%dT%H:%M:%S}.{ns % 1_000_000_000:09d}Z"


def canonical_spec(raw: Any) -> dict[str, Any]:
    """A view's spec in canonical form. The log keeps the spec a requester wrote, parsed or
    not: one that does not parse is shown as a noop task (Bacalhau's clients need a task)."""
    try:
        return parse_spec(raw).to_dict()
    except SpecError:
        return parse_spec({"engine": {"type": "noop"}}).to_dict()


def _meta(spec: dict[str, Any]) -> dict[str, Any]:
    return spec.get("bacalhau") or {}


def bacalhau_job(view: dict[str, Any], events: list[dict[str, Any]] | None = None) -> dict:
    """The Bacalhau Job for a job view; `events` (the job's) give Revision and ModifyTime."""
    spec = canonical_spec(view["spec"])
    meta = _meta(spec)
    created = hlc_ns(view.get("created_hlc"))
    last = max((hlc_ns(packed_hlc(e["hlc"])) for e in events or []), default=created)
    state: dict[str, Any] = {"StateType": JOB_STATES.get(view["status"], "Undefined")}
    if view.get("reason"):
        state["Message"] = view["reason"]
    return {
        "ID": view["id"],
        "Name": spec.get("name") or view["id"],
        "Namespace": meta.get("namespace", DEFAULT_NAMESPACE),
        "Type": spec["type"],
        "Priority": meta.get("priority", 0),
        "Count": spec["count"] if spec["type"] == "batch" else 0,
        "Constraints": [_constraint(text) for text in spec["constraints"]],
        "Meta": {**meta.get("meta", {}), "bacalhau.org/requester.id": view["requester"]},
        "Labels": dict(meta.get("labels", {})),
        "Tasks": [bacalhau_task(spec)],
        "State": state,
        "Version": meta.get("version", 1),
        "Revision": max(1, len(events or [])),
        "CreateTime": created,
        "ModifyTime": max(last, hlc_ns(view.get("ended_hlc"))),
    }


def packed_hlc(hlc: str | int) -> int:
    """An event view's hlc (`"ms.counter"`) packed as the job view's are."""
    if isinstance(hlc, int):
        return hlc
    ms, _, counter = hlc.partition(".")
    return (int(ms) << 16) | int(counter or 0)


def _constraint(text: str) -> dict[str, Any]:
    parsed = parse_constraint(text)
    out: dict[str, Any] = {"Key": parsed.key, "Operator": _OPERATORS[parsed.op]}
    if parsed.values:
        out["Values"] = list(parsed.values)
    return out


def bacalhau_task(spec: dict[str, Any]) -> dict[str, Any]:
    """Tasks[0] of the Bacalhau Job for an edgebac spec (canonical form)."""
    meta = _meta(spec)
    inputs = [_input_source(i, meta) for i in spec["inputs"]]
    engine = spec["engine"]
    if engine["type"] == "wasm":
        entry = meta.get("entry") or "/wasm.main"
        inputs.insert(0, {"Alias": "", "Target": entry, "Source": _source(engine["module"])})
    timeout = math.ceil(spec["timeout_s"])
    return {
        "Name": meta.get("task", DEFAULT_TASK),
        "Engine": _engine(engine, meta),
        "Publisher": _publisher(spec["publisher"]),
        "Env": dict(spec["env"]),
        "Meta": dict(meta.get("task_meta", {})),
        "InputSources": inputs,
        "ResultPaths": [
            {"Name": meta.get("names", {}).get(o["name"], o["name"]), "Path": o["path"]}
            for o in spec["outputs"]
        ],
        "Resources": _resources(spec["resources"]),
        "Network": {"Type": "Full" if spec["network"] == "full" else "None"},
        "Timeouts": {"ExecutionTimeout": timeout, "TotalTimeout": timeout},
    }


def _engine(engine: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    env = [f"{k}={v}" for k, v in engine.get("env", {}).items()]
    if engine["type"] == "docker":
        params: dict[str, Any] = {"Image": engine["image"], "Parameters": engine["args"]}
        if "entrypoint" in engine:
            params["Entrypoint"] = engine["entrypoint"]
        if env:
            params["EnvironmentVariables"] = env
        if engine.get("workdir"):
            params["WorkingDirectory"] = engine["workdir"]
        return {"Type": "docker", "Params": params}
    if engine["type"] == "wasm":
        params = {"EntryModule": meta.get("entry") or "/wasm.main"}
        params |= {"Entrypoint": engine["entrypoint"], "Parameters": engine["args"]}
        if env:
            params["EnvironmentVariables"] = env
        return {"Type": "wasm", "Params": params}
    return {"Type": engine["type"], "Params": {}}


def _publisher(publisher: dict[str, Any]) -> dict[str, Any]:
    if publisher["type"] != "s3":
        return {"Type": "local"}
    key = publisher["prefix"].replace("{job_id}", "{jobID}")
    key = key.replace("{execution_id}", "{executionID}").replace("{{", "{").replace("}}", "}")
    encoding = "gzip" if publisher.get("format") == "tar.gz" else "plain"
    return {
        "Type": "s3",
        "Params": {"Bucket": publisher["bucket"], "Key": key, "Encoding": encoding},
    }


def _source(url: str) -> dict[str, Any]:
    """An edgebac source URL as Bacalhau's storage source SpecConfig."""
    if url.startswith("inline:"):
        rest = url.removeprefix("inline:")
        data = rest.removeprefix("base64:") if rest.startswith("base64:") else None
        data = data if data is not None else base64.b64encode(rest.encode()).decode()
        return {"Type": "inline", "Params": {"URL": f"data:;base64,{data}"}}
    parts = urlsplit(url)
    if parts.scheme == "s3":
        return {"Type": "s3", "Params": {"Bucket": parts.netloc, "Key": parts.path[1:]}}
    if parts.scheme == "ipfs":
        return {"Type": "ipfs", "Params": {"CID": url.removeprefix("ipfs://")}}
    if parts.scheme == "file":
        return {"Type": "localDirectory", "Params": {"SourcePath": parts.path, "ReadWrite": False}}
    return {"Type": "urlDownload", "Params": {"URL": url}}


def _input_source(item: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    target = item["target"]
    if item.get("name"):  # an inline file: Bacalhau mounts the file itself
        target = target.rstrip("/") + "/" + item["name"]
    alias = meta.get("aliases", {}).get(target, "")
    return {"Alias": alias, "Target": target, "Source": _source(item["source"])}


def _resources(resources: dict[str, Any]) -> dict[str, str]:
    out = {}
    if (millis := int(resources["cpu"].removesuffix("m"))) > 0:
        out["CPU"] = f"{millis}m"
    for key in ("memory", "disk"):
        if resources[key] > 0:
            out[key.capitalize()] = size_text(resources[key])
    if resources["gpu"] > 0:
        out["GPU"] = str(resources["gpu"])
    return out


def size_text(n: int) -> str:
    """Bytes as Bacalhau writes a size (`512mb`, `1gib`; plain bytes when nothing divides)."""
    for scale, unit in _SIZE_UNITS:
        if n % scale == 0:
            return f"{n // scale}{unit}"
    return str(n)


def bacalhau_execution(
    view: dict[str, Any], execution: dict[str, Any], published: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One execution as Bacalhau's Execution; `published` is its PublishedResult when the
    caller knows where its results can be downloaded (else a content id or an S3 location)."""
    spec = canonical_spec(view["spec"])
    status = execution["status"]
    ended = status not in ("accepted", "running")
    resources = spec["resources"]
    allocated = {"CPU": int(resources["cpu"].removesuffix("m")) / 1000}
    allocated |= {"Memory": resources["memory"], "Disk": resources["disk"], "GPU": resources["gpu"]}
    times = [execution.get(k) for k in ("accepted_hlc", "started_hlc", "ended_hlc")]
    return {
        "ID": execution["id"],
        "Namespace": _meta(spec).get("namespace", DEFAULT_NAMESPACE),
        "EvalID": "",
        "Name": "",
        "NodeID": execution["node"],
        "JobID": view["id"],
        "JobVersion": _meta(spec).get("version", 1),
        "AllocatedResources": {"Tasks": {_meta(spec).get("task", DEFAULT_TASK): allocated}},
        "DesiredState": {
            "StateType": DESIRED_STOPPED if ended else DESIRED_RUNNING,
            "Message": _desired_message(status),
        },
        "ComputeState": {
            "StateType": COMPUTE_STATES.get(status, 0),
            "Message": execution.get("reason") or "",
        },
        "PublishedResult": published if published is not None else _published(execution),
        "RunOutput": _run_output(execution) if ended else None,
        "PreviousExecution": "",
        "NextExecution": "",
        "FollowupEvalID": "",
        "Revision": sum(1 for t in times if t),
        "CreateTime": hlc_ns(times[0]),
        "ModifyTime": max(hlc_ns(t) for t in times),
    }


def _desired_message(status: str) -> str:
    if status in ("accepted", "running"):
        return "execution running"
    return {"completed": "execution completed", "canceled": "execution stopped"}.get(
        status, "execution failed"
    )


def _published(execution: dict[str, Any]) -> dict[str, Any]:
    reference = execution.get("reference") or ""
    if reference.startswith("s3://"):
        parts = urlsplit(reference)
        return {"Type": "s3", "Params": {"Bucket": parts.netloc, "Key": parts.path[1:]}}
    digest = execution.get("digest")
    return {"Type": "ipfs", "Params": {"CID": digest}} if digest else {"Type": ""}


def _run_output(execution: dict[str, Any]) -> dict[str, Any]:
    stdout, stderr = execution.get("stdout_head") or "", execution.get("stderr_head") or ""
    return {
        "Stdout": stdout,
        "StdoutTruncated": len(stdout.encode()) >= HEAD_BYTES,
        "stderr": stderr,
        "StderrTruncated": len(stderr.encode()) >= HEAD_BYTES,
        "ExitCode": execution.get("exit_code") if execution.get("exit_code") is not None else -1,
        "ErrorMsg": execution.get("reason") or "",
    }
