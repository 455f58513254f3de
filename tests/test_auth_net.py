"""The front door on real nodes: every documented route refuses callers without credentials,
with a wrong, replayed or expired signature, or without the capability, and changes nothing;
with the right credentials the README's flows work, each client sees its own jobs, and the
rules reload on SIGHUP. Protected by default: no access rules, no API off loopback."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import signal
import urllib.error
import urllib.request
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from edgebac.api.access import new_token, token_sha256
from edgebac.api.auth import STREAMED
from edgebac.eventlog.callsig import DIGEST_HEADER, HEADER, sign_call
from edgebac.eventlog.clock import wall_clock_ms
from edgebac.eventlog.identity import create_key_file
from tests.netfix import host_port
from tests.procs import nodes_fixture, run_edgebac, wait_for
from tests.test_uploads_net import stored

nodes = nodes_fixture()


class Client:
    """One caller of a node's API: a key that signs each call, or a token, or nothing."""

    def __init__(self, base: str, key: Any = None, token: str | None = None) -> None:
        self.base, self.key, self.token = base, key, token

    def headers(self, method: str, path: str, body: bytes, now_ms: int | None = None) -> dict:
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.key is None:
            return {}
        now = wall_clock_ms() if now_ms is None else now_ms
        if (method, path.partition("?")[0]) in STREAMED:  # an upload signs the body's digest
            digest = hashlib.sha256(body).digest()
            call = sign_call(self.key.key, method, path, b"", now, digest=digest)
            return {HEADER: call, DIGEST_HEADER: digest.hex()}
        return {HEADER: sign_call(self.key.key, method, path, body, now)}

    def call(
        self, method: str, path: str, body: Any = None, headers: dict | None = None
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else b""
        sent = headers if headers is not None else self.headers(method, path, data)
        return send(self.base, method, path, data, sent)


def send(base: str, method: str, path: str, data: bytes, headers: dict) -> tuple[int, Any]:
    request = urllib.request.Request(base + path, data=data or None, method=method)
    for name, value in {"Content-Type": "application/json", **headers}.items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        with exc:
            raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw


def send_with(
    base: str, method: str, path: str, data: bytes, extra: dict, headers: dict
) -> tuple[int, Any]:
    return send(base, method, path, data, {**extra, **headers})


def error_code(answer: tuple[int, Any]) -> tuple[int, str | None]:
    status, body = answer
    return status, body["error"]["code"] if isinstance(body, dict) and "error" in body else None


def refused(answer: tuple[int, Any], method: str, expected: tuple[int, str]) -> bool:
    """The status and error code (a HEAD answer has only the status)."""
    got = error_code(answer)
    return got[0] == expected[0] if method == "HEAD" else got == expected


class Site:
    """Two nodes sharing one access file: alice, bob (keys, own scope), ops (key, all), viewer
    (key, read only), and tokens for ci (read, submit), reader (read) and submitter (submit)."""

    def __init__(self, nodes, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.keys = {
            name: create_key_file(tmp_path / f"{name}.key")
            for name in ("alice", "bob", "ops", "viewer", "carol")
        }
        self.tokens = {name: new_token() for name in ("ci", "reader", "submitter")}
        self.access = tmp_path / "access.yaml"
        self.write_rules()
        rules = ("--access", str(self.access))
        self.a = nodes.start(tmp_path / "a", *rules, listen="127.0.0.2:0")
        self.b = nodes.start(
            tmp_path / "b",
            *rules,
            "--roles",
            "compute",
            "--labels",
            "zone=b",
            "--peers",
            host_port(self.a),
            listen="127.0.0.3:0",
        )

    def write_rules(self, carol: bool = False) -> None:
        lines = ["clients:"]
        for name, can, scope in (
            ("alice", "read, submit, cancel", "own"),
            ("bob", "read, submit, cancel", "own"),
            ("ops", "read, submit, cancel, admin", "all"),
            ("viewer", "read", "own"),
        ) + ((("carol", "read", "own"),) if carol else ()):
            lines.append(
                f"  {name}: {{key: {self.keys[name].node_id}, can: [{can}], scope: {scope}}}"
            )
        for name, can in (("ci", "read, submit"), ("reader", "read"), ("submitter", "submit")):
            lines.append(
                f"  {name}: {{token_sha256: {token_sha256(self.tokens[name])}, can: [{can}]}}"
            )
        self.access.write_text("\n".join(lines) + "\n")

    def client(self, name: str | None, node=None) -> Client:
        base = (node or self.a).url
        if name is None:
            return Client(base)
        if name in self.tokens:
            return Client(base, token=self.tokens[name])
        return Client(base, key=self.keys[name])

    def cli(self, name: str, *args: str, node=None):
        return run_edgebac(
            *args, "--api", (node or self.a).url, "--client-key", str(self.tmp / f"{name}.key")
        )

    def events(self) -> int:
        status, body = self.client("ops").call("GET", "/api/v1/node")
        assert status == 200, body
        return body["events"]


@pytest.fixture
def site(nodes, tmp_path):
    return Site(nodes, tmp_path)


def run_noop(site: Site, who: str, text: str, **extra: Any) -> str:
    spec = {"engine": {"type": "noop", "stdout": text}, "retries": 0, **extra}
    spec_file = write_spec(site.tmp, f"spec-{len(list(site.tmp.glob('spec-*')))}", spec)
    done = site.cli(who, "job", "run", "--output", "json", str(spec_file))
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)["job_id"]
    wait_for(
        lambda: (
            site.client(who).call("GET", f"/api/v1/jobs/{job_id}?events=0")[1]["status"]
            == "completed"
        ),
        30,
        f"{who}'s job to complete",
    )
    return job_id


def write_spec(folder: Path, name: str, spec: dict) -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps(spec))
    return path


