"""TLS for the CLI's calls: check a node's certificate against `--ca FILE`, or pin it by
`--tls-fingerprint` (what a `--tls self-signed` node prints at start).

A pinned certificate is compared right after the handshake, before any byte of the request (its
signature or token included) is sent: a node that is not the pinned one learns nothing.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import ssl
import urllib.request
from pathlib import Path
from typing import Any

from edgebac.errors import ConfigError, EdgebacError

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class FingerprintMismatch(EdgebacError):
    """The node's certificate is not the pinned one (another server, or a new certificate)."""

    code = "tls_fingerprint"


def parse_fingerprint(text: str) -> str:
    """`sha256:AB:CD:...`, `abcd...`: 64 lowercase hex digits, or a ConfigError."""
    value = text.strip().lower()
    value = value.removeprefix("sha256:").replace(":", "")
    if not _HEX64.match(value):
        raise ConfigError(
            f"--tls-fingerprint: {text!r} is not a SHA-256 fingerprint (64 hex digits, "
            "as the node prints after 'fingerprint sha256:')"
        )
    return value


def https_handler(ca: Path | None, fingerprint: str | None) -> urllib.request.HTTPSHandler:
    """An urllib handler that verifies the chain against `ca` (hostname checked as usual)
    and/or pins the certificate's sha256; with neither, the system's trust store."""
    pinned = parse_fingerprint(fingerprint) if fingerprint else None
    if ca is not None:
        try:
            context = ssl.create_default_context(cafile=str(ca))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"--ca: cannot use {ca}: {exc}") from None
    elif pinned is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False  # the pin names the one certificate we accept
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if pinned is None:
        return urllib.request.HTTPSHandler(context=context)
    return _PinnedHandler(context, pinned)


class _PinnedConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, fingerprint: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fingerprint = fingerprint

    def connect(self) -> None:
        super().connect()
        der = self.sock.getpeercert(binary_form=True) or b""
        presented = hashlib.sha256(der).hexdigest()
        if presented != self._fingerprint:
            self.close()
            raise FingerprintMismatch(
                f"TLS certificate of {self.host}:{self.port} does not match the pinned "
                f"fingerprint: expected sha256:{self._fingerprint}, got sha256:{presented}"
            )


class _PinnedHandler(urllib.request.HTTPSHandler):
    def __init__(self, context: ssl.SSLContext, fingerprint: str) -> None:
        super().__init__(context=context)
        self._pin_context = context
        self._fingerprint = fingerprint

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        def connection(host: str, **kwargs: Any) -> _PinnedConnection:
            return _PinnedConnection(host, fingerprint=self._fingerprint, **kwargs)

        return self.do_open(connection, req, context=self._pin_context)  # type: ignore[arg-type]
