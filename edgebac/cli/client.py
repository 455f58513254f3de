"""A small JSON client for the node's API, on the standard library so client commands stay light.

Every failure becomes an `ApiError` with one readable line: the node's own error message when
it answered, or what went wrong on the way when it did not.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from edgebac.errors import EdgebacError

DEFAULT_API = "http://127.0.0.1:7700"


class ApiError(EdgebacError):
    code = "api"

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        if code:
            self.code = code


class ApiClient:
    def __init__(self, base_url: str = DEFAULT_API, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def get(self, path: str) -> Any:
        return self._call("GET", path, None)

    def post(self, path: str, body: Any) -> Any:
        return self._call("POST", path, body)

    def open(
        self, path: str, method: str = "GET", body: Any = None, timeout_s: float | None = -1.0
    ) -> Any:
        """The raw response (a stream to read, then close); errors as one-line ApiErrors.

        `timeout_s` None waits forever (following a quiet stream); -1 means the client's own.
        """
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        timeout = self.timeout_s if timeout_s == -1.0 else timeout_s
        try:
            return urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            raise _error_from(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(f"cannot reach the node API at {self.base_url}: {reason}") from None

    def _call(self, method: str, path: str, body: Any) -> Any:
        with self.open(path, method, body) as response:
            try:
                return json.loads(response.read() or b"null")
            except ValueError:
                raise ApiError(f"{self.base_url}{path} did not answer with JSON") from None


def _error_from(exc: urllib.error.HTTPError) -> ApiError:
    try:
        error = json.loads(exc.read())["error"]
        return ApiError(error["message"], exc.code, error.get("code"))
    except (ValueError, KeyError, TypeError):
        return ApiError(f"{exc.url} answered {exc.code} {exc.reason}", exc.code)
