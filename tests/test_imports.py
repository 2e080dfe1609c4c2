"""The import rules of the package, checked on the source with ``ast`` (and one fresh interpreter).

* The core (everything outside ``napari_hrtem.plugin``) never imports napari, Qt or the other GUI
  libraries; only ``cli.py`` may import napari or the plugin, and only inside a function (the ``view``
  command).
* The modules of ``napari_hrtem`` import each other without cycles.
* ``import napari_hrtem`` and ``import napari_hrtem.cli`` load neither napari/Qt nor torch/abTEM.
* The version is defined once: ``napari_hrtem.__version__`` is what the installed metadata says.
"""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PKG_NAME = "napari_hrtem"
PKG_DIR = Path(__file__).resolve().parents[1] / "src" / PKG_NAME

# Top-level modules the core must not import (napari, its plugin engine, Qt bindings and GUI helpers).
GUI_MODULES = frozenset(
    {"qtpy", "napari", "magicgui", "PyQt5", "PyQt6", "PySide2", "PySide6", "vispy", "superqt", "npe2"}
)
PLUGIN_PACKAGE = f"{PKG_NAME}.plugin"


@dataclass(frozen=True)
class ImportRef:
    """One imported module, as the interpreter would resolve it."""

    target: str  # absolute dotted name of the module (or of the package, for `from pkg import attr`)
    names: tuple[str, ...]  # for `from target import a, b`: ("a", "b"); () for `import target`
    lineno: int
    in_function: bool  # inside a def/lambda (runs when called, not at import)
    type_checking: bool  # inside `if TYPE_CHECKING:` (never runs)


def module_name(path: Path, pkg_dir: Path = PKG_DIR) -> str:
    """Dotted name of a source file; a package's ``__init__.py`` is named as the package."""
    parts = [pkg_dir.name, *path.relative_to(pkg_dir).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(pkg_dir: Path = PKG_DIR) -> dict[str, Path]:
    return {module_name(p, pkg_dir): p for p in sorted(pkg_dir.rglob("*.py")) if "__pycache__" not in p.parts}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, pkg_dir: Path = PKG_DIR) -> list[ImportRef]:
    """Every import statement of a file, at any depth, with relative imports made absolute."""
    name = module_name(path, pkg_dir)
    is_package = path.name == "__init__.py"
    # the package a relative import starts from: the module itself for an __init__, else its parent
    here = name.split(".") if is_package else name.split(".")[:-1]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[ImportRef] = []

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(ImportRef(alias.name, (), node.lineno, in_function, type_checking))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                if node.level - 1 > len(here) - 1:
                    raise AssertionError(f"{path}:{node.lineno}: relative import beyond the top-level package")
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append(ImportRef(target, tuple(a.name for a in node.names), node.lineno, in_function, type_checking))
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, in_function, True)
            for child in node.orelse:
                visit(child, in_function, type_checking)
            return
        inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, inner, type_checking)

    visit(tree, False, False)
    return found


def _is_within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


# --- the GUI import rule ---------------------------------------------------------------------------


def gui_import_violations(pkg_dir: Path = PKG_DIR) -> list[str]:
    """Imports of napari/Qt (or of the napari plugin subpackage) from the core, as readable lines."""
    plugin = f"{pkg_dir.name}.plugin"
    cli = f"{pkg_dir.name}.cli"
    bad: list[str] = []
    for name, path in source_files(pkg_dir).items():
        if _is_within(name, plugin):
            continue
        for ref in imports_of(path, pkg_dir):
            targets = [ref.target, *(f"{ref.target}.{n}" for n in ref.names)] if ref.target else []
            gui = ref.target.split(".")[0] in GUI_MODULES
            to_plugin = any(_is_within(t, plugin) for t in targets)
            if not (gui or to_plugin):
                continue
            if name == cli and ref.in_function:
                continue  # `napari-hrtem view` opens napari: allowed inside the command's function
            what = ref.target + (f" ({', '.join(ref.names)})" if ref.names else "")
            where = "inside a function" if ref.in_function else "at module level"
            bad.append(f"{path.relative_to(pkg_dir.parent)}:{ref.lineno}: imports {what} {where}")
    return bad


def test_core_does_not_import_napari_or_qt():
    assert PKG_DIR.is_dir(), PKG_DIR
    violations = gui_import_violations()
    assert not violations, (
        "the core must not import napari, Qt or the plugin (only cli.py, inside the `view` command):\n"
        + "\n".join(violations)
    )


# --- no import cycles ------------------------------------------------------------------------------


