"""A compute node's decisions: which jobs to bid on or decline, what to start and stop.

Pure like the requester's: the shell passes what it knows about this machine (`LocalFacts`:
images present, inputs held locally, executions it is running, bid hook verdicts) and the
operator's `NodePolicy`; decisions return events to append or executions to act on.

Before anything else a node checks who asked (`client_problem`): a job a client signed runs
only if the signature in its `JobCreated` verifies (so a compromised requester cannot make
this node run a job no client asked for) and the operator's `clients` name that client, if
they name any; a job its requester vouches for (a caller that could not sign) only if the
policy takes vouched jobs. The one ed25519 verify per job is the shell's to cache
(`LocalFacts.signatures`).

A node answers each bid round of a live job once. A decline is not final: if the reason goes
away (memory frees up) the node bids later in the same round; it never declines twice.
Free resources are the announced ones minus what active executions on this node and its own
undecided bids claim, so a node does not promise the same memory to two jobs.

A node holds back (neither bids nor declines, for now) where its bid could only be rejected:
on a first round of a batch job whose open slots are already covered by other nodes'
undecided bids (a retry round waits for every eligible node, so it always answers), and on a
first round the job's requester, a compute node too, has not answered yet (a requester takes
the first usable bids, and its own comes first), for at most `REQUESTER_FIRST_MS`. A node
holding an input of the job never holds back: its bid ranks first. For the same reason a node
that does not hold the job's content-id inputs holds back, on a first round and for at most
`REQUESTER_FIRST_MS`, while a node the log says holds one (it published that CID) has not
answered: a requester takes the first usable bids, and locality can only win if the holder's
bid is among them. Once a covering bid is rejected, or the requester declined, the node
answers as usual.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from edgebac.eventlog.signed import SUBMIT, request_valid
from edgebac.scheduler import events as ev
from edgebac.scheduler import reasons as why
from edgebac.scheduler.events import Planned
from edgebac.scheduler.projection import Projection
from edgebac.scheduler.quantities import format_size
from edgebac.scheduler.ranking import shortfall
from edgebac.scheduler.reasons import summarize_declines
from edgebac.scheduler.requester import Verdict
from edgebac.scheduler.spec import DockerEngine, JobSpec, WasmEngine
from edgebac.scheduler.state import RESOURCE_KEYS, Execution, Job, NodeInfo

REQUESTER_FIRST_MS = 1_000  # how long a node lets a job's requester answer first

__all__ = [
    "LocalFacts",
    "NodePolicy",
    "awaiting_verdict",
    "client_problem",
    "client_signed",
    "decide",
    "summarize_declines",
    "to_start",
    "to_stop",
    "vouched_by_its_requester",
]


@dataclass(frozen=True)
class NodePolicy:
    """What the operator lets this node run."""

    engines: frozenset[str] = frozenset({"docker", "wasm", "noop"})
    images: tuple[str, ...] = ("*",)  # fnmatch patterns of allowed docker images
    modules: tuple[str, ...] = ("*",)  # fnmatch patterns of allowed wasm module sources
    paths: tuple[str, ...] = ()  # local directories jobs may read inputs from
    urls: tuple[str, ...] = ("*",)  # where http(s) inputs may connect (runtime destinations)
    network: bool = False  # may jobs have full network access
    pull: bool = False  # may missing docker images be pulled (from a registry the node reaches)
    hook: bool = False  # a bid hook is configured: wait for its verdict before bidding
    cost: int | float | None = None  # advertised in bids; lower wins ties
    # who may have jobs run here: client ids (hex) and vouched names; None: anyone
    clients: frozenset[str] | None = None
    vouched: bool = True  # may jobs run that a requester vouches for (their caller did not sign)
    capabilities: tuple[str, ...] = ()  # Linux capabilities docker jobs get beyond the base set
    user: str | None = None  # run docker jobs as this user (name or uid[:gid]); None: the image's


@dataclass(frozen=True)
class LocalFacts:
    """What the shell knows about this machine right now."""

    images: frozenset[str] = frozenset()  # docker images present locally
    local_inputs: frozenset[str] = frozenset()  # input source URLs held on this machine
    running: frozenset[str] = frozenset()  # execution ids the shell is running or starting
    verdicts: Mapping[tuple[str, int], Verdict] = field(default_factory=dict)  # (job, attempt)
    signatures: Mapping[str, bool] = field(default_factory=dict)  # job id: client_signed(job)


def decide(
    state: Projection,
    now_ms: int,
    me: bytes,
    policy: NodePolicy,
    facts: LocalFacts,
    job_ids: Iterable[str] | None = None,
) -> list[Planned]:
    """BidOffered or BidDeclined for each live job round `me` has not answered yet.

    `job_ids` limits the look to those jobs (the ones whose events changed since the last
    call); None looks at every live job. `now_ms` is unused for now: bids stay welcome after a
    window ends (they fill open slots).
    """
    info = state.nodes.get(me)
    if info is None or not info.announced or "compute" not in info.roles:
        return []
    free = _free(state, me, info.resources)
    out: list[Planned] = []
    for job in _open_jobs(state, now_ms, me, facts, job_ids):
        assert job.spec is not None
        reason, detail = client_problem(job, policy, facts) or _why_not(
            job.spec, policy, facts, info, free
        )
        if reason is None and policy.hook:
            verdict = facts.verdicts.get((job.id, job.attempt))
            if verdict is None:
                continue
            if not verdict.accept:
                reason, detail = why.POLICY, verdict.reason
        if reason is None:
            out.append(_bid(job, policy, facts, free))
            free = {k: v - job.spec.claims()[k] for k, v in free.items()}
        elif (job.attempt, me) not in job.declines:
            body = {"job_id": job.id, "attempt": job.attempt, "reason": reason, "detail": detail}
            out.append((ev.BID_DECLINED, body))
    return out + _refused(state, me, policy, facts)


def _refused(state: Projection, me: bytes, policy: NodePolicy, facts: LocalFacts) -> list[Planned]:
    """ExecutionFailed for executions accepted for me that I will not start after all: who
    asked may not have jobs run here (the policy changed since my bid, or the requester
    accepted a bid I never meant for this client). Another node may take it: not permanent."""
    out: list[Planned] = []
    for execution in sorted(state.active_on(me).values(), key=lambda e: e.id):
        job = state.jobs.get(execution.job_id)
        if execution.status != "accepted" or execution.id in facts.running or job is None:
            continue
        problem = client_problem(job, policy, facts)
        if problem is not None:
            body = {"job_id": job.id, "execution_id": execution.id, "reason": ": ".join(problem)}
            out.append((ev.EXECUTION_FAILED, body))
    return out


def awaiting_verdict(
    state: Projection, me: bytes, policy: NodePolicy, facts: LocalFacts
) -> list[tuple[str, int]]:
    """(job, attempt) rounds this node would bid on once the bid hook answers."""
    info = state.nodes.get(me)
    if not policy.hook or info is None or not info.announced:
        return []
    free = _free(state, me, info.resources)
    return [
        (job.id, job.attempt)
        for job in _open_jobs(state, None, me, facts)
        if (job.id, job.attempt) not in facts.verdicts
        and job.spec is not None
        and client_problem(job, policy, facts) is None
        and _why_not(job.spec, policy, facts, info, free)[0] is None
    ]


def client_signed(job: Job) -> bool:
    """Whether the client signature `JobCreated` carries is the client's, of this spec and
    nonce, to this requester (one ed25519 verify)."""
    fields = {"spec": job.spec_dict, "nonce": job.nonce}
    return request_valid(job.client, job.client_sig, SUBMIT, job.requester, fields)


def client_problem(job: Job, policy: NodePolicy, facts: LocalFacts) -> tuple[str, str] | None:
    """(decline category, detail) if who asked for `job` may not have it run here."""
    if job.client is None:
        asker = job.vouched or "an unsigned caller"
        if not policy.vouched:
            return why.VOUCHED_NOT_ALLOWED, f"its requester vouches for {asker}, not a client key"
        if not vouched_by_its_requester(job):
            return why.CLIENT_NOT_ALLOWED, (
                f"{asker} names a requester other than the job's ({job.requester.hex()[:12]})"
            )
        if policy.clients is not None and job.vouched not in policy.clients:
            return why.CLIENT_NOT_ALLOWED, f"{asker} is not one of this node's clients"
        return None
    signed = facts.signatures.get(job.id)
    if not (client_signed(job) if signed is None else signed):
        return why.BAD_CLIENT_SIGNATURE, (
            f"the signature of client {job.client.hex()[:12]} does not verify for this spec"
        )
    if policy.clients is not None and job.client.hex() not in policy.clients:
        return why.CLIENT_NOT_ALLOWED, f"client {job.client.hex()[:12]} is not one of this node's"
    return None


def vouched_by_its_requester(job: Job) -> bool:
    """A vouched name that names a requester (`token:NAME@<requester id>`, as the API vouches
    for a token caller) names the job's own: a requester vouches only for its own callers, so a
    compromised one cannot pass its jobs off as another requester's token client's."""
    if job.vouched is None or not job.vouched.startswith("token:"):
        return True
    return job.vouched.rpartition("@")[2] == job.requester.hex()


def to_start(
    state: Projection, me: bytes, facts: LocalFacts, policy: NodePolicy | None = None
) -> list[Execution]:
    """Executions accepted for me that the shell has not started: start them, then append
    ExecutionStarted. Who asked is checked again (`client_problem`): an acceptance is the
    requester's word, and this node runs only what its policy lets it run now (`decide`
    fails the others)."""
    policy = policy or NodePolicy()
    accepted = [
        e
        for e in state.active_on(me).values()
        if e.status == "accepted"
        and e.id not in facts.running
        and (job := state.jobs.get(e.job_id)) is not None
        and client_problem(job, policy, facts) is None
    ]
    return sorted(accepted, key=lambda e: (e.accepted_hlc, e.id))


def to_stop(state: Projection, me: bytes, facts: LocalFacts) -> list[Execution]:
    """Executions the shell runs that the log says are over (job canceled or failed, execution
    timed out or declared lost): stop them."""
    over = ("canceled", "failed", "lost")
    running = (state.executions.get(execution_id) for execution_id in sorted(facts.running))
    return [e for e in running if e is not None and e.node == me and e.status in over]


def _open_jobs(
    state: Projection,
    now_ms: int | None,
    me: bytes,
    facts: LocalFacts,
    job_ids: Iterable[str] | None = None,
) -> list[Job]:
    """Live jobs (of `job_ids`, or all) whose current round I have not answered with a bid and
    that still need nodes (a bid of mine, not held back)."""
    if job_ids is None:
        jobs: Iterable[Job] = state.live.values()
    else:
        jobs = (job for job_id in set(job_ids) if (job := state.live.get(job_id)) is not None)
    out = []
    for job in jobs:
        if job.terminal or job.spec is None or (job.attempt, me) in job.bids:
            continue
        if job.spec.type == "batch" and job.open_slots() == 0:
            continue
        busy = ("accepted", "running") + (("completed",) if job.spec.type == "ops" else ())
        if any(e.node == me and e.status in busy for e in job.executions.values()):
            continue
        if now_ms is not None and _futile(state, job, now_ms, me, facts):
            continue
        out.append(job)
    return sorted(out, key=lambda j: (j.created_hlc, j.id))


def _futile(state: Projection, job: Job, now_ms: int, me: bytes, facts: LocalFacts) -> bool:
    """A bid of mine could only be rejected now (see the module docstring): hold it back."""
    assert job.spec is not None
    if job.spec.type != "batch" or _holds_input(job.spec, facts):
        return False
    if job.attempt != 0:
        return False  # a retry round waits for every eligible node's answer: give it
    others = [b for b in job.round_bids() if b.node != me]
    if sum(1 for b in others if not job.decided(b.attempt, b.node)) >= job.open_slots():
        return True
    if job.attempt != 0 or job.executions or now_ms >= job.round_ms + REQUESTER_FIRST_MS:
        return False
    if any(not job.answered(node, 0) for node in _input_holders(state, job.spec, me)):
        return True
    requester = state.nodes.get(job.requester)
    return (
        job.requester != me
        and requester is not None
        and "compute" in requester.roles
        and not job.answered(job.requester, 0)
    )


def _input_holders(state: Projection, spec: JobSpec, me: bytes) -> set[bytes]:
    """Other nodes the log says hold one of the job's content-id inputs (they published it)."""
    cids = {i.source.url.removeprefix("ipfs://") for i in spec.inputs if i.source.kind == "ipfs"}
    if not cids:
        return set()
    holding = (e for cid in sorted(cids) for e in state.executions.holding(cid))  # by index
    return {e.node for e in holding if e.node != me and e.status == "completed"}


