"""The upload route's checks before it reads a byte: pure, from tables."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest

from edgebac.api.uploads import (
    DEFAULT_MAX_UPLOAD,
    LengthRequired,
    NoSpace,
    TooLarge,
    check_room,
    max_upload,
    upload_name,
)
from edgebac.errors import BadRequest, ConfigError


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
