"""The wasm executor: WASI command modules run by wasmtime, each in a thread of its own.

Every run gets its own wasmtime Engine (microseconds: the compiled module is loaded from the
cache, see wasm_cache), so interrupting one run never touches another: epoch interruption is
per engine. The deadline is the next epoch tick; the runner's timeout or a cancel ticks it
(`Guest.interrupt`), and a backstop timer ticks it shortly after the job's timeout in case
nobody else does. A running guest holds its thread in native code, so it must always have a
deadline. Inputs are preopened read-only at their targets, output volumes writable.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path

from wasmtime import (
    Engine,
    ExitTrap,
    Linker,
    Memory,
    Store,
    Trap,
    TrapCode,
    WasiConfig,
    WasmtimeError,
)

from edgebac.runtime.executor import STREAM_CAP_BYTES, TRUNCATED_MARK, ExecutionError, Task
from edgebac.runtime.staging import StagedInput, Stager
from edgebac.runtime.threads import in_thread
from edgebac.runtime.wasm_cache import ModuleCache, engine_config
from edgebac.scheduler.quantities import format_size
from edgebac.scheduler.spec import WasmEngine, engine_default

MODULE_CAP_BYTES = 256 << 20  # from any source: an inline one, a URL, blocks by content id
BACKSTOP_S = 2.0  # past the job's timeout, the guest interrupts itself
OOM_MARGIN = 4 << 20  # a failed run this close to its memory limit ran out of memory


@dataclass(frozen=True)
class Plan:
    name: str  # argv[0]
    artifact: Path
    inputs: tuple[StagedInput, ...]
    outputs: tuple[tuple[Path, str], ...]  # (host folder, guest path)


class WasmExecutor:
    engine = "wasm"

    def __init__(self, stager: Stager, cache_dir: Path, fuel: int | None = None) -> None:
        self.stager = stager
        self.fuel = fuel  # the node's default budget; a job's `engine.fuel` overrides it
        # Fuel metering is compiled into the code: one cache of artifacts for each.
        self.caches = {metered: ModuleCache(cache_dir, metered) for metered in (False, True)}
        self._plans: dict[str, Plan] = {}

    def fuel_for(self, task: Task) -> int | None:
        engine = task.spec.engine
        assert isinstance(engine, WasmEngine)
        return engine.fuel if engine.fuel is not None else self.fuel

    async def prepare(self, task: Task) -> None:
        engine = task.spec.engine
        assert isinstance(engine, WasmEngine)
        name, artifact = await self._module(engine, task)
        inputs = await self.stager.stage_inputs(task)
        outputs = []
        for output in task.spec.outputs:
            folder = task.results / output.name
            folder.mkdir(parents=True, exist_ok=True)
            outputs.append((folder, output.path))
        self._plans[task.execution_id] = Plan(name, artifact, tuple(inputs), tuple(outputs))

    async def _module(self, engine: WasmEngine, task: Task) -> tuple[str, Path]:
        """(argv[0], compiled artifact). An inline module never touches the scratch folder:
        its bytes are at hand, and the artifact cache is keyed by content anyway."""
        source = engine.module
        cache = self.caches[self.fuel_for(task) is not None]
        if source.kind == "inline":
            data = source.inline_bytes()
            if len(data) > MODULE_CAP_BYTES:
                raise ExecutionError(f"module: {len(data)} bytes is too big", permanent=True)
            return "module", await asyncio.to_thread(cache.artifact, data)
        wasm = await self.stager.stage_file(
            source, task.scratch / "module", MODULE_CAP_BYTES, "module"
        )
        # A module by content id (what `wasm run FILE` uploads past a small size) is named
        # like an inline one: the CLI's choice between the two must not change what runs.
        name = "module" if source.kind == "ipfs" else wasm.stem
        return name, await asyncio.to_thread(_artifact_of_file, cache, wasm)

    async def run(self, task: Task) -> int:
        guest = Guest(self, self._plans[task.execution_id], task)
        future = in_thread(guest.run, name=f"wasm-{task.execution_id}")
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            guest.interrupt()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(future, BACKSTOP_S)
            raise

    async def cleanup(self, task: Task) -> None:
        self._plans.pop(task.execution_id, None)


class Guest:
    """One run of a module; `run` blocks (call it in a thread), `interrupt` from anywhere."""

    def __init__(self, executor: WasmExecutor, plan: Plan, task: Task) -> None:
        self.executor = executor
        self.plan = plan
        self.task = task
        self.fuel = executor.fuel_for(task)
        self.engine = Engine(engine_config(self.fuel is not None))
        self.interrupted = threading.Event()

    def interrupt(self) -> None:
        self.interrupted.set()
        self.engine.increment_epoch()

    def run(self) -> int:
        timer = threading.Timer(self.task.spec.timeout_s + BACKSTOP_S, self.interrupt)
        timer.daemon = True
        timer.start()
        try:
            return self._run()
        finally:
            timer.cancel()
            for path in (self.task.stdout, self.task.stderr):
                cap_file(path)

    def _run(self) -> int:
        store = self._store()
        linker = Linker(self.engine)
        linker.define_wasi()
        module = self.executor.caches[self.fuel is not None].load(self.engine, self.plan.artifact)
        try:
            instance = linker.instantiate(store, module)
        except (WasmtimeError, Trap) as exc:
            raise ExecutionError(f"cannot instantiate the module: {_first_line(exc)}") from None
        engine = self.task.spec.engine
        assert isinstance(engine, WasmEngine)
        start = instance.exports(store).get(engine.entrypoint)
        if start is None:
            reason = f"the module exports no {engine.entrypoint!r}"
            raise ExecutionError(reason, permanent=True)
        memory = instance.exports(store).get("memory")
        try:
            start(store)
            return 0
        except ExitTrap as exc:
            code = exc.code
            self._check_memory(store, memory, f"exited {code}")
            return code
        except Trap as exc:
            raise self._trap_error(store, memory, exc) from None

    def _store(self) -> Store:
        store = Store(self.engine)
        engine = self.task.spec.engine
        assert isinstance(engine, WasmEngine)
        wasi = WasiConfig()
        wasi.argv = [self.plan.name, *engine.args]
        wasi.env = list({**self.task.spec.env, **engine.env}.items())
        wasi.stdout_file = str(self.task.stdout)
        wasi.stderr_file = str(self.task.stderr)
        for item in self.plan.inputs:
            wasi.preopen_dir(str(item.host), item.target, False)
        for host, guest_path in self.plan.outputs:
            wasi.preopen_dir(str(host), guest_path, True)
        store.set_wasi(wasi)
        store.set_limits(memory_size=self._memory_limit())
        if self.fuel is not None:
            store.set_fuel(self.fuel)
        store.set_epoch_deadline(1)  # trap at the next tick: only `interrupt` ticks
        return store

    def _trap_error(self, store: Store, memory: object, trap: Trap) -> ExecutionError:
        if trap.trap_code == TrapCode.INTERRUPT:
            timeout = self.task.spec.timeout_s
            return ExecutionError(f"timed out after {timeout:g} s")
        if trap.trap_code == TrapCode.OUT_OF_FUEL:
            # Fuel counts instructions: the job's own budget runs out on every node alike; a
            # node's default budget may be larger elsewhere.
            engine = self.task.spec.engine
            from_spec = isinstance(engine, WasmEngine) and engine.fuel is not None
            return ExecutionError(f"out of fuel after {self.fuel} units", permanent=from_spec)
        self._check_memory(store, memory, "trapped")
        return ExecutionError(f"wasm trap: {_first_line(trap)}")

    def _memory_limit(self) -> int:
        """The job's memory, or the default a job that names none gets (never unbounded)."""
        return self.task.spec.resources.memory_bytes or engine_default("wasm", "memory_bytes")

    def _check_memory(self, store: Store, memory: object, how: str) -> None:
        """memory.grow fails quietly at the limit (the guest's malloc returns NULL); a run
        that ends badly that close to its limit ran out of memory: say so."""
        limit = self._memory_limit()
        if not isinstance(memory, Memory) or how == "exited 0":
            return
        used = memory.data_len(store)
        if used + OOM_MARGIN >= limit:
            raise ExecutionError(
                f"out of memory: the module {how} using {format_size(used)} of its "
                f"{format_size(limit)} memory limit"
            )


def _artifact_of_file(cache: ModuleCache, wasm: Path) -> Path:
    return cache.artifact(wasm.read_bytes())


def cap_file(path: Path, cap: int = STREAM_CAP_BYTES) -> None:
    """WASI writes stdout/stderr straight to files; cut them (marked) past the cap."""
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size > cap:
            with path.open("r+b") as stream:
                stream.truncate(cap)
                stream.seek(cap)
                stream.write(TRUNCATED_MARK)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
