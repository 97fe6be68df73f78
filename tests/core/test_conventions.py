"""Project conventions that should not silently erode."""

import inspect
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import graphsurgery as gs

ROOT = Path(__file__).resolve().parents[2]


def test_every_builtin_pass_documents_before_and_after():
    builtin = {k: v for k, v in gs.all_passes().items() if v.module.startswith("graphsurgery.")}
    assert {"core::dce", "core::cse", "core::fold_constants"} <= set(builtin)
    for pass_id, cls in builtin.items():
        doc = inspect.getdoc(cls) or ""
        assert cls.summary(), f"{pass_id} has no one-line summary"
        assert "Before" in doc and "After" in doc, f"{pass_id} docstring lacks Before/After"


def test_builtins_load_through_the_plugin_entry_point():
    eps = {ep.value for ep in entry_points(group="graphsurgery.passes")}
    assert {"graphsurgery.passes", "graphsurgery.rules"} <= eps
    modules = {cls.module for cls in gs.all_passes().values()}
    assert any(m.startswith("graphsurgery.passes.core.") for m in modules)
    assert any(m.startswith("graphsurgery.rules.") for m in modules)


def _modules(folder: Path) -> list[Path]:
    """The public modules of ``folder`` (an empty or missing folder fails the caller)."""
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))


def test_one_file_per_pass_and_tests_mirror_passes():
    folders = sorted(p for p in (ROOT / "passes").iterdir() if (p / "__init__.py").exists())
    assert {"core", "stylegan"} <= {f.name for f in folders}
    mirrored = {(ROOT / "rules"): ROOT / "tests" / "rules"}
    mirrored.update({f: ROOT / "tests" / "passes" / f.name for f in folders})
    for folder, tests in mirrored.items():
        modules = _modules(folder)
        assert modules, f"no modules found in {folder}: the layout test would test nothing"
        missing = [p.name for p in modules if not (tests / f"test_{p.name}").exists()]
        assert not missing, f"{folder.relative_to(ROOT)}: no test file in {tests} for {missing}"


def test_layout_test_sees_the_known_modules():
    assert "dce.py" in {p.name for p in _modules(ROOT / "passes" / "core")}
    assert "raise_upfirdn2d_ref.py" in {p.name for p in _modules(ROOT / "passes" / "stylegan")}
    assert "scalings.py" in {p.name for p in _modules(ROOT / "rules")}
    assert _modules(ROOT / "no-such-folder") == []  # which the mirror test refuses


def test_package_is_typed():
    assert (ROOT / "graphsurgery" / "py.typed").exists()
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "py.typed" in conf["package-data"]["graphsurgery"]


def test_wheel_lists_every_package_folder():
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(conf["packages"])
    roots = {"graphsurgery": ROOT / "graphsurgery", "graphsurgery.passes": ROOT / "passes",
             "graphsurgery.rules": ROOT / "rules"}
    for pkg, folder in roots.items():
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder).parts
            name = ".".join((pkg, *rel))
            assert name in listed, f"{name} missing from [tool.setuptools] packages"
