"""A small JSON client for the node's API, on the standard library so client commands stay light.

Every call is signed with this client's key (`edgebac.eventlog.callsig`), or carries an API
token (`--token`, `EDGEBAC_TOKEN`) instead; `https://` nodes are checked against `--ca FILE` or
pinned by `--tls-fingerprint`. The command-line options land in `options.CONNECTION`, so every
command's client has them without each command passing them on.

Every failure becomes an `ApiError` with one readable line: the node's own error message when
it answered, or what went wrong on the way when it did not.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from edgebac.errors import EdgebacError

DEFAULT_API = "http://127.0.0.1:7700"
READY_WAIT_S = 600.0  # a node folding a long log (see /readyz) is waited for this long
READY_POLL_S = 1.0


class ApiError(EdgebacError):
    code = "api"

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        if code:
            self.code = code


class ApiClient:
    def __init__(
        self,
        base_url: str = DEFAULT_API,
        timeout_s: float = 30.0,
        *,
        client_key: Path | None = None,
        token: str | None = None,
        ca: Path | None = None,
        tls_fingerprint: str | None = None,
    ) -> None:
        from edgebac.cli.options import CONNECTION

        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        named = CONNECTION.get("client_key") or os.environ.get("EDGEBAC_CLIENT_KEY")
        self.client_key = client_key or (Path(named) if named else None)
        self.token = token or CONNECTION.get("token")
        self.ca = ca or CONNECTION.get("ca")
        self.tls_fingerprint = tls_fingerprint or CONNECTION.get("tls_fingerprint")
        self._key: Any = None
        self._opener: urllib.request.OpenerDirector | None = None
        self._waited = False  # said once that the node is not ready yet

    def call_headers(
        self, method: str, path: str, body: bytes = b"", digest: bytes | None = None
    ) -> dict[str, str]:
        """The headers that say who this call is from: the token, or a signature of it (of
        the body, or of `digest`, the sha256 of a body streamed from a file)."""
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        from edgebac.eventlog.callsig import HEADER, sign_call
        from edgebac.eventlog.clock import wall_clock_ms

        if self._key is None:
            from edgebac.cli.identity import load_client_key

            self._key = load_client_key(self.client_key).key
        return {HEADER: sign_call(self._key, method, path, body, wall_clock_ms(), digest=digest)}

    def _open(self, request: urllib.request.Request, timeout: float | None) -> Any:
        if self._opener is None:
            handlers = []
            if self.base_url.startswith("https:") and (self.ca or self.tls_fingerprint):
                from edgebac.cli.tls import https_handler

                handlers.append(https_handler(self.ca, self.tls_fingerprint))
            self._opener = urllib.request.build_opener(*handlers)
        return self._opener.open(request, timeout=timeout)

    def get(self, path: str) -> Any:
        return self._call("GET", path, None)

    def post(self, path: str, body: Any) -> Any:
        return self._call("POST", path, body)

    def open(
        self, path: str, method: str = "GET", body: Any = None, timeout_s: float | None = -1.0
    ) -> Any:
        """The raw response (a stream to read, then close); errors as one-line ApiErrors.

        A node that is still starting (503 `not_ready`) is waited for, saying so once.
        `timeout_s` None waits forever (following a quiet stream); -1 means the client's own.
        """
        deadline = time.monotonic() + READY_WAIT_S
        while True:
            try:
                return self._open_once(path, method, body, timeout_s)
            except ApiError as exc:
                if exc.code != "not_ready" or time.monotonic() >= deadline:
                    raise
            if not self._waited:
                self._waited = True
                print(
                    f"edgebac: waiting for the node at {self.base_url} to be ready "
                    "(it is folding its log)...",
                    file=sys.stderr,
                    flush=True,
                )
            time.sleep(READY_POLL_S)

    def _open_once(self, path: str, method: str, body: Any, timeout_s: float | None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in self.call_headers(method, request.selector, data or b"").items():
            request.add_header(name, value)
        return self.send(request, timeout_s)

    def send(self, request: urllib.request.Request, timeout_s: float | None = -1.0) -> Any:
        """Open a request made and signed by the caller; errors as one-line ApiErrors."""
        timeout = self.timeout_s if timeout_s == -1.0 else timeout_s
        try:
            return self._open(request, timeout)
        except urllib.error.HTTPError as exc:
            raise _error_from(exc) from None
        except EdgebacError:
            raise
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
