"""A failed run's reproducer: its README command reproduces the failure from its folder."""

import textwrap

import pytest

import graphsurgery as gs
from graphsurgery.cli import main

F32 = gs.DType.float32

PLUGIN = textwrap.dedent('''
    import graphsurgery as gs

    @gs.register_pass("repro::add_input")
    def add_input(graph, rw):
        """Add a graph input ``extra`` (a pass that changes the interface)."""
        extra = rw.placeholder("extra", gs.DType.float32, [1, 4])
        rw.set_graph_inputs([*graph.inputs, extra])

    @gs.register_pass("repro::fail")
    def fail(graph, rw):
        """Always fail."""
        raise ValueError("no")
''')


@pytest.fixture
def plugin(tmp_path):
    path = tmp_path / "repro_plugin.py"
    path.write_text(PLUGIN)
    yield path
    for pass_id in ("repro::add_input", "repro::fail"):
        if pass_id in gs.registry.all_passes():
            gs.registry.unregister_pass(pass_id)


def _model(tmp_path, dims):
    """x [dims] -> Identity -> Relu -> y."""
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, dims)
    i = rw.add_node("Identity", [x], {"T": F32}, name="id0")
    y = rw.add_node("Relu", [i], {"T": F32}, name="y")
    rw.set_graph_inputs([x])
    rw.set_outputs([y])
    return gs.save(g, tmp_path / "model.pb")


def _fail_and_rerun(capsys, tmp_path, monkeypatch, model, pipeline, plugin, inputs):
    """Run ``pipeline`` (failing), then the reproducer's README command in its folder."""
    code = main(["run", str(model), "-p", pipeline, "--plugin", str(plugin),
                 "--inputs", *inputs, "-o", str(tmp_path / "out")])
    first = capsys.readouterr().err
    assert code == 3, first
    repro = tmp_path / "out" / "reproducer"
    readme = (repro / "README.md").read_text()
    command = next(line.strip() for line in readme.splitlines() if "graphsurgery run" in line)
    monkeypatch.chdir(repro)
    code = main(command.split()[1:])
    again = capsys.readouterr().err
    return repro, command, code, first, again


def test_reused_input_file_keeps_the_given_shapes(capsys, tmp_path, monkeypatch, plugin):
    """`--inputs x:-1,4` on a file whose x is [-1, 4]: the graph is unchanged, the file
    itself is the reproducer's input, and the command still names the shapes given."""
    model = _model(tmp_path, [-1, 4])
    repro, command, code, first, again = _fail_and_rerun(
        capsys, tmp_path, monkeypatch, model, "core::remove_identity,repro::fail", plugin,
        ["x:-1,4"])
    assert (repro / "input.pb").read_bytes() == model.read_bytes()  # the file, reused
    assert "--inputs x:-1,4 " in command, command
    assert code == 3 and "pass repro::fail failed after [core::remove_identity]" in again


def test_reused_input_file_gets_the_interface_it_was_run_with(capsys, tmp_path, monkeypatch,
                                                               plugin):
    """A pass before the failing one added an input: the command names the inputs the
    original file was run with, not the graph's after that pass (which the file lacks)."""
    model = _model(tmp_path, [1, 4])
    repro, command, code, first, again = _fail_and_rerun(
        capsys, tmp_path, monkeypatch, model, "repro::add_input,repro::fail", plugin, ["x"])
    assert (repro / "input.pb").read_bytes() == model.read_bytes()
    assert "extra" not in command and "--inputs x:1,4 " in command, command
    assert code == 3, again
    assert "pass repro::fail failed after [repro::add_input]" in again


def test_snapshot_reproducer_names_the_shapes(capsys, tmp_path, monkeypatch, plugin):
    """`--inputs x:1,4` on a file whose x is [-1, 4] changes the graph: the reproducer's
    input is the graph as the failing pass received it, shapes included."""
    model = _model(tmp_path, [-1, 4])
    repro, command, code, first, again = _fail_and_rerun(
        capsys, tmp_path, monkeypatch, model, "core::remove_identity,repro::fail", plugin,
        ["x:1,4"])
    assert gs.load(repro / "input.pb").static_shape("x") == (1, 4)
    assert "--inputs x:1,4 " in command, command
    assert code == 3 and "pass repro::fail failed" in again
