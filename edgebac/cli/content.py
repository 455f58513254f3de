"""What `wasm run` and `-i` put into the requester's content store instead of into the spec.

A job's spec travels in its `JobCreated`, which every node keeps: a module or inline data of
more than `INLINE_MAX` bytes is uploaded first (`POST /api/v1/content`, streamed from the file
and signed by its sha256) and the spec names it `ipfs://CID`, which compute nodes fetch block-
verified from the requester like any content input. Small ones stay inline (a round trip saved).

A local file input is wrapped in a folder under its own name (or the target's, when the
target's last part has a dot, as for inline data), so the job finds it there whatever the
path: `-i ./data.csv:/in` is `/in/data.csv`. A local folder is packed as a CAR (its blocks as
`ipfs-car pack` makes them) and its content lands in the target folder.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from edgebac.errors import BadRequest

INLINE_MAX = 16 << 10  # spec text; a bigger module or input goes to the content store
UPLOAD_PATH = "/api/v1/content"
OCTET, CAR = "application/octet-stream", "application/vnd.ipld.car"
READY_WAIT_S = 600.0


def sha256_of(stream: BinaryIO) -> tuple[bytes, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    return digest.digest(), size


class Uploader:
    """Uploads to one API node, whose store the compute nodes then fetch from."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def file(self, path: Path, name: str | None = None) -> str:
        """`ipfs://CID` of the file (wrapped in a folder as `name`, if given)."""
        query = f"?name={quote(name, safe='')}" if name is not None else ""
        return "ipfs://" + self._send(path, query, OCTET)["cid"]

    def data(self, data: bytes, name: str) -> str:
        with tempfile.NamedTemporaryFile(prefix="edgebac-upload-") as temp:
            temp.write(data)
            temp.flush()
            return self.file(Path(temp.name), name)

    def folder(self, path: Path) -> str:
        with tempfile.NamedTemporaryFile(prefix="edgebac-upload-", suffix=".car") as temp:
            pack_car(path, temp)
            temp.flush()
            return "ipfs://" + self._send(Path(temp.name), "", CAR)["cid"]

    def _send(self, path: Path, query: str, content_type: str) -> dict[str, Any]:
        """POST the file; a node still folding its log (503 not_ready) is waited for."""
        from edgebac.cli.client import ApiError
        from edgebac.eventlog.callsig import DIGEST_HEADER

        with path.open("rb") as stream:
            digest, size = sha256_of(stream)
        deadline = time.monotonic() + READY_WAIT_S
        while True:
            with path.open("rb") as body:
                url = self.client.base_url + UPLOAD_PATH + query
                request = urllib.request.Request(url, data=body, method="POST")
                headers = {"Content-Type": content_type, "Content-Length": str(size)}
                headers[DIGEST_HEADER] = digest.hex()
                headers |= self.client.call_headers("POST", request.selector, digest=digest)
                for key, value in headers.items():
                    request.add_header(key, value)
                try:
                    with self.client.send(request) as response:
                        return json.loads(response.read())
                except ApiError as exc:
                    if exc.code != "not_ready" or time.monotonic() >= deadline:
                        raise
            time.sleep(1.0)


def pack_car(path: Path, out: BinaryIO) -> None:
    """A CARv1 of the folder's DAG (ipfs-car's blocks): the DAG is built twice, once for its
    root (the header comes first), once to write, so no block is held in memory."""
    from edgebac.sinks import unixfs
    from edgebac.sinks.car import block_prefix, car_header

    root = unixfs.import_path(path, lambda cid, data: None).cid
    out.write(car_header([root]))
    seen: set[bytes] = set()

    def put(cid: Any, data: bytes | memoryview) -> None:
        if cid.bytes not in seen:  # the same file twice is one block
            seen.add(cid.bytes)
            out.write(block_prefix(cid, len(data)))
            out.write(data)

    unixfs.import_path(path, put)


def local_path(source: str) -> Path | None:
    """A source that is a file or folder here: a relative path (`./data.csv`, `data/`); an
    absolute one names a path on the compute nodes, as it always has."""
    if "://" in source or source.startswith(("/", "inline:")) or not source:
        return None
    path = Path(source)
    return path if path.exists() else None


def module_source(module: str, upload: Uploader | None = None) -> str:
    """A local module file is inlined when small, else uploaded (`ipfs://CID`); anything else
    is a source URL as given.

    What can only fail on every node is refused here: a relative name that is no file here
    (an absolute path may be a file on the compute nodes), a file that is not wasm.
    """
    path = Path(module)
    if "://" in module or module.startswith("inline:"):
        return module
    if not path.is_file():
        if module.startswith("/") or _is_cid(module):
            return module
        what = "is a directory" if path.is_dir() else "no such file"
        raise BadRequest(f"{module}: {what} (a module is a .wasm file here or a source URL)")
    try:
        with path.open("rb") as stream:
            magic = stream.read(4)
        size = path.stat().st_size
    except OSError as exc:
        raise BadRequest(f"{module}: {exc.strerror}") from None
    if magic != b"\0asm":
        raise BadRequest(
            f"{module}: not a WebAssembly module (a .wasm file starts with \\0asm); "
            "compile it first, e.g. clang --target=wasm32-wasi"
        )
    if size <= INLINE_MAX * 3 // 4:  # base64 grows it by a third
        import base64

        return "inline:base64:" + base64.b64encode(path.read_bytes()).decode()
    if upload is None:
        raise BadRequest(f"{module}: {size} bytes is too big to send inline; upload it")
    return upload.file(path)


def upload_input(item: dict[str, str], upload: Uploader) -> dict[str, str]:
    """A spec input whose local file, folder or big inline data is uploaded (see the module
    docstring); any other input as it is."""
    source = item["source"]
    if source.startswith("inline:"):
        if len(source) <= INLINE_MAX:
            return item
        from edgebac.scheduler.sources import parse_source

        try:
            data = parse_source(source).inline_bytes()
        except ValueError as exc:
            raise BadRequest(f"-i {source[:40]}...: {exc}") from None
        return {"source": upload.data(data, item.get("name", "inline")), "target": item["target"]}
    path = local_path(source)
    if path is None:
        return item
    if path.is_dir():
        return {"source": upload.folder(path), "target": item["target"]}
    folder, _, last = item["target"].rstrip("/").rpartition("/")
    if folder and "." in last.strip("."):  # `./x:/in/data.csv`: the file is /in/data.csv
        return {"source": upload.file(path, last), "target": folder}
    return {"source": upload.file(path, path.name), "target": item["target"]}


def _is_cid(text: str) -> bool:
    from edgebac.scheduler.sources import parse_source

    try:
        return parse_source(text).kind == "ipfs"
    except ValueError:
        return False
