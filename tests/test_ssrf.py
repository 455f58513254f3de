"""Inputs that cannot reach inside: `http(s)` inputs connect only where the policy's `urls:`
allow, checked on the real address of every connection (literal, resolved, redirected)."""

from __future__ import annotations

import http.server
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from edgebac.errors import ConfigError
from edgebac.node.policy import load_policy
from edgebac.runtime.executor import ExecutionError
from edgebac.runtime.providers.destinations import Destinations
from edgebac.runtime.staging import Stager
from edgebac.scheduler.sources import parse_source
from tests.httpfix import file_server

D = Destinations.parse
LOOPBACK = "refused: 127.0.0.1 is a loopback address (127.0.0.1), which the policy's urls"


@pytest.mark.parametrize(
    ("entries", "host", "port", "address", "allowed"),
    [
        (["*"], "example.org", 80, "93.184.215.14", True),
        (["*"], "example.org", 80, "127.0.0.1", False),
        (["*"], "127.0.0.1", 8080, "127.0.0.1", False),
        (["*"], "metadata", 80, "169.254.169.254", False),
        (["*"], "lan", 80, "10.1.2.3", False),
        (["*"], "lan", 80, "192.168.0.1", False),
        (["*"], "v6", 80, "::1", False),
        (["*"], "v6", 80, "fe80::1", False),
        (["*"], "v6", 80, "fd00::1", False),
        (["*"], "mapped", 80, "::ffff:127.0.0.1", False),
        (["*"], "zero", 80, "0.0.0.0", False),
        (["127.0.0.1"], "127.0.0.1", 8080, "127.0.0.1", True),
        (["127.0.0.1:8080"], "127.0.0.1", 8080, "127.0.0.1", True),
        (["127.0.0.1:8080"], "127.0.0.1", 8081, "127.0.0.1", False),
        (["10.0.0.0/8"], "lan", 80, "10.1.2.3", True),
        (["10.0.0.0/8"], "example.org", 80, "93.184.215.14", False),
        (["files.lan"], "FILES.lan", 80, "192.168.0.9", True),
        (["files.lan:8000"], "files.lan", 80, "192.168.0.9", False),
        (["::1/128"], "v6", 80, "::1", True),
        ([], "example.org", 80, "93.184.215.14", False),
    ],
)
def test_which_destinations_each_policy_allows(entries, host, port, address, allowed):
    assert (D(entries).refusal(host, port, address) is None) is allowed


def test_a_refusal_says_what_the_address_is():
    said = D(["*"]).refusal("127.0.0.1", 80, "127.0.0.1")
    assert said == f"{LOOPBACK} do not allow"
    assert "a link-local address" in D(["*"]).refusal("m", 80, "169.254.169.254")
    assert "a private address" in D(["*"]).refusal("m", 80, "10.0.0.1")


@pytest.mark.parametrize("bad", ["http://x", "10.0.0.0/33x", "a b", "host:99999", ""])
def test_a_malformed_urls_entry_stops_the_policy(tmp_path, bad):
    policy = tmp_path / "policy.json"
    policy.write_text(f'{{"urls": ["{bad}"]}}')
    with pytest.raises(ConfigError, match="urls: "):
        load_policy(policy)


def test_the_policy_passes_its_urls_and_defaults_to_public(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("urls: ['*', 127.0.0.1, 10.0.0.0/8]\n")
    assert load_policy(policy).node.urls == ("*", "127.0.0.1", "10.0.0.0/8")
    assert load_policy(None).node.urls == ("*",)


@pytest.fixture
def secret(tmp_path) -> Iterator[str]:
    root = tmp_path / "site"
    root.mkdir()
    (root / "secret").write_text("the admin password\n")
    with file_server(root) as url:
        yield url


@contextmanager
def redirector(host: str, to: str) -> Iterator[str]:
    """A real server on `host` that redirects every GET to `to` + the request's path."""

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", to + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host, 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


async def fetch(tmp_path: Path, url: str, urls: tuple[str, ...] = ("*",)) -> str:
    """The staged file's text, or the reason staging failed."""
    stager = Stager(tmp_path / "cache", (), urls=urls)
    dest = tmp_path / "in" / uuid.uuid4().hex
    try:
        folder = await stager.stage(parse_source(url), dest, 1 << 20)
    except ExecutionError as exc:
        return exc.reason
    return (folder / "secret").read_text()


async def test_a_loopback_input_is_refused_by_default_and_allowed_when_listed(tmp_path, secret):
    url = f"{secret}/secret"
    port = url.split(":")[2].split("/")[0]
    said = await fetch(tmp_path, url)
    assert said == f"input {url}: {LOOPBACK} do not allow"
    assert await fetch(tmp_path, url, ("127.0.0.1",)) == "the admin password\n"
    assert await fetch(tmp_path, url, (f"127.0.0.1:{port}",)) == "the admin password\n"
    assert await fetch(tmp_path, url, ("127.0.0.0/8",)) == "the admin password\n"
    assert "refused" in await fetch(tmp_path, url, (f"127.0.0.1:{int(port) + 1}",))


async def test_a_name_is_checked_on_the_address_it_resolves_to(tmp_path, secret):
    url = secret.replace("127.0.0.1", "localhost") + "/secret"
    said = await fetch(tmp_path, url)
    assert "refused: localhost is a loopback address (127.0.0.1)" in said
    assert await fetch(tmp_path, url, ("localhost",)) == "the admin password\n"


async def test_a_redirect_from_an_allowed_host_inside_is_refused(tmp_path, secret):
    with redirector("127.0.0.2", secret) as allowed:
        url = f"{allowed}/secret"
        said = await fetch(tmp_path, url, ("127.0.0.2",))
        assert "refused: 127.0.0.1 is a loopback address" in said
        by_name = secret.replace("127.0.0.1", "localhost")
        with redirector("127.0.0.3", by_name) as named:
            said = await fetch(tmp_path, f"{named}/secret", ("127.0.0.3",))
            assert "refused: localhost is a loopback address" in said
        both = ("127.0.0.2", "127.0.0.1")
        assert await fetch(tmp_path, url, both) == "the admin password\n"
