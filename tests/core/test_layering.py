"""The package's layering, read from the source: imports, op tables, StyleGAN out of the core.

Imports are collected with ``ast`` from every ``graphsurgery/**/*.py``, function-level ones
included (they run too); only imports under ``if TYPE_CHECKING:`` are left out.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "graphsurgery"
# graphsurgery.passes and graphsurgery.rules live at the top of the repository.
FOLDERS = {"graphsurgery": PKG, "graphsurgery.passes": ROOT / "passes",
           "graphsurgery.rules": ROOT / "rules"}
# Leaf utilities every layer may use: they import nothing else of graphsurgery's.
LEAVES = {"graphsurgery.errors", "graphsurgery._quiet", "graphsurgery.outdir"}
# What the pipeline and the CLI are built on: none of it may import what is built on it.
FOUNDATION = ("graphsurgery.ir", "graphsurgery.errors", "graphsurgery.rewriter",
              "graphsurgery.verify", "graphsurgery.diff", "graphsurgery.splice",
              "graphsurgery.metrics", "graphsurgery.noise", "graphsurgery.nchw",
              "graphsurgery.graph_runner", "graphsurgery.reference", "graphsurgery.runners",
              "graphsurgery.registry", "graphsurgery.plugins")
ABOVE = ("graphsurgery.pipeline", "graphsurgery.cli", "graphsurgery.zoo",
         "graphsurgery.passes", "graphsurgery.rules", "graphsurgery.render",
         "graphsurgery.export", "graphsurgery.targets", "graphsurgery.driver")
STYLEGAN = ("graphsurgery.zoo", "graphsurgery.passes.stylegan")
STYLEGAN_OPS = ("UpFirDn2D", "FusedBiasAct")


def _module(path: Path) -> str:
    for pkg, folder in FOLDERS.items():
        if path.is_relative_to(folder):
            parts = [*pkg.split("."), *path.relative_to(folder).with_suffix("").parts]
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise AssertionError(path)


@cache
def _modules() -> dict[str, Path]:
    out = {}
    for folder in FOLDERS.values():
        for path in folder.rglob("*.py"):
            out[_module(path)] = path
    assert "graphsurgery.ir.graph" in out and "graphsurgery.passes.stylegan" in out
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return getattr(test, "id", getattr(test, "attr", None)) == "TYPE_CHECKING"


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The graphsurgery modules ``path`` imports (``from pkg import mod`` names ``pkg.mod``)."""
    name = _module(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.orelse:
                    visit_one(stmt)
                continue
            visit_one(child)

    def visit_one(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            for alias in node.names:
                full = f"{mod}.{alias.name}"
                found.add(full if full in modules else mod)
        visit(node)

    visit(ast.parse(path.read_text(), str(path)))
    return {m for m in found if m == "graphsurgery" or m.startswith("graphsurgery.")}


def import_graph() -> nx.DiGraph:
    """module -> module it imports, for every module that is not a package ``__init__``
    (packages gather names for users; importing a module runs them first anyway)."""
    modules = _modules()
    packages = {m for m, p in modules.items() if p.name == "__init__.py"}
    g = nx.DiGraph()
    for name, path in modules.items():
        if name in packages:
            continue
        g.add_node(name)
        for target in imports_of(path, modules):
            if target in modules and target not in packages and target != name:
                g.add_edge(name, target)
    return g


def _under(name: str, prefixes: tuple[str, ...] | set[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_no_import_cycles():
    g = import_graph()
    assert len(g) > 50
    cycles = [c for c in nx.simple_cycles(g) if len(c) > 1]
    assert cycles == [], " ; ".join(" -> ".join([*c, c[0]]) for c in cycles[:5])


def test_ir_imports_nothing_above_it():
    modules = _modules()
    bad = {
        name: sorted(t for t in imports_of(path, modules)
                     if not _under(t, ("graphsurgery.ir",)) and t not in LEAVES)
        for name, path in modules.items() if _under(name, ("graphsurgery.ir",))
    }
    assert {k: v for k, v in bad.items() if v} == {}
    for leaf in LEAVES:  # what makes them leaves
        assert imports_of(modules[leaf], modules) <= {"graphsurgery", "graphsurgery.errors"}


def test_foundation_imports_nothing_built_on_it():
    modules = _modules()
    bad = {
        name: sorted(t for t in imports_of(path, modules) if _under(t, ABOVE))
        for name, path in modules.items() if _under(name, FOUNDATION)
    }
    assert {k: v for k, v in bad.items() if v} == {}


def test_core_imports_nothing_stylegan_specific():
    """Outside the zoo and passes/stylegan, only the CLI (its ``zoo`` command and the
    demo) imports StyleGAN code."""
    modules = _modules()
    bad = {
        name: sorted(t for t in imports_of(path, modules) if _under(t, STYLEGAN))
        for name, path in modules.items()
        if _under(name, ("graphsurgery",)) and not _under(name, (*STYLEGAN, "graphsurgery.rules",
                                                                  "graphsurgery.passes"))
        and name != "graphsurgery.cli"
    }
    assert {k: v for k, v in bad.items() if v} == {}


def test_importing_the_reference_runner_loads_no_stylegan_code():
    code = (
        "import sys\n"
        "import graphsurgery.reference, graphsurgery.runners, graphsurgery.ir.shapes\n"
        "print(sorted(m for m in sys.modules if m.startswith(('graphsurgery.zoo', "
        "'graphsurgery.passes'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def _strings_and_names(path: Path) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(line, text) of every string constant, and of every name (identifiers)."""
    strings, names = [], []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            strings.append((node.lineno, node.value))
        elif isinstance(node, ast.Name):
            names.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute):
            names.append((node.lineno, node.attr))
        elif isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef):
            names.append((node.lineno, node.name))
    return strings, names


def test_no_stylegan_custom_op_in_core_code():
    """StyleGAN's custom ops are named, as op names (a string that is the op's name) or in
    identifiers, only in the zoo and in passes/stylegan; messages and docs may mention them."""
    hits = []
    for name, path in _modules().items():
        if not _under(name, ("graphsurgery",)) or _under(name, (*STYLEGAN, "graphsurgery.passes",
                                                                "graphsurgery.rules")):
            continue
        strings, names = _strings_and_names(path)
        hits += [f"{path.relative_to(ROOT)}:{line}: {text!r}" for line, text in strings
                 if text in STYLEGAN_OPS]
        hits += [f"{path.relative_to(ROOT)}:{line}: {text}" for line, text in names
                 if any(w in text.lower() for w in ("upfirdn", "fused_bias_act", "fusedbiasact"))]
    assert hits == []


def _collections(tree: ast.AST) -> list[tuple[ast.AST, list[ast.expr]]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Set | ast.List | ast.Tuple):
            out.append((node, list(node.elts)))
        elif isinstance(node, ast.Dict):
            out.append((node, [k for k in node.keys if k is not None]))
    return out


def test_one_table_of_random_ops_and_ref_ops():
    """Only graphsurgery/ir/opdefs.py lists random ops or maps ref ops to their value forms;
    every pass and check reads its tables."""
    hits = []
    for name, path in _modules().items():
        if name == "graphsurgery.ir.opdefs":
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node, elts in _collections(tree):
            values = {e.value for e in elts if isinstance(e, ast.Constant)}
            if "RandomStandardNormal" in values and len(values) > 1:
                hits.append(f"{path.relative_to(ROOT)}:{node.lineno}: a random-op table")
            if isinstance(node, ast.Dict) and any(
                isinstance(k, ast.Constant) and k.value == "RefSwitch"
                and isinstance(v, ast.Constant) and v.value == "Switch"
                for k, v in zip(node.keys, node.values)
            ):
                hits.append(f"{path.relative_to(ROOT)}:{node.lineno}: a ref-op table")
    assert hits == []
