"""The front door's pure parts: access rules, signed calls, nonces, who owns a job, and that
every route the node serves has an access rule."""

from __future__ import annotations

import json
import logging
from importlib.resources import files
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from edgebac.api import auth
from edgebac.api.access import load_access, new_token, parse_access, token_line, token_sha256
from edgebac.api.app import make_app
from edgebac.api.auth import ALL_CAPABILITIES, GUARD_KEY, NEEDS, NO_RULE, Caller, Guard, need_of
from edgebac.errors import ConfigError
from edgebac.eventlog.callsig import (
    HEADER,
    CallRefused,
    NonceCache,
    check_call,
    parse_header,
    sign_call,
)
from edgebac.eventlog.clock import wall_clock_ms
from edgebac.sinks.blockstore import BlockStore
from edgebac.sinks.serve import add_content_routes

ALICE = SigningKey.generate()
ALICE_ID = bytes(ALICE.verify_key).hex()
NOW = 1_800_000_000_000
WINDOW = 300_000


def rules(text: str):
    return load_access(text, "access.yaml")


def test_the_documented_shape_parses():
    token = new_token()
    access = rules(
        f"""
clients:
  alice: {{key: {ALICE_ID}, can: [read, submit, cancel]}}
{token_line("ci", token)}
  ops:   {{key: {"ab" * 32}, can: [read, submit, cancel, admin], scope: all}}
"""
    )
    alice = access.client_of_key(bytes(ALICE.verify_key))
    assert alice is not None
    assert alice.can == {"read", "submit", "cancel"}
    assert not alice.scope_all
    ci = access.client_of_token(token)
    assert ci is not None
    assert ci.name == "ci"
    assert ci.can == {"read", "submit"}
    assert access.client_of_token(token + "x") is None
    assert access.clients["ops"].scope_all
    assert token.startswith("ebt_")
    assert token_sha256(token) in token_line("ci", token)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("clients: [alice]", "clients must map names"),
        ("people: {}", "unknown key 'people'"),
        ("clients: {alice: {can: [read]}}", "clients.alice: needs key (a client id) or token"),
        ("clients: {alice: {key: abc, can: [read]}}", "clients.alice.key: 64 hex digits"),
        (f"clients: {{alice: {{key: {'a' * 64}, can: [fly]}}}}", "unknown capability 'fly'"),
        (f"clients: {{alice: {{key: {'a' * 64}, can: []}}}}", "clients.alice.can: a list"),
        (f"clients: {{alice: {{key: {'a' * 64}, can: [read], scope: x}}}}", "scope: 'x'"),
        (f"clients: {{alice: {{key: {'a' * 64}, can: [read], admin: 1}}}}", "unknown field"),
        (
            f"clients: {{a: {{key: {'a' * 64}, can: [read]}}, "
            f"b: {{key: {'a' * 64}, can: [read]}}}}",
            "clients.b: key is also a's",
        ),
        ("clients: {'bad name': {key: x, can: [read]}}", "a name is 1-64"),
        ("clients: {alice: [}", "not valid YAML"),
    ],
)
def test_a_wrong_file_says_which_client_and_field(text, said):
    with pytest.raises(ConfigError, match=r"^access\.yaml") as caught:
        rules(text)
    assert said in str(caught.value)


def test_an_empty_file_lets_nobody_in():
    assert parse_access({}).clients == {}
    assert rules("").clients == {}


def signed(method="GET", path="/api/v1/jobs", body=b"", now=NOW, key=ALICE):
    return parse_header(sign_call(key, method, path, body, now))


def test_a_signed_call_checks_out_and_its_parts_cannot_change():
    call = signed("POST", "/api/v1/jobs?x=1", b'{"a": 1}')
    check_call(call, "POST", "/api/v1/jobs?x=1", b'{"a": 1}', NOW + 1000, WINDOW)
    for method, path, body in [
        ("GET", "/api/v1/jobs?x=1", b'{"a": 1}'),
        ("POST", "/api/v1/jobs?x=2", b'{"a": 1}'),
        ("POST", "/api/v1/jobs?x=1", b'{"a": 2}'),
    ]:
        with pytest.raises(CallRefused) as caught:
            check_call(call, method, path, body, NOW, WINDOW)
        assert caught.value.code == "bad_signature"


