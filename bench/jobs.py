"""Noop jobs through real node processes: submit->completed latency and sustained throughput.

    python bench/jobs.py [--sequential 100] [--concurrent 1000] [--preset default]
                         [--sizes 1,3] [--timeline 50] [--profile DIR [--gil]] [--no-access]

For a 1-node and a 3-node loopback network (separate processes): p50/p99 latency of sequential
jobs (submit, then a long poll until the job ended), and jobs/s for `--concurrent` jobs
submitted at once. Targets: 3-node p50 <= 50 ms (Bacalhau's published figure for a trivial
job is about 1.3 s); throughput >= 200 jobs/s.

The client's own CPU is shown too: it shares the machine with the nodes. Jobs are signed like
the CLI's (a client key, a random nonce, the spec in canonical form); the cost of signing one
and of the one verify the requester and each bidder do per job is printed too. Every call is
signed as the CLI signs it (`Edgebac-Signature`: method, path, body digest, time, nonce), and
the node checks each; the cost of signing and of checking one call is printed. The nodes run
with an access file (`--access`, as a site would: the client is one of 100 clients in the
rules), so every call's check includes the rule lookup; `--no-access` runs them without rules
(loopback callers served as admins) to compare.

`--timeline N` prints, for N of the concurrent jobs, when each kind of event happened after the
job's JobCreated (from the events' hlc), to see which step of a job waits. `--profile DIR`
records every node process with py-spy during the concurrent run (collapsed stacks in DIR;
`--gil` for only the thread holding the GIL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
from nacl.signing import SigningKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from yarl import URL

from edgebac.api.access import Access, load_access
from edgebac.eventlog.callsig import HEADER, NonceCache, check_call, parse_header, sign_call
from edgebac.eventlog.clock import wall_clock_ms
from edgebac.eventlog.signed import SUBMIT, request_valid, sign_request
from edgebac.scheduler.spec import parse_spec
from tests.netfix import network_key
from tests.procs import NodeProcess, Nodes, wait_for

SPEC = parse_spec({"engine": {"type": "noop", "stdout": "bench"}, "retries": 0}).to_dict()
CLIENT = SigningKey.generate()
REQUESTER: dict[str, bytes] = {}  # api -> its public key, asked once
OTHER_CLIENTS = 99  # in the access rules beside the benchmark's client


def access_rules() -> str:
    """Rules as a site's: the benchmark's client (it reads every job, for the timelines) among
    others, each a key the node looks up on every call."""
    lines = ["clients:"]
    others = (bytes(SigningKey.generate().verify_key).hex() for _ in range(OTHER_CLIENTS))
    for index, key in enumerate(others):
        lines.append(f"  client{index}: {{key: {key}, can: [read, submit, cancel]}}")
    me = bytes(CLIENT.verify_key).hex()
    lines.append(f"  bench: {{key: {me}, can: [read, submit, cancel, admin], scope: all}}")
    return "\n".join(lines) + "\n"


def signed_get(node: NodeProcess, path: str) -> dict:
    """GET a node's JSON, signed as the CLI signs (a node with rules serves no anonymous call)."""
    _, headers = signed_call("GET", node.url, path)
    request = urllib.request.Request(node.url + path, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def wait_converged(network: list[NodeProcess]) -> None:
    """Every node has every node's announcement (and the same version vector)."""
    ids = [signed_get(n, "/api/v1/node")["id"] for n in network]

    def agreed() -> bool:
        vectors = [signed_get(n, "/api/v1/node")["version_vector"] for n in network]
        return all(v == vectors[0] for v in vectors) and all(vectors[0].get(i) for i in ids)

    wait_for(agreed, 30, "the nodes to know each other")


def signed_body(api: str) -> dict:
    """A submission as `edgebac job run` sends it: signed for the requester behind `api`."""
    nonce = secrets.token_hex(16)
    sig = sign_request(CLIENT, SUBMIT, REQUESTER[api], {"spec": SPEC, "nonce": nonce})
    client = bytes(CLIENT.verify_key).hex()
    return {"spec": SPEC, "nonce": nonce, "client": client, "signature": sig.hex()}


def signature_costs(samples: int = 2000) -> tuple[float, float]:
    """(ms to sign one submission, ms for one verify of it), on this machine."""
    requester = bytes(SigningKey.generate().verify_key)
    fields = [{"spec": SPEC, "nonce": secrets.token_hex(16)} for _ in range(samples)]
    started = time.perf_counter()
    sigs = [sign_request(CLIENT, SUBMIT, requester, f) for f in fields]
    signed = time.perf_counter()
    client = bytes(CLIENT.verify_key)
    pairs = zip(sigs, fields, strict=True)
    assert all(request_valid(client, sig, SUBMIT, requester, f) for sig, f in pairs)
    verified = time.perf_counter()
    return 1000 * (signed - started) / samples, 1000 * (verified - signed) / samples


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def call_signature_costs(access: Access, samples: int = 2000) -> tuple[float, float]:
    """(ms to sign one API call, ms for the node to check one: header, signature, the access
    rule of its key, nonce), as the front door (`edgebac.api.auth.identify`) does each."""
    body = json.dumps(signed_body_for(bytes(32))).encode()
    started = time.perf_counter()
    headers = [sign_call(CLIENT, "POST", "/api/v1/jobs", body, NOW_MS) for _ in range(samples)]
    signed = time.perf_counter()
    nonces = NonceCache(300_000)
    for header in headers:
        call = parse_header(header)
        check_call(call, "POST", "/api/v1/jobs", body, NOW_MS, 300_000)
        client = access.client_of_key(call.key)
        if client is None or "submit" not in client.can:
            raise SystemExit("bench: the client is not in the rules it is measured against")
        nonces.admit(call.key, call.nonce, call.ts_ms, NOW_MS)
    checked = time.perf_counter()
    return 1000 * (signed - started) / samples, 1000 * (checked - signed) / samples


NOW_MS = wall_clock_ms()


def signed_body_for(requester: bytes) -> dict:
    REQUESTER.setdefault("probe", requester)
    return signed_body("probe")


def signed_call(method: str, api: str, path: str, body: bytes = b"") -> tuple[URL, dict]:
    """The URL as signed (not re-quoted) and the header that signs it, as the CLI sends."""
    header = sign_call(CLIENT, method, path, body, wall_clock_ms())
    return URL(api + path, encoded=True), {HEADER: header, "Content-Type": "application/json"}


async def run_job(
    session: aiohttp.ClientSession, api: str, job_ids: list[str] | None = None
) -> str:
    body = json.dumps(signed_body(api)).encode()
    url, headers = signed_call("POST", api, "/api/v1/jobs", body)
    async with session.post(url, data=body, headers=headers) as response:
        assert response.status == 201, await response.text()
        job_id = (await response.json())["job_id"]
    if job_ids is not None:
        job_ids.append(job_id)
    while True:
        url, headers = signed_call("GET", api, f"/api/v1/jobs/{job_id}?events=0&wait_ms=30000")
        async with session.get(url, headers=headers) as response:
            view = await response.json()
            assert response.status == 200, view
        if view["status"] in ("completed", "failed", "canceled"):
            return view["status"]


async def sequential(api: str, count: int) -> tuple[list[float], list[str]]:
    latencies = []
    job_ids: list[str] = []
    async with aiohttp.ClientSession() as session:
        await run_job(session, api)  # warm up connections and code paths
        for _ in range(count):
            started = time.perf_counter()
            status = await run_job(session, api, job_ids)
            latencies.append(1000 * (time.perf_counter() - started))
            assert status == "completed", status
    return latencies, job_ids


async def concurrent(api: str, count: int) -> tuple[float, dict[str, int], list[str]]:
    connector = aiohttp.TCPConnector(limit=48)  # under the per-source cap (64) of a node
    job_ids: list[str] = []
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> str:
            return await run_job(session, api, job_ids)

        started = time.perf_counter()
        statuses = await asyncio.gather(*(one() for _ in range(count)))
        elapsed = time.perf_counter() - started
    tally: dict[str, int] = {}
    for status in statuses:
        tally[status] = tally.get(status, 0) + 1
    return count / elapsed, tally, job_ids


async def timeline(api: str, job_ids: list[str]) -> None:
    """Median and p90 of when each event kind came, in ms after the job's JobCreated."""
    offsets: dict[str, list[float]] = {}
    async with aiohttp.ClientSession() as session:
        for job_id in job_ids:
            url, headers = signed_call("GET", api, f"/api/v1/jobs/{job_id}")
            async with session.get(url, headers=headers) as response:
                view = await response.json()
            requester = view["requester"]
            times = [(float(e["hlc"]), e) for e in view["events"]]
            created = min(t for t, e in times if e["type"] == "JobCreated")
            seen: dict[str, int] = {}
            for t, event in sorted(times, key=lambda item: item[0]):
                who = "req" if event["author"] == requester else "remote"
                name = f"{event['type']}({who})"
                seen[name] = seen.get(name, 0) + 1
                label = f"{name}#{seen[name]}"
                offsets.setdefault(label, []).append(t - created)
    rows = sorted(offsets.items(), key=lambda item: statistics.median(item[1]))
    for label, values in rows:
        print(
            f"    {label:<32} median {statistics.median(values):7.1f} ms"
            f"  p90 {percentile(values, 0.9):7.1f} ms  (n={len(values)})"
        )


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU time a process used so far (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def start_profilers(
    pids: list[int], folder: Path, size: int, gil: bool
) -> list[subprocess.Popen[bytes]]:
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        py_spy = Path(shutil.which("py-spy") or "py-spy")
    folder.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [
                str(py_spy),
                "record",
                "-p",
                str(pid),
                "-r",
                "100",
                "-f",
                "raw",
                *(["--gil"] if gil else []),
                "-o",
                str(folder / f"{size}node-n{index}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for index, pid in enumerate(pids)
    ]


def stop_profilers(profilers: list[subprocess.Popen[bytes]]) -> None:
    for profiler in profilers:
        profiler.send_signal(2)  # SIGINT: py-spy writes its output and exits
    for profiler in profilers:
        profiler.wait(timeout=30)


def measure(size: int, args: argparse.Namespace, rules: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        key = network_key(tmp)
        access: tuple[str, ...] = ()
        if rules is not None:
            (tmp / "access.yaml").write_text(rules)
            access = ("--access", str(tmp / "access.yaml"))
        nodes = Nodes()
        try:
            network = []
            for index in range(size):
                peers = ("--peers", network[0].url.removeprefix("http://")) if network else ()
                flags = ("--network-key", str(key), "--preset", args.preset, *access, *peers)
                network.append(
                    nodes.start(tmp / f"n{index}", *flags, listen=f"127.0.0.{index + 2}:0")
                )
            wait_converged(network)
            api = network[0].url
            first = signed_get(network[0], "/api/v1/node")
            door = first["access"]
            print(f"{size}-node: front door {door['mode']}, {door.get('clients', 0)} clients")
            REQUESTER[api] = bytes.fromhex(first["public_key"])
            latencies, sequential_ids = asyncio.run(sequential(api, args.sequential))
            print(
                f"{size}-node: sequential noop jobs: p50 {percentile(latencies, 0.5):.1f} ms,"
                f" p99 {percentile(latencies, 0.99):.1f} ms over {len(latencies)} jobs"
                + ("  (target p50 <= 50 ms)" if size == 3 else ""),
                flush=True,
            )
            if args.timeline:
                asyncio.run(timeline(api, sequential_ids[: args.timeline]))
            profilers = (
                start_profilers([n.pid for n in network], args.profile, size, args.gil)
                if args.profile
                else []
            )
            cpu_before = [cpu_seconds(n.pid) for n in network]
            client_before = cpu_seconds(os.getpid())
            try:
                rate, tally, job_ids = asyncio.run(concurrent(api, args.concurrent))
            finally:
                stop_profilers(profilers)
            client = [a - b for a, b in zip(cpu_seconds(os.getpid()), client_before, strict=True)]
            cpu = [
                (after[0] - before[0], after[1] - before[1])
                for after, before in zip(
                    [cpu_seconds(n.pid) for n in network], cpu_before, strict=True
                )
            ]
            print(
                f"{size}-node: {args.concurrent} concurrent noop jobs: {rate:.0f} jobs/s "
                f"{tally}  (target >= 200 jobs/s)",
                flush=True,
            )
            per_job = ", ".join(
                f"{1000 * u / args.concurrent:.1f}+{1000 * s / args.concurrent:.1f}" for u, s in cpu
            )
            print(
                f"{size}-node: CPU ms (user+sys) per job, each node: {per_job};"
                f" this client: {1000 * client[0] / args.concurrent:.1f}"
                f"+{1000 * client[1] / args.concurrent:.1f}",
                flush=True,
            )
            if args.timeline:
                asyncio.run(timeline(api, job_ids[:: max(1, len(job_ids) // args.timeline)]))
        finally:
            nodes.kill_all()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sequential", type=int, default=100)
    parser.add_argument("--concurrent", type=int, default=1000)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--sizes", default="1,3", help="network sizes to measure")
    parser.add_argument("--timeline", type=int, default=0, help="jobs to show timelines of")
    parser.add_argument("--profile", type=Path, help="py-spy flame graphs into this folder")
    parser.add_argument(
        "--no-access",
        action="store_true",
        help="run the nodes without access rules (loopback callers are admins), to compare",
    )
    parser.add_argument(
        "--gil",
        action="store_true",
        help="profile only the thread holding the GIL (where a node's Python time goes; a "
        "thread waiting for the GIL otherwise shows in the line it waits in)",
    )
    args = parser.parse_args()
    sign_ms, verify_ms = signature_costs()
    print(
        f"client signature per job: signing {sign_ms:.3f} ms (the client), one verify "
        f"{verify_ms:.3f} ms (the requester, then each bidder once)",
        flush=True,
    )
    rules = access_rules()
    call_sign_ms, call_check_ms = call_signature_costs(load_access(rules, "bench rules"))
    print(
        f"client signature per API call: signing {call_sign_ms:.3f} ms (the client), checking "
        f"{call_check_ms:.3f} ms (the node: header, signature, access rule, nonce; every call)",
        flush=True,
    )
    for size in (int(s) for s in args.sizes.split(",")):
        measure(size, args, None if args.no_access else rules)


if __name__ == "__main__":
    main()
