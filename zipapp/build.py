"""Build the single-file edgebac: dist/edgebac-<version>-py311-<arch>.pyz.

    python zipapp/build.py                    # for this machine
    python zipapp/build.py --arch aarch64     # for Raspberry Pi-class devices (from their wheels)

Steps: fetch the binary wheels of pyproject's [project] dependencies for the target platform
(cached under ~/.cache/edgebac-build, so repeat builds are fast and work offline), install them
into a staging site-packages with edgebac's own sources, prune what edgebac never uses,
compile every module to a hash-checked .pyc, and write one zip whose __main__ is
zipapp/bootstrap.py. The same sources and wheels give a byte-identical file: sorted entries,
fixed timestamps and permissions, pyc files that carry no mtimes or build paths.

See zipapp/README.md for the options and what is pruned.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prune  # zipapp/ is not a package: build.py runs as a script

REPO = Path(__file__).resolve().parent.parent
PYTHON = "3.11"
LEVEL = 6  # deflate level: 9 takes 2.5 times as long for 0.6% less
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the zip format's epoch: every entry gets it
COMPILE_SHARDS = 4  # fixed, not the CPU count: each shard's pyc bytes depend on what it compiled
ARCH_ALIASES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
DEFAULT_GLIBC = "2.28"  # Debian 10+, Ubuntu 18.10+, RHEL 8+, Raspberry Pi OS buster+


@dataclass(frozen=True)
class Target:
    arch: str  # x86_64 or aarch64: what os.uname().machine says on the device
    platforms: tuple[str, ...]  # pip --platform tags, best first

    @property
    def key(self) -> str:
        return f"py{PYTHON.replace('.', '')}-{self.platforms[0]}"


def manylinux_platforms(arch: str, glibc: str) -> tuple[str, ...]:
    """Every manylinux tag a glibc `glibc` system of `arch` runs, newest first (pip does not
    expand these itself for --platform)."""
    major, minor = (int(part) for part in glibc.split("."))
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    for floor, name in legacy.items():
        if minor >= floor and (arch == "x86_64" or name == "manylinux2014"):
            tags.append(f"{name}_{arch}")
    return tuple(tags)


def target_for(arch: str | None, platform: str | None, glibc: str) -> Target:
    if platform is not None:
        suffix = platform.split("_", 2)[-1] if platform.startswith("manylinux_") else None
        name = suffix or platform.partition("_")[2]
        if name not in ARCH_ALIASES:
            raise SystemExit(f"error: cannot tell the architecture of platform {platform!r}")
        return Target(ARCH_ALIASES[name], (platform,))
    machine = arch or os.uname().machine
    if machine not in ARCH_ALIASES:
        raise SystemExit(f"error: unsupported architecture {machine!r} (x86_64, aarch64)")
    resolved = ARCH_ALIASES[machine]
    return Target(resolved, manylinux_platforms(resolved, glibc))


def project() -> tuple[str, list[str]]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return data["version"], list(data["dependencies"])


def _pip_target_args(target: Target) -> list[str]:
    args = ["--only-binary=:all:", "--python-version", PYTHON, "--implementation", "cp"]
    args += ["--abi", f"cp{PYTHON.replace('.', '')}"]
    for platform in target.platforms:
        args += ["--platform", platform]
    return args


def _pip(args: list[str], *, offline: bool) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    if offline:
        env["PIP_CONFIG_FILE"] = os.devnull  # only the wheel cache: no index, no extra links
    command = [sys.executable, "-m", "pip", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False)


def install_wheels(
    target: Target, deps: list[str], wheels: Path, site: Path, refresh: bool
) -> None:
    """Install from the wheel cache alone; download into it first when it cannot satisfy deps."""
    install = ["install", "--target", str(site), "--no-index", "--find-links", str(wheels)]
    install += ["--no-compile", "--no-warn-script-location", "-q", *_pip_target_args(target)]
    wheels.mkdir(parents=True, exist_ok=True)
    if not refresh and _pip([*install, *deps], offline=True).returncode == 0:
        return
    shutil.rmtree(site, ignore_errors=True)
    say(f"downloading wheels for {target.key} into {wheels}")
    download = ["download", "-q", "-d", str(wheels), *_pip_target_args(target), *deps]
    done = _pip(download, offline=False)
    if done.returncode != 0:
        raise SystemExit(f"error: pip download failed:\n{done.stderr}")
    done = _pip([*install, *deps], offline=True)
    if done.returncode != 0:
        raise SystemExit(f"error: pip install from {wheels} failed:\n{done.stderr}")


def copy_edgebac(site: Path, version: str) -> None:
    """edgebac's own sources as they are in this tree, with the metadata importlib expects."""
    source = REPO / "edgebac"
    for path in sorted(source.rglob("*")):
        if "__pycache__" in path.parts or path.suffix == ".pyc" or not path.is_file():
            continue
        dest = site / "edgebac" / path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    info = site / f"edgebac-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: edgebac\nVersion: {version}\n")
    entry = "[console_scripts]\nedgebac = edgebac.cli:main\n"
    (info / "entry_points.txt").write_text(entry)


_COMPILE = """
import compileall, py_compile, sys
root, paths = sys.argv[1], sys.argv[2:]
mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
bad = [p for p in paths if not compileall.compile_file(
    root + "/" + p, ddir=None, stripdir=root, quiet=2, invalidation_mode=mode)]
print("\\n".join(bad))
"""


