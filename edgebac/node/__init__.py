"""The node process: its data directory, policy, configuration and the job loop.

This module is the node's entry point, and the only part of `edgebac.node` that the command
line imports: it stays light (nothing here loads aiohttp or an engine SDK until a node runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgebac.node.config import (
    NodeConfig,
    from_flags,
    parse_duration,
    parse_host_port,
    parse_preset,
)
from edgebac.node.datadir import LOG_FILE

__all__ = [
    "NodeConfig",
    "from_flags",
    "gc",
    "log_path",
    "parse_duration",
    "parse_host_port",
    "parse_preset",
    "run",
]


def run(config: NodeConfig) -> None:
    """Run a node until SIGINT or SIGTERM, then shut it down cleanly."""
    import asyncio

    from edgebac.node.process import run_node

    try:
        asyncio.run(run_node(config))
    finally:
        _quiet_closed_streams()


def _quiet_closed_streams() -> None:
    """Point stdout and stderr at /dev/null if they cannot be flushed (a closed pipe), so the
    interpreter's own flush at exit neither fails nor turns a clean stop into exit code 120."""
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, stream.fileno())
            except (OSError, ValueError):
                pass
            finally:
                os.close(devnull)


def gc(
    data_dir: Path, retain: str | None, dry_run: bool, retain_log: str | None = None
) -> dict[str, Any]:
    """Sweep a stopped node's results and content older than `retain` (see node/retain.py);
    with `retain_log`, say what pruning its log would remove (see node/pruning.py)."""
    done: dict[str, Any] = {"dry_run": dry_run}
    if retain is not None:
        from edgebac.node.retain import collect_offline

        done |= collect_offline(data_dir.expanduser(), parse_duration(retain), dry_run)
    if retain_log is not None:
        from edgebac.node.pruning import preview_offline

        retain_log_s = parse_duration(retain_log, "--retain-log")
        done["log"] = preview_offline(data_dir.expanduser() / LOG_FILE, retain_log_s)
    return done


def log_path(data_dir: Path) -> Path:
    """Where a data directory keeps its event log (for offline reads of a node's log)."""
    return data_dir.expanduser() / LOG_FILE
