"""SSRF on a real node: a job's `http://127.0.0.1:PORT/secret` input, on a node with the default
policy, fails with the loopback refusal in its recorded failure, the service inside is never
connected to, and the secret reaches no output, log or event; the same job on a node whose
policy lists the address gets the secret (so the spec is right, and the policy is what refused).
"""

from __future__ import annotations

import http.server
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.procs import nodes_fixture
from tests.test_executors_net import JobClient, only_execution, wasm_spec

nodes = nodes_fixture()


@dataclass
class Inside:
    """An internal-only service on loopback, holding a secret, that counts who asked."""

    url: str
    secret: bytes
    asked: list[str] = field(default_factory=list)


@contextmanager
def internal_service() -> Iterator[Inside]:
    inside = Inside("", f"the admin password {secrets.token_hex(8)}\n".encode())

    class Secret(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            inside.asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(inside.secret)))
            self.end_headers()
            self.wfile.write(inside.secret)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Secret)
    inside.url = f"http://127.0.0.1:{server.server_address[1]}/secret"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield inside
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def spec_reading(url: str) -> dict:
    return wasm_spec(
        "io",
        "/in",
        "/out",
        inputs=[{"source": url, "target": "/in"}],
        outputs=[{"name": "out", "path": "/out"}],
    )


def files_holding(folder: Path, needle: bytes) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_a_loopback_input_fails_on_a_default_node_and_the_secret_goes_nowhere(nodes, tmp_path):
    with internal_service() as inside:
        node = nodes.start(tmp_path / "default")  # no --policy: urls ["*"], public only
        jobs = JobClient(node)
        view = jobs.wait(jobs.submit(spec_reading(inside.url)))
        assert view["status"] == "failed", view
        reason = only_execution(view)["reason"]
        assert reason == (
            f"input {inside.url}: refused: 127.0.0.1 is a loopback address (127.0.0.1), which "
            "the policy's urls do not allow"
        ), reason
        assert inside.asked == []  # refused before connecting, not after reading
        secret = inside.secret.strip()
        assert files_holding(node.data_dir, secret) == []  # results, scratch, the log
        status, logs, _ = node.request(f"/api/v1/jobs/{view['id']}/logs")
        assert status == 200
        assert secret not in logs
        assert secret.decode() not in str(jobs.view(view["id"]))
        assert "Traceback" not in node.stderr

        # The control: the same job where the policy lists the address reads the secret.
        policy = tmp_path / "policy.yaml"
        policy.write_text("urls: [127.0.0.1]\n")
        listed = nodes.start(tmp_path / "listed", "--policy", str(policy), listen="127.0.0.2:0")
        jobs = JobClient(listed)
        view = jobs.wait(jobs.submit(spec_reading(inside.url)))
        assert view["status"] == "completed", view
        results = listed.data_dir / "work" / "results" / only_execution(view)["id"]
        assert (results / "out" / "copy" / "secret").read_bytes() == inside.secret
        assert inside.asked == ["/secret"]
