"""Modules and big inputs are content, not log (#16), on real nodes: `wasm run` of a module
past the old 512 KiB inline limit is uploaded to the requester's store and runs on a compute
node that fetches it block-verified, while its `JobCreated` stays small; uploads that do not
hash to their signed digest, pass the node's cap, or come from a caller without `submit` are
refused and store nothing."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

from nacl.signing import SigningKey

from edgebac.api.access import new_token, token_sha256
from edgebac.eventlog.callsig import DIGEST_HEADER, HEADER, sign_call
from edgebac.eventlog.clock import wall_clock_ms
from edgebac.sinks.blockstore import BlockStore
from edgebac.sinks.cid import encode_varint
from tests.netfix import host_port
from tests.procs import NodeProcess, nodes_fixture, run_edgebac, wait_for
from tests.test_catchup_net import raw_sizes

nodes = nodes_fixture()
WASM = Path(__file__).resolve().parent.parent / "fixtures" / "wasm"


def padded_module(path: Path, size: int) -> Path:
    """hello.wasm with a custom section appended: still valid, `size` bytes or more."""
    name = b"edgebac-padding"
    payload = bytes(size)
    section = encode_varint(len(name)) + name + payload
    custom = b"\0" + encode_varint(len(section)) + section  # section id 0: custom
    path.write_bytes((WASM / "hello.wasm").read_bytes() + custom)
    return path


def upload(
    node: NodeProcess, body: bytes, headers: dict[str, str], query: str = ""
) -> tuple[int, dict]:
    request = urllib.request.Request(
        node.url + "/api/v1/content" + query, data=body, method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def signed(path: str, body: bytes, digest: bytes | None = None) -> dict[str, str]:
    """A signed upload of `body` naming `digest` (the body's own unless told)."""
    digest = digest if digest is not None else hashlib.sha256(body).digest()
    key = SigningKey.generate()
    call = sign_call(key, "POST", path, b"", wall_clock_ms(), digest=digest)
    return {HEADER: call, DIGEST_HEADER: digest.hex(), "Content-Type": "application/octet-stream"}


def stored(node: NodeProcess) -> list[str]:
    """Every file in the node's content store but its folders: blocks, markers, temp files."""
    root = node.data_dir / "content"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_a_module_past_512_kib_runs_on_another_node_by_cid_and_the_log_stays_small(nodes, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("engines: [wasm]\n")
    requester = nodes.start(tmp_path / "r", "--roles", "requester", listen="127.0.0.2:0")
    compute = nodes.start(
        tmp_path / "c",
        *("--roles", "compute", "--policy", str(policy), "--peers", host_port(requester)),
        listen="127.0.0.3:0",
    )
    module = padded_module(tmp_path / "big.wasm", 3 << 19)  # 1.5 MiB: two 1 MiB leaves
    assert module.stat().st_size > 512 << 10
    ran = run_edgebac(
        "wasm", "run", "--api", requester.url, "--wait", "--output", "json", "--retries", "0",
        module, "one", "two",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    view = json.loads(ran.stdout)
    expected = BlockStore(tmp_path / "expected").import_path(module).cid  # ipfs-car --no-wrap
    assert view["spec"]["engine"]["module"] == f"ipfs://{expected}"
    (execution,) = view["executions"].values()
    assert execution["node"] == info_id(compute)
    stdout = compute.data_dir / "work" / "results" / execution["id"] / "stdout"
    assert stdout.read_text().startswith(
        "hello from wasm\nargc=3\nargv[0]=module\nargv[1]=one\nargv[2]=two\n"
    )
    (created,) = raw_sizes(requester, "JobCreated", view["id"])
    assert created < 4096, created
    pins = (requester.data_dir / "content" / "pinned").iterdir()
    assert [p.name for p in pins] == [str(expected)]  # kept: retention must see it
    described = run_edgebac("job", "describe", view["id"], "--api", requester.url)
    assert f"ipfs://{expected}" in described.stdout, described.stdout

    # A big inline input becomes a folder with its file under the input's name.
    data = "x" * (40 << 10)
    ran = run_edgebac(
        "wasm", "run", "--api", requester.url, "--wait", "--output", "json", "--retries", "0",
        "-i", f"inline:{data}:/in/data.txt", "-o", "out:/out", WASM / "io.wasm", "/in", "/out",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    view = json.loads(ran.stdout)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "data.txt").write_text(data)
    folder = BlockStore(tmp_path / "expected").import_path(tmp_path / "in").cid  # ipfs-car pack
    assert view["spec"]["inputs"] == [{"source": f"ipfs://{folder}", "target": "/in"}]
    (execution,) = view["executions"].values()
    listing = compute.data_dir / "work" / "results" / execution["id"] / "out" / "listing.txt"
    assert listing.read_text().startswith(f"data.txt {len(data)} "), listing.read_text()

    # A local folder (packed as a CAR) and a local file, named relative to the CLI's folder.
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a")
    (tree / "sub" / "b.txt").write_text("bb")
    (tmp_path / "c.txt").write_text("ccc")
    here = os.path.relpath(tmp_path)  # the CLI runs in the test's folder
    ran = run_edgebac(
        "wasm", "run", "--api", requester.url, "--wait", "--output", "json", "--retries", "0",
        "-i", f"{here}/tree:/in/tree", "-i", f"{here}/c.txt:/in",
        "-o", "out:/out", WASM / "io.wasm", "/in", "/out",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    view = json.loads(ran.stdout)
    tree_cid = BlockStore(tmp_path / "expected").import_path(tree).cid
    assert view["spec"]["inputs"][0] == {"source": f"ipfs://{tree_cid}", "target": "/in/tree"}
    (execution,) = view["executions"].values()
    listing = compute.data_dir / "work" / "results" / execution["id"] / "out" / "listing.txt"
    names = [line.split()[:2] for line in listing.read_text().splitlines()]
    assert names == [["c.txt", "3"], ["tree/a.txt", "1"], ["tree/sub/b.txt", "2"]], names


def info_id(node: NodeProcess) -> str:
    return node.get_json("/api/v1/node")[1]["public_key"]


def test_an_upload_that_does_not_hash_to_its_signed_digest_stores_nothing(nodes, tmp_path):
    node = nodes.start(tmp_path / "n", listen="127.0.0.2:0")
    before = stored(node)
    body = b"the real body" * 1000
    path = "/api/v1/content"
    status, answer = upload(node, body, signed(path, body, hashlib.sha256(b"other").digest()))
    assert (status, answer["error"]["code"]) == (400, "digest_mismatch"), answer
    # The header altered on the way (the signature covers the digest it replaced).
    headers = signed(path, b"other")
    headers[DIGEST_HEADER] = hashlib.sha256(body).hexdigest()
    status, answer = upload(node, body, headers)
    assert (status, answer["error"]["code"]) == (401, "bad_signature"), answer
    assert stored(node) == before
    # A body cut short (the client goes away) leaves no temp file and no block behind.
    host, port = host_port(node).split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 3000000\r\n\r\n"
        sock.sendall(head.encode() + bytes(1 << 20))
        wait_for(lambda: any(f.startswith("tmp/") for f in stored(node)), 10, "it to start")
    wait_for(lambda: stored(node) == before, 10, "the cut upload's temp file to go")
    assert "Traceback" not in node.stderr
    status, answer = upload(node, body, signed(path, body))
    assert status == 201, answer
    assert answer["sha256"] == hashlib.sha256(body).hexdigest()
    assert f"pinned/{answer['cid']}" in stored(node)


def test_an_upload_over_the_cap_or_without_submit_is_refused(nodes, tmp_path):
    tokens = {name: new_token() for name in ("reader", "ci")}
    access = tmp_path / "access.yaml"
    access.write_text(
        "clients:\n"
        f"  reader: {{token_sha256: {token_sha256(tokens['reader'])}, can: [read]}}\n"
        f"  ci: {{token_sha256: {token_sha256(tokens['ci'])}, can: [read, submit]}}\n"
    )
    node = nodes.start(
        tmp_path / "n",
        "--access",
        str(access),
        listen="127.0.0.2:0",
        env={"EDGEBAC_MAX_UPLOAD": "1Mi"},
    )
    before = stored(node)
    octet = {"Content-Type": "application/octet-stream"}

    def as_(name: str) -> dict[str, str]:
        return {**octet, "Authorization": f"Bearer {tokens[name]}"}

    status, answer = upload(node, b"data", as_("reader"))
    assert (status, answer["error"]["code"]) == (403, "forbidden"), answer
    status, answer = upload(node, bytes(4 << 20), as_("ci"))
    assert (status, answer["error"]["code"]) == (413, "too_large"), answer
    assert "more than this node takes (1Mi" in answer["error"]["message"]
    assert stored(node) == before
    status, answer = upload(node, b"a,b\n", as_("ci"), "?name=data.csv")
    assert status == 201, answer


def test_each_callers_uploads_are_bounded_by_its_quota_and_free_again_with_retention(
    nodes, tmp_path
):
    """No client fills a node's disk with pinned uploads: a caller's pins hold at most its
    quota (the same content twice charges once; another caller has a quota of its own), and
    retention lets pins go as they age, which frees the quota."""
    tokens = {name: new_token() for name in ("alice", "bob")}
    access = tmp_path / "access.yaml"
    access.write_text(
        "clients:\n"
        + "".join(
            f"  {name}: {{token_sha256: {token_sha256(token)}, can: [read, submit]}}\n"
            for name, token in tokens.items()
        )
    )
    node = nodes.start(
        tmp_path / "n",
        *("--access", str(access), "--retain", "4s"),
        listen="127.0.0.2:0",
        env={"EDGEBAC_UPLOAD_QUOTA": "100Ki"},
    )

    def as_(name: str) -> dict[str, str]:
        return {
            "Content-Type": "application/octet-stream",
            "Authorization": f"Bearer {tokens[name]}",
        }

    first, second = os.urandom(60 << 10), os.urandom(60 << 10)
    status, pinned = upload(node, first, as_("alice"))
    assert status == 201, pinned
    again = {**as_("alice"), DIGEST_HEADER: hashlib.sha256(first).hexdigest()}
    assert upload(node, first, again)[0] == 201  # the same again, as its digest says: free
    before = stored(node)
    status, answer = upload(node, second, as_("alice"))
    assert (status, answer["error"]["code"]) == (413, "over_quota"), answer
    assert "alice's uploads on this node hold 60Ki of its 100Ki quota" in answer["error"]["message"]
    assert stored(node) == before  # nothing of the refused body was kept
    assert upload(node, second, as_("bob"))[0] == 201  # bob's quota is his own

    # Past the retention, alice's pin goes (nothing names its content) and her quota is free.
    wait_for(lambda: upload(node, second, as_("alice"))[0] == 201, 30, "alice's quota to free")
    assert f"pinned/{pinned['cid']}" not in stored(node)  # let go of by retention
