"""`edgebac log`: read a data directory's event log offline (while its node runs, too)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    """Re-check every signature and chain, and list the events whose authors had no right to
    write them (evidence, like forks); exit code 1 if a signature or chain is wrong."""
    from edgebac.eventlog import offline
    from edgebac.eventlog.horizon import HorizonError
    from edgebac.eventlog.verify import check_rows
    from edgebac.textdata import when

    path = _log_path(data_dir)
    conn = offline.open_readonly(path)
    horizon, refused = None, []
    try:
        damage = offline.integrity_problems(conn)
        try:
            horizon = offline.stored_horizon(conn)
        except HorizonError as exc:
            refused = [f"horizon: {exc} (gaps are checked as if nothing was pruned)"]
        report = check_rows(offline.stored_rows(conn), horizon)
        forks = offline.fork_count(conn)
        evidence = _evidence(conn)
    finally:
        conn.close()
    problems = [f"sqlite: {line}" for line in damage] + refused + report.problems
    pruned = {"events": horizon.events, "jobs": horizon.jobs} if horizon else None
    if output == "json":
        shown = {author.hex(): reasons for author, reasons in sorted(evidence.items())}
        summary = {"path": str(path), "events": report.events, "authors": report.authors}
        verdict = {"forks": forks, "evidence": shown, "problems": problems, "ok": not problems}
        click.echo(json.dumps(summary | {"pruned": pruned} | verdict))
    else:
        click.echo(f"{path}: {report.events} events from {report.authors} authors")
        if horizon is not None:
            click.echo(
                f"  pruned: {horizon.events} events of {horizon.jobs} jobs ended before "
                f"{when(horizon.cut.pack(), int(time.time() * 1000))}; each chain checked "
                "from its newest pruned event"
            )
        for problem in problems:
            click.echo(f"  problem: {problem}")
        if forks:
            click.echo(f"  {forks} fork(s) recorded as evidence against their authors")
        for author, reasons in sorted(evidence.items()):
            for reason, count in sorted(reasons.items()):
                click.echo(f"  evidence: {author.hex()[:12]}: {count} x {reason}")
        click.echo(f"{len(problems)} problem(s)" if problems else "ok")
    if problems:
        sys.exit(1)


def _evidence(conn: Any) -> dict[bytes, dict[str, int]]:
    """Events that counted for nothing, folded from the log as a node folds it (events that do
    not even decode are `check_rows`' problems, not evidence)."""
    from edgebac.eventlog import offline
    from edgebac.eventlog.encoding import EncodingError, decode
    from edgebac.scheduler.evidence import evidence_of

    def decoded(job_id: str | None) -> Iterator[Any]:
        for _, raw in offline.stored_by_pos(conn, None, job_id):
            try:
                yield decode(raw)
            except EncodingError:
                continue

    return evidence_of(decoded(None), lambda job_id: list(decoded(job_id)))


@log.command("show")
@data_dir_option
@output_option
@option("--type", "type_", default=None, help="Only events of this type.")
@option("--job", default=None, help="Only events about this job id.")
@option("--limit", type=click.IntRange(min=1), default=None, help="At most this many (newest).")
def log_show(
    data_dir: Path, output: str, type_: str | None, job: str | None, limit: int | None
) -> None:
    """Print events in the order this node stored them, with local times and their age (JSON:
    long values, such as an inline module, as their size and digest)."""
    from edgebac.cli.render import dumps
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
    now_ms = time.time_ns() // 1_000_000
    for pos, raw in rows:
        event = decode(raw)
        line = dumps(event_json(event, pos)) if output == "json" else event_line(event, now_ms, pos)
        click.echo(line)


@log.command("export")
@data_dir_option
@option("--out", type=click.Path(path_type=Path), required=True, help="Archive file (SQLite).")
@option(
    "--retain-log",
    default=None,
    help="Only what a node started with this --retain-log would prune now (default: all).",
)
@output_option
def log_export(data_dir: Path, out: Path, retain_log: str | None, output: str) -> None:
    """Write events to an archive file before pruning removes them: every event, or with
    --retain-log those of the jobs a prune would take now. The archive is SQLite, one row an
    event as its author signed it; exporting into an existing archive adds to it."""
    from edgebac.eventlog import offline
    from edgebac.eventlog.clock import Hlc
    from edgebac.eventlog.prune import export, preview
    from edgebac.node import parse_duration

    jobs: list[str] | None = None
    conn = offline.open_readonly(_log_path(data_dir))
    try:
        if retain_log is not None:
            retain_s = parse_duration(retain_log, "--retain-log")
            jobs, _, _ = preview(conn, Hlc(int((time.time() - retain_s) * 1000)))
        written = export(conn, out, jobs)
    finally:
        conn.close()
    if output == "json":
        click.echo(json.dumps({"out": str(out), "events": written, "jobs": jobs and len(jobs)}))
    else:
        what = f" of {len(jobs)} jobs" if jobs is not None else ""
        click.echo(f"wrote {written} events{what} to {out}")
