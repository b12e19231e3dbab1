"""The layers point one way, with no cycles, and modules and folders stay small (docs/architecture.md).

Layers, lowest first; a module may import its own layer and the layers below, never above:

0. leaf: :mod:`flagstream` (package root), :mod:`flagstream.config` (the Settings object),
   :mod:`flagstream.errors` (the error types) and the message contract :mod:`flagstream.contract` (what a
   post is, how it is rejected, what each output record holds: pure, standard library only), which the
   stream and the archive rescoring share. Imports nothing but the leaf, so everything may import it.
1. :mod:`flagstream.classifier`: data, bases, training, evaluation, inference, feedback, archive. Knows
   nothing of Kafka.
2. :mod:`flagstream.streaming`: Kafka connections, the stream loop, operator tools. Uses the classifier's
   narrow scoring interface.
3. CLI: :mod:`flagstream.cli`, :mod:`flagstream.options`, ``flagstream.commands.*``. Nothing imports it.

Modules are found the way the wheel finds them: the packages and folders that ``pyproject.toml`` lists,
so a module's name here is its installed name, with no folder-to-name table of this test's own.

Every ``import`` statement counts, also those inside functions or ``if TYPE_CHECKING`` blocks: a
lazy import is still a dependency a reader has to follow. The graph is read with :mod:`ast` from
the source files, so the test needs no import side effects.
"""

from __future__ import annotations

import ast
import tomllib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LEAF_MODULES = frozenset({"flagstream", "flagstream.config", "flagstream.errors"})
LEAF_PACKAGES = ("flagstream.contract",)
FLOORS = (("flagstream.classifier", 1), ("flagstream.streaming", 2))
MAX_LINES = 400
MAX_MODULES_PER_FOLDER = 15

# Known offenders being fixed on other branches; each entry must still offend (see the stale checks
# below), so delete it when its fix lands.
KNOWN_LARGE: frozenset[str] = frozenset()
KNOWN_CYCLE_EDGES: frozenset[tuple[str, str]] = frozenset()


def is_leaf(module: str) -> bool:
    return module in LEAF_MODULES or any(module == p or module.startswith(p + ".") for p in LEAF_PACKAGES)


def layer(module: str) -> int:
    if is_leaf(module):
        return 0
    for prefix, floor in FLOORS:
        if module == prefix or module.startswith(prefix + "."):
            return floor
    return 3  # flagstream.cli, flagstream.options, flagstream.commands.*


def package_folders() -> dict[str, Path]:
    """Installed package name -> its folder, as setuptools maps them (``packages`` + ``package-dir``)."""
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    package_dir: dict[str, str] = setup.get("package-dir", {})
    out: dict[str, Path] = {}
    for package in setup["packages"]:
        # the longest mapped prefix decides the folder; an unmapped package lives at its dotted path
        prefix = max((p for p in package_dir if package == p or package.startswith(p + ".")), key=len, default="")
        rest = package[len(prefix):].lstrip(".").split(".") if prefix else package.split(".")
        base = ROOT / package_dir[prefix] if prefix else ROOT
        out[package] = base.joinpath(*[r for r in rest if r])
    return out


