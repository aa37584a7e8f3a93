"""The house rules as tests: rooms import downward, no import circles, the read side loads nothing
of the writer's pipeline and never writes into a store, package imports are lazy, the user
interfaces stay thin."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = {"indexer": "vitsearch.indexer", "search": "vitsearch.search", "ui": "vitsearch.ui"}
ROOMS = ("store", "model", "imaging", "ray")
# Leaf modules every part may use: they import nothing of vitsearch but each other.
SHARED = {"vitsearch.indexer.errors", "vitsearch.indexer.faults", "vitsearch.indexer.locations",
          "vitsearch.indexer.extensions"}
# What each room may import from the rest of indexer/ (besides SHARED and itself).
ROOM_MAY_USE = {"store": set(), "imaging": set(), "model": {"store", "imaging"}}
PIPELINE = ("build", "ingest", "backfill", "watch", "prefetch", "plan", "reindex", "recorded_model", "scan", "report")


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for folder, package in PACKAGES.items():
        for path in (REPO / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(REPO / folder).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = (path, path.name == "__init__.py")
    return found


def _imports() -> dict[str, set[str]]:
    """module -> the vitsearch modules it imports, at the top or inside a function."""
    modules = _modules()
    edges: dict[str, set[str]] = defaultdict(set)
    for name, (path, is_package) in modules.items():
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = name.split(".") if is_package else name.split(".")[:-1]
                target = ".".join(base[: len(base) - node.level + 1] + [node.module or ""]).rstrip(".") \
                    if node.level else node.module
                for candidate in (target, *(f"{target}.{a.name}" for a in node.names)):
                    if candidate in modules and candidate != name:
                        edges[name].add(candidate)
            elif isinstance(node, ast.Import):
                edges[name].update(a.name for a in node.names if a.name in modules)
    return edges


def _runtime_nodes(tree: ast.AST):
    """Every node but those under `if TYPE_CHECKING:` (imports for annotations only)."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.If) and getattr(child.test, "id", None) == "TYPE_CHECKING":
            yield from (n for c in child.orelse for n in _runtime_nodes(c))
            continue
        yield child
        yield from _runtime_nodes(child)


def _room(module: str) -> str:
    parts = module.split(".")
    if parts[1] != "indexer":
        return parts[1]
    return parts[2] if len(parts) > 2 and parts[2] in ROOMS else "pipeline"


def test_rooms_import_downward():
    wrong = []
    for module, targets in _imports().items():
        room = _room(module)
        if room not in ROOM_MAY_USE or module in SHARED:
            continue
        for target in targets - SHARED:
            if _room(target) not in {room, *ROOM_MAY_USE[room]}:
                wrong.append(f"{module} -> {target}")
    assert wrong == [], "store/ and imaging/ know nothing of the rest; model/ only of them"


def test_no_import_circles():
    edges = _imports()
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                circles.append(sorted(component))

    for module in _modules():
        if module not in index:
            visit(module)
    assert circles == [], "each circle marks a name with the wrong owner"


def _loaded_after(code: str) -> list[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def test_package_imports_are_lazy():
    loaded = _loaded_after("import vitsearch.search, vitsearch.indexer")
    ours = [m for m in loaded if m.startswith("vitsearch.")]
    assert set(ours) <= {"vitsearch.search", "vitsearch.indexer", "vitsearch.indexer.errors"}, ours
    assert not {"torch", "faiss", "duckdb", "PIL", "gradio", "ray", "numpy"} & set(loaded)


def test_the_read_side_loads_nothing_of_the_writers_pipeline():
    loaded = set(_loaded_after("from vitsearch.search import ImageIndex"))
    pipeline = {f"vitsearch.indexer.{m}" for m in PIPELINE}
    pipeline |= {m for m in loaded if m.startswith("vitsearch.indexer.ray")}
    assert not pipeline & loaded, sorted(pipeline & loaded)
    assert not {"torch", "timm", "ray", "gradio"} & loaded, "the model loads on the first query that needs it"


def test_search_never_writes_into_a_store(tmp_path):
    """Every read verb on a store, then the store's files are exactly as they were."""
    from tests.conftest import FakeEncoder, write_scenes
    from vitsearch.search import ImageIndex, store_info
    from vitsearch.search.dupes import find_duplicates

    write_scenes(tmp_path / "photos", range(6))
    (tmp_path / "photos" / "copy.jpg").write_bytes((tmp_path / "photos" / "scene-001.jpg").read_bytes())
    store = tmp_path / "store"
    # built in another process: DuckDB shares one database per process, and the writer's would
    # checkpoint its log when the readers below close it
    build = ("import sys; from tests.conftest import FakeEncoder; from vitsearch.indexer import build_index; "
             "build_index([sys.argv[1]], sys.argv[2], encoder=FakeEncoder())")
    subprocess.run([sys.executable, "-c", build, str(tmp_path / "photos"), str(store)], cwd=REPO, check=True)

    def files():
        return {str(p.relative_to(store)): (p.stat().st_size, p.stat().st_mtime_ns) for p in store.rglob("*")}

    before = files()
    index = ImageIndex.open(store, encoder=FakeEncoder())
    index.search(str(tmp_path / "photos" / "scene-000.jpg"), k=3, where="width > 0", collapse=True)
    find_duplicates(index)
    index.map("pca")
    index.outliers(3)
    store_info(store)
    assert files() == before
    assert not {"read_only=False", "WriterLock"} & {w for p in (REPO / "search").rglob("*.py")
                                                    for w in ("read_only=False", "WriterLock") if w in p.read_text()}


def test_no_function_in_ui_is_over_80_lines():
    """A handler that grows longer holds logic that belongs in search/ or indexer/, or a section
    that wants its own function."""
    too_long = []
    for path in sorted((REPO / "ui").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 80:
                too_long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}")
    assert too_long == [], "split these into smaller functions"


def test_every_package_folder_ships_in_the_wheel():
    """A room or a folder of commands missing from pyproject's list installs without its code."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {".".join([PACKAGES[path.parts[len(REPO.parts)]],
                         *path.parent.relative_to(REPO / path.parts[len(REPO.parts)]).parts]).rstrip(".")
               for folder in PACKAGES for path in (REPO / folder).rglob("__init__.py")}
    assert folders == listed
