"""`edgebac job logs ID`: stdout and stderr of a job's executions, through the requester.

The node the client talks to streams every execution's logs as JSON lines, proxying them from
the compute nodes that run them (see edgebac/api/logs.py). In text mode a job with one
execution prints its stdout to stdout and its stderr to stderr as they are; with several,
each line is prefixed with its execution's node and attempt (`3f2a9c1b/a0 | ...`).
`--output json` prints the records as they come.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any, TextIO
from urllib.parse import quote, urlencode

import click

from edgebac.cli.options import api_option, option, output_option

READ_TIMEOUT_S = 60.0  # without --follow the node answers at once


def log_records(
    api: str, job_id: str, params: dict[str, str], follow: bool
) -> Iterator[dict[str, Any]]:
    """The records of `GET /api/v1/jobs/{job_id}/logs`, one by one as they arrive."""
    from edgebac.cli.client import ApiClient, ApiError

    path = f"/api/v1/jobs/{quote(job_id, safe='')}/logs?{urlencode(params)}"
    # With --follow a quiet job sends nothing for as long as it likes: no read timeout.
    response = ApiClient(api).open(path, timeout_s=None if follow else READ_TIMEOUT_S)
    with response:
        try:
            for line in response:
                if line.strip():
                    yield json.loads(line)
        except (OSError, ValueError) as exc:
            raise ApiError(f"the log stream from {api} broke off: {exc}") from None


def execution_label(execution_id: str) -> str:
    """What tells a job's executions apart: node short id and attempt (`3f2a9c1b/a0`).

    Execution ids are `JOB-ATTEMPT-NODE8`, so the head of one is the job id, the same for all.
    """
    job, sep, rest = execution_id.rpartition("-")
    head, sep2, attempt = job.rpartition("-")
    if not (sep and sep2 and head and attempt.isdigit()):
        return execution_id[-16:]
    return f"{rest}/a{attempt}"


class TextPrinter:
    """Records as plain text: raw for one execution, prefixed lines for several."""

    def __init__(self, prefixed: bool) -> None:
        self.prefixed = prefixed
        self.partial: dict[tuple[str, str], str] = {}  # unfinished line per execution, stream

    @staticmethod
    def _out(stream: str) -> TextIO:
        return sys.stdout if stream == "stdout" else sys.stderr

    def data(self, record: dict[str, Any]) -> None:
        out = self._out(record["stream"])
        if not self.prefixed:
            out.write(record["data"])
            out.flush()
            return
        key = (record["execution_id"], record["stream"])
        text = self.partial.pop(key, "") + record["data"]
        *lines, rest = text.split("\n")
        for line in lines:
            out.write(f"{execution_label(key[0])} | {line}\n")
        if rest:
            self.partial[key] = rest
        out.flush()

    def end(self, execution_id: str) -> None:
        for key in [k for k in self.partial if k[0] == execution_id]:
            self._out(key[1]).write(f"{execution_label(key[0])} | {self.partial.pop(key)}\n")


@click.command("logs")
@click.argument("job_id")
@option("--follow", "-f", is_flag=True, default=False, help="Keep going until the job ends.")
@option(
    "--stream",
    type=click.Choice(["stdout", "stderr", "both"]),
    default="both",
    show_default=True,
    help="Which of the executions' streams.",
)
@option("--execution", default=None, help="Only this execution of the job.")
@api_option
@output_option
def job_logs(
    job_id: str, follow: bool, stream: str, execution: str | None, api: str, output: str
) -> None:
    """Stdout and stderr of the executions of JOB_ID, from the nodes that run them."""
    from edgebac.cli.client import ApiClient

    params = {"stream": stream, "follow": "1" if follow else "0"}
    if execution is not None:
        params["execution"] = execution
    prefixed = False
    if output != "json" and execution is None:
        view = ApiClient(api).get(f"/api/v1/jobs/{quote(job_id, safe='')}?events=0")
        count = (view.get("spec") or {}).get("count", 1)
        prefixed = len(view["executions"]) > 1 or count != 1
    printer = TextPrinter(prefixed)
    failed = False
    for record in log_records(api, job_id, params, follow):
        if output == "json":
            click.echo(json.dumps(record))
        elif "data" in record:
            printer.data(record)
        elif "end" in record:
            printer.end(record["execution_id"])
        if "error" in record:
            failed = True
            if output != "json":
                message = record["error"]["message"]
                click.echo(f"error: {record['execution_id']}: {message}", err=True)
    if failed:
        sys.exit(1)
