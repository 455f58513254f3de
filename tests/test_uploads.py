"""The upload route's checks before it reads a byte (pure, from tables), and the pins that
charge what each caller uploaded to its quota."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest

from edgebac.api.uploads import (
    DEFAULT_MAX_UPLOAD,
    DEFAULT_QUOTA,
    MAX_PINS,
    LengthRequired,
    NoSpace,
    OverQuota,
    TooLarge,
    check_quota,
    check_room,
    max_upload,
    upload_name,
    upload_quota,
)
from edgebac.errors import BadRequest, ConfigError
from edgebac.sinks.blockstore import BlockStore
from edgebac.sinks.pins import Usage


def test_room_is_the_cap_then_twice_the_body_free_beside_uploads_under_way(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    assert check_room(10, 100, tmp_path) == 10
    with pytest.raises(LengthRequired):
        check_room(None, 100, tmp_path)
    with pytest.raises(TooLarge, match=r"the upload is 101, more than this node takes \(100"):
        check_room(101, 100, tmp_path)
    with pytest.raises(NoSpace, match="less uploads under way"):
        check_room(10, 100, tmp_path, promised=free)
    with pytest.raises(NoSpace):
        check_room(free // 2 + 1, free, tmp_path)


@pytest.mark.parametrize(
    ("env", "expect"),
    [
        ({}, DEFAULT_MAX_UPLOAD),
        ({"EDGEBAC_MAX_UPLOAD": "64Mi"}, 64 << 20),
        ({"EDGEBAC_MAX_UPLOAD": "2G"}, 2 * 10**9),
    ],
)
def test_the_cap_is_the_operators_size(env, expect):
    assert max_upload(env) == expect


@pytest.mark.parametrize("bad", ["lots", "0", "-1"])
def test_a_cap_that_is_no_size_is_named(bad):
    with pytest.raises(ConfigError, match="EDGEBAC_MAX_UPLOAD"):
        max_upload({"EDGEBAC_MAX_UPLOAD": bad})


@pytest.mark.parametrize(
    ("query", "ok"),
    [
        ({}, True),
        ({"name": "data.csv"}, True),
        ({"name": "a/b"}, False),
        ({"name": ".."}, False),
        ({"name": ""}, False),
        ({"name": "x" * 256}, False),
    ],
)
def test_a_name_is_one_file_name(query, ok):
    request = SimpleNamespace(query=query)
    if ok:
        assert upload_name(request) == query.get("name")
    else:
        with pytest.raises(BadRequest):
            upload_name(request)


def test_a_pin_charges_each_owner_once_whatever_the_uploads(tmp_path):
    store = BlockStore(tmp_path / "content")
    cid = store.import_files({"a": b"x"}).cid
    store.pin(cid, "alice", 300)
    store.pin(cid, "alice", 300)  # the same content again: charged once
    store.pin(cid, "bob", 300)
    other = store.import_files({"b": b"y"}).cid
    store.pin(other, "alice", 50)
    assert store.pins.usage("alice") == Usage(350, 2)
    assert store.pins.usage("bob") == Usage(300, 1)
    assert store.pins.usage("carol") == Usage(0, 0)


def test_a_marker_of_an_older_release_or_a_mangled_one_is_a_pin_of_no_one(tmp_path):
    store = BlockStore(tmp_path / "content")
    cid = store.import_files({"a": b"x"}).cid
    marker = tmp_path / "content" / "pinned" / str(cid)
    for text in ("", "not json", "[1, 2]", '{"owners": {"alice": -5, "bob": "lots"}}'):
        marker.write_text(text)
        store.pins.add(store.import_files({"n": text.encode()}).cid)  # the folder changes
        assert cid in store.pinned()
        assert store.pins.usage("alice") == Usage(0, 0), text
        assert store.pins.usage("bob") == Usage(0, 0), text


def test_the_quota_counts_pins_and_uploads_still_arriving():
    check_quota("alice", Usage(60, 1), 40, 100)  # exactly full: fits
    with pytest.raises(OverQuota, match="alice's uploads on this node hold 60 of its 100 quota"):
        check_quota("alice", Usage(60, 1), 41, 100)
    with pytest.raises(OverQuota, match="hold 90 of"):
        check_quota("alice", Usage(60, 1), 20, 100, arriving=30)
    with pytest.raises(OverQuota, match="10,000 uploads"):
        check_quota("alice", Usage(0, MAX_PINS), 1, 100)


@pytest.mark.parametrize(
    ("env", "expect"), [({}, DEFAULT_QUOTA), ({"EDGEBAC_UPLOAD_QUOTA": "64Mi"}, 64 << 20)]
)
def test_the_quota_is_the_operators_size(env, expect):
    assert upload_quota(env) == expect
