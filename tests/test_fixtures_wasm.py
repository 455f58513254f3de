"""The WASI fixtures in fixtures/wasm/, run with the real `wasmtime` package.

Doubles as documentation of the wasmtime Python API (version 50) a WASM executor needs:

- WASI: `WasiConfig` with `.argv = [...]` (argv[0] included), `.env = [(k, v), ...]`,
  `.stdout_file = path` / `.stderr_file = path` (created or truncated),
  `.preopen_dir(host, guest, fs_mutable)`; `fs_mutable=False` makes a read-only directory
  (writes fail in the guest with EPERM, "Operation not permitted"). Paths outside the preopens,
  `..` escapes included, are refused inside the guest. `store.set_wasi(cfg)`, then
  `linker.define_wasi()` and call the `_start` export.
- Exit codes: `main` returning 0 makes `_start` return normally (None). Any `exit(n)`/
  `proc_exit(n)` raises `wasmtime.ExitTrap` with `.code == n` -- also for n == 0 when the guest
  calls `exit(0)` explicitly. `ExitTrap` subclasses `WasmtimeError`, not `Trap`.
- Traps raise `wasmtime.Trap` with `.trap_code` (a `TrapCode`) and `.message`.
- Timeouts: `Config.epoch_interruption = True`, `store.set_epoch_deadline(ticks)`, and any
  thread calling `engine.increment_epoch()`; the guest then traps with `TrapCode.INTERRUPT`.
  Fuel: `Config.consume_fuel = True`, `store.set_fuel(n)`, `store.get_fuel()`; exhaustion
  traps with `TrapCode.OUT_OF_FUEL`.
- Memory: `store.set_limits(memory_size=bytes)` makes `memory.grow` fail (returns -1) past the
  limit, it does not trap: the guest's malloc returns NULL and the guest decides (alloc.wasm
  exits 1).
- While a guest runs, Python signal handlers do not run (the thread is in native code): SIGTERM
  to a Python process stuck in `loop.wasm` without an epoch deadline or fuel does nothing. An
  executor must always set a deadline.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest
import wasmtime
from wasmtime import (
    Config,
    Engine,
    ExitTrap,
    Linker,
    Module,
    Store,
    Trap,
    TrapCode,
    WasiConfig,
    WasmtimeError,
)

WASM_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "wasm"
MODULES = ["alloc", "env", "exit3", "hello", "io", "loop"]
# Enough fuel for about ten seconds of loop.wasm: the backstop if an epoch test misbehaves
# (a guest spinning in native code cannot be stopped by pytest-timeout's signal).
BACKSTOP_FUEL = 30_000_000_000


@dataclass
class Run:
    exit_code: int | None  # None when the guest trapped
    trap: Trap | None
    stdout: str
    stderr: str
    elapsed: float


def run_wasi(
    tmp_path: Path,
    name: str,
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    preopens: Sequence[tuple[Path, str, bool]] = (),
    memory_limit: int | None = None,
    epoch_after: float | None = None,
    fuel: int | None = None,
) -> Run:
    """Run fixtures/wasm/NAME.wasm as a WASI command, the way an executor would."""
    config = Config()
    config.epoch_interruption = epoch_after is not None
    config.consume_fuel = fuel is not None
    engine = Engine(config)
    module = Module.from_file(engine, str(WASM_DIR / f"{name}.wasm"))
    store = Store(engine)

    wasi = WasiConfig()
    wasi.argv = argv
    wasi.env = list((env or {}).items())
    stdout, stderr = tmp_path / f"{name}.stdout", tmp_path / f"{name}.stderr"
    wasi.stdout_file = str(stdout)
    wasi.stderr_file = str(stderr)
    for host, guest, writable in preopens:
        wasi.preopen_dir(str(host), guest, writable)
    store.set_wasi(wasi)
    if memory_limit is not None:
        store.set_limits(memory_size=memory_limit)
    if fuel is not None:
        store.set_fuel(fuel)
    timer = None
    if epoch_after is not None:
        store.set_epoch_deadline(1)  # trap at the next tick
        timer = threading.Timer(epoch_after, engine.increment_epoch)
        timer.start()

    linker = Linker(engine)
    linker.define_wasi()
    instance = linker.instantiate(store, module)
    start = instance.exports(store)["_start"]
    exit_code, trap = None, None
    began = time.monotonic()
    try:
        start(store)
        exit_code = 0
    except ExitTrap as e:
        exit_code = e.code
    except Trap as e:
        trap = e
    finally:
        if timer is not None:
            timer.cancel()
    elapsed = time.monotonic() - began
    return Run(exit_code, trap, stdout.read_text(), stderr.read_text(), elapsed)


def fnv1a32(data: bytes) -> str:
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return f"{h:08x}"


@pytest.fixture
def input_tree(tmp_path):
    root = tmp_path / "input"
    (root / "logs" / "2023").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "logs" / "2023" / "04.log").write_bytes(b"line 1\nline 2\n" * 1000)
    (root / "logs" / "empty").write_bytes(b"")
    (root / "z.bin").write_bytes(bytes(range(256)) * 300)  # larger than one 64 KiB read
    return root


def test_installed_wasmtime_version():
    # The facts in this file's docstring were checked against wasmtime 50.
    assert int(version("wasmtime").split(".")[0]) >= 50


def test_hello_prints_argv_and_env(tmp_path):
    run = run_wasi(
        tmp_path, "hello", ["hello", "one", "two words"], env={"EDGEBAC_GREETING": "ahoy"}
    )
    assert run.exit_code == 0
    assert run.trap is None
    assert run.stdout == (
        "hello from wasm\n"
        "argc=3\n"
        "argv[0]=hello\n"
        "argv[1]=one\n"
        "argv[2]=two words\n"
        "EDGEBAC_GREETING=ahoy\n"
    )
    assert run.stderr == ""


def test_hello_sees_no_host_env(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEBAC_GREETING", "from the host")
    run = run_wasi(tmp_path, "hello", ["hello"])
    assert run.stdout.endswith("EDGEBAC_GREETING=(unset)\n")


def test_io_reads_input_tree_and_writes_outputs(tmp_path, input_tree):
    out = tmp_path / "output"
    out.mkdir()
    run = run_wasi(
        tmp_path,
        "io",
        ["io", "/inputs", "/outputs"],
        preopens=[(input_tree, "/inputs", False), (out, "/outputs", True)],
    )
    files = sorted(p for p in input_tree.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    assert run.exit_code == 0, run.stderr
    assert run.stdout == f"io: {len(files)} files, {total} bytes\n"
    assert run.stderr == "io: done\n"
    expected = "".join(
        f"{p.relative_to(input_tree)} {p.stat().st_size} {fnv1a32(p.read_bytes())}\n" for p in files
    )
    assert (out / "listing.txt").read_text() == expected
    assert (out / "summary.txt").read_text() == f"files {len(files)}\nbytes {total}\n"
    for p in files:
        assert (out / "copy" / p.relative_to(input_tree)).read_bytes() == p.read_bytes()


def test_io_cannot_write_a_read_only_preopen(tmp_path, input_tree):
    before = sorted(str(p) for p in input_tree.rglob("*"))
    run = run_wasi(
        tmp_path,
        "io",
        ["io", "/inputs", "/inputs"],
        preopens=[(input_tree, "/inputs", False)],
    )
    assert run.exit_code == 1
    assert run.stderr == "io: create /inputs/listing.txt: Operation not permitted\n"
    assert sorted(str(p) for p in input_tree.rglob("*")) == before


def test_io_cannot_escape_its_preopens(tmp_path, input_tree):
    out = tmp_path / "output"
    out.mkdir()
    preopens = [(input_tree, "/inputs", False), (out, "/outputs", True)]
    run = run_wasi(tmp_path, "io", ["io", "/inputs/../..", "/outputs"], preopens=preopens)
    assert run.exit_code == 1
    assert run.stderr == "io: opendir /inputs/../..: Operation not permitted\n"
    run = run_wasi(tmp_path, "io", ["io", "/etc", "/outputs"], preopens=preopens)
    assert run.exit_code == 1
    assert run.stderr.startswith("io: opendir /etc: ")


def test_exit3_exit_code_and_stderr(tmp_path):
    run = run_wasi(tmp_path, "exit3", ["exit3"])
    assert run.exit_code == 3
    assert run.stdout == ""
    assert run.stderr == "exit3: failing on purpose\n"


def test_exit_trap_is_a_wasmtime_error_not_a_trap():
    assert issubclass(ExitTrap, WasmtimeError)
    assert not issubclass(ExitTrap, Trap)


def test_explicit_exit_zero_raises_exit_trap(tmp_path):
    # main() returning 0 returns normally (hello.wasm); proc_exit(0) raises ExitTrap(code=0).
    wat = """
    (module
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start") (call $exit (i32.const 0))))
    """
    engine = Engine()
    store = Store(engine)
    store.set_wasi(WasiConfig())
    linker = Linker(engine)
    linker.define_wasi()
    instance = linker.instantiate(store, Module(engine, wasmtime.wat2wasm(wat)))
    with pytest.raises(ExitTrap) as info:
        instance.exports(store)["_start"](store)
    assert info.value.code == 0


def test_loop_is_stopped_by_epoch_interruption(tmp_path):
    run = run_wasi(tmp_path, "loop", ["loop"], epoch_after=0.2, fuel=BACKSTOP_FUEL)
    assert run.exit_code is None
    assert run.trap.trap_code == TrapCode.INTERRUPT
    assert "interrupt" in run.trap.message
    assert 0.15 < run.elapsed < 5
    assert run.stdout == "looping\n"


def test_loop_is_stopped_by_fuel(tmp_path):
    run = run_wasi(tmp_path, "loop", ["loop"], fuel=10_000_000)
    assert run.exit_code is None
    assert run.trap.trap_code == TrapCode.OUT_OF_FUEL
    assert run.stdout == "looping\n"


def test_alloc_is_stopped_by_the_memory_limit(tmp_path):
    run = run_wasi(tmp_path, "alloc", ["alloc"], memory_limit=64 << 20, fuel=BACKSTOP_FUEL)
    # memory.grow fails past the limit; malloc returns NULL; the guest exits 1.
    assert run.trap is None
    assert run.exit_code == 1
    assert run.stdout.splitlines()[-1] == "allocated 48 MiB"
    assert run.stderr.startswith("alloc: malloc failed after ")
    allocated = int(run.stderr.split()[-2])
    assert 48 <= allocated < 64


def test_build_sh_reproduces_the_committed_modules(tmp_path):
    assert shutil.which("clang"), "clang missing: run scripts/ci-deps.sh"
    for src in WASM_DIR.glob("*.c"):
        shutil.copy(src, tmp_path)
    shutil.copy(WASM_DIR / "build.sh", tmp_path)
    subprocess.run(["sh", str(tmp_path / "build.sh")], check=True, capture_output=True)
    assert sorted(p.stem for p in tmp_path.glob("*.wasm")) == MODULES
    for name in MODULES:
        built = (tmp_path / f"{name}.wasm").read_bytes()
        assert built == (WASM_DIR / f"{name}.wasm").read_bytes(), f"{name}.wasm is stale"
