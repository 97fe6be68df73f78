"""Plugins cannot fool the pass manager: edits that bypass the Rewriter are found and
blamed on their pass, and ``sys.exit()`` in plugin code is an error, never exit 0."""

import textwrap

import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.cli import main
from graphsurgery.plugins import load_plugin
from graphsurgery.verify import EditGuard, check_structure

from .graphs import F32, chain

HACKS = {
    # a dangling input written straight into the NodeDef
    "dangle": 'graph.node("mul").proto.input[0] = "missing"',
    # an attribute changed in place
    "attr": 'graph.node_def("mul").attr["T"].type = 3',
    # a small constant's value changed in place
    "value": 'graph.node_def("c").attr["value"].tensor.tensor_content = b"\\0" * 16',
}


@pytest.fixture
def hack_passes():
    ids = []
    for key, line in HACKS.items():
        ns: dict = {}
        exec(f"def run(graph, rw):\n    {line}\n", ns)  # noqa: S102 - test-only pass bodies
        ns["run"].__doc__ = f"Edit a NodeDef in place ({key})."
        gs.register_pass(f"hack::{key}")(ns["run"])
        ids.append(f"hack::{key}")

    @gs.register_pass("hack::quit")
    def quit_(graph, rw):
        """Call sys.exit(0) in the middle of a pass."""
        import sys

        sys.exit(0)

    @gs.register_pass("hack::interrupt")
    def interrupt(graph, rw):
        """Ctrl-C while a pass runs."""
        raise KeyboardInterrupt

    yield
    for pid in [*ids, "hack::quit", "hack::interrupt"]:
        gs.registry.unregister_pass(pid)


@pytest.mark.parametrize("key", sorted(HACKS))
def test_edit_behind_the_rewriter_fails_its_pass(hack_passes, key):
    g = chain()
    with pytest.raises(gs.PassFailure) as info:
        gs.Pipeline.parse(f"core::dce,hack::{key}").run(g)
    node = "c" if key == "value" else "mul"
    assert info.value.pass_id == f"hack::{key}"
    assert f"pass hack::{key} edited node {node!r} without the Rewriter" in str(info.value)
    if key == "dangle":  # the structural check reports what the edit broke, too
        assert "input 0 'missing' names a missing node" in str(info.value)


def test_keep_going_cannot_restore_an_edit_in_place(hack_passes):
    with pytest.raises(gs.PassFailure, match="hack::dangle edited node 'mul'"):
        gs.Pipeline.parse("hack::dangle,core::dce").run(chain(), keep_going=True)


def test_structure_check_sees_an_edit_in_place():
    g = chain()
    assert check_structure(g) == []
    g.node_def("mul").input[0] = "missing"
    assert check_structure(g) == ["node 'mul': input 0 'missing' names a missing node"]


def test_guard_flags_only_edits_in_place():
    g = chain()
    guard = EditGuard(g)
    rw = gs.Rewriter(g, "test::ok")
    rw.set_attr("mul", "T", F32)  # unchanged value: no new NodeDef
    rw.add_node("Relu", ["x"], {"T": F32}, name="r")
    rw.erase("unused")
    rw.const(np.zeros(4096, np.float32), name="big")
    assert guard.edited(g) == []
    g.node_def("y").device = "/cpu:0"
    g.node_def("big").input.append("^x")  # a large Const is fingerprinted without its value
    assert guard.edited(g) == ["big", "y"]
    assert guard.edited(g) == []