@pytest.mark.parametrize("offset", [WINDOW + 1, -WINDOW - 1])
def test_a_call_signed_outside_the_window_is_refused(offset):
    with pytest.raises(CallRefused, match="check the client's clock") as caught:
        check_call(signed(now=NOW), "GET", "/api/v1/jobs", b"", NOW + offset, WINDOW)
    assert caught.value.code == "signature_expired"


@pytest.mark.parametrize(
    "header",
    ["", "v1", "v2 key=00 ts=1 nonce=abcdefgh sig=00", "v1 key=zz ts=1 nonce=abcdefgh sig=00"],
)
def test_a_malformed_header_is_refused(header):
    with pytest.raises(CallRefused, match="Edgebac-Signature: not"):
        parse_header(header)


def test_a_nonce_counts_once_within_the_window_and_is_forgotten_after():
    cache = NonceCache(WINDOW)
    cache.admit(b"k", "n1", NOW, NOW)
    with pytest.raises(CallRefused, match="replayed"):
        cache.admit(b"k", "n1", NOW, NOW + 10)
    cache.admit(b"other", "n1", NOW, NOW + 10)  # nonces are per key
    cache.admit(b"k", "n2", NOW + WINDOW, NOW + WINDOW + 1)  # k/n1's time has left the window
    assert len(cache) == 2  # other/n1 (admitted 10 ms later) and k/n2
    cache.admit(b"k", "n1", NOW + WINDOW, NOW + WINDOW + 1)  # forgotten: a call of its time
    # would be refused as expired anyway


