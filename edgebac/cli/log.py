"""`edgebac log`: read a data directory's event log offline (while its node runs, too)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from edgebac.cli.options import data_dir_option, option, output_option


@click.group()
def log() -> None:
    """Inspect a data directory's event log (works while its node runs)."""


def _log_path(data_dir: Path) -> Path:
    from edgebac.node import log_path

    return log_path(data_dir)


@log.command("verify")
@data_dir_option
@output_option
def log_verify(data_dir: Path, output: str) -> None:
    """Re-check every signature and chain; exit code 1 if anything is wrong."""
    from edgebac.eventlog import offline
    from edgebac.eventlog.verify import check_rows

    path = _log_path(data_dir)
    conn = offline.open_readonly(path)
    try:
        damage = offline.integrity_problems(conn)
        report = check_rows(offline.stored_rows(conn))
        forks = offline.fork_count(conn)
    finally:
        conn.close()
    problems = [f"sqlite: {line}" for line in damage] + report.problems
    if output == "json":
        click.echo(
            json.dumps(
                {
                    "path": str(path),
                    "events": report.events,
                    "authors": report.authors,
                    "forks": forks,
                    "problems": problems,
                    "ok": not problems,
                }
            )
        )
    else:
        click.echo(f"{path}: {report.events} events from {report.authors} authors")
        for problem in problems:
            click.echo(f"  problem: {problem}")
        if forks:
            click.echo(f"  {forks} fork(s) recorded as evidence against their authors")
        click.echo(f"{len(problems)} problem(s)" if problems else "ok")
    if problems:
        sys.exit(1)


@log.command("show")
@data_dir_option
@output_option
@option("--type", "type_", default=None, help="Only events of this type.")
@option("--job", default=None, help="Only events about this job id.")
@option("--limit", type=click.IntRange(min=1), default=None, help="At most this many (newest).")
def log_show(
    data_dir: Path, output: str, type_: str | None, job: str | None, limit: int | None
) -> None:
    """Print events in the order this node stored them."""
    from edgebac.eventlog import offline
    from edgebac.eventlog.encoding import decode
    from edgebac.eventlog.view import event_json, event_line

    conn = offline.open_readonly(_log_path(data_dir))
    try:
        rows = list(offline.stored_by_pos(conn, type_, job))
    finally:
        conn.close()
    if limit is not None:
        rows = rows[-limit:]
    for pos, raw in rows:
        event = decode(raw)
        line = json.dumps(event_json(event, pos)) if output == "json" else event_line(event, pos)
        click.echo(line)
