"""Bacalhau's job updates: a submission under a Name that the caller's earlier job has.

Bacalhau keeps one job per Name and namespace: submitting that Name again with a changed spec
updates the job (its version goes up and it runs again); with no change it is refused unless
`Force` is set (`pkg/orchestrator/endpoint.go`, SubmitJob). In edgebac a job's spec is signed
into its `JobCreated` and never changes, so an update is a new job, version N+1, whose spec
names the job it replaces; the requester stops that one. Name lookups take the newest version.
Pure: specs in, a spec out, so the rule is tested directly.
"""

from __future__ import annotations

from typing import Any

from edgebac.errors import EdgebacError
from edgebac.scheduler.spec import parse_spec

FORCE_HINT = "Use the --force flag to override this warning"
VERSION_KEYS = ("version", "replaces")


class NoChanges(EdgebacError):
    code = "no_changes"
    http_status = 409
    hint = FORCE_HINT


def version_of(spec: dict[str, Any]) -> int:
    return int((spec.get("bacalhau") or {}).get("version", 1))


def next_version(
    spec: dict[str, Any], previous: dict[str, Any], previous_id: str, force: bool
) -> dict[str, Any]:
    """`spec` (a translated submission) as the version after `previous` (the spec of the job
    `previous_id`, the newest of that Name); NoChanges if they are the same and not forced."""
    new = parse_spec(spec).to_dict()
    if not force and _unversioned(new) == _unversioned(previous):
        raise NoChanges(
            f"no changes detected for new job spec. Job Name: '{new['name']}', "
            f"Job Id: '{previous_id}'"
        )
    meta = dict(new.get("bacalhau") or {})
    meta |= {"version": version_of(previous) + 1, "replaces": previous_id}
    return {**new, "bacalhau": meta}


def newest(jobs: list[tuple[dict[str, Any], Any, str]]) -> str | None:
    """The id of the newest version among (spec, created hlc, id) of one Name: the highest
    version, then the latest created (two submissions racing on one version)."""
    if not jobs:
        return None
    return max(jobs, key=lambda job: (version_of(job[0]), job[1], job[2]))[2]


def _unversioned(spec: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (spec.get("bacalhau") or {}).items() if k not in VERSION_KEYS}
    return {**spec, "bacalhau": meta}