def test_a_nonce_signed_ahead_is_remembered_until_its_own_time_leaves_the_window():
    cache = NonceCache(WINDOW)
    cache.admit(b"k", "ahead", NOW + WINDOW, NOW)
    with pytest.raises(CallRefused, match="replayed"):
        cache.admit(b"k", "ahead", NOW + WINDOW, NOW + WINDOW + WINDOW // 2)


def test_a_full_cache_refuses_rather_than_forgets():
    cache = NonceCache(WINDOW, capacity=2)
    cache.admit(b"k", "a", NOW, NOW)
    cache.admit(b"k", "b", NOW, NOW)
    with pytest.raises(CallRefused) as caught:
        cache.admit(b"k", "c", NOW, NOW)
    assert caught.value.code == "busy"
    with pytest.raises(CallRefused, match="replayed"):
        cache.admit(b"k", "a", NOW, NOW)


@given(st.binary(max_size=200), st.text(max_size=40))
def test_any_body_and_query_sign_and_check(body, query):
    path = "/api/v1/x?" + query
    check_call(signed("PUT", path, body), "PUT", path, body, NOW, WINDOW)


def job(client=None, vouched=None):
    return SimpleNamespace(id="j-1", client=client, vouched=vouched)


def test_own_means_signed_with_ones_key_or_vouched_under_ones_name():
    alice = Caller("alice", frozenset({"read", "cancel"}), False, b"A", "alice")
    assert alice.may_read(job(client=b"A"))
    assert alice.may_cancel(job(client=b"A"))
    assert not alice.may_read(job(client=b"B"))
    assert alice.may_read(job(vouched="alice"))
    assert not alice.may_read(job(client=b"B", vouched="alice"))  # a signed job is its signer's
    assert not alice.may_read(job(vouched="bob"))
    ci = Caller("ci", frozenset({"submit"}), False, None, "ci")
    assert not ci.may_read(job(vouched="ci"))  # no read capability
    ops = Caller("ops", ALL_CAPABILITIES, True, b"O", "ops")
    assert ops.may_read(job(client=b"A"))
    assert ops.may_cancel(job(vouched="bob"))


def test_every_route_the_node_serves_has_an_access_rule(tmp_path: Path):
    """A route added without a rule would be refused by the middleware; this names it first."""
    from edgebac.gossip.http import add_gossip_routes

    app = make_app(SimpleNamespace())
    add_content_routes(app, BlockStore(tmp_path))  # what node/process.py adds to it
    gossiper = SimpleNamespace(config=SimpleNamespace(max_body_bytes=1 << 20))
    add_gossip_routes(app, gossiper, SimpleNamespace())  # type: ignore[arg-type]
    missing = []
    for route in app.router.routes():
        resource = route.resource
        if resource is None:
            continue
        request = SimpleNamespace(
            match_info=SimpleNamespace(route=route, http_exception=None), method=route.method
        )
        if need_of(request) in (None, NO_RULE):
            missing.append((route.method, resource.canonical))
    assert missing == []


async def test_a_route_without_a_rule_is_refused_whoever_calls(caplog):
    """Fail closed: a route added without a rule is not served, not even to an admin, and
    says why once in the node's log; a request no route matches is still a plain 404."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    token, ops = new_token(), SigningKey.generate()
    access = rules(
        "clients:\n"
        f"  ops: {{key: {bytes(ops.verify_key).hex()}, can: [read, submit, cancel, admin], "
        "scope: all}\n"
        f"  ci: {{token_sha256: {token_sha256(token)}, can: [read, submit, cancel, admin], "
        "scope: all}\n"
    )
    served: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        served.append(request.path)
        return web.json_response({"secret": "served"})

    node = SimpleNamespace(
        ready=True,
        runner=SimpleNamespace(state=SimpleNamespace(nodes={})),
        identity=SimpleNamespace(public_key=bytes(32)),  # a token caller is vouched for by it
    )
    app = make_app(node, Guard(access))  # type: ignore[arg-type]
    app.router.add_post("/api/v1/undeclared", handler)
    app.router.add_post("/gossip/v2", handler)  # not the gossip route: no rule either
    app.router.add_get("/api/v1/declared", handler)
    auth.declare("GET", "/api/v1/declared", auth.ANY)
    caplog.set_level(logging.ERROR, logger="edgebac.api.auth")
    try:
        async with TestClient(TestServer(app)) as client:
            path = "/api/v1/undeclared"
            callers = {
                "nobody": {},
                "token": {"Authorization": f"Bearer {token}"},
                "signed": {HEADER: sign_call(ops, "POST", path, b"{}", wall_clock_ms())},
            }
            for who, headers in callers.items():
                response = await client.post(path, data=b"{}", headers=headers)
                body = await response.json()
                assert response.status == 500, (who, body)
                assert body["error"]["code"] == "no_access_rule", (who, body)
                assert "POST /api/v1/undeclared has no access rule" in body["error"]["message"]
            gossip = await client.post("/gossip/v2", data=b"{}")
            assert (await gossip.json())["error"]["code"] == "no_access_rule"
            assert served == []
            said = [r.getMessage() for r in caplog.records if "no access rule" in r.getMessage()]
            assert len(said) == 2, said  # once per route, not per call
            assert app[GUARD_KEY].refused["no_access_rule"] == 4
            missing = await client.get("/api/v1/nowhere")
            assert missing.status == 404
            assert (await missing.json())["error"]["code"] == "not_found"
            declared = await client.get(
                "/api/v1/declared", headers={"Authorization": f"Bearer {token}"}
            )
            assert declared.status == 200
            assert served == ["/api/v1/declared"]
    finally:
        auth.EXTRA_NEEDS.pop(("GET", "/api/v1/declared"), None)


def test_every_route_in_the_api_document_has_an_access_rule():
    doc = json.loads(files("edgebac.api").joinpath("openapi.json").read_text())
    paths = doc["paths"].items()
    documented = {(m.upper(), p) for p, ops in paths for m in ops if m != "parameters"}
    assert documented - set(NEEDS) == set()


def test_access_token_prints_a_token_once_and_the_line_that_admits_it():
    from click.testing import CliRunner

    from edgebac.cli import cli

    made = CliRunner().invoke(
        cli, ["access", "token", "ci", "--can", "read,cancel", "--output", "json"]
    )
    assert made.exit_code == 0, made.output
    answer = json.loads(made.output)
    access = rules("clients:\n" + answer["line"] + "\n")
    client = access.client_of_token(answer["token"])
    assert client is not None
    assert client.name == "ci"
    assert client.can == {"read", "cancel"}
    assert answer["token"] not in answer["line"]  # the file holds only its hash


def test_access_key_refuses_an_id_that_is_not_one():
    from click.testing import CliRunner

    from edgebac.cli import cli

    refused = CliRunner().invoke(cli, ["access", "key", "alice", "abc"])
    assert isinstance(refused.exception, ConfigError)  # main() prints it as one line
    assert "clients.alice.key: 64 hex digits" in str(refused.exception)
    made = CliRunner().invoke(cli, ["access", "key", "alice", ALICE_ID, "--scope", "all"])
    assert made.exit_code == 0
    assert rules("clients:\n" + made.output).clients["alice"].scope_all
