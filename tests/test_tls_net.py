"""TLS on real listeners: a self-signed node's fingerprint, pinning and CA checks with the CLI's
https_handler, TLS and plain HTTP on one port (peers gossip over http:// to a TLS node), and
`--api-listen`. Checks use Python's ssl, never curl."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import json
import re
import socket
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgebac.cli.tls import FingerprintMismatch, https_handler
from edgebac.node.config import HostPort, NodeConfig, TlsConfig
from edgebac.node.listener import listener_of, open_listeners, runner_options, watch_requests
from edgebac.node.tls import server_tls
from tests.netfix import info, wait_converged
from tests.procs import NodeProcess, nodes_fixture, run_edgebac

nodes = nodes_fixture()
CLIENT_API = re.compile(r"client API on (https?://\S+)")
FINGERPRINT = re.compile(r"^tls: .* fingerprint sha256:([0-9a-f]{64})$")


def fetch(url: str, handler: urllib.request.BaseHandler | None = None) -> tuple[int, Any]:
    opener = urllib.request.build_opener(*([handler] if handler else []))
    with opener.open(url, timeout=10) as response:
        return response.status, json.loads(response.read())


def served_fingerprint(url: str) -> str:
    host, _, port = url.removeprefix("https://").rpartition(":")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        return hashlib.sha256(tls.getpeercert(binary_form=True) or b"").hexdigest()


def printed(node: NodeProcess) -> tuple[str, str]:
    """(the client API's URL, the fingerprint) a TLS node printed after its listening line."""
    api = node.wait_for_line(CLIENT_API, 10).group(1)
    return api, node.wait_for_line(FINGERPRINT, 10).group(1)


def test_self_signed_node_pins_its_printed_fingerprint(nodes, tmp_path):
    node = nodes.start(tmp_path / "a", "--tls", "self-signed")
    api, fingerprint = printed(node)
    assert api == node.url.replace("http://", "https://")  # one port for both
    assert served_fingerprint(api) == fingerprint
    assert (tmp_path / "a" / "tls" / "key.pem").stat().st_mode & 0o777 == 0o600

    status, body = fetch(api + "/api/v1/node", https_handler(None, f"SHA256:{fingerprint}"))
    assert (status, body["tls"]) == (200, {"fingerprint": fingerprint})

    wrong = "00" * 32
    with pytest.raises(FingerprintMismatch) as caught:
        fetch(api + "/healthz", https_handler(None, wrong))
    message = str(caught.value)
    assert f"expected sha256:{wrong}, got sha256:{fingerprint}" in message
    assert "\n" not in message
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch(api + "/healthz", https_handler(None, None))  # not trusted without a pin

    assert node.stop() == 0
    again = nodes.start(tmp_path / "a", "--tls", "self-signed")
    assert printed(again)[1] == fingerprint  # the same certificate after a restart


def test_the_cli_pins_the_fingerprint(nodes, tmp_path):
    node = nodes.start(tmp_path / "a", "--tls", "self-signed")
    api, fingerprint = printed(node)
    done = run_edgebac("node", "list", "--api", api, "--tls-fingerprint", fingerprint)
    assert done.returncode == 0, done.stderr
    assert node.short_id in done.stdout
    wrong = run_edgebac("node", "list", "--api", api, "--tls-fingerprint", "ab" * 32)
    assert wrong.returncode != 0
    assert f"expected sha256:{'ab' * 32}, got sha256:{fingerprint}" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def make_ca_and_leaf(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a leaf for 127.0.0.1 it signed: (ca.pem, leaf.pem, leaf.key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "leaf.pem", folder / "leaf.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def test_a_ca_signed_certificate_is_checked_against_ca(nodes, tmp_path):
    ca, leaf, key = make_ca_and_leaf(tmp_path)
    node = nodes.start(tmp_path / "a", "--tls-cert", str(leaf), "--tls-key", str(key))
    api, fingerprint = printed(node)
    assert fingerprint == served_fingerprint(api)
    assert fetch(api + "/healthz", https_handler(ca, None))[0] == 200
    (tmp_path / "other").mkdir()
    other_ca, _, _ = make_ca_and_leaf(tmp_path / "other")  # a CA that did not sign it
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch(api + "/healthz", https_handler(other_ca, None))
    localhost = api.replace("127.0.0.1", "localhost")  # the hostname is checked too
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch(localhost + "/healthz", https_handler(ca, None))


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (("--tls-cert", "{bad}", "--tls-key", "{key}"), "--tls-cert"),
        (("--tls-cert", "{leaf}", "--tls-key", "{bad}"), "--tls-key"),
        (("--tls-cert", "{leaf}", "--tls-key", "{other}"), "--tls-key"),  # not its key
    ],
)
def test_a_bad_certificate_or_key_file_names_its_flag(nodes, tmp_path, flags, named):
    _, leaf, key = make_ca_and_leaf(tmp_path)
    (tmp_path / "other").mkdir()
    _, _, other = make_ca_and_leaf(tmp_path / "other")
    bad = tmp_path / "bad.pem"
    bad.write_text("not PEM at all\n")
    files = {"bad": bad, "leaf": leaf, "key": key, "other": other}
    node = nodes.spawn(tmp_path / "d", *(flag.format(**files) for flag in flags))
    assert node.wait(20) != 0
    assert named in node.stderr.strip().splitlines()[-1], node.stderr
    assert "Traceback" not in node.stderr


def test_a_stalled_tls_handshake_is_cut_at_the_header_timeout(nodes, tmp_path):
    env = {"EDGEBAC_TEST_HEADER_TIMEOUT_S": "1"}
    node = nodes.start(tmp_path / "a", "--tls", "self-signed", env=env)
    host, _, port = node.url.removeprefix("http://").rpartition(":")
    silent, hello = (socket.create_connection((host, int(port)), timeout=5) for _ in range(2))
    with silent, hello:
        hello.send(b"\x16\x03\x01\x02\x00")  # a ClientHello's first bytes, then nothing
        started = time.monotonic()
        for sock in (silent, hello):
            sock.settimeout(5)
            assert sock.recv(1) == b""  # closed by the node (a TLS alert would be bytes)
        assert time.monotonic() - started < 3.0


def test_a_plain_peer_gossips_with_a_tls_node_on_its_one_port(nodes, tmp_path):
    tls_node = nodes.start(tmp_path / "t", "--tls", "self-signed", listen="127.0.0.40:0")
    seed = tls_node.url.removeprefix("http://")
    plain = nodes.start(tmp_path / "p", "--peers", seed, listen="127.0.0.41:0")
    everyone = [tls_node, plain]
    wait_converged(everyone, {info(n)["id"]: 1 for n in everyone})
    api, fingerprint = printed(tls_node)
    assert fetch(api + "/healthz", https_handler(None, fingerprint))[0] == 200


def test_api_listen_serves_clients_on_its_own_address(nodes, tmp_path):
    node = nodes.start(tmp_path / "a", "--api-listen", "127.0.0.43:0", listen="127.0.0.42:0")
    api = node.wait_for_line(CLIENT_API, 10).group(1)
    assert api.startswith("http://127.0.0.43:")
    status, body = fetch(api + "/api/v1/node")
    assert (status, body["id"][:12], body["tls"]) == (200, node.short_id, None)


def test_api_listen_with_tls_is_https_only_and_listen_stays_plain(nodes, tmp_path):
    node = nodes.start(
        tmp_path / "a", "--tls", "self-signed", "--api-listen", "127.0.0.45:0",
        listen="127.0.0.44:0",
    )  # fmt: skip
    api, fingerprint = printed(node)
    assert api.startswith("https://127.0.0.45:")
    assert fetch(api + "/api/v1/node", https_handler(None, fingerprint))[0] == 200
    with pytest.raises(urllib.error.HTTPError) as plain:  # no plain HTTP there: it says so
        fetch(api.replace("https://", "http://") + "/healthz")
    with plain.value as answer:
        assert answer.code == 400
        error = json.loads(answer.read())["error"]
    assert error["code"] == "https_only"
    assert f"use {api}/" in error["message"]
    assert fetch(api + "/api/v1/node", https_handler(None, fingerprint))[0] == 200  # still
    assert fetch(node.url + "/healthz")[0] == 200  # peers' port: plain
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        fetch(
            node.url.replace("http://", "https://") + "/healthz", https_handler(None, fingerprint)
        )
    assert node.stop() == 0
    assert "Traceback" not in node.stderr
    assert "SSL" not in node.stderr  # a failed handshake is the client's business, not a log line


# ----- in-process: request.secure and listener_of, on real loopback sockets ----------------


async def probe(request: web.Request) -> web.Response:
    return web.json_response({"secure": request.secure, "listener": listener_of(request)})


async def test_requests_know_their_listener_and_whether_they_are_tls(tmp_path):
    tls = server_tls(TlsConfig(self_signed=True), tmp_path, ["127.0.0.1"])
    results = {}
    for api in (None, HostPort("127.0.0.1", 0)):
        app = web.Application()
        app.router.add_get("/probe", probe)
        app.middlewares.insert(0, watch_requests)
        runner = web.AppRunner(app, **runner_options())
        await runner.setup()
        config = NodeConfig(listen=HostPort("127.0.0.1", 0), api_listen=api)
        listeners = open_listeners(runner.server, config, tls.context, print)
        pinned = https_handler(None, tls.fingerprint)
        try:
            for listener in listeners:
                base = f"127.0.0.1:{listener.address.port}"
                for scheme, handler in (("http", None), ("https", pinned)):
                    url = f"{scheme}://{base}/probe"
                    try:
                        results[(api is not None, listener.name, scheme)] = (
                            await asyncio.to_thread(fetch, url, handler)
                        )[1]
                    except (urllib.error.URLError, ConnectionError):
                        results[(api is not None, listener.name, scheme)] = None
        finally:
            for listener in listeners:
                await listener.close()
            await runner.cleanup()
    assert results == {
        (False, "node", "http"): {"secure": False, "listener": "node"},
        (False, "node", "https"): {"secure": True, "listener": "node"},
        (True, "node", "http"): {"secure": False, "listener": "node"},
        (True, "node", "https"): None,
        (True, "api", "http"): None,
        (True, "api", "https"): {"secure": True, "listener": "api"},
    }
