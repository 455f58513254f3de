"""The job events: who writes each one, what its body holds, and the ids they share.

Node ids in bodies are the 32-byte public keys (`node`); users see them in hex. `attempt` is the
bid round a bid, decline or acceptance belongs to (0 for the round JobCreated opens; a retry
opens round N with `BidsRequested` where N is the number of failed executions so far).

- `JobCreated` (requester): `job_id, spec` (canonical `JobSpec.to_dict()`), `nonce`, and who
  asked: `client` (key) with `client_sig` (its signature of the request, see
  `eventlog.signed`), or `vouched` (a name the requester vouches for); `job_id` must be
  `signed.job_id_for(requester, client or vouched, spec, nonce)`. `wall_ms?`: the requester's
  wall clock, where the job's first deadlines count from (see `jobfold.wall_ms`;
  BidsRequested and BidAccepted carry one too).
- `BidsRequested` (requester): `job_id, attempt, reason?, wall_ms?` — opens bid round `attempt`
  (retries).
- `BidOffered` (compute node): `job_id, attempt, local_data: bool,
  free: {cpu_millis, memory_bytes, disk_bytes, gpu}, cost?` (lower is better).
- `BidDeclined` (compute node): `job_id, attempt, reason, detail?`; `reason` is a short category
  (`lack memory`, `label mismatch`, `busy`, ...) so a requester can summarise declines by it.
- `BidAccepted` (requester): `job_id, node, execution_id, attempt, wall_ms?`; `execution_id`
  is `execution_id(job_id, attempt, node)`, no other.
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

An event whose author has no say (see `authority`: a BidAccepted not by the job's requester, a
ResultPublished not by the execution's node) counts for nothing in the projection, never an
error: the log keeps it, and the projection keeps it as evidence against its author.
"""

from __future__ import annotations

from typing import Any

from edgebac.scheduler.ids import execution_id as execution_id  # its one format lives there

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