def module_files() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for package, folder in package_folders().items():
        for path in sorted(folder.glob("*.py")):
            out[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an imported name lives in (``flagstream.classifier.inference.scoring.ModelInfo`` -> its module)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """(imported project module, line) for every import statement in ``path``."""
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg_parts = module.split(".") if is_pkg else module.split(".")[:-1]
                pkg_parts = pkg_parts[: len(pkg_parts) - (node.level - 1)]
                base = ".".join(pkg_parts + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] or [base]
        for name in names:
            target = _resolve(name, modules)
            if target is not None and target != module:
                yield target, node.lineno


def import_graph() -> dict[str, dict[str, int]]:
    modules = module_files()
    graph: dict[str, dict[str, int]] = {m: {} for m in modules}
    for module, path in modules.items():
        for target, line in imports_of(module, path, modules):
            graph[module].setdefault(target, line)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _without_known_edges(graph: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {m: {t: ln for t, ln in deps.items() if (m, t) not in KNOWN_CYCLE_EDGES} for m, deps in graph.items()}


# --- the checks ------------------------------------------------------------------------------------

def test_the_graph_is_read() -> None:
    graph = import_graph()
    # A few arrows every reader of the code can see, so a broken walker cannot pass silently.
    assert "flagstream.errors" in graph["flagstream.streaming.kafka.security"]
    assert "flagstream.contract.posts" in graph["flagstream.classifier.archive.rows"]  # the shared post contract
    assert "flagstream.classifier.inference.scoring" in graph["flagstream.streaming.loop.pipeline"]
    assert "flagstream.streaming.loop.pipeline" in graph["flagstream.commands.stream"]
    assert "flagstream.cli" in graph and "flagstream.commands.train" in graph


def test_no_upward_arrow() -> None:
    graph = import_graph()
    modules = module_files()
    upward = [
        f"{modules[m].relative_to(ROOT)}:{line} imports {t} (layer {layer(m)} -> {layer(t)})"
        for m, deps in sorted(graph.items()) for t, line in sorted(deps.items()) if layer(t) > layer(m)
    ]
    assert not upward, "imports that point up the layers (leaf < classifier < streaming < CLI):\n" + "\n".join(upward)


def test_the_leaf_imports_nothing_but_the_leaf() -> None:
    graph = import_graph()
    bad = {m: sorted(t for t in graph[m] if not is_leaf(t)) for m in graph if is_leaf(m) and any(not is_leaf(t) for t in graph[m])}
    assert not bad, f"the leaf must stay a leaf: {bad}"


def test_nothing_imports_the_cli() -> None:
    graph = import_graph()
    cli = {m for m in graph if layer(m) == 3}
    bad = sorted(f"{m} -> {t}" for m, deps in graph.items() if m not in cli for t in deps if t in cli)
    assert not bad, bad
    # commands are reached only through flagstream.cli's table, never from one another
    cross = sorted(f"{m} -> {t}" for m, deps in graph.items() if m.startswith("flagstream.commands.")
                   for t in deps if t.startswith("flagstream.commands."))
    assert not cross, f"a command imports another command; move the shared code down a layer: {cross}"


def test_no_import_cycle() -> None:
    found = cycles(_without_known_edges(import_graph()))
    assert not found, "import cycles (a module reaches itself through these): " + "; ".join(" <-> ".join(c) for c in found)


def test_known_cycle_edges_still_exist() -> None:
    graph = import_graph()
    stale = sorted(f"{a} -> {b}" for a, b in KNOWN_CYCLE_EDGES if b not in graph.get(a, {}))
    assert not stale, f"fixed: delete these from KNOWN_CYCLE_EDGES in {Path(__file__).name}: {stale}"


def _size_reason(path: Path) -> bool:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return any(line.strip().startswith("Size:") for line in doc.splitlines())


def test_modules_stay_small_or_say_why() -> None:
    too_big = []
    for path in module_files().values():
        rel = path.relative_to(ROOT).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES and rel not in KNOWN_LARGE and not _size_reason(path):
            too_big.append(f"{rel}: {lines} lines")
    assert not too_big, (f"modules over {MAX_LINES} lines without a 'Size: <reason>' line in their docstring: "
                         + ", ".join(too_big))


def test_known_large_modules_are_still_large() -> None:
    stale = []
    for rel in KNOWN_LARGE:
        path = ROOT / rel
        if not path.exists() or len(path.read_text(encoding="utf-8").splitlines()) <= MAX_LINES:
            stale.append(rel)
    assert not stale, f"split: delete these from KNOWN_LARGE in {Path(__file__).name}: {stale}"


def test_every_python_file_is_in_a_listed_package() -> None:
    """A folder missing from pyproject's ``packages`` would be left out of the wheel and out of these checks."""
    listed = set(module_files().values())
    folders = {ROOT / "flagstream", ROOT / "classifier", ROOT / "streaming"}
    stray = sorted(p.relative_to(ROOT).as_posix() for f in folders for p in f.rglob("*.py") if p not in listed)
    assert not stray, f"python files in no package listed in pyproject.toml: {stray}"


def test_no_folder_holds_more_than_fifteen_modules() -> None:
    per_folder = Counter(path.parent.relative_to(ROOT).as_posix() for path in module_files().values()
                         if path.name != "__init__.py")
    crowded = sorted(f"{folder}: {n}" for folder, n in per_folder.items() if n > MAX_MODULES_PER_FOLDER)
    assert not crowded, f"folders with more than {MAX_MODULES_PER_FOLDER} modules; give them sub-packages: {crowded}"