def _holds_input(spec: JobSpec, facts: LocalFacts) -> bool:
    return any(i.source.url in facts.local_inputs for i in spec.inputs)


def _free(state: Projection, me: bytes, resources: Mapping[str, int]) -> dict[str, int]:
    """Announced resources minus what my active executions and undecided bids claim."""
    claimed = state.claimed(me)
    return {key: resources.get(key, 0) - claimed[key] for key in RESOURCE_KEYS}


def _why_not(
    spec: JobSpec,
    policy: NodePolicy,
    facts: LocalFacts,
    info: NodeInfo,
    free: Mapping[str, int],
) -> tuple[str | None, str]:
    """(decline category, detail), or (None, "") when this node can run the job."""
    labels = info.labels
    if spec.engine.type not in policy.engines:
        return why.ENGINE_DISABLED, f"{spec.engine.type} is not enabled on this node"
    if spec.network == "full" and not policy.network:
        return why.NETWORK_NOT_ALLOWED, "this node runs jobs without network"
    for constraint in spec.constraints:
        if not constraint.matches(labels):
            return why.LABEL_MISMATCH, f"{constraint} does not hold"
    engine_problem = _engine_problem(spec, policy, facts)
    if engine_problem is not None:
        return engine_problem
    for item in spec.inputs:
        if item.source.kind == "file" and not _path_allowed(item.source.url, policy.paths):
            return why.INPUT_NOT_ALLOWED, f"{item.source.url} is outside the allowed paths"
    wanted = spec.claims()
    if short := shortfall(free, wanted):
        key = short[0]
        detail = f"needs {_amount(key, wanted[key])}, {_amount(key, free[key])} free"
        if not shortfall(info.resources, wanted):  # other work holds it: it may bid later
            return why.BUSY, f"{why.LACK[key]} now: {detail}"
        return why.LACK[key], detail
    return None, ""


