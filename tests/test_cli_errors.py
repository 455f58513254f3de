"""Bad input to the real `edgebac` command: one line naming the culprit, no traceback, exit != 0."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from edgebac.eventlog.clock import HybridClock
from edgebac.eventlog.store import EventLog
from tests.procs import run_edgebac


def assert_one_line_error(result: subprocess.CompletedProcess[str], *names: str) -> str:
    """The command failed with exactly one error line on stderr, naming every one of `names`.

    Warnings printed before the failure (say, about a missing network key) are their own lines.
    """
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1, result.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def run_node(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A node that is expected to refuse to start (so it returns quickly)."""
    return run_edgebac("node", "--data-dir", data_dir, "--listen", "127.0.0.1:0", *args)


# ----- a data directory that is not writable, even for root -----------------------------------


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def tmpfs(tmp_path):
    """A fresh tmpfs mounted at tmp_path/mnt, unmounted in teardown even if the test fails.

    chmod does not stop root (CI runs as root); a read-only mount does.
    """
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only filesystem needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    _mount("-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mnt))
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True, timeout=30)


def test_read_only_data_dir_is_refused(tmpfs):
    _mount("-o", "remount,ro", str(tmpfs))
    result = run_node(tmpfs)
    line = assert_one_line_error(result, str(tmpfs))
    assert "not writable" in line


def test_data_dir_that_cannot_be_created_is_refused(tmpfs):
    _mount("-o", "remount,ro", str(tmpfs))
    data_dir = tmpfs / "sub" / "dir"
    line = assert_one_line_error(run_node(data_dir), str(data_dir))
    assert "cannot be created" in line


def test_data_dir_made_read_only_after_use_is_refused(tmpfs):
    started = run_edgebac("log", "verify", "--data-dir", tmpfs)  # nothing there yet
    assert_one_line_error(started, str(tmpfs))
    asyncio.run(write_log(tmpfs / "events.db", 3))
    (tmpfs / "node.lock").touch()
    _mount("-o", "remount,ro", str(tmpfs))
    line = assert_one_line_error(run_node(tmpfs), str(tmpfs))
    assert "not writable" in line


def test_log_on_a_read_only_mount_can_still_be_inspected(tmpfs):
    asyncio.run(write_log(tmpfs / "events.db", 3))
    _mount("-o", "remount,ro", str(tmpfs))
    verify = run_edgebac("log", "verify", "--data-dir", tmpfs)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "3 events from 1 authors" in verify.stdout
    show = run_edgebac("log", "show", "--data-dir", tmpfs)
    assert show.returncode == 0, show.stderr
    assert len(show.stdout.splitlines()) == 3


def test_data_dir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("not a directory\n")
    line = assert_one_line_error(run_node(path), str(path))
    assert "not a directory" in line


# ----- files in the data directory that are not what they should be ---------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"garbage\n",
        b"ed25519:" + b"ab" * 31 + b"\n",  # too short
        b"ed25519:" + b"zz" * 32 + b"\n",  # not hex
        b"\xff\xfe\x00binary",
        b"",
    ],
    ids=["garbage", "short", "not-hex", "binary", "empty"],
)
def test_corrupt_key_file_is_refused(tmp_path, content):
    key_file = tmp_path / "node.key"
    key_file.write_bytes(content)
    key_file.chmod(0o600)
    line = assert_one_line_error(run_node(tmp_path), str(key_file))
    assert "corrupt node key" in line
    assert key_file.read_bytes() == content  # never silently replaced by a new identity


def test_key_file_that_is_a_directory_is_refused(tmp_path):
    (tmp_path / "node.key").mkdir()
    assert_one_line_error(run_node(tmp_path), str(tmp_path / "node.key"))


def test_database_that_is_not_sqlite_is_refused(tmp_path):
    db = tmp_path / "events.db"
    db.write_bytes(os.urandom(8192))
    for result in (run_node(tmp_path), run_edgebac("log", "verify", "--data-dir", tmp_path)):
        line = assert_one_line_error(result, str(db))
        assert "not an edgebac event log" in line


def _other_programs_db(path: Path, application_id: int = 0) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
        conn.execute("INSERT INTO contacts VALUES ('ada', '123')")
        conn.execute(f"PRAGMA application_id = {application_id}")
    conn.close()


@pytest.mark.parametrize("application_id", [0, 0x12345678])
def test_sqlite_db_of_another_program_is_refused_and_untouched(tmp_path, application_id):
    db = tmp_path / "events.db"
    _other_programs_db(db, application_id)
    before = db.read_bytes()
    for command in (["node"], ["log", "verify"], ["log", "show"]):
        if command == ["node"]:
            result = run_node(tmp_path)
        else:
            result = run_edgebac(*command, "--data-dir", tmp_path)
        line = assert_one_line_error(result, str(db))
        assert "not an edgebac event log" in line
    assert db.read_bytes() == before