def import_graph(pkg_dir: Path = PKG_DIR) -> dict[str, set[str]]:
    """Which module of the package imports which (imports inside functions count, `if TYPE_CHECKING:` not).

    ``from a.b import c`` imports the module ``a.b.c`` when there is one, else the module (or package
    ``__init__``) ``a.b``. Importing ``a.b.c`` also runs the ``__init__`` of the packages ``a`` and ``a.b``;
    those edges are left out when the importing module lies inside that package and uses it only as a
    namespace (``import a.b.c``, ``from a.b import c`` with ``c`` a submodule): the package is then already
    being imported, and its ``__init__`` re-exporting the importer is no cycle. ``from a.b import name``
    with ``name`` defined in ``a.b``'s ``__init__`` is a real dependency and counts wherever it is.
    """
    modules = source_files(pkg_dir)
    top = pkg_dir.name
    graph: dict[str, set[str]] = {name: set() for name in modules}

    def add(importer: str, target: str) -> None:
        if target in modules and target != importer:
            graph[importer].add(target)

    def add_parents(importer: str, module: str) -> None:
        # the __init__ of every package above `module`, unless the importer is inside it
        parts = module.split(".")
        for i in range(1, len(parts)):
            package = ".".join(parts[:i])
            if not _is_within(importer, package):
                add(importer, package)

    for importer, path in modules.items():
        for ref in imports_of(path, pkg_dir):
            if ref.type_checking or not _is_within(ref.target, top):
                continue
            if not ref.names:  # import a.b.c
                add(importer, ref.target)
                add_parents(importer, ref.target)
                continue
            add_parents(importer, ref.target)
            attributes = False
            for n in ref.names:
                sub = f"{ref.target}.{n}"
                if n != "*" and sub in modules:
                    add(importer, sub)
                else:
                    attributes = True
            if attributes:  # a name defined in ref.target itself (for a package: in its __init__)
                add(importer, ref.target)
            elif not _is_within(importer, ref.target):
                add(importer, ref.target)  # the package's __init__ runs first
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a list of modules, the first repeated at the end) per strongly connected component."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan; the package is small enough for recursion
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)

    cycles = []
    for component in components:
        members = set(component)
        start = component[0]
        # shortest path back to `start` inside the component (breadth first)
        previous: dict[str, str] = {}
        frontier = [start]
        seen = {start}
        end = None
        while frontier and end is None:
            following = []
            for v in frontier:
                for w in sorted(graph[v]):
                    if w == start:
                        end = v
                        break
                    if w in members and w not in seen:
                        seen.add(w)
                        previous[w] = v
                        following.append(w)
                if end is not None:
                    break
            frontier = following
        assert end is not None
        path = [end]
        while path[-1] != start:
            path.append(previous[path[-1]])
        cycles.append([*reversed(path), start])
    return sorted(cycles)


def test_find_cycles_reports_each_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": {"d"}, "f": {"f"}, "g": set()}
    assert find_cycles(graph) == [["a", "b", "c", "a"], ["d", "e", "d"], ["f", "f"]]


def test_import_graph_rules(tmp_path):
    files = {
        "__init__.py": "from pkg.api import run\n__version__ = '1'\n",
        "api.py": "def run():\n    from .io import reader\n    return reader\n",
        "io/__init__.py": "from .reader import read\nfrom .sites import Sites\n",
        # namespace use of the own package: no edge to io/__init__
        "io/reader.py": "import pkg.io.sites\nfrom pkg.io import sites\nfrom . import sites as s\ndef read(): ...\n",
        # a name from the own package's __init__: a real edge (io/__init__ -> io.sites -> io/__init__)
        "io/sites.py": "from pkg.io import read\nclass Sites: ...\n",
        # from outside the package, importing a submodule runs the package __init__ too
        "models/__init__.py": "",
        "models/card.py": "from ..io.reader import read\nfrom typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from pkg.api import run\n",
    }
    for name, text in files.items():
        (tmp_path / "pkg" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pkg" / name).write_text(text)
    graph = import_graph(tmp_path / "pkg")
    assert graph == {
        "pkg": {"pkg.api"},
        "pkg.api": {"pkg.io", "pkg.io.reader"},
        "pkg.io": {"pkg.io.reader", "pkg.io.sites"},
        "pkg.io.reader": {"pkg.io.sites"},
        "pkg.io.sites": {"pkg.io"},
        "pkg.models": set(),
        "pkg.models.card": {"pkg.io", "pkg.io.reader"},
    }
    assert find_cycles(graph) == [["pkg.io", "pkg.io.sites", "pkg.io"]]
    # the GUI rule on the same kind of tree
    (tmp_path / "pkg" / "cli.py").write_text("def view():\n    import napari\n    from pkg.plugin import w\n")
    (tmp_path / "pkg" / "plugin").mkdir()
    (tmp_path / "pkg" / "plugin" / "__init__.py").write_text("import napari\nfrom qtpy import QtCore\n")
    assert gui_import_violations(tmp_path / "pkg") == []
    (tmp_path / "pkg" / "models" / "view.py").write_text("def f():\n    from ..plugin import w\n")
    (tmp_path / "pkg" / "cli.py").write_text("import napari.layers\n")
    assert gui_import_violations(tmp_path / "pkg") == [
        "pkg/cli.py:1: imports napari.layers at module level",
        "pkg/models/view.py:2: imports pkg.plugin (w) inside a function",
    ]


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 5, sorted(graph)
    cycles = find_cycles(graph)
    assert not cycles, "import cycles between modules of napari_hrtem:\n" + "\n".join(
        " -> ".join(cycle) for cycle in cycles
    )


# --- what importing the package loads --------------------------------------------------------------

HEAVY = ("napari", "qtpy", "magicgui", "torch", "abtem", "PyQt6", "PyQt5", "PySide2", "PySide6", "vispy", "npe2")


def test_import_loads_no_gui_and_no_torch():
    code = (
        "import sys\n"
        "import napari_hrtem, napari_hrtem.cli\n"
        f"heavy = {set(HEAVY)!r}\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


# --- one version -----------------------------------------------------------------------------------


def test_version_is_the_installed_metadata():
    import napari_hrtem

    try:
        installed = importlib.metadata.version("napari-hrtem")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a bare checkout on sys.path
        pytest.skip("napari-hrtem is not installed (pip install -e .)")
    assert napari_hrtem.__version__ == installed
