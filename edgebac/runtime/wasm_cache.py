"""Compiled wasm modules cached by content hash, so a repeat job skips compilation.

Compiling a module with Cranelift takes a fraction of a second; loading the serialized
artifact back (`Module.deserialize_file`, an mmap) takes well under a millisecond. Artifacts
are keyed by the module's sha256, the wasmtime version and the engine settings that change
the code (fuel metering). They are written by this node only, into its own data dir:
wasmtime trusts what it deserializes, so the folder must never take files from elsewhere.
Each use refreshes an artifact's mtime: with `--retain`, the node's sweep removes those not
used within the retention: a job preparing after that compiles it again (one whose artifact
went between its preparation and its run, a gap longer than the retention, fails retryably).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from importlib.metadata import version
from pathlib import Path

from wasmtime import Config, Engine, Module, WasmtimeError

from edgebac.runtime.executor import ExecutionError

WASMTIME_VERSION = version("wasmtime")


def engine_config(fuel: bool) -> Config:
    """The one engine configuration: artifacts only load into an engine configured alike."""
    config = Config()
    config.epoch_interruption = True  # every run has a deadline, see wasm_executor
    config.consume_fuel = fuel
    return config


class ModuleCache:
    def __init__(self, folder: Path, fuel: bool = False) -> None:
        self.folder = folder
        self.fuel = fuel

    def artifact(self, data: bytes) -> Path:
        """The compiled artifact of a module, compiled now if it is not cached yet."""
        key = hashlib.sha256(data)
        key.update(f"\0wasmtime {WASMTIME_VERSION}\0fuel {self.fuel}".encode())
        path = self.folder / f"{key.hexdigest()}.cwasm"
        if _used(path):
            return path
        try:
            module = Module(Engine(engine_config(self.fuel)), data)
        except WasmtimeError as exc:
            reason = f"not a valid wasm module: {_first_line(exc)}"
            raise ExecutionError(reason, permanent=True) from None
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.folder, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(module.serialize())
            os.replace(temp, path)
        finally:
            Path(temp).unlink(missing_ok=True)
        return path

    def load(self, engine: Engine, artifact: Path) -> Module:
        _used(artifact)
        try:
            return Module.deserialize_file(engine, str(artifact))
        except WasmtimeError:  # damaged or foreign: drop it; the next job compiles afresh
            artifact.unlink(missing_ok=True)
            raise ExecutionError("the cached compiled module was unusable; retry") from None


def _used(path: Path) -> bool:
    """Mark a cached artifact used now (its mtime: retention sweeps the folder of artifacts
    unused within it, node/retain.py); False if it is not there."""
    try:
        os.utime(path)
    except OSError:
        return False
    return path.is_file()


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
