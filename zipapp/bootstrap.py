"""The `__main__.py` of edgebac.pyz: unpack once into a named cache, then run edgebac from it.

zipapp/build.py writes this file into the archive with BUILD filled in. Native extensions
(wasmtime, PyNaCl, PyYAML, aiohttp's speedups) cannot be imported from inside a zip, so the
first start extracts `site-packages/` into `<cache root>/edgebac-<version>-<build id>/`; every
later start of the same build finds that folder and only puts it on sys.path. The folder name
holds a hash of everything in it: a new build never reuses an old folder.

Cache root: $EDGEBAC_PYZ_CACHE, else $XDG_CACHE_HOME/edgebac/pyz, else ~/.cache/edgebac/pyz
(with `env -i`, ~ comes from the password database), else a folder in the system temp dir.
Extraction goes to a temporary sibling that is renamed into place, so nodes started at the
same moment from one fresh pyz race safely and a killed first start leaves no half folder.

Kept to the standard library and to few imports: this runs before every command.
"""

import os
import sys

BUILD: dict[str, str] = {}  # replaced at build time: version, build_id, arch, python


def _fail(message: str) -> None:
    sys.stderr.write(f"edgebac.pyz: {message}\n")
    raise SystemExit(1)


def _check_platform() -> None:
    python = "{}.{}".format(*sys.version_info[:2])
    if BUILD and python != BUILD["python"]:
        _fail(f"built for Python {BUILD['python']}, this is Python {python} ({sys.executable})")
    machine = os.uname().machine
    if BUILD and machine != BUILD["arch"]:
        _fail(f"built for {BUILD['arch']}, this machine is {machine}")


def _cache_root() -> str:
    root = os.environ.get("EDGEBAC_PYZ_CACHE")
    if root:
        return root
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return os.path.join(xdg, "edgebac", "pyz")
    home = os.path.expanduser("~")
    if home != "~" and os.access(home, os.W_OK):
        return os.path.join(home, ".cache", "edgebac", "pyz")
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"edgebac-pyz-{os.getuid()}")


def _extract(archive_path: str, target: str) -> None:
    import shutil
    import zipfile

    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    sys.stderr.write(f"edgebac.pyz: first start, unpacking into {target}\n")
    tmp = f"{target}.tmp-{os.getpid()}"
    try:
        with zipfile.ZipFile(archive_path) as archive:
            for info in archive.infolist():
                if not info.filename.startswith("site-packages/"):
                    continue
                path = archive.extract(info, tmp)
                os.chmod(path, (info.external_attr >> 16) & 0o777 or 0o644)
        os.rename(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.isdir(target):  # no other start won the race: a real failure
            raise


def _activate(site_packages: str) -> None:
    """Our packages before any system site-packages (Debian's dist-packages may hold older
    copies of the same libraries); .pth files processed like any site dir."""
    import site

    before = len(sys.path)
    site.addsitedir(site_packages)
    ours = sys.path[before:]
    del sys.path[before:]
    first_site = next(
        (i for i, p in enumerate(sys.path) if p.endswith(("site-packages", "dist-packages"))),
        len(sys.path),
    )
    sys.path[first_site:first_site] = ours


def main() -> None:
    _check_platform()
    archive_path = os.path.abspath(sys.argv[0])
    name = f"edgebac-{BUILD.get('version', 'dev')}-{BUILD.get('build_id', 'dev')}"
    target = os.path.join(_cache_root(), name)
    if not os.path.isdir(target):
        _extract(archive_path, target)
    _activate(os.path.join(target, "site-packages"))
    from edgebac.cli import main as edgebac_main

    edgebac_main()


if __name__ == "__main__":
    main()
