"""A job's events shown as Bacalhau's JobHistory items (pure: event views in, items out).

Every event of the job's becomes one item, in the log's order (hlc, then author and seq), so the
history is the same on every node that holds the events. Events about an execution are
`ExecutionLevel` with its id; the rest `JobLevel`. Topics and messages follow Bacalhau's own
(`Submission`, `Scheduling`, `Running Execution`, `Publishing Results`, `State Update`), and
`Details.IsError` marks failures, which the Go CLI's progress lines show as errors.
"""

from __future__ import annotations

from typing import Any

from edgebac.scheduler.bacalhau_view import hlc_ns, packed_hlc, rfc3339

JOB_LEVEL, EXECUTION_LEVEL = "JobLevel", "ExecutionLevel"
EVENT_TYPES = ("all", "job", "execution")  # the `event_type` filter of Bacalhau's history route


def _node(body: dict[str, Any], author: str) -> str:
    node = body.get("node", author)
    return node[:12] if isinstance(node, str) else author[:12]


_FAILED = {"IsError": "true"}
Described = tuple[str, str, dict[str, str]]


def _result(body: dict[str, Any], author: str, reason: str) -> Described:
    if body.get("exit_code") == 0:
        return "Publishing Results", "Completed successfully", {}
    return "Publishing Results", f"Execution exited with code {body.get('exit_code')}", _FAILED


# type -> (body, author, reason) -> (topic, message, details)
_DESCRIBE = {
    "JobCreated": lambda b, a, r: ("Submission", "Job submitted", {}),
    "BidsRequested": lambda b, a, r: (
        "Scheduling",
        f"Looking for nodes (round {b.get('attempt', 0)})",
        {},
    ),
    "BidOffered": lambda b, a, r: ("Scheduling", f"Node {a[:12]} offered to run the job", {}),
    "BidDeclined": lambda b, a, r: ("Scheduling", f"Node {a[:12]} declined: {r}", {}),
    "BidAccepted": lambda b, a, r: ("Scheduling", f"Requested execution on {_node(b, a)}", {}),
    "BidRejected": lambda b, a, r: ("Scheduling", f"Bid of {_node(b, a)} rejected: {r}", {}),
    "ExecutionStarted": lambda b, a, r: ("Running Execution", "Running", {}),
    "ExecutionFailed": lambda b, a, r: ("Execution", f"Execution failed: {r}", _FAILED),
    "ResultPublished": _result,
    "NodeLost": lambda b, a, r: ("Execution", f"Node {_node(b, a)} lost: {r}", _FAILED),
    "JobCompleted": lambda b, a, r: ("State Update", "Job completed", {}),
    "JobFailed": lambda b, a, r: ("State Update", f"Job failed: {r}", _FAILED),
    "JobCanceled": lambda b, a, r: (
        "State Update",
        f"Job stopped: {r or 'stopped by the user'}",
        {},
    ),
}


def describe(event: dict[str, Any]) -> Described:
    """(topic, message, details) of one event view."""
    body = event.get("body") if isinstance(event.get("body"), dict) else {}
    render = _DESCRIBE.get(event["type"])
    if render is None:
        return "State Update", str(event["type"]), {}
    return render(body, str(event.get("author", "")), str(body.get("reason") or ""))


def history_items(
    job_id: str,
    events: list[dict[str, Any]],
    event_type: str = "all",
    execution_id: str = "",
) -> list[dict[str, Any]]:
    """The job's history: `event_type` all/job/execution, optionally one execution's."""
    ordered = sorted(events, key=lambda e: (packed_hlc(e["hlc"]), e.get("author", ""), e["seq"]))
    items = []
    for seq, event in enumerate(ordered, start=1):
        body = event.get("body") or {}
        execution = body.get("execution_id") if isinstance(body, dict) else None
        level = EXECUTION_LEVEL if isinstance(execution, str) else JOB_LEVEL
        if event_type == "job" and level != JOB_LEVEL:
            continue
        if event_type == "execution" and level != EXECUTION_LEVEL:
            continue
        if execution_id and execution != execution_id:
            continue
        topic, message, details = describe(event)
        when = rfc3339(hlc_ns(packed_hlc(event["hlc"])))
        item: dict[str, Any] = {"SeqNum": seq, "Type": level, "JobID": job_id, "JobVersion": 1}
        if level == EXECUTION_LEVEL:
            item["ExecutionID"] = execution
        item["Event"] = {"Message": message, "Topic": topic, "Timestamp": when}
        if details:
            item["Event"]["Details"] = details
        item["Time"] = when
        items.append(item)
    return items