def test_cli_names_the_pass_that_bypassed_the_rewriter(tmp_path, capsys):
    plugin = tmp_path / "sneaky.py"
    plugin.write_text(textwrap.dedent('''
        import graphsurgery as gs

        @gs.register_pass("sneaky::rename_input")
        def rename_input(graph, rw):
            """Point mul at a node that does not exist, without the Rewriter."""
            graph.node("mul").proto.input[0] = "missing"
    '''))
    model = gs.save(chain(), tmp_path / "model.pb")
    code = main(["run", str(model), "-p", "sneaky::rename_input,core::dce", "--plugin",
                 str(plugin), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    gs.registry.unregister_pass("sneaky::rename_input")
    assert code == 3, err
    assert len(err.strip().splitlines()) == 1
    assert "pass sneaky::rename_input failed after []" in err
    assert "edited node 'mul' without the Rewriter" in err
    assert not (tmp_path / "out" / "model.pb").exists()


@pytest.mark.parametrize("code_", ["0", "None", "'bye'"])
def test_sys_exit_while_importing_a_plugin_file(tmp_path, capsys, code_):
    plugin = tmp_path / "exits.py"
    plugin.write_text(f"import sys\nsys.exit({code_})\n")
    model = gs.save(chain(), tmp_path / "model.pb")
    code = main(["run", str(model), "-p", "core::dce", "--plugin", str(plugin),
                 "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "exits.py" in lines[0] and "sys.exit" in lines[0], err
    assert not (tmp_path / "out").exists()


def test_sys_exit_while_importing_a_plugin_module(tmp_path, monkeypatch):
    (tmp_path / "exiting_plugin_module.py").write_text("raise SystemExit(0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(gs.UsageError, match="plugin exiting_plugin_module called sys.exit"):
        load_plugin("exiting_plugin_module")


def test_sys_exit_inside_a_pass_is_its_failure(hack_passes, tmp_path, capsys):
    with pytest.raises(gs.PassFailure, match=r"pass hack::quit failed after \[core::dce\]: "
                                             r"called sys.exit\(0\)"):
        gs.Pipeline.parse("core::dce,hack::quit").run(chain())
    model = gs.save(chain(), tmp_path / "model.pb")
    code = main(["run", str(model), "-p", "hack::quit", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 3 and "pass hack::quit failed" in err and "sys.exit(0)" in err


def test_keyboard_interrupt_in_a_pass_stays_an_interrupt(hack_passes, tmp_path, capsys):
    with pytest.raises(KeyboardInterrupt):
        gs.Pipeline.parse("hack::interrupt").run(chain(), keep_going=True)
    model = gs.save(chain(), tmp_path / "model.pb")
    assert main(["run", str(model), "-p", "hack::interrupt", "-o", str(tmp_path / "o")]) == 130


def test_built_in_passes_are_not_watched_unless_asked(hack_passes, monkeypatch):
    # The guard costs one serialisation per node and pass, so only passes that do not ship
    # with graphsurgery are watched by default; guard_edits="all" watches every pass.
    monkeypatch.setattr(gs.registry.get_pass("hack::dangle"), "module",
                        "graphsurgery.passes.pretend")
    with pytest.raises(gs.PassFailure, match="edited node 'mul' without the Rewriter"):
        gs.Pipeline.parse("hack::dangle").run(chain(), guard_edits="all")
    with pytest.raises(gs.PassFailure) as info:
        gs.Pipeline.parse("hack::dangle").run(chain())
    assert "without the Rewriter" not in str(info.value)  # the structure check still fails it
    with pytest.raises(gs.UsageError, match="guard_edits"):
        gs.Pipeline.parse("core::dce").run(chain(), guard_edits="some")


@pytest.mark.parametrize("preset", ["generic", "stylegan-to-tflite"])
def test_built_in_pipelines_never_edit_in_place(preset):
    from graphsurgery import zoo

    graph = gs.load(zoo.cached("sg2-tiny"))
    assert gs.Pipeline.preset(preset).run(graph, guard_edits="all").ok


def test_sys_exit_in_an_entry_point_plugin(monkeypatch):
    import graphsurgery.plugins as plugins

    class ExitingEntryPoint:
        name, value = "quitter", "quitter.passes"

        def load(self):
            raise SystemExit(0)

    monkeypatch.setattr(plugins, "entry_points", lambda group: [ExitingEntryPoint()])
    monkeypatch.setattr(plugins, "_loaded_entry_points", False)
    with pytest.raises(gs.UsageError, match=r"plugin quitter \(quitter.passes\) called sys.exit"):
        plugins.load_entry_points()
    monkeypatch.undo()
    plugins.load_entry_points()  # the real ones load again
