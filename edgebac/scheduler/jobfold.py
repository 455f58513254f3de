"""One function per job event type: (job, event) -> the job's next state.

Whether an event's author had the right to write it is `authority`'s rule, checked first: an
event that breaks it counts for nothing and `apply` says why (the projection keeps that as
evidence). The handlers then check only that the event fits the job's state (a bid of the
current round, a result of an active execution); events that do not fit are ignored, never
errors, so any log folds. The projection calls these in one deterministic total order, which
is what makes the result order-free.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgebac.eventlog.encoding import Event
from edgebac.scheduler import authority
from edgebac.scheduler import events as ev
from edgebac.scheduler.authority import Announced
from edgebac.scheduler.spec import JobSpec, SpecError, parse_spec
from edgebac.scheduler.state import Bid, Decline, Execution, Job

Handler = Callable[[Job, Event, Announced], None]


def create(event: Event, parsed: JobSpec | SpecError | None = None) -> Job | None:
    """The job a JobCreated event opens (None if the event is not a JobCreated). `parsed` is
    what `parse_spec` gave for this same event before, when the caller kept it (re-folds)."""
    if event.type != ev.JOB_CREATED or not isinstance(event.body.get("spec"), dict):
        return None
    spec_dict = event.body["spec"]
    body = event.body
    client, vouched = body.get("client"), body.get("vouched")
    nonce, sig = body.get("nonce"), body.get("client_sig")
    job = Job(
        id=event.body["job_id"],
        requester=event.author,
        spec_dict=spec_dict,
        spec=None,
        created_hlc=event.hlc,
        client=client if isinstance(client, bytes) else None,
        vouched=vouched if isinstance(vouched, str) else None,
        nonce=nonce if isinstance(nonce, str) else None,
        client_sig=sig if isinstance(sig, bytes) else None,
        round_hlc=event.hlc,
        round_ms=wall_ms(event),
    )
    if parsed is None:
        try:
            parsed = parse_spec(spec_dict)
        except SpecError as exc:
            parsed = exc
    if isinstance(parsed, SpecError):
        job.status, job.reason, job.ended_hlc = "failed", f"invalid spec: {parsed}", event.hlc
    else:
        job.spec = parsed
    return job


def parsed_before(event: Event, old: Job | None) -> JobSpec | None:
    """The spec `old` parsed, if it came from this same JobCreated: a late event re-folds
    its job, and parsing the spec again would be most of that cost."""
    if old is None or old.spec is None or event.type != ev.JOB_CREATED:
        return None
    if old.created_hlc != event.hlc or old.requester != event.author:
        return None
    return old.spec if event.body.get("spec") == old.spec_dict else None


def apply(job: Job, event: Event, author: Announced | None) -> str | None:
    """Fold one event into `job`, then refresh the status. `author` is the announcement its
    author had made when it wrote the event. Returns why the event counts for nothing, if its
    author had no right to write it (None otherwise, also when it is merely too late)."""
    problem = authority.violation(job, event, author)
    if problem is not None:
        return problem
    if job.terminal:
        return None
    handler = _HANDLERS.get(event.type)
    if handler is not None:
        assert author is not None  # authority.violation refuses events of unannounced authors
        handler(job, event, author)
    if not job.terminal:
        job.status = _live_status(job)
    return None


def _live_status(job: Job) -> str:
    if job.active():
        return "running"
    done = len(job.succeeded())
    if job.spec is not None and done >= (job.spec.count if job.spec.type == "batch" else 1):
        return "running"  # everything ran; the requester's verdict is next
    if job.round_declines() and not job.round_bids():
        return "pending"  # every node that answered declined
    return "bidding"


def wall_ms(event: Event) -> int:
    """When the author wrote `event` by its own wall clock: the body's `wall_ms`, if it is an
    integer not after the event's hlc (a writer's hlc is never behind its wall clock), else the
    hlc's milliseconds. A future-dated event from another node drags the writer's hlc ahead but
    not its wall clock, so deadlines measured from this hold their length (see `requester`)."""
    wall = event.body.get("wall_ms")
    if type(wall) is int and 0 <= wall <= event.hlc.ms:
        return wall
    return event.hlc.ms


def _map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _attempt(body: dict[str, Any]) -> int:
    attempt = body.get("attempt", 0)
    return attempt if type(attempt) is int and attempt >= 0 else -1


def _bids_requested(job: Job, event: Event, author: Announced) -> None:
    attempt = _attempt(event.body)
    if attempt > job.attempt:
        job.attempt, job.round_hlc, job.round_ms = attempt, event.hlc, wall_ms(event)


def _bid_offered(job: Job, event: Event, author: Announced) -> None:
    attempt = _attempt(event.body)
    if not 0 <= attempt <= job.attempt or (attempt, event.author) in job.bids:
        return
    cost = event.body.get("cost", 0)
    job.bids[(attempt, event.author)] = Bid(
        node=event.author,
        attempt=attempt,
        local_data=event.body.get("local_data") is True,
        free=authority.capped_free(_map(event.body.get("free")), author),
        cost=cost if type(cost) in (int, float) else 0,
        hlc=event.hlc,
    )


def _bid_declined(job: Job, event: Event, author: Announced) -> None:
    attempt = _attempt(event.body)
    key = (attempt, event.author)
    if not 0 <= attempt <= job.attempt or key in job.declines or key in job.bids:
        return
    detail = event.body.get("detail", "")
    job.declines[key] = Decline(
        event.author,
        attempt,
        event.body["reason"],
        detail if isinstance(detail, str) else "",
        event.hlc,
    )


def _bid_accepted(job: Job, event: Event, author: Announced) -> None:
    body, attempt = event.body, _attempt(event.body)
    node, execution_id = body["node"], body["execution_id"]
    if (attempt, node) not in job.bids:
        return
    if execution_id in job.executions or job.decided(attempt, node):
        return
    job.executions[execution_id] = Execution(
        execution_id, job.id, node, attempt, event.hlc, accepted_ms=wall_ms(event)
    )


def _bid_rejected(job: Job, event: Event, author: Announced) -> None:
    key = (_attempt(event.body), event.body["node"])
    if key in job.bids and not job.decided(*key):
        job.rejected[key] = event.body["reason"]


def _active_execution(job: Job, event: Event) -> Execution | None:
    """The execution `event` is about, while it is active (`authority` checked its author)."""
    execution = job.executions.get(event.body["execution_id"])
    return execution if execution is not None and execution.active else None


def _started(job: Job, event: Event, author: Announced) -> None:
    execution = job.executions.get(event.body["execution_id"])
    if execution is not None and execution.status == "accepted":
        execution.status, execution.started_hlc = "running", event.hlc


def _failed(job: Job, event: Event, author: Announced) -> None:
    execution = _active_execution(job, event)
    if execution is not None:
        execution.status, execution.ended_hlc = "failed", event.hlc
        execution.reason = event.body["reason"]
        # Only the node that ran it knows the failure would repeat anywhere (a bad module).
        execution.permanent = event.author == execution.node and event.body.get("permanent") is True


def _published(job: Job, event: Event, author: Announced) -> None:
    execution = _active_execution(job, event)
    if execution is None:
        return
    body = event.body
    execution.exit_code, execution.ended_hlc = body["exit_code"], event.hlc
    for name in ("reference", "digest", "size", "stdout_head", "stderr_head"):
        setattr(execution, name, body.get(name))
    # A non-zero exit is a failed run: its results are still published for the user to read.
    if body["exit_code"] == 0:
        execution.status = "completed"
        # At least once: a partition can let more nodes than `count` complete. The first
        # `count` results in fold order, (hlc, author, seq), count; the others are surplus.
        spec = job.spec
        if spec is not None and spec.type == "batch":
            execution.surplus = len(job.counted()) > spec.count
    else:
        execution.status, execution.reason = "failed", f"exit code {body['exit_code']}"


def _node_lost(job: Job, event: Event, author: Announced) -> None:
    reason = event.body.get("reason")
    for execution in job.active():
        if execution.node == event.body["node"]:
            execution.status, execution.ended_hlc = "lost", event.hlc
            execution.reason = f"node lost: {reason}" if isinstance(reason, str) else "node lost"


def _end(status: str) -> Handler:
    def handler(job: Job, event: Event, author: Announced) -> None:
        reason = event.body.get("reason")
        job.status, job.ended_hlc = status, event.hlc
        job.reason = reason if isinstance(reason, str) else None
        if status == "failed" and isinstance(event.body.get("attempts"), list):
            job.attempts = event.body["attempts"]
        for execution in job.active():  # the nodes stop them
            execution.status, execution.ended_hlc = "canceled", event.hlc
            execution.reason = f"job {status}"

    return handler


_HANDLERS: dict[str, Handler] = {
    ev.BIDS_REQUESTED: _bids_requested,
    ev.BID_OFFERED: _bid_offered,
    ev.BID_DECLINED: _bid_declined,
    ev.BID_ACCEPTED: _bid_accepted,
    ev.BID_REJECTED: _bid_rejected,
    ev.EXECUTION_STARTED: _started,
    ev.EXECUTION_FAILED: _failed,
    ev.RESULT_PUBLISHED: _published,
    ev.NODE_LOST: _node_lost,
    ev.JOB_COMPLETED: _end("completed"),
    ev.JOB_FAILED: _end("failed"),
    ev.JOB_CANCELED: _end("canceled"),
}
