"""Which content a client may fetch: the results of jobs it may read, and the blocks inside them.

A result root (`/api/v1/content/{cid}`) is found among the executions of the jobs the caller
may read; a block (`/api/v1/blocks/{cid}?job=ID`) must lie in the DAG of one of that job's
results, which `DagIndex` learns by walking the DAG's inner blocks once and remembers for the
last results asked about (bounded).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from edgebac.api.protocol import served_node
from edgebac.api.refusals import Forbidden
from edgebac.sinks.cid import CID
from edgebac.sinks.errors import BadContent, ContentNotFound, CorruptBlock
from edgebac.sinks.exporter import dag_members


class DagIndex:
    """Which blocks belong to which result, for the last results asked about (bounded)."""

    def __init__(self, max_cids: int = 1_000_000, max_roots: int = 256) -> None:
        self.max_cids = max_cids
        self.max_roots = max_roots
        self._members: OrderedDict[CID, frozenset[CID]] = OrderedDict()
        self._held = 0

    async def contains(self, store: Any, root: CID, cid: CID) -> bool:
        members = self._members.get(root)
        if members is None:
            try:
                members = await asyncio.to_thread(dag_members, store.get_block, root, self.max_cids)
            except (ContentNotFound, CorruptBlock, BadContent):
                return cid == root
            self._members[root] = members
            self._held += len(members)
            while self._held > self.max_cids or len(self._members) > self.max_roots:
                self._held -= len(self._members.popitem(last=False)[1])
        else:
            self._members.move_to_end(root)
        return cid in members


async def allow_content(request: web.Request, dags: DagIndex, caller: Any) -> None:
    """A result root of a job the caller may read; or, with `?job=ID`, a block inside one."""
    node = served_node(request)
    try:
        cid = CID.parse(request.match_info["cid"])
    except Exception:  # the route says what is wrong with it
        return
    state = node.runner.state
    job_id = request.query.get("job")
    if job_id is not None:
        job = state.jobs.get(job_id) or state.evicted.get(job_id)
        if job is None or not caller.may_read(job):
            raise Forbidden(f"{caller.name} may not read job {job_id[:40]}'s results")
        for root in _result_roots(state, job_id):
            if cid == root or await dags.contains(node.content.store, root, cid):
                return
        raise Forbidden(f"{cid} is not part of job {job_id}'s results")
    for execution in state.executions.holding(str(cid)):  # by index
        job = state.jobs.get(execution.job_id) or state.evicted.get(execution.job_id)
        if job is not None and caller.may_read(job):
            return
    raise Forbidden(
        f"{caller.name} may read content only of its jobs' results (blocks inside one: "
        "add ?job=JOB_ID)"
    )


def _result_roots(state: Any, job_id: str) -> Iterable[CID]:
    held = state.jobs.get(job_id)
    record = state.evicted.record(job_id) if held is None else None
    executions = held.executions.values() if held is not None else ()
    for execution in executions if record is None else record.executions:
        for text in {execution.reference, execution.digest} - {None}:
            try:
                yield CID.parse(text.removeprefix("ipfs://"))
            except Exception:  # an S3 reference: not content of this node's store
                continue
