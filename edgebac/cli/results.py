"""`edgebac job get`: download every execution's results from wherever they are, verified.

Results in a node's content store are fetched block by block from the nodes that hold them
(every block checked against its hash; a bad holder is dropped for another). Results on S3 are
downloaded with this machine's AWS configuration and checked by recomputing their root CID,
which `ResultPublished` recorded as the digest. Either way they land in
`OUTPUT_DIR/<execution id>/` (or `<execution id>.car` with `--car`), OUTPUT_DIR being `./<job id>`
unless given. Ids come from the log, which any compromised member writes to: each becomes a
path only through `ids.child_path`, so nothing is written or deleted outside OUTPUT_DIR (a
result with an id that is no safe name is skipped, with a warning). Sizes come from the log
and the blocks, so both are bounded: a result whose recorded size passes `--max-size` is not
fetched, nor one that would not fit on the disk; the blocks fetched stop at `--max-size`, and
what the files declare may pass neither it nor the recorded size (see `sinks.exporter`).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from edgebac.cli.options import api_option, option, output_option
from edgebac.errors import EdgebacError

PROGRESS_MIN_BYTES = 1 << 20  # smaller downloads need no progress bar
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class ResultsError(EdgebacError):
    code = "results"


def _counting_store(root: Path, on_bytes: Callable[[int], None]) -> Any:
    from edgebac.sinks.blockstore import BlockStore

    class CountingStore(BlockStore):
        def put(self, cid: Any, data: Any, *, verified: bool = False) -> bool:
            on_bytes(len(data))
            return super().put(cid, data, verified=verified)

    return CountingStore(root)


class Looking:
    """Says on stderr that `job get` is still looking for a holder, instead of waiting up to
    `--find-timeout` in silence: once after NOTICE_S without a byte, then every REPEAT_S."""

    NOTICE_S = 1.0
    REPEAT_S = 10.0

    def __init__(self, what: str, wait: float, show: bool) -> None:
        self.what, self.wait, self.show = what, wait, show
        self.received = 0

    def got(self, n: int) -> None:
        self.received += n

    async def run(self) -> None:
        if not self.show:
            return
        started = time.monotonic()
        await asyncio.sleep(self.NOTICE_S)
        while self.received == 0:
            waited = time.monotonic() - started
            click.echo(
                f"waiting: looking for a node that holds {self.what} "
                f"({waited:.0f} s of at most {self.wait:g} s)",
                err=True,
            )
            await asyncio.sleep(self.REPEAT_S)


def _byte_count(ctx: click.Context, param: click.Parameter, value: Any) -> int:
    """`1000`, `512M`, `10G` (binary units) -> bytes."""
    text = str(value).strip().upper().removesuffix("B").removesuffix("I")
    number, unit = (text[:-1], text[-1]) if text[-1:] in UNITS else (text, "")
    try:
        return int(float(number) * UNITS[unit])
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a size like 1000, 512M or 10G") from None


async def _fetch(
    result: dict[str, Any],
    peers: list[str],
    store: Any,
    wait: float,
    looking: Looking,
    max_bytes: int,
    client: Any,
    job_id: str,
) -> Any:
    from edgebac.sinks.cid import CID
    from edgebac.sinks.fetch import Fetcher

    cid = CID.parse(result["digest"] or result["reference"])
    notice = asyncio.create_task(looking.run())
    try:  # holders serve this client blocks of the results of a job it may read
        async with Fetcher(store, sign=client.call_headers, job_id=job_id) as fetcher:
            await fetcher.fetch(cid, peers, wait=wait, max_bytes=max_bytes)
    finally:
        notice.cancel()
    return cid


def _from_s3(result: dict[str, Any], dest: Path, store: Any, limit: int) -> Any:
    """Download an s3:// results prefix (or `.tar.gz` archive) into `dest`; verify it against
    the recorded digest."""
    from edgebac.runtime.providers.s3 import S3Provider, S3Settings

    bucket, _, prefix = result["reference"].removeprefix("s3://").partition("/")
    client = S3Provider(S3Settings.from_env()).client()
    try:
        if prefix.endswith(".tar.gz"):
            _unpack_archive(client, bucket, prefix, dest, limit)
        else:
            _download_prefix(client, bucket, prefix, dest, result["reference"])
    except ResultsError:
        raise
    except Exception as exc:  # botocore's and tarfile's errors: one line for the user
        raise ResultsError(f"{result['reference']}: {exc}") from None
    cid = store.import_path(dest).cid
    if result["digest"] and str(cid) != result["digest"]:
        raise ResultsError(
            f"{result['reference']}: content does not match its digest {result['digest']}"
        )
    return cid


def _unpack_archive(client: Any, bucket: str, key: str, dest: Path, limit: int) -> None:
    """An archive's files into `dest`: regular files and folders only, inside `dest` (tarfile's
    `data` filter), and no more than `limit` bytes in all, whatever the archive declares."""
    import tarfile

    with tempfile.TemporaryFile(dir=dest.parent) as spool:  # beside the results, not in /tmp
        client.download_fileobj(bucket, key, spool)
        spool.seek(0)
        with tarfile.open(fileobj=spool, mode="r:gz") as archive:
            members, total = [], 0
            for member in archive:
                if not (member.isfile() or member.isdir()):
                    continue
                total += member.size
                if total > limit:
                    raise ResultsError(
                        f"s3://{bucket}/{key} unpacks to more than the limit of {limit:,} bytes"
                    )
                members.append(member)
            archive.extractall(dest, members=members, filter="data")


def _download_prefix(client: Any, bucket: str, prefix: str, dest: Path, reference: str) -> None:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix) :]
            if not relative or relative.endswith("/"):
                continue
            if any(part in ("", ".", "..") for part in relative.split("/")):
                raise ResultsError(f"{reference}: unsafe key {item['Key']!r}")
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, item["Key"], str(target))


def _write(store: Any, cid: Any, dest: Path, car: bool, limit: int) -> None:
    if car:
        target = dest.with_name(dest.name + ".car")
        if target.is_symlink():  # a link left there must not send the bytes elsewhere
            target.unlink()
        with target.open("wb") as out:
            for chunk in store.export_car(cid):
                out.write(chunk)
    else:
        from edgebac.sinks.exporter import write_tree

        try:
            write_tree(store.get_block, cid, dest, limit)
        except OSError as exc:
            raise ResultsError(f"cannot write {exc.filename or dest}: {exc.strerror}") from None


def _prepare_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".edgebac-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ResultsError(f"--output-dir {path}: cannot write there: {exc.strerror}") from None


def get_results(
    api: str,
    job_id: str,
    out_dir: Path | None,
    car: bool,
    wait: float,
    show: bool,
    max_bytes: int,
) -> tuple[str, list[dict[str, Any]]]:
    """(the full job id, what was fetched) into `out_dir`, by default `./<full job id>`."""
    from edgebac.cli.client import ApiClient

    client = ApiClient(api)
    answer = client.get(f"/api/v1/jobs/{job_id}/results")
    full_id = str(answer.get("job_id") or job_id)
    if not answer["results"]:
        raise ResultsError(f"job {full_id} has no published results (it is {answer['status']})")
    out_dir = out_dir if out_dir is not None else _safe(Path("."), full_id, "job id")
    _prepare_dir(out_dir)
    fetched, skipped = [], 0
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".blocks-") as blocks:
        for result in answer["results"]:
            try:
                dest = _safe(out_dir, result.get("execution_id"), "execution id")
            except ResultsError as exc:
                click.echo(f"warning: skipped a result: {exc}", err=True)
                skipped += 1
                continue
            got = _get_one(result, client, full_id, dest, Path(blocks), car, wait, show, max_bytes)
            fetched.append(got)
    if not fetched:
        raise ResultsError(f"job {full_id}: none of its {skipped} results has a safe id")
    return full_id, fetched


def _safe(folder: Path, name: Any, what: str) -> Path:
    """`folder / name` if `name` is a safe file name (see `ids.child_path`), else ResultsError."""
    from edgebac.scheduler.ids import UnsafeName, child_path

    try:
        return child_path(folder, name if isinstance(name, str) else repr(name))
    except UnsafeName:
        raise ResultsError(f"the {what} {name!r} is not a safe file name") from None


def _get_one(
    result: dict[str, Any],
    client: Any,
    job_id: str,
    dest: Path,
    blocks: Path,
    car: bool,
    wait: float,
    show: bool,
    max_bytes: int,
) -> dict[str, Any]:
    """One execution's results into `dest` (a safe name inside the output folder), replacing
    what an earlier `job get` left there (a link is removed, never followed)."""
    if dest.is_symlink():
        dest.unlink()
    shutil.rmtree(dest, ignore_errors=True)
    size = result["size"] or 0
    limit = _check_size(result, dest, max_bytes)
    label = f"{result['execution_id']} ({size:,} bytes)"
    with (
        click.progressbar(length=max(size, 1), label=label, file=sys.stderr, show_pos=False)
        if show and size >= PROGRESS_MIN_BYTES
        else _Silent() as bar
    ):
        looking = Looking(f"the results of {result['execution_id']}", wait, show)

        def counted(n: int) -> None:
            bar.update(n)
            looking.got(n)

        store = _counting_store(blocks / dest.name, counted)
        if result["reference"].startswith("s3://"):
            dest.mkdir(parents=True)
            cid = _from_s3(result, dest, store, limit)
            if car:
                shutil.rmtree(dest)
                _write(store, cid, dest, car, limit)
        else:
            # An https:// API is for this client's calls; blocks come from the nodes' own
            # addresses (verified block by block, whoever serves them).
            api = [client.base_url] if client.base_url.startswith("http:") else []
            peers = [*result["holders"], *api]
            fetch = _fetch(result, peers, store, wait, looking, max_bytes, client, job_id)
            cid = asyncio.run(fetch)
            _write(store, cid, dest, car, limit)
    path = dest.with_name(dest.name + ".car") if car else dest
    return {
        "execution_id": result["execution_id"],
        "node": result["node"],
        "cid": str(cid),
        "source": result["reference"],
        "path": str(path),
        "size": size,
    }


def _check_size(result: dict[str, Any], dest: Path, max_bytes: int) -> int:
    """The most the files of `result` may declare: refused at once if its recorded size passes
    `max_bytes` or does not fit twice (blocks, then files) on the disk of `dest`."""
    from edgebac.sinks.exporter import check_room

    recorded = result.get("size")
    if recorded is None:
        return max_bytes
    if recorded > max_bytes:
        raise ResultsError(
            f"the results of {result['execution_id']} are {recorded:,} bytes, more than "
            f"--max-size {max_bytes:,}"
        )
    check_room(dest.parent, 2 * recorded)
    return recorded


class _Silent:
    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        return None


@click.command("get")
@click.argument("job_id")
@option(
    "--output-dir", type=click.Path(path_type=Path), default=None, help="Default: ./<full job id>"
)
@option("--car/--no-car", default=False, help="Save each execution as a CAR file instead.")
@option(
    "--find-timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds to look for a node holding the results (config key: find-timeout).",
)
@option(
    "--max-size",
    default="10G",
    show_default=True,
    callback=_byte_count,
    metavar="BYTES",
    help="Refuse an execution's results larger than this (512M, 10G; config key: max-size).",
)
@api_option
@output_option
def job_get(
    job_id: str,
    output_dir: Path | None,
    car: bool,
    find_timeout: float,
    max_size: int,
    api: str,
    output: str,
) -> None:
    """Download and verify every execution's results of JOB_ID."""
    full_id, fetched = get_results(
        api, job_id, output_dir, car, find_timeout, output != "json", max_size
    )
    if output == "json":
        click.echo(json.dumps({"job_id": full_id, "results": fetched}))
        return
    for item in fetched:
        click.echo(f"{item['path']}  {item['cid']}  (verified, from {item['source'][:60]})")
