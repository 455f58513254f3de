"""The real `ipfs-car` CLI for compatibility tests, installed from npm once and cached.

`ipfs_car()` returns the path of its executable, installing the pinned version with npm into
`$EDGEBAC_TEST_CACHE/ipfs-car` (default `~/.cache/edgebac-test/ipfs-car`) on first use. It
FAILS the test (never skips) when node/npm are missing or the install does not work: CI must
provide them (Debian packages `nodejs` and `npm`).
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

IPFS_CAR_VERSION = "3.1.0"


def _cache_dir() -> Path:
    base = os.environ.get("EDGEBAC_TEST_CACHE") or Path.home() / ".cache" / "edgebac-test"
    return Path(base) / "ipfs-car"


def _installed(prefix: Path) -> bool:
    manifest = prefix / "node_modules" / "ipfs-car" / "package.json"
    try:
        return json.loads(manifest.read_text())["version"] == IPFS_CAR_VERSION
    except (OSError, ValueError, KeyError):
        return False


@functools.cache
def ipfs_car() -> Path:
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (apt-get install nodejs npm)", pytrace=False)
    prefix = _cache_dir()
    prefix.mkdir(parents=True, exist_ok=True)
    with open(prefix / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time across test processes
        if not _installed(prefix):
            cmd = ["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund"]
            done = subprocess.run(
                [*cmd, f"ipfs-car@{IPFS_CAR_VERSION}"],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if done.returncode != 0 or not _installed(prefix):
                pytest.fail(
                    f"npm install ipfs-car failed:\n{done.stdout}{done.stderr}", pytrace=False
                )
    return prefix / "node_modules" / ".bin" / "ipfs-car"


def run(*args: str | os.PathLike[str], timeout: float = 120) -> str:
    """Run ipfs-car with `args`; its stdout, or a test failure with its stderr."""
    done = subprocess.run(
        [str(ipfs_car()), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"ipfs-car {' '.join(map(str, args))} failed:\n{done.stderr}", pytrace=False)
    return done.stdout


def pack(path: os.PathLike[str], car: os.PathLike[str], *flags: str) -> str:
    """`ipfs-car pack PATH --output CAR [flags]`; the root CID it prints."""
    return run("pack", path, "--output", car, *flags).strip()
