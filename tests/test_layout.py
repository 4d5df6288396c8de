"""The shape of podcap/: two wings over a small floor, no import cycles, small modules.

Read from the source with ``ast`` (imports inside functions count too), so a cycle hidden in a
function body, or a wing reaching into the other, fails here before a reader trips on it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "podcap"
ACQUIRE = {"locate", "reach", "capture", "netns"}
ANALYZE = {"decode", "dfilter", "flows", "analysis", "reports", "snat", "path", "render", "dataset"}
FLOOR = {"errors", "sidecar", "pcapfile", "tshark", "version", "dropsfile", "signals", "__main__"}
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}
# Extension modules, built from the C file of the same name: imported, never parsed here.
EXTENSIONS = {_module_name(p) for p in ROOT.rglob("_*.c")}


def _imports(name: str) -> set[str]:
    """The podcap modules ``name`` imports, anywhere in its body."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            named = {f"{module}.{alias.name}" for alias in node.names}
            submodules = named & (MODULES.keys() | EXTENSIONS)
            found.update(submodules)
            if len(submodules) < len(node.names):  # names defined in ``module`` itself
                found.add(module)
    found = {m for m in found if m.startswith("podcap") and m not in EXTENSIONS}
    return {_known(m) for m in found if _known(m)} - {name}


def _known(module: str) -> str:
    while module and module not in MODULES:
        module = module.rpartition(".")[0]
    return module


GRAPH = {name: _imports(name) for name in MODULES}


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for name in GRAPH:
        if name not in index:
            visit(name)
    return found


def _wing(name: str) -> str:
    top = name.split(".")[1] if "." in name else ""
    if top in ACQUIRE:
        return "acquire"
    if top in ANALYZE:
        return "analyze"
    if top == "cli":
        return "cli"
    if top == "diagnosis":  # the edge beside the CLI: it runs both wings, neither imports it
        return "edge"
    return "floor" if top in FLOOR else f"unplaced ({top or 'podcap'})"


def test_no_import_cycles():
    assert _cycles() == []


def test_every_module_belongs_to_a_wing_the_floor_or_the_edge():
    unplaced = [n for n in MODULES if n != "podcap" and _wing(n).startswith("unplaced")]
    assert unplaced == []


@pytest.mark.parametrize("wing, other", [("acquire", "analyze"), ("analyze", "acquire")])
def test_a_wing_never_imports_the_other(wing, other):
    crossing = {
        n: sorted(m for m in GRAPH[n] if _wing(m) == other) for n in MODULES if _wing(n) == wing
    }
    assert {n: ms for n, ms in crossing.items() if ms} == {}


def test_the_floor_imports_no_wing_and_nothing_imports_the_cli():
    floor = {n: sorted(m for m in GRAPH[n] if _wing(m) not in ("floor",)) for n in MODULES}
    floor = {n: ms for n, ms in floor.items() if _wing(n) == "floor" and n != "podcap.__main__"}
    assert {n: ms for n, ms in floor.items() if ms} == {}
    into_cli = sorted(
        n for n in MODULES if _wing(n) != "cli" and n not in ("podcap.__main__",)
        and any(_wing(m) == "cli" for m in GRAPH[n])
    )  # fmt: skip
    assert into_cli == []


def test_only_the_cli_imports_the_edge():
    into_edge = sorted(
        n for n in MODULES if _wing(n) not in ("cli", "edge")
        and any(_wing(m) == "edge" for m in GRAPH[n])
    )  # fmt: skip
    assert into_edge == []


def test_the_package_facade_is_imported_by_nobody():
    """``podcap/__init__.py`` is the public API, loaded lazily; a module inside podcap that
    imported it would close a cycle through it."""
    assert sorted(n for n in MODULES if "podcap" in GRAPH[n]) == []


def test_modules_are_small_and_say_what_they_are_for():
    sources = [p for p in ROOT.rglob("*") if p.suffix in (".py", ".c", ".sh")]
    too_long = {
        str(p.relative_to(ROOT)): n
        for p in sources
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert too_long == {}
    silent = [
        str(p.relative_to(ROOT))
        for p in ROOT.rglob("*.py")
        if p.read_text().strip() and ast.get_docstring(ast.parse(p.read_text())) is None
    ]
    assert silent == []


# Import name -> the distribution that provides it, where the two differ.
DISTRIBUTIONS = {"yaml": "pyyaml", "websocket": "websocket-client"}
# Imports of an optional feature: the extra that installs them and the distribution listed
# there (dask[distributed] gives distributed). Without it the feature says what to install
# (tests/test_dask.py runs --dask in a plain install).
EXTRAS = {"distributed": ("dask", "dask"), "dask": ("dask", "dask"), "fsspec": ("dask", "fsspec")}


def _third_party_imports() -> dict[str, str]:
    """Every top-level module podcap imports that is neither its own nor the standard
    library's, with one file that imports it."""
    import sys

    found: dict[str, str] = {}
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                tops = [(node.module or "").split(".")[0]]
            else:
                continue
            for top in tops:
                if top != "podcap" and top not in sys.stdlib_module_names:
                    found.setdefault(top, name)
    return found


def test_what_the_runtime_imports_is_a_runtime_dependency():
    import re
    import tomllib

    project = tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0].lower() for d in requirements}

    declared = names(project["dependencies"])
    extras = {extra: names(found) for extra, found in project["optional-dependencies"].items()}
    missing = {
        f"{top} (imported by {module})"
        for top, module in _third_party_imports().items()
        if DISTRIBUTIONS.get(top, top).lower() not in declared
        and not (top in EXTRAS and EXTRAS[top][1] in extras.get(EXTRAS[top][0], set()))
    }
    assert not missing, f"not in [project] dependencies: {sorted(missing)}"
