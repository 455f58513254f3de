"""The folders show the architecture: which package of `edgebac/` may import which.

Every import in every module is read with `ast` (lazy imports inside functions and imports
under TYPE_CHECKING count too: a circle of types is still a circle). Packages are the folders
under `edgebac/`; each top-level module (`errors`, `textdata`, ...) counts as a package of its
own, and `__main__` (the program's entry) is left out.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "edgebac"
SHELLS = ("api", "cli")
PARTS = ("eventlog", "gossip", "scheduler", "runtime", "sinks")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> Iterator[str]:
    """Every edgebac module a file imports, absolute or relative."""
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    )
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from edgebac import node` imports the module edgebac.node, not a name in edgebac
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        yield from (name for name in names if name == "edgebac" or name.startswith("edgebac."))


def modules() -> dict[str, set[str]]:
    """Each module under edgebac/ and the edgebac modules it imports (that exist as files)."""
    found = {module_name(p): p for p in ROOT.rglob("*.py")}
    return {
        name: {imported for imported in imported_modules(path) if imported in found} - {name}
        for name, path in found.items()
    }


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "edgebac"


def package_graph(imports: Mapping[str, set[str]]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, targets in imports.items():
        source = package_of(module)
        if source == "__main__":
            continue
        edges = graph.setdefault(source, set())
        edges.update(package_of(t) for t in targets if package_of(t) not in (source, "edgebac"))
    return graph


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One circle in a directed graph, as the nodes along it, or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == "open":
                return [*path[path.index(successor) :], successor]
            if successor not in state and (cycle := visit(successor)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_walk_sees_lazy_relative_and_package_imports(tmp_path):
    """The checker itself: a lazy import inside a function and `from edgebac import x`."""
    imports = modules()
    assert "edgebac.node" in imports["edgebac.cli.node"]  # lazy, inside the command
    assert "edgebac.api.app" in imports["edgebac.node.process"]
    assert "edgebac.scheduler.compute" in imports["edgebac.runtime.engines"]


@pytest.mark.parametrize(
    ("graph", "circle"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
        ({"a": {"b"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
        ({"a": {"a"}}, ["a", "a"]),
    ],
)
def test_find_cycle(graph, circle):
    assert find_cycle(graph) == circle


def test_no_import_circle_between_packages():
    graph = package_graph(modules())
    assert set(PARTS) | set(SHELLS) | {"node"} <= set(graph)
    assert find_cycle(graph) is None


# The commands that run or read a node's own files: `edgebac node`, `devstack`, and the offline
# `edgebac log` reads of a data directory. Every other command talks to a node over HTTP.
NODE_ENTRY_USERS = {"edgebac.cli.node", "edgebac.cli.devstack", "edgebac.cli.log"}


def test_api_and_cli_reach_the_node_only_through_its_entry_point():
    """The API knows the node only by the protocol it defines; of the command line, only the
    commands that run or read a node's own files call the node's entry point (`edgebac.node`)."""
    offending = {
        (module, target)
        for module, targets in modules().items()
        if package_of(module) in SHELLS
        for target in targets
        if target.startswith("edgebac.node.")
        or (target == "edgebac.node" and module not in NODE_ENTRY_USERS)
    }
    assert offending == set()
    assert set(modules()) >= NODE_ENTRY_USERS  # a renamed command must not pass by vanishing


def test_the_node_entry_point_stays_light():
    """`edgebac.node` is what client commands import: it loads no node wiring until a node runs."""
    probe = (
        "import sys, edgebac.node; "
        "print(sorted(m for m in sys.modules if m.startswith(('aiohttp', 'edgebac.node.'))))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['edgebac.node.config', 'edgebac.node.datadir']"


def test_gossip_never_imports_the_scheduler():
    offending = {
        (module, target)
        for module, targets in modules().items()
        if package_of(module) == "gossip"
        for target in targets
        if package_of(target) == "scheduler"
    }
    assert offending == set()


def test_parts_never_import_the_shells():
    offending = {
        (module, target)
        for module, targets in modules().items()
        if package_of(module) in PARTS
        for target in targets
        if package_of(target) in (*SHELLS, "node")
    }
    assert offending == set()


def test_top_level_holds_only_the_shared_modules():
    top = {p.name for p in ROOT.glob("*.py")}
    assert top == {"__init__.py", "__main__.py", "errors.py", "textdata.py"}


def test_no_module_over_400_lines_in_the_shells():
    long = {
        str(path.relative_to(ROOT)): n
        for package in ("node", *SHELLS)
        for path in (ROOT / package).rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 420
    }
    assert long == {}