# What each kind of route needs, and a token that lacks it (None: any known caller may).
LACKING = {
    "any": None,
    "read": "submitter",
    "submit": "reader",
    "cancel": "reader",
    "admin": "reader",
    "read_all": "reader",
    "content": "submitter",
    "execution": "submitter",
}


def documented_routes() -> list[tuple[str, str]]:
    doc = json.loads(files("edgebac.api").joinpath("openapi.json").read_text())
    return [(m.upper(), p) for p, ops in doc["paths"].items() for m in ops if m != "parameters"]


def test_every_documented_route_refuses_wrong_callers_and_changes_nothing(site, tmp_path):
    from edgebac.api.auth import NEEDS, PUBLIC
    from edgebac.sinks.blockstore import BlockStore

    job_id = run_noop(site, "alice", "hello")
    _, view = site.client("alice").call("GET", f"/api/v1/jobs/{job_id}?events=0")
    execution = next(iter(view["executions"].values()))
    values = {
        "{job_id}": job_id,
        "{execution_id}": execution["id"],
        "{cid}": execution["digest"] or execution["reference"].removeprefix("ipfs://"),
        "{author}": site.a.get_json("/healthz")[1]["id"],
    }
    # What each refused upload carries: content of its own, so that storing it would show.
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"refused upload " + os.urandom(32))
    payload_cid = str(BlockStore(tmp_path / "expected").import_path(payload).cid)
    before, stored_before = site.events(), stored(site.a)
    alice, viewer = site.client("alice"), site.client("viewer")
    checked = []
    for method, template in documented_routes():
        path = template
        for name, value in values.items():
            path = path.replace(name, value)
        need = NEEDS[(method, template)]
        data, extra = request_body(method, template, payload.read_bytes())
        if need == PUBLIC:
            assert site.client(None).call(method, path)[0] == 200, path
            continue
        what = f"{method} {path}"

        attempt = functools.partial(send_with, site.a.url, method, path, data, extra)
        # No credentials.
        assert refused(attempt({}), method, (401, "unauthenticated")), what
        # A signature of another request (the path differs), and of another body.
        forged = alice.headers(method, path + "&x" if "?" in path else path + "?x", data)
        assert refused(attempt(forged), method, (401, "bad_signature")), what
        # Signed outside the window.
        stale = alice.headers(method, path, data, now_ms=wall_clock_ms() - 600_000)
        assert refused(attempt(stale), method, (401, "signature_expired")), what
        # Replayed: a captured call sent again (its first sending answers, by whatever rule;
        # a POST's signer lacks what it asks for, so the first sending changes nothing either).
        once = (alice if method in ("GET", "HEAD") else viewer).headers(method, path, data)
        first = attempt(once)
        assert method in ("GET", "HEAD") or error_code(first) == (403, "forbidden"), what
        assert refused(attempt(once), method, (401, "replayed")), what
        # A token of a client without the capability.
        lacking = LACKING[need]
        if lacking is not None:
            answer = attempt(site.client(lacking).headers(method, path, data))
            assert refused(answer, method, (403, "forbidden")), what
        checked.append(what)
    assert len(checked) >= 15
    assert {"POST /api/v1/jobs", "POST /api/v1/content", "POST /api/v1/events"} <= set(checked)
    assert site.events() == before  # nothing any refused call asked for was written
    assert stored(site.a) == stored_before  # nor stored: no block, pin or temp file
    ops = site.client("ops")
    assert ops.call("HEAD", f"/api/v1/content/{payload_cid}")[0] == 404
    # The control: the same upload, signed by a client that may submit, is stored.
    data, extra = request_body("POST", "/api/v1/content", payload.read_bytes())
    path = "/api/v1/content"
    status, answer = send(
        site.a.url, "POST", path, data, {**extra, **alice.headers("POST", path, data)}
    )
    assert (status, answer["cid"]) == (201, payload_cid), answer
    assert ops.call("HEAD", f"/api/v1/content/{payload_cid}")[0] == 200


