"""`edgebac job ...`: submit a spec, follow it, describe, list and cancel jobs."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from edgebac.cli.options import api_option, option, output_option

TERMINAL = ("completed", "failed", "canceled")


@click.group()
def job() -> None:
    """Run and inspect jobs through a requester's API."""


def _client(api: str) -> Any:
    from edgebac.cli.client import ApiClient

    return ApiClient(api)


def read_spec_text(path: Path) -> str:
    from edgebac.errors import BadRequest

    try:
        return path.read_text() if str(path) != "-" else sys.stdin.read()
    except OSError as exc:
        raise BadRequest(f"{path}: {exc.strerror}") from None


def load_spec(path: Path, text: str | None = None) -> dict[str, Any]:
    """A spec file as a dict; shape errors are for the requester to name, field by field."""
    from edgebac.errors import BadRequest
    from edgebac.textdata import load_json_or_yaml

    try:
        return load_json_or_yaml(read_spec_text(path) if text is None else text)
    except ValueError as exc:
        raise BadRequest(f"{path}: {exc}") from None


def progress_line(view: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {state}" for state, n in view["summary"]["executions"].items())
    line = f"{view['id']}: {view['status']}" + (f" ({counts})" if counts else "")
    if view.get("pending_reason") and view["status"] in ("pending", "bidding"):
        line += f"; waiting: {view['pending_reason']}"
    return line


SETTLE_S = 10.0  # after the job ended, how long to wait for its executions' last events


def follow(api: str, job_id: str, output: str, quiet: bool = False) -> dict[str, Any]:
    """Poll the job until it ends, printing a line whenever its state changes; then until its
    view is settled (every execution's last event here), for at most SETTLE_S."""
    from edgebac.cli.render import settled

    client = _client(api)
    last, delay, ended_at = "", 0.05, None
    while True:
        view = client.get(f"/api/v1/jobs/{job_id}?events=0")
        line = progress_line(view)
        if line != last and output != "json" and not quiet:
            click.echo(line, err=True)
            last = line
        if view["status"] in TERMINAL:
            ended_at = ended_at or time.monotonic()
            if settled(view) or time.monotonic() - ended_at >= SETTLE_S:
                return view
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def submit_and_maybe_wait(api: str, spec: dict[str, Any], wait: bool, output: str) -> None:
    """Sign and submit; print the job id at once; with --wait, follow it and exit 0 only if
    it completed."""
    from edgebac.cli.render import dumps, execution_line
    from edgebac.cli.signing import signed_submission

    client = _client(api)
    job_id = client.post("/api/v1/jobs", signed_submission(client, client.client_key, spec))[
        "job_id"
    ]
    if not wait:
        click.echo(json.dumps({"job_id": job_id}) if output == "json" else job_id)
        return
    if output != "json":
        click.echo(job_id)
    view = follow(api, job_id, output)
    if output == "json":
        click.echo(dumps(view))
    else:
        for execution in view["executions"].values():
            click.echo("  " + execution_line(execution))
        if view["status"] != "completed":
            click.echo(f"job {view['status']}: {view.get('reason') or ''}", err=True)
    sys.exit(0 if view["status"] == "completed" else 1)


@job.command("run")
@click.argument("spec_file", type=click.Path(path_type=Path))
@option("--concurrency", type=click.IntRange(min=1), default=None, help="Nodes to run it on.")
@option("--wait/--no-wait", default=False, help="Follow the job until it ends.")
@click.option(
    "-V", "--template-vars", multiple=True, metavar="NAME=VALUE", help="Render {{.NAME}}."
)
@click.option("-E", "--template-envs", default=None, metavar="REGEX", help="Env vars to render.")
@click.option("--no-template", is_flag=True, default=False, help="Send {{...}} as written.")
@api_option
@output_option
def job_run(
    spec_file: Path,
    concurrency: int | None,
    wait: bool,
    template_vars: tuple[str, ...],
    template_envs: str | None,
    no_template: bool,
    api: str,
    output: str,
) -> None:
    """Submit the job in SPEC_FILE (YAML or JSON; - for stdin), signed with this client's key.
    A Bacalhau v1 job spec (its Type/Tasks keys, in any case) is translated first, after its
    template is rendered as Bacalhau's CLI does (-V, -E; any spec with -V or -E)."""
    from edgebac.scheduler.bacalhau import looks_like_bacalhau, translate

    text = read_spec_text(spec_file)
    spec = load_spec(spec_file, text)
    bacalhau = looks_like_bacalhau(spec)
    if not no_template and (bacalhau or template_vars or template_envs):
        from edgebac.cli.templating import render, template_values

        values = template_values(template_vars, template_envs, os.environ)
        spec = load_spec(spec_file, render(text, values, str(spec_file)))
    if bacalhau:
        translated = translate(spec)  # SpecError names each Bacalhau field at fault
        for warning in translated.warnings:
            click.echo(f"warning: {warning}", err=True)
        spec = translated.spec
    if concurrency is not None and isinstance(spec, dict):
        spec["count"] = concurrency
    submit_and_maybe_wait(api, spec, wait, output)


@job.command("describe")
@click.argument("job_id")
@api_option
@output_option
def job_describe(job_id: str, api: str, output: str) -> None:
    """Spec, state, executions, history, and why a pending job waits."""
    from edgebac.cli.render import dumps

    view = _client(api).get(f"/api/v1/jobs/{job_id}")
    if output == "json":
        click.echo(dumps(view))
        return
    for line in describe_lines(view, int(time.time() * 1000)):
        click.echo(line)


def describe_lines(view: dict[str, Any], now_ms: int) -> list[str]:
    """`job describe` for people: times with their age, the spec indented, events in order."""
    from edgebac.cli import render

    lines = [progress_line(view)]
    if view.get("reason"):
        lines.append(f"reason: {view['reason']}")
    lines.append(f"created: {render.when(view.get('created_hlc'), now_ms)}")
    lines.append(f"client: {client_line(view)}")
    if view.get("ended_hlc") is not None:
        lines.append(f"ended: {render.when(view['ended_hlc'], now_ms)}")
    lines += ["spec:", *render.pretty_spec(view["spec"])]
    executions = list(view["executions"].values())
    lines.append(f"executions: {len(executions)}")
    for execution in executions:
        lines.append("  " + render.execution_line(execution))
        lines += ["    " + line for line in render.execution_details(execution, now_ms)]
    events = render.sorted_events(view.get("events", []))
    lines.append(f"events: {len(events)}")
    for event in events:
        lines.append(
            f"  {render.when(event['hlc'], now_ms)} {event['author'][:12]}#{event['seq']}"
            f" {event['type']}"
        )
    return lines


def client_line(view: dict[str, Any]) -> str:
    """Who asked: the client key that signed, or whom its requester vouches for."""
    if view.get("client"):
        return str(view["client"])
    if view.get("vouched"):
        return f"{view['vouched']} (vouched for by requester {str(view.get('requester'))[:12]})"
    return "unknown"


@job.command("list")
@option(
    "--limit",
    type=click.IntRange(min=1, max=1000),
    default=50,
    show_default=True,
    help="Jobs to show at most.",
)
@api_option
@output_option
def job_list(limit: int, api: str, output: str) -> None:
    """Jobs known to the node, newest first."""
    page = _client(api).get(f"/api/v1/jobs?limit={limit}")
    if output == "json":
        from edgebac.cli.render import dumps

        click.echo(dumps(page))
        return
    click.echo(f"{'JOB':<20}{'STATUS':<11}{'ENGINE':<8}EXECUTIONS")
    for row in page["jobs"]:
        counts = ", ".join(f"{n} {s}" for s, n in row["executions"].items()) or "-"
        click.echo(f"{row['id']:<20}{row['status']:<11}{row['engine'] or '-':<8}{counts}")


@job.command("cancel")
@click.argument("job_id")
@option("--reason", default="canceled by the client", show_default=True, help="Said in the log.")
@api_option
@output_option
def job_cancel(job_id: str, reason: str, api: str, output: str) -> None:
    """Cancel a job (signed with this client's key): running executions are stopped."""
    from edgebac.cli.signing import signed_cancel

    client = _client(api)
    full_id = client.get(f"/api/v1/jobs/{job_id}?events=0")["id"]  # what the signature names
    body = signed_cancel(client, client.client_key, full_id, reason)
    result = client.post(f"/api/v1/jobs/{full_id}/cancel", body)
    if output == "json":
        click.echo(json.dumps(result))
    else:
        click.echo(
            f"{full_id}: {'canceled' if result['canceled'] else 'already ' + result['status']}"
        )