def _engine_problem(spec: JobSpec, policy: NodePolicy, facts: LocalFacts) -> tuple[str, str] | None:
    engine = spec.engine
    if isinstance(engine, DockerEngine):
        if not any(fnmatchcase(engine.image, p) for p in policy.images):
            return why.IMAGE_NOT_ALLOWED, f"{engine.image} is not in the allowed images"
        if not policy.pull and not _image_present(engine.image, facts.images):
            return why.IMAGE_NOT_PRESENT, f"{engine.image} is not present on this node"
    if isinstance(engine, WasmEngine):
        module = engine.module
        if not any(fnmatchcase(module.url, p) for p in policy.modules):
            return why.MODULE_NOT_ALLOWED, f"{module.kind} module is not in the allowed modules"
        if module.kind == "file" and not _path_allowed(module.url, policy.paths):
            return why.INPUT_NOT_ALLOWED, f"{module.url} is outside the allowed paths"
    return None


def _image_present(image: str, present: frozenset[str]) -> bool:
    """`alpine` is present as `alpine:latest` too, as Docker reads it."""
    if image in present:
        return True
    tagged = "@" in image or ":" in image.rsplit("/", 1)[-1]
    return not tagged and f"{image}:latest" in present


def _path_allowed(url: str, allowed: tuple[str, ...]) -> bool:
    path = url.removeprefix("file://")
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in allowed)


def _amount(key: str, value: int) -> str:
    if key in ("memory_bytes", "disk_bytes"):
        return f"{format_size(value)} {key.split('_')[0]}"
    if key == "cpu_millis":
        return f"{value}m cpu"
    return f"{value} gpu"


def _bid(job: Job, policy: NodePolicy, facts: LocalFacts, free: dict[str, int]) -> Planned:
    assert job.spec is not None
    local = _holds_input(job.spec, facts)
    body = {"job_id": job.id, "attempt": job.attempt, "local_data": local, "free": dict(free)}
    if policy.cost is not None:
        body["cost"] = policy.cost
    return (ev.BID_OFFERED, body)
