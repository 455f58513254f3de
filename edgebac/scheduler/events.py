"""The job events: who writes each one, what its body holds, and the ids they share.

Node ids in bodies are the 32-byte public keys (`node`); users see them in hex. `attempt` is the
bid round a bid, decline or acceptance belongs to (0 for the round JobCreated opens; a retry
opens round N with `BidsRequested` where N is the number of failed executions so far).

- `JobCreated` (requester): `job_id, spec` (canonical `JobSpec.to_dict()`), `client?` (key),
  `wall_ms?`: the requester's wall clock, where the job's first deadlines count from (see
  `jobfold.wall_ms`; BidsRequested and BidAccepted carry one too).
- `BidsRequested` (requester): `job_id, attempt, reason?, wall_ms?` — opens bid round `attempt`
  (retries).
- `BidOffered` (compute node): `job_id, attempt, local_data: bool,
  free: {cpu_millis, memory_bytes, disk_bytes, gpu}, cost?` (lower is better).
- `BidDeclined` (compute node): `job_id, attempt, reason, detail?`; `reason` is a short category
  (`lack memory`, `label mismatch`, `busy`, ...) so a requester can summarise declines by it.
- `BidAccepted` (requester): `job_id, node, execution_id, attempt, wall_ms?`.
- `BidRejected` (requester): `job_id, node, reason, attempt`.
- `ExecutionStarted` (the accepted node): `job_id, execution_id`.
- `ExecutionFailed` (that node, or the requester on timeout): `job_id, execution_id, reason`,
  `permanent?: true` (that node only: it would fail on any node, so it is not retried).
- `ResultPublished` (that node): `job_id, execution_id, exit_code, reference?, digest?, size?,
  stdout_head?, stderr_head?`. A non-zero exit code makes the execution failed.
- `NodeLost` (requester): `node, reason, job_ids` — its active executions of those jobs are lost.
- `JobCompleted` (requester): `job_id`.
- `JobFailed` (requester): `job_id, reason, attempts: [{execution_id, node, reason}]`.
- `JobCanceled` (requester): `job_id, reason?`.

An event whose author has no say (a BidAccepted not by the job's requester, a ResultPublished
not by the execution's node) is ignored by the projection, never an error: the log keeps it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack

from edgebac.eventlog.encoding import canonical_body

JOB_CREATED = "JobCreated"
BIDS_REQUESTED = "BidsRequested"
BID_OFFERED = "BidOffered"
BID_DECLINED = "BidDeclined"
BID_ACCEPTED = "BidAccepted"
BID_REJECTED = "BidRejected"
EXECUTION_STARTED = "ExecutionStarted"
EXECUTION_FAILED = "ExecutionFailed"
RESULT_PUBLISHED = "ResultPublished"
NODE_ANNOUNCED = "NodeAnnounced"
NODE_LOST = "NodeLost"
JOB_COMPLETED = "JobCompleted"
JOB_FAILED = "JobFailed"
JOB_CANCELED = "JobCanceled"

# What a decision returns: (type, body), appended by the shell in order.
Planned = tuple[str, dict[str, Any]]


def execution_id(job_id: str, attempt: int, node: bytes) -> str:
    """Deterministic, so two replays of the same decision name the same execution."""
    return f"{job_id}-{attempt}-{node.hex()[:8]}"


def job_id_for(requester: bytes, spec: dict[str, Any], nonce: str) -> str:
    """A job id the API can derive from who asked, what and a nonce (e.g. the client's hlc)."""
    packed = msgpack.packb([requester, canonical_body(spec), nonce], use_bin_type=True)
    return "j-" + hashlib.sha256(packed).hexdigest()[:16]
