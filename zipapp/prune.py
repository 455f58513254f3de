"""What the pyz leaves out of the installed wheels: only what edgebac never loads at run time.

Every rule names why it is safe. `prune(site)` removes the files, then rewrites each
`.dist-info/RECORD` to list only the files still shipped, so the metadata tells the truth.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

# botocore's service models: edgebac's S3 provider and publisher use S3, and STS is what
# assume-role profiles call. Every other service (~450 of them) is dead weight. The files
# directly under botocore/data (endpoints.json, partitions.json, _retry.json,
# sdk-default-configuration.json) are read by every client and stay.
BOTOCORE_SERVICES = frozenset({"s3", "sts"})
BOTO3_RESOURCES = frozenset({"s3"})  # boto3/data: resource models

# Paths (globs under site-packages): console scripts pip wrote with this machine's shebang;
# pycparser and cffi's Python half only generate bindings at build time (PyNaCl ships its
# compiled binding, which needs _cffi_backend alone); multidict's C-API test module.
GLOBS = ("bin", "pycparser", "pycparser-*.dist-info", "cffi", "multidict/_testcapi*")

# Folders inside a package: test suites and documentation examples.
PACKAGE_DIRS = frozenset({"tests", "examples", "__pycache__"})

# Files: type stubs and Cython/C sources (compiled already), prose, API examples
# (botocore reads examples-1.json only to build documentation).
SUFFIXES = (".pyi", ".pyx", ".pxd", ".c", ".h", ".cpp", ".rst", ".md")
NAMES = frozenset({"py.typed", "examples-1.json"})


@dataclass
class Pruned:
    files: int = 0
    bytes: int = 0

    def remove(self, path: Path) -> None:
        if path.is_dir() and not path.is_symlink():
            for inner in path.rglob("*"):
                if inner.is_file():
                    self.files += 1
                    self.bytes += inner.stat().st_size
            shutil.rmtree(path)
        elif path.exists():
            self.files += 1
            self.bytes += path.stat().st_size
            path.unlink()


def prune(site: Path) -> Pruned:
    pruned = Pruned()
    for pattern in GLOBS:
        for path in sorted(site.glob(pattern)):
            pruned.remove(path)
    _prune_models(site / "botocore" / "data", BOTOCORE_SERVICES, pruned)
    _prune_models(site / "boto3" / "data", BOTO3_RESOURCES, pruned)
    for path in sorted(site.rglob("*"), reverse=True):  # children before their folders
        if ".dist-info" in path.as_posix() or not path.exists():
            continue
        folder = path.is_dir() and path.name in PACKAGE_DIRS and path.parent != site
        if folder or (path.is_file() and (path.name in NAMES or path.suffix in SUFFIXES)):
            pruned.remove(path)
    _rewrite_records(site)
    return pruned


def _prune_models(data: Path, keep: frozenset[str], pruned: Pruned) -> None:
    if not data.is_dir():
        return
    for path in sorted(data.iterdir()):
        if path.is_dir() and path.name not in keep:
            pruned.remove(path)


def _rewrite_records(site: Path) -> None:
    """Keep each RECORD's lines for files still present (paths relative to site-packages)."""
    for record in sorted(site.glob("*.dist-info/RECORD")):
        lines = record.read_text().splitlines()
        names = [line.split(",", 1)[0] for line in lines]
        kept = [
            line
            for line, name in zip(lines, names, strict=True)
            if not name.startswith("..") and (site / name).is_file()
        ]
        record.write_text("".join(f"{line}\n" for line in kept))
