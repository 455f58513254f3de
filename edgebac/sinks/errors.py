"""Errors of the content store, fetcher and CAR/UnixFS codecs (under the one edgebac tree)."""

from __future__ import annotations

from edgebac.errors import BadRequest, EdgebacError, NotFound


class BadCid(BadRequest):
    """Text or bytes that are not a CID this store can hold (CIDv1, raw or dag-pb, sha2-256)."""

    code = "bad_cid"


class BadContent(BadRequest):
    """Input that cannot become a UnixFS DAG, or a block that does not decode."""

    code = "bad_content"


class ContentNotFound(NotFound):
    code = "content_not_found"


class CorruptBlock(EdgebacError):
    """A block whose bytes do not hash to its CID: refused wherever it came from."""

    code = "corrupt_block"
    http_status = 502


class ContentUnavailable(EdgebacError):
    """No reachable peer holds (a block of) the content within the allowed wait."""

    code = "content_unavailable"
    http_status = 504


class WriteFailed(EdgebacError):
    """Content could not be written where it was asked to go (e.g. a folder not writable)."""

    code = "write_failed"
