"""The one tree of errors users see; rendered once by the CLI and once by the HTTP API."""

from __future__ import annotations


class EdgebacError(Exception):
    """Root of every error meant for a user: `code` is stable so scripts can match on it."""

    code = "error"
    http_status = 500


class ConfigError(EdgebacError):
    code = "bad_config"
    http_status = 400


class BadRequest(EdgebacError):
    code = "bad_request"
    http_status = 400


class NotFound(EdgebacError):
    code = "not_found"
    http_status = 404


class DataDirError(EdgebacError):
    """The data directory cannot be used (missing, not writable, locked by another node)."""

    code = "data_dir"


class KeyFileError(EdgebacError):
    code = "key_file"


class LogStoreError(EdgebacError):
    """The event log database cannot be opened or is not ours."""

    code = "event_log"