def compile_pyc(site: Path) -> list[str]:
    """Compile every module in fixed shards of fresh interpreters (hash seed 0): pyc bytes then
    depend only on the sources. UNCHECKED_HASH: never re-validated against the (extracted,
    freshly timestamped) sources, never rewritten. Returns what did not compile."""
    sources = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.py"))
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
    shards = [sources[i::COMPILE_SHARDS] for i in range(COMPILE_SHARDS)]
    command = [sys.executable, "-I", "-c", _COMPILE, str(site)]
    running = [
        subprocess.Popen([*command, *shard], env=env, stdout=subprocess.PIPE, text=True)
        for shard in shards
    ]
    failed: list[str] = []
    for process in running:
        out, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit("error: compiling .pyc failed")
        failed += [line for line in out.splitlines() if line]
    return failed


def strip_tool(arch: str) -> str | None:
    """A strip that reads `arch` ELF files: binutils' for that arch, else llvm-strip (any arch)."""
    candidates = [f"{arch}-linux-gnu-strip", "llvm-strip"]
    if arch == ARCH_ALIASES.get(os.uname().machine):
        candidates.append("strip")
    return next((tool for tool in candidates if shutil.which(tool)), None)


def strip_native(site: Path, arch: str) -> str:
    """Drop debug info and local symbols from the wheels' shared objects (most ship unstripped:
    PyNaCl's 5.3 MB binding is 0.6 MB stripped). Their exported symbols, all that Python and
    ctypes look up, stay. Returns what was used, for the build log."""
    tool = strip_tool(arch)
    if tool is None:
        return "nothing (no strip for this architecture: install binutils or llvm)"
    objects = sorted(str(p) for p in site.rglob("*.so"))
    done = subprocess.run([tool, "--strip-unneeded", *objects], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: {tool} failed:\n{done.stderr}")
    return f"{tool} ({len(objects)} shared objects)"


def _mode(path: Path) -> int:
    executable = path.stat().st_mode & 0o111
    return 0o100755 if executable else 0o100644


def write_pyz(site: Path, out: Path, build: dict[str, str]) -> None:
    """One zip: shebang, __main__.py (the bootstrap with BUILD filled in), site-packages/**.
    Entries sorted by name; fixed time, permissions and creator; no directory entries."""
    bootstrap = (Path(__file__).parent / "bootstrap.py").read_text()
    marker = "BUILD: dict[str, str] = {}"
    assert marker in bootstrap
    main = bootstrap.replace(marker, f"BUILD: dict[str, str] = {build!r}", 1)
    files = sorted((p.relative_to(site).as_posix(), p) for p in site.rglob("*") if p.is_file())
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("wb") as handle:
        handle.write(b"#!/usr/bin/env python3\n")
        with zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED, compresslevel=LEVEL) as archive:
            _add(archive, "__main__.py", main.encode(), 0o100644)
            for name, path in files:
                _add(archive, f"site-packages/{name}", path.read_bytes(), _mode(path))
    tmp.chmod(0o755)
    tmp.replace(out)


def _add(archive: zipfile.ZipFile, name: str, data: bytes, mode: int) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # unix, whatever builds it
    info.external_attr = mode << 16
    archive.writestr(info, data, compresslevel=LEVEL)


def build_id(site: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(site.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(site).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def say(line: str) -> None:
    print(f"build: {line}", file=sys.stderr, flush=True)


def build(
    target: Target, out_dir: Path, cache: Path, refresh: bool = False, strip: bool = True
) -> Path:
    if "{}.{}".format(*sys.version_info[:2]) != PYTHON:
        raise SystemExit(
            f"error: build with Python {PYTHON} (its .pyc format); this is {sys.version}"
        )
    version, deps = project()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="edgebac-pyz-") as tmp:
        site = Path(tmp) / "site-packages"
        install_wheels(target, deps, cache / "wheels" / target.key, site, refresh)
        pruned = prune.prune(site)  # the wheels only: edgebac's own files all ship
        copy_edgebac(site, version)
        if strip:
            say(f"stripped with {strip_native(site, target.arch)}")
        failed = compile_pyc(site)
        for name in failed:
            say(f"not compiled (left as source): {name}")
        build = {"version": version, "build_id": build_id(site), "arch": target.arch}
        build["python"] = PYTHON
        out_dir.mkdir(parents=True, exist_ok=True)
        out = out_dir / f"edgebac-{version}-py{PYTHON.replace('.', '')}-{target.arch}.pyz"
        write_pyz(site, out, build)
    say(f"pruned {pruned.files} files ({pruned.bytes / 1e6:.1f} MB unpacked)")
    size = out.stat().st_size
    sha = hashlib.sha256(out.read_bytes()).hexdigest()
    say(f"{out} {size / 1e6:.2f} MB sha256 {sha} in {time.monotonic() - started:.1f} s")
    return out


def default_cache() -> Path:
    if os.environ.get("EDGEBAC_BUILD_CACHE"):
        return Path(os.environ["EDGEBAC_BUILD_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edgebac-build"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", help="x86_64 or aarch64 (default: this machine's)")
    parser.add_argument("--platform", help="one pip platform tag, e.g. manylinux2014_aarch64")
    parser.add_argument("--glibc", default=DEFAULT_GLIBC, help="oldest glibc to run on")
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="output folder")
    parser.add_argument("--cache", type=Path, default=default_cache(), help="wheel cache")
    parser.add_argument("--refresh", action="store_true", help="download the wheels again")
    parser.add_argument("--no-strip", action="store_true", help="keep the .so files as shipped")
    args = parser.parse_args(argv)
    target = target_for(args.arch, args.platform, args.glibc)
    out = build(target, args.out, args.cache, args.refresh, not args.no_strip)
    print(out)


if __name__ == "__main__":
    main()