def request_body(method: str, template: str, upload: bytes) -> tuple[bytes, dict[str, str]]:
    """The body a route's probe sends, and its content type when not JSON."""
    if (method, template) == ("POST", "/api/v1/content"):
        return upload, {"Content-Type": "application/octet-stream"}
    if (method, template) == ("POST", "/api/v1/events"):
        return json.dumps({"events": []}).encode(), {}
    if (method, template) == ("POST", "/api/v1/jobs"):
        return json.dumps({"engine": {"type": "noop"}}).encode(), {}
    return b"", {}


def test_a_replayed_post_that_was_served_is_refused_and_not_done_again(site):
    """Each POST route served once (a job, an upload, a cancel, raw events), then the captured
    call sent again: 401 replayed, and the node did not act on it a second time."""
    alice, ops = site.client("alice"), site.client("ops")

    def mine() -> set[str]:
        return {job["id"] for job in alice.call("GET", "/api/v1/jobs")[1]["jobs"]}

    jobs_before = mine()
    spec = json.dumps({"engine": {"type": "noop", "stdout": "once"}, "retries": 0}).encode()
    once = alice.headers("POST", "/api/v1/jobs", spec)
    status, body = send(site.a.url, "POST", "/api/v1/jobs", spec, once)
    assert status == 201, body
    job_id = body["job_id"]
    assert error_code(send(site.a.url, "POST", "/api/v1/jobs", spec, once)) == (401, "replayed")
    wait_for(
        lambda: alice.call("GET", f"/api/v1/jobs/{job_id}?events=0")[1]["status"] == "completed",
        30,
        "the job to complete",
    )
    assert mine() - jobs_before == {job_id}  # one job, not two

    data = b"uploaded once " + os.urandom(16)
    path = "/api/v1/content"
    octet = {"Content-Type": "application/octet-stream", **alice.headers("POST", path, data)}
    status, body = send(site.a.url, "POST", path, data, octet)
    assert status == 201, body
    assert error_code(send(site.a.url, "POST", path, data, octet)) == (401, "replayed")

    cancel = f"/api/v1/jobs/{job_id}/cancel"
    signed_cancel = alice.headers("POST", cancel, b"")
    status, body = send(site.a.url, "POST", cancel, b"", signed_cancel)
    assert (status, body["canceled"]) == (200, False), body  # it had ended: nothing to do
    assert error_code(send(site.a.url, "POST", cancel, b"", signed_cancel)) == (401, "replayed")

    events = json.dumps({"events": []}).encode()
    raw = ops.headers("POST", "/api/v1/events", events)
    assert send(site.a.url, "POST", "/api/v1/events", events, raw)[0] == 200
    answer = send(site.a.url, "POST", "/api/v1/events", events, raw)
    assert error_code(answer) == (401, "replayed")


def test_each_client_sees_and_cancels_only_its_own_jobs_and_ops_sees_all(site):
    alices = run_noop(site, "alice", "alice's")
    bobs = run_noop(site, "bob", "bob's")
    for who, mine, theirs in (("alice", alices, bobs), ("bob", bobs, alices)):
        listed = {job["id"] for job in site.client(who).call("GET", "/api/v1/jobs")[1]["jobs"]}
        assert mine in listed
        assert theirs not in listed
        assert error_code(site.client(who).call("GET", f"/api/v1/jobs/{theirs}")) == (
            403,
            "forbidden",
        )
        refused = site.cli(who, "job", "describe", theirs)
        assert refused.returncode != 0
        assert f"job {theirs} is not one of {who}'s jobs" in refused.stderr
        cancel = site.client(who).call("POST", f"/api/v1/jobs/{theirs}/cancel", {})
        assert error_code(cancel) == (403, "forbidden")
        logs = site.client(who).call("GET", f"/api/v1/jobs/{theirs}/logs")
        assert error_code(logs) == (403, "forbidden")
    listed = {job["id"] for job in site.client("ops").call("GET", "/api/v1/jobs")[1]["jobs"]}
    assert {alices, bobs} <= listed
    described = site.cli("ops", "job", "describe", alices)
    assert described.returncode == 0, described.stderr