def test_log_commands_on_a_dir_without_a_log(tmp_path):
    for command in (["log", "verify"], ["log", "show"]):
        result = run_edgebac(*command, "--data-dir", tmp_path / "none")
        line = assert_one_line_error(result, str(tmp_path / "none" / "events.db"))
        assert "no event log" in line


# ----- bad flags --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--listen", "localhost"),
        ("--listen", "127.0.0.1:99999"),
        ("--listen", "127.0.0.1:http"),
        ("--listen", ":7700"),
        ("--labels", "zone"),
        ("--labels", "=lab"),
        ("--labels", "zone=lab,bad key=x"),
        ("--roles", "gpu"),
        ("--roles", "compute,storage"),
        ("--roles", ","),
        ("--preset", "slow"),
        ("--advertise", "nowhere"),
        ("--peers", "10.0.0.1:1,nope"),
    ],
)
def test_bad_flag_is_named(tmp_path, flag, value):
    result = run_node(tmp_path / "n", flag, value)
    line = assert_one_line_error(result, flag)
    assert result.returncode == 1
    assert line.startswith("error: ")
    assert not (tmp_path / "n").exists()  # refused before touching the data dir


def test_bad_flag_from_the_environment_is_named(tmp_path):
    result = run_edgebac(
        "node", "--data-dir", tmp_path / "n", env={"EDGEBAC_LISTEN": "127.0.0.1:-1"}
    )
    assert_one_line_error(result, "--listen", "127.0.0.1:-1")


def test_listen_address_in_use_is_named(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        result = run_edgebac("node", "--data-dir", tmp_path / "n", "--listen", address)
    line = assert_one_line_error(result, "--listen", address)
    assert "cannot listen" in line


def test_missing_network_key_file_is_named(tmp_path):
    missing = tmp_path / "network.key"
    assert_one_line_error(run_node(tmp_path / "n", "--network-key", str(missing)), str(missing))


# ----- log verify on a tampered database ------------------------------------------------------


ANNOUNCED = {
    "addresses": [],
    "roles": ["requester"],
    "labels": {},
    "resources": {},
    "executors": [],
}


async def write_log(path: Path, count: int) -> None:
    log = await EventLog.open(path, HybridClock(60_000), SigningKey.generate())
    try:
        jobs = [
            ("JobCreated", {"job_id": f"job-{i}", "spec": {"n": i}}) for i in range(2, count + 1)
        ]
        await log.append([("NodeAnnounced", ANNOUNCED), *jobs])  # seq i: job-i
    finally:
        await log.close()


def tamper(db: Path, seq: int, find: bytes, *, fix_id: bool) -> None:
    """Flip one bit of a stored raw behind the triggers' back, like a disk or an attacker would."""
    conn = sqlite3.connect(db)
    (raw,) = conn.execute("SELECT raw FROM events WHERE seq = ?", (seq,)).fetchone()
    at = raw.index(find) + len(find) - 1
    tampered = raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1 :]
    (trigger_sql,) = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'events_no_update'"
    ).fetchone()
    with conn:
        conn.execute("DROP TRIGGER events_no_update")
        conn.execute("UPDATE events SET raw = ? WHERE seq = ?", (tampered, seq))
        if fix_id:
            new_id = hashlib.sha256(tampered).digest()
            conn.execute("UPDATE events SET id = ? WHERE seq = ?", (new_id, seq))
        conn.execute(trigger_sql)
    conn.close()


@pytest.mark.parametrize(
    ("fix_id", "problem"),
    [
        (False, "stored id is not the hash of the stored bytes"),
        (True, "bad_signature"),
    ],
)
def test_log_verify_finds_a_flipped_byte(tmp_path, fix_id, problem):
    db = tmp_path / "events.db"
    asyncio.run(write_log(db, 5))
    assert run_edgebac("log", "verify", "--data-dir", tmp_path).returncode == 0

    tamper(db, 3, b"job-3", fix_id=fix_id)
    result = run_edgebac("log", "verify", "--data-dir", tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    problems = [line for line in result.stdout.splitlines() if "problem:" in line]
    assert len(problems) == 1, result.stdout
    assert "#3: " in problems[0]
    assert problem in problems[0]

    as_json = run_edgebac("log", "verify", "--data-dir", tmp_path, "--output", "json")
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False
    assert report["events"] == 5
    assert len(report["problems"]) == 1
    assert problem in report["problems"][0]


def test_dev_script_names_an_unknown_command():
    dev = Path(__file__).resolve().parent.parent / "dev"
    result = subprocess.run([str(dev), "foo"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == "./dev: unknown command 'foo'"
