"""Bacalhau's job updates (a Name submitted again) as versions: the pure rule."""

from __future__ import annotations

from typing import Any

import pytest

from edgebac.eventlog.clock import Hlc
from edgebac.scheduler.bacalhau import translate, translate_submission
from edgebac.scheduler.bacalhau_versions import NoChanges, newest, next_version, version_of
from edgebac.scheduler.spec import SpecError, parse_spec


def spec(name: str = "nightly", image: str = "busybox:1", **job: Any) -> dict[str, Any]:
    engine = {"Type": "docker", "Params": {"Image": image}}
    body = {"Name": name, "Type": "batch", "Tasks": [{"Name": "main", "Engine": engine}]}
    return parse_spec(translate(body | job).spec).to_dict()


def test_the_same_spec_again_is_refused_in_bacalhaus_words_unless_forced():
    first = spec()
    with pytest.raises(NoChanges) as refused:
        next_version(spec(), first, "j-1", force=False)
    assert str(refused.value) == (
        "no changes detected for new job spec. Job Name: 'nightly', Job Id: 'j-1'"
    )
    assert refused.value.hint == "Use the --force flag to override this warning"
    assert refused.value.http_status == 409
    forced = next_version(spec(), first, "j-1", force=True)
    assert forced["bacalhau"]["version"] == 2
    assert forced["bacalhau"]["replaces"] == "j-1"


def test_a_changed_spec_is_the_next_version_and_names_the_job_it_replaces():
    first = spec()
    second = next_version(spec(image="busybox:2"), first, "j-1", force=False)
    assert (version_of(first), version_of(second)) == (1, 2)
    assert second["engine"]["image"] == "busybox:2"
    assert parse_spec(second).to_dict() == second  # it survives the log's canonical form
    with pytest.raises(NoChanges):  # the version fields are not a change
        next_version(spec(image="busybox:2"), second, "j-2", force=False)
    third = next_version(spec(Labels={"run": "3"}), second, "j-2", force=False)
    assert (third["bacalhau"]["version"], third["bacalhau"]["replaces"]) == (3, "j-2")


def test_a_first_version_keeps_the_spec_it_always_had():
    """No version fields at version 1: specs (and so job ids) written before are unchanged."""
    assert "version" not in spec()["bacalhau"]
    assert "replaces" not in spec()["bacalhau"]


@pytest.mark.parametrize(
    ("meta", "field"),
    [
        ({"version": 0, "replaces": "j-1"}, "bacalhau.version"),
        ({"version": "2", "replaces": "j-1"}, "bacalhau.version"),
        ({"version": 2}, "bacalhau.replaces"),
        ({"replaces": "j-1"}, "bacalhau.replaces"),
    ],
)
def test_version_fields_that_disagree_are_refused(meta, field):
    bad = spec()
    bad["bacalhau"] = bad["bacalhau"] | meta
    with pytest.raises(SpecError) as caught:
        parse_spec(bad)
    assert field in [path for path, _ in caught.value.problems]


def test_the_newest_is_the_highest_version_then_the_latest_created():
    v1, v2 = spec(), next_version(spec(image="b:2"), spec(), "j-1", False)
    jobs = [(v2, Hlc(5, 0), "j-2"), (v1, Hlc(9, 0), "j-1")]
    assert newest(jobs) == "j-2"
    assert newest([(v1, Hlc(1, 0), "j-a"), (v1, Hlc(2, 0), "j-b")]) == "j-b"
    assert newest([]) is None


def test_force_must_be_a_boolean():
    body = {"Job": {"Type": "batch", "Tasks": [{"Name": "m", "Engine": {"Type": "noop"}}]}}
    assert translate_submission(body | {"Force": True}).force is True
    assert translate_submission(body).force is False
    with pytest.raises(SpecError) as caught:
        translate_submission(body | {"Force": "yes"})
    assert caught.value.problems == [("Force", "'yes' is not true or false")]