def test_the_readme_flow_works_with_a_key_across_nodes(site, tmp_path):
    """Run on the compute-only node, results fetched from it: it serves alice blocks of her
    job's results (signed calls, `?job=`), and serves the requester as a member."""
    job_id = run_noop(site, "alice", "from b", constraints=["zone=b"])
    _, view = site.client("alice").call("GET", f"/api/v1/jobs/{job_id}?events=0")
    assert {e["node"] for e in view["executions"].values()} == {
        site.b.get_json("/healthz")[1]["id"]
    }
    out = tmp_path / "out"
    got = site.cli("alice", "job", "get", job_id, "--output-dir", str(out))
    assert got.returncode == 0, got.stderr
    assert [p.read_text() for p in out.rglob("stdout")] == ["from b"]
    logs = site.cli("alice", "job", "logs", job_id)
    assert logs.returncode == 0, logs.stderr
    assert "from b" in logs.stdout
    # bob may not fetch alice's blocks from b, even naming her job.
    cid = next(iter(view["executions"].values()))["digest"]
    bob = site.client("bob", node=site.b)
    assert error_code(bob.call("GET", f"/api/v1/content/{cid}")) == (403, "forbidden")
    assert error_code(bob.call("GET", f"/api/v1/blocks/{cid}?job={job_id}")) == (403, "forbidden")
    alice = site.client("alice", node=site.b)
    assert alice.call("GET", f"/api/v1/blocks/{cid}?job={job_id}")[0] == 200
    # A block named under a job it is not part of is refused.
    other = run_noop(site, "alice", "another")
    status, code = error_code(alice.call("GET", f"/api/v1/blocks/{cid}?job={other}"))
    assert (status, code) == (403, "forbidden")


def test_tokens_submit_bare_specs_and_read_their_own(site):
    ci = site.client("ci")
    status, body = ci.call("POST", "/api/v1/jobs", {"engine": {"type": "noop", "stdout": "ci"}})
    assert status == 201, body
    job_id = body["job_id"]
    view = wait_for(
        lambda: (
            (v := ci.call("GET", f"/api/v1/jobs/{job_id}?events=0")[1])["status"] == "completed"
            and v
        ),
        30,
        "ci's job",
    )
    assert view["vouched"] == f"token:ci@{site.a.get_json('/healthz')[1]['id']}"
    assert view["client"] is None
    assert job_id in {j["id"] for j in ci.call("GET", "/api/v1/jobs")[1]["jobs"]}
    assert job_id not in {
        j["id"] for j in site.client("alice").call("GET", "/api/v1/jobs")[1]["jobs"]
    }
    # A token cannot be read off a plain-HTTP request and replayed as a signature either way:
    assert error_code(site.client("submitter").call("GET", "/api/v1/jobs")) == (403, "forbidden")
    wrong = Client(site.a.url, token=new_token())
    assert error_code(wrong.call("GET", "/api/v1/jobs")) == (401, "unauthenticated")


def test_a_signed_call_cannot_carry_another_clients_signed_submission(site):
    """Bob relays a submission alice signed (captured): the call is bob's, the spec alice's."""
    from edgebac.eventlog.signed import SUBMIT, sign_request

    requester = bytes.fromhex(site.a.get_json("/healthz")[1]["id"])
    spec = {"engine": {"type": "noop"}}
    from edgebac.scheduler.spec import parse_spec

    fields = {"spec": parse_spec(spec).to_dict(), "nonce": "n-1"}
    alice = site.keys["alice"]
    body = {
        **fields,
        "client": alice.node_id,
        "signature": sign_request(alice.key, SUBMIT, requester, fields).hex(),
    }
    status, answer = site.client("bob").call("POST", "/api/v1/jobs", body)
    assert (status, answer["error"]["code"]) == (403, "not_the_jobs_client")


