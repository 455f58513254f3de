"""The node process: its data directory, policy, configuration and the job loop.

This module is the node's entry point, and the only part of `edgebac.node` that the command
line imports: it stays light (nothing here loads aiohttp or an engine SDK until a node runs).
"""

from __future__ import annotations

from pathlib import Path

from edgebac.node.config import NodeConfig, from_flags, parse_host_port, parse_preset
from edgebac.node.datadir import LOG_FILE

__all__ = ["NodeConfig", "from_flags", "log_path", "parse_host_port", "parse_preset", "run"]


def run(config: NodeConfig) -> None:
    """Run a node until SIGINT or SIGTERM, then shut it down cleanly."""
    import asyncio

    from edgebac.node.process import run_node

    asyncio.run(run_node(config))


def log_path(data_dir: Path) -> Path:
    """Where a data directory keeps its event log (for offline reads of a node's log)."""
    return data_dir.expanduser() / LOG_FILE
