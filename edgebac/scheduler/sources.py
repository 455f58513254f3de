"""Where a job's inputs (and a wasm module) come from, normalised to one URL spelling.

Accepted: `s3://bucket/key`, `http(s)://host/...`, `file:///abs/path` or `/abs/path`,
`ipfs://CID` or a bare CID, and `inline:TEXT` / `inline:base64:DATA` for small inline content
(it travels inside the JobCreated event, so it is bounded by the event size).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

_CID_V0 = re.compile(r"^Qm[1-9A-HJ-NP-Za-km-z]{44}$")
_CID_V1 = re.compile(r"^b[a-z2-7]{50,}$")
KINDS = ("s3", "http", "file", "ipfs", "inline")


@dataclass(frozen=True)
class Source:
    kind: str  # one of KINDS
    url: str  # canonical spelling; what to_dict writes and what bids refer to

    def __str__(self) -> str:
        return self.url

    def inline_bytes(self) -> bytes:
        """The content of an `inline:` source."""
        rest = self.url.removeprefix("inline:")
        if rest.startswith("base64:"):
            return base64.b64decode(rest.removeprefix("base64:"))
        return rest.encode()


def _is_cid(text: str) -> bool:
    return bool(_CID_V0.match(text) or _CID_V1.match(text))


def _url_source(text: str) -> Source:
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"{text!r}: an s3 source needs a bucket (s3://bucket/key)")
        return Source("s3", text)
    if scheme in ("http", "https"):
        if not parts.netloc:
            raise ValueError(f"{text!r}: a URL source needs a host")
        return Source("http", text)
    if scheme == "file":
        if parts.netloc or not parts.path.startswith("/"):
            raise ValueError(f"{text!r}: a file source is file:///absolute/path")
        return Source("file", text)
    if scheme == "ipfs":
        if not _is_cid(parts.netloc):
            raise ValueError(f"{text!r}: not a content id (ipfs://CID)")
        return Source("ipfs", f"ipfs://{parts.netloc}{parts.path}")
    raise ValueError(f"{text!r}: unknown source scheme {scheme!r}")


def parse_source(text: str) -> Source:
    """Parse and normalise a source; ValueError says what is wrong."""
    if text.startswith("inline:"):
        rest = text.removeprefix("inline:")
        if rest.startswith("base64:"):
            try:
                base64.b64decode(rest.removeprefix("base64:"), validate=True)
            except binascii.Error:
                raise ValueError("inline:base64: content is not valid base64") from None
        return Source("inline", text)
    if text.startswith("/"):
        return Source("file", f"file://{text}")
    if _is_cid(text):
        return Source("ipfs", f"ipfs://{text}")
    if "://" in text:
        return _url_source(text)
    raise ValueError(
        f"{text!r} is not a source (s3://, http(s)://, file:///, /abs/path, ipfs://CID, inline:)"
    )