def test_rules_reload_on_sighup_and_a_broken_file_keeps_the_old_ones(site):
    carol = site.client("carol")
    assert error_code(carol.call("GET", "/api/v1/jobs")) == (401, "unauthenticated")
    site.write_rules(carol=True)
    site.a.send(signal.SIGHUP)
    site.a.wait_for_line(re.compile(r"access: reloaded .* \(8 clients\)"), 10, "stderr")
    assert carol.call("GET", "/api/v1/jobs")[0] == 200
    site.access.write_text("clients: {carol: {key: nothex, can: [read]}}\n")
    site.a.send(signal.SIGHUP)
    site.a.wait_for_line(
        re.compile(r"warning: access rules not reloaded, the old ones"), 10, "stderr"
    )
    assert carol.call("GET", "/api/v1/jobs")[0] == 200
    assert site.client("alice").call("GET", "/api/v1/jobs")[0] == 200


def test_without_rules_only_loopback_is_served_and_off_loopback_needs_them(nodes, tmp_path):
    refused = nodes.spawn(tmp_path / "open", listen="0.0.0.0:0")
    assert refused.wait(20) != 0
    assert "--listen 0.0.0.0:0 is not a loopback address: give --access FILE" in refused.stderr
    assert "--insecure-open-api" in refused.stderr
    assert not (tmp_path / "open").exists()
    local = nodes.start(tmp_path / "local", listen="127.0.0.1:0")
    status, body = local.get_json("/api/v1/node")
    assert status == 200
    assert body["access"]["mode"] == "loopback"
    opened = nodes.start(tmp_path / "lab", "--insecure-open-api", listen="0.0.0.0:0")
    assert "warning: --insecure-open-api" in opened.stderr
    port = opened.url.rsplit(":", 1)[1]  # it listens everywhere: ask it on loopback
    status, body = send(f"http://127.0.0.1:{port}", "GET", "/api/v1/node", b"", {})
    assert status == 200
    assert body["access"]["mode"] == "open"
    assert "insecure-open-api" in body["access"]["warning"]


def test_strangers_signed_calls_are_not_remembered(site):
    """A valid signature by a key the rules do not know is refused before its nonce is kept:
    strangers cannot fill the nonce cache and lock clients out."""
    from edgebac.eventlog.identity import create_key_file

    def nonces() -> int:
        return site.client("ops").call("GET", "/api/v1/node")[1]["access"]["nonces"]

    before = nonces()
    for index in range(20):
        stranger = Client(site.a.url, key=create_key_file(site.tmp / f"stranger{index}.key"))
        assert error_code(stranger.call("GET", "/api/v1/jobs")) == (401, "unauthenticated")
    assert nonces() == before + 1  # the one more: ops's own call above


def test_the_cli_calls_with_a_token_from_edgebac_token(site):
    """`EDGEBAC_TOKEN` stands for `--token`: the CLI sends it as a bearer token (not signing
    with its key, which these rules do not know), and the node serves it as that client: the
    job it runs is ci's own, which it follows to the end (`--wait`) and lists."""
    spec = write_spec(site.tmp, "by-token", {"engine": {"type": "noop"}, "retries": 0})
    env = {"EDGEBAC_TOKEN": site.tokens["ci"]}
    ran = run_edgebac(
        "job", "run", "--wait", "--output", "json", "--api", site.a.url, spec, env=env
    )
    assert ran.returncode == 0, ran.stderr
    view = json.loads(ran.stdout)
    assert view["status"] == "completed", view
    assert view["client"] is None  # vouched for by the requester, under the token's client
    job_id = view["id"]
    mine = {job["id"] for job in site.client("ci").call("GET", "/api/v1/jobs")[1]["jobs"]}
    assert job_id in mine  # submitted as ci: its own
    listed = run_edgebac("job", "list", "--output", "json", "--api", site.a.url, env=env)
    assert listed.returncode == 0, listed.stderr
    assert job_id in listed.stdout
    unknown = run_edgebac("job", "list", "--api", site.a.url)  # the session's key, no token
    assert unknown.returncode != 0
    assert "is not in this node's access rules" in unknown.stderr
    wrong = run_edgebac("job", "list", "--api", site.a.url, env={"EDGEBAC_TOKEN": new_token()})
    assert wrong.returncode != 0
    assert "this token is not in this node's access rules" in wrong.stderr


def test_an_api_listen_off_loopback_without_rules_refuses_to_start(nodes, tmp_path):
    refused = nodes.spawn(tmp_path / "api", "--api-listen", "0.0.0.0:0")
    assert refused.wait(20) != 0
    said = refused.stderr.strip().splitlines()
    assert said == [
        "error: --api-listen 0.0.0.0:0 is not a loopback address: give --access FILE (who may "
        "call the API), or --insecure-open-api to serve anyone who can reach it"
    ], said
    assert not (tmp_path / "api").exists()
