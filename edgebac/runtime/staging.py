"""Stage a job's inputs (and a wasm module) into node-local folders for an executor.

`Stager.stage_inputs` returns one `StagedInput` per input: a host folder to mount or preopen,
read-only, at the input's target. Staged copies live in the execution's scratch folder (linked
from the node's input cache under `work/cache/` when the provider caches), so the runner's
removal of the scratch folder cleans them up. Staging shares the job's timeout: a stalled
server fails the execution, it does not hang it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebac.runtime.executor import ExecutionError, Task
from edgebac.runtime.providers import DEFAULT_MAX_INPUT_BYTES, Fetch, InputError
from edgebac.runtime.providers import http as http_provider
from edgebac.runtime.providers import inline as inline_provider
from edgebac.runtime.providers import local as local_provider
from edgebac.runtime.providers.destinations import PUBLIC, Destinations
from edgebac.runtime.providers.s3 import S3Provider, S3Settings
from edgebac.scheduler.sources import Source


@dataclass(frozen=True)
class StagedInput:
    target: str  # absolute path inside the container or guest
    host: Path  # a folder on this machine


class Stager:
    def __init__(
        self,
        cache_dir: Path,
        allowed_paths: tuple[str, ...],
        s3: S3Settings | None = None,
        max_bytes: int = DEFAULT_MAX_INPUT_BYTES,
        content: Any = None,
        urls: tuple[str, ...] = (PUBLIC,),
    ) -> None:
        self.content = content  # the node's ContentService, for ipfs:// (content id) inputs
        self.cache_dir = cache_dir
        self.allowed_paths = allowed_paths
        self.s3 = S3Provider(s3 or S3Settings.from_env())
        self.max_bytes = max_bytes
        self.urls = Destinations.parse(urls)  # where http(s) inputs may connect

    def _cap(self, task: Task) -> int:
        disk = task.spec.resources.disk_bytes
        return disk if disk > 0 else self.max_bytes

    async def stage_inputs(self, task: Task) -> list[StagedInput]:
        """Every input of the task, in spec order; ExecutionError names the one that failed."""
        try:
            async with asyncio.timeout(task.spec.timeout_s):
                staged = []
                for index, item in enumerate(task.spec.inputs):
                    dest = task.scratch / "inputs" / str(index)
                    host = await self.stage(item.source, dest, self._cap(task), item.name)
                    staged.append(StagedInput(item.target, host))
        except TimeoutError:
            raise ExecutionError(
                f"timed out after {task.spec.timeout_s:g} s staging the inputs"
            ) from None
        make_mountpoints(staged, task.scratch)
        return staged

    async def stage_file(self, source: Source, dest: Path, cap: int, what: str) -> Path:
        """A source that must be exactly one file (a wasm module); returns its path."""
        folder = await self.stage(source, dest, cap)
        files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
        if len(files) != 1:
            raise ExecutionError(f"{what} {source.url}: is not one file")
        return files[0]

    async def stage(self, source: Source, dest: Path, cap: int, name: str | None = None) -> Path:
        """Fill `dest` (created) with the source; returns the folder to hand over. `name` is
        the file an inline source becomes (the spec's `inputs[].name`)."""
        _make_folder(dest)
        fetch = Fetch(source.url, dest, self.cache_dir, cap)
        try:
            if source.kind == "file":
                return await asyncio.to_thread(local_provider.stage, fetch, self.allowed_paths)
            if source.kind == "s3":
                await asyncio.to_thread(self.s3.stage, fetch)
            elif source.kind == "http":
                await http_provider.stage(fetch, self.urls)
            elif source.kind == "inline":
                inline_provider.stage(source, fetch, name)
            elif source.kind == "ipfs" and self.content is not None:
                await self.content.stage(source.url, dest, max_bytes=cap)
            else:
                raise InputError(f"{source.kind} sources are not supported yet")
        except InputError as exc:
            raise ExecutionError(f"input {_shown(source)}: {exc.reason}") from None
        return dest


def _make_folder(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def _shown(source: Source) -> str:
    """The source as a reason shows it: inline content is not repeated."""
    return "inline data" if source.kind == "inline" else source.url


def make_mountpoints(staged: Iterable[StagedInput], scratch: Path) -> None:
    """An input whose target lies inside another's needs a folder there to be mounted on;
    create it when the outer input is a staged copy of ours (never in an operator's folder)."""
    items = list(staged)
    for outer in items:
        if not outer.host.is_relative_to(scratch):
            continue
        for inner in items:
            if inner.target.startswith(outer.target.rstrip("/") + "/"):
                rel = inner.target[len(outer.target.rstrip("/")) + 1 :]
                (outer.host / rel).mkdir(parents=True, exist_ok=True)


class HeldInputs(frozenset[str]):
    """`LocalFacts.local_inputs` for a compute node: file sources under the allowed roots that
    exist here. Bidding only ever asks `url in facts.local_inputs`, so membership is answered
    on demand (and remembered) rather than by walking every job's inputs each round."""

    roots: tuple[str, ...]
    content: Any  # the node's ContentService: content ids held in full are local too
    _known: dict[str, bool]

    def __new__(cls, roots: tuple[str, ...]) -> HeldInputs:
        held = super().__new__(cls)
        held.roots = roots
        held.content = None
        held._known = {}
        return held

    def __contains__(self, url: object) -> bool:
        if isinstance(url, str) and url.startswith("ipfs://") and self.content is not None:
            return bool(self.content.holds(url))  # not remembered: a fetch may bring it here
        if not isinstance(url, str) or not url.startswith("file://"):
            return False
        if url not in self._known:
            self._known[url] = local_provider.held(url, self.roots)
        return self._known[url]
