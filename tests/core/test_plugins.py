"""Plugin loading: files and modules named with --plugin register their passes once."""

from __future__ import annotations

import pytest

import graphsurgery as gs
from graphsurgery.plugins import load_plugin
from graphsurgery.registry import unregister_pass

PLUGIN = '''
import graphsurgery as gs

LOADS = globals().get("LOADS", 0) + 1

@gs.register_pass("t_plug::noop")
def noop(graph, rw):
    """Do nothing.

    Before:: x   After:: x
    """
'''


def test_plugin_file_registers_its_passes_once(tmp_path):
    path = tmp_path / "my_plugin.py"
    path.write_text(PLUGIN)
    try:
        module = load_plugin(str(path))
        assert load_plugin(str(path)) is module  # loaded once: no "registered twice"
        assert gs.get_pass("t_plug::noop").module == module.__name__
        assert "t_plug::noop" in gs.all_passes()
    finally:
        unregister_pass("t_plug::noop")


def test_bad_plugins_are_one_line_usage_errors(tmp_path):
    with pytest.raises(gs.UsageError, match="no such file"):
        load_plugin(str(tmp_path / "missing.py"))
    with pytest.raises(gs.UsageError, match="no such file or module"):
        load_plugin("no_such_plugin_module_xyz")
    broken = tmp_path / "broken.py"
    broken.write_text("x = 1\nraise ValueError('nope')\n")
    with pytest.raises(gs.UsageError, match=r"broken.py failed to import \(line 2\): "
                                            r"ValueError: nope"):
        load_plugin(str(broken))


def test_builtins_come_through_the_entry_points():
    modules = {cls.module for cls in gs.all_passes().values()}
    assert any(m.startswith("graphsurgery.passes.stylegan.") for m in modules)
    assert any(m.startswith("graphsurgery.rules.") for m in modules)
