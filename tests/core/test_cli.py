"""The command-line contract: exit codes, one-line errors, untouched inputs, no partial OUTDIR."""

import hashlib
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.cli import main, parse_input_spec
from graphsurgery.ir import proto

from .graphs import F32, chain, raw_graph_def


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_failure(tmp_path, code, err, expected_code, *fragments):
    assert code == expected_code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for frag in fragments:
        assert frag in lines[0], lines[0]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")]
    assert not leftovers and not (tmp_path / "out").exists()


@pytest.fixture
def model(tmp_path):
    return gs.save(chain(), tmp_path / "model.pb")


def test_run_writes_model_and_summary(capsys, tmp_path, model):
    code, out, err = run_cli(capsys, "run", model, "-p", "core::remove_identity",
                             "-o", tmp_path / "out", "--target", "none")
    assert code == 0, err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["passes"][0]["pass_id"] == "core::remove_identity"
    assert summary["passes"][0]["changed"] is True
    assert summary["ops_before"]["Identity"] == 3
    assert gs.load(tmp_path / "out" / "model.pb").op_counts()["Identity"] <= 1


def test_input_specs():
    assert parse_input_spec("latents_in") == ("latents_in", None)
    assert parse_input_spec("x:1") == ("x:1", None)
    assert parse_input_spec("x:1,512") == ("x", [1, 512])
    assert parse_input_spec("x:[4]") == ("x", [4])
    assert parse_input_spec("x:-1,4") == ("x", [-1, 4])  # -1: unknown, as in TensorFlow
    assert parse_input_spec("scope/x:0") == ("scope/x:0", None)


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("x:-5,4", "dimension -5 is out of range"),
        ("x:1e20", "neither a port nor a shape"),
        ("x:[1e20]", "neither a port nor a shape"),
        ("x:1,99999999999", "dimension 99999999999 is out of range"),
        ("x:100000000000000000000,1", "out of range"),
        ("x:65536,65536", "4,294,967,296 elements"),
    ],
)
def test_bad_input_shapes(capsys, tmp_path, model, spec, fragment):
    code, _, err = run_cli(capsys, "run", model, "-p", "core::dce", "--inputs", spec,
                           "-o", tmp_path / "out", "--target", "none")
    assert_clean_failure(tmp_path, code, err, 2, f"--inputs {spec}", fragment)


def test_inputs_with_shapes_are_applied(capsys, tmp_path, model):
    code, _, err = run_cli(capsys, "run", model, "-p", "core::dce", "--inputs", "x:[1,4]",
                           "--outputs", "y", "-o", tmp_path / "out", "--target", "none")
    assert code == 0, err
    assert gs.load(tmp_path / "out" / "model.pb").static_shape("x") == (1, 4)


BAD_FILES = {
    "missing.pb": (None, "no such file"),
    "empty.pb": (b"", "empty file"),
    "truncated.pb": ("truncate", "truncated or corrupt"),
    "random.pb": (bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8)),
                  "not a GraphDef"),
    "syntax.pbtxt": (b'node { name: "x" op: ', "pbtxt syntax error"),
    "cycle.pb": (raw_graph_def([("a", "Relu", ["b"]), ("b", "Relu", ["a"])]), "cycle"),
    "dangling.pb": (raw_graph_def([("x", "Placeholder", []), ("a", "Relu", ["q"])]),
                    "names a missing node"),
    "badport.pb": (raw_graph_def([("x", "Placeholder", []), ("a", "Relu", ["x:2"])]),
                   "port 2"),
    "dup.pb": (raw_graph_def([("x", "Placeholder", []), ("x", "Relu", [])]), "duplicate"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_model_files(capsys, tmp_path, name):
    content, fragment = BAD_FILES[name]
    path = tmp_path / name
    if content == "truncate":
        data = gs.serialize(chain())
        content = data[:-9]
    if content is not None:
        path.write_bytes(content)
    before = _sha(path)
    code, _, err = run_cli(capsys, "run", path, "-p", "core::dce", "-o", tmp_path / "out")
    assert_clean_failure(tmp_path, code, err, 2, name, fragment)
    assert _sha(path) == before


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--inputs", "nope"], ["--inputs nope", "no node named 'nope'"]),
        (["--outputs", "y", "zz:1"], ["--outputs zz:1", "no node named 'zz'"]),
        (["-p", "core::dce,,"], ["pipeline", "expected a pass id"]),
        (["-p", "core::nope"], ["unknown pass 'core::nope'"]),
        (["-p", "core::dce(colour=1)"], ["unknown option 'colour'"]),
        (["-p", "core::fold_constants(max_bytes=lots)"], ["max_bytes='lots' is not a valid int"]),
        (["--set", "core::dce"], ["expected PASS.OPTION=VALUE"]),
        (["--plugin", "no_such_plugin_module"], ["no_such_plugin_module", "no such file"]),
        (["--frobnicate"], ["unrecognized arguments"]),
    ],
)
def test_bad_usage(capsys, tmp_path, model, args, fragments):
    before = _sha(model)
    argv = ["run", model, "-o", tmp_path / "out", "--target", "none"]
    if "-p" not in args:
        argv += ["-p", "core::dce"]
    code, _, err = run_cli(capsys, *argv, *args)
    assert_clean_failure(tmp_path, code, err, 2, *fragments)
    assert _sha(model) == before


def test_plugin_that_raises_on_import(capsys, tmp_path, model):
    plugin = tmp_path / "broken_plugin.py"
    plugin.write_text("import graphsurgery\n\nraise ValueError('not today')\n")
    code, _, err = run_cli(capsys, "run", model, "-p", "core::dce", "--plugin", plugin,
                           "-o", tmp_path / "out")
    assert_clean_failure(tmp_path, code, err, 2, "broken_plugin.py", "failed to import",
                         "line 3", "ValueError: not today")


def test_plugin_pass_leaving_a_dangling_input(capsys, tmp_path, model):
    plugin = tmp_path / "dangling_plugin.py"
    plugin.write_text(textwrap.dedent('''
        import graphsurgery as gs

        @gs.register_pass("bad::dangle")
        def dangle(graph, rw):
            """Erase a node that is still used."""
            rw.erase("c", force=True)
    '''))
    before = _sha(model)
    code, _, err = run_cli(capsys, "run", model, "-p", "core::dce,bad::dangle", "--plugin",
                           plugin, "-o", tmp_path / "out")
    assert code == 3, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "pass bad::dangle failed after [core::dce]" in err
    assert "'c' names a missing node" in err
    # the output directory holds only the reproducer (and the marker saying it is ours)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        ".graphsurgery-output", "reproducer"]
    # the reproducer is the unchanged input plus every pass up to the failing one
    repro = tmp_path / "out" / "reproducer"
    assert (repro / "pipeline.txt").read_text().strip() == "core::dce,bad::dangle"
    assert (repro / "input.pb").read_bytes() == model.read_bytes()
    code, _, err = run_cli(capsys, "run", repro / "input.pb", "-p",
                           (repro / "pipeline.txt").read_text().strip(), "--plugin", plugin,
                           "-o", tmp_path / "again")
    assert code == 3 and "pass bad::dangle failed after [core::dce]" in err
    assert _sha(model) == before
    gs.registry.unregister_pass("bad::dangle")


def test_unwritable_output_directory(capsys, tmp_path, model):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, _, err = run_cli(capsys, "run", model, "-p", "core::dce", "-o", blocker / "out")
    assert code == 2 and "cannot write" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "run", model, "-p", "core::dce", "-o", blocker)
    assert code == 2 and "not a directory" in err


def _io_graph(tmp_path):
    """A graph whose only way to a constant output runs through WriteFile/ReadFile/PrintV2."""
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    target = tmp_path / "written_by_folding.txt"
    fname = rw.const(np.array(str(target).encode(), dtype=object), name="fname")
    contents = rw.const(np.array(b"secret", dtype=object), name="contents")
    write = rw.add_node("WriteFile", [fname, contents], name="write")
    read = rw.add_node("ReadFile", [fname], name="read", control_inputs=[write])
    rw.add_node("PrintV2", [read], {"output_stream": "stderr", "end": "\n"}, name="print")
    x = rw.placeholder("x", F32, [1])
    two = rw.const(np.float32(2), name="two")
    three = rw.const(np.float32(3), name="three")
    six = rw.add_node("Mul", [two, three], {"T": F32}, name="six")
    y = rw.add_node("Mul", [x, six], {"T": F32}, name="y")
    rw.set_graph_inputs([x])
    rw.set_outputs([y, read])
    return g, target


def test_folding_never_executes_io_ops(capsys, tmp_path):
    g, target = _io_graph(tmp_path)
    model = gs.save(g, tmp_path / "io.pb")
    code, _, err = run_cli(capsys, "run", model, "-p", "generic", "-o", tmp_path / "out",
                           "--target", "none")
    assert code == 0, err
    assert not target.exists()
    result = gs.load(tmp_path / "out" / "model.pb")
    counts = result.op_counts()
    assert counts["WriteFile"] == 1 and counts["ReadFile"] == 1
    assert "six" in result and result.node("six").op == "Const"  # folding still happened
    code, out, err = run_cli(capsys, "check", model)
    assert code == 3 and "write (WriteFile)" in out and not target.exists()


def test_passes_and_pipelines_listing(capsys):
    code, out, _ = run_cli(capsys, "passes")
    assert code == 0
    assert "core::dce" in out and "core::fold_constants" in out and "max_bytes" in out
    code, out, _ = run_cli(capsys, "pipelines")
    assert code == 0 and "generic" in out


def test_diff_command(capsys, tmp_path, model):
    code, _, err = run_cli(capsys, "run", model, "-p", "core::remove_identity",
                           "-o", tmp_path / "out", "--target", "none")
    assert code == 0, err
    code, out, err = run_cli(capsys, "diff", model, tmp_path / "out" / "model.pb",
                             "-o", tmp_path / "d.json")
    assert code == 0, err
    d = json.loads((tmp_path / "d.json").read_text())
    assert sorted(d["removed"]) == ["id0", "id1"]
    assert "mul" in d["changed"]


def test_internal_errors_exit_1_without_traceback(capsys, tmp_path, model, monkeypatch):
    import graphsurgery.pipeline as pl

    monkeypatch.setattr(pl.Pipeline, "run", lambda *a, **k: 1 / 0)
    code, _, err = run_cli(capsys, "run", model, "-p", "core::dce", "-o", tmp_path / "out")
    assert code == 1 and "internal error: ZeroDivisionError" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_wire_schema_keeps_unknown_fields():
    nd = proto.NodeDef(name="n", op="Foo")
    data = nd.SerializeToString() + b"\xf8\x07\x01"  # field 127, varint 1
    assert proto.NodeDef.FromString(data).SerializeToString() == data


def test_verify_a_result_tensorflow_refuses_is_a_failure_not_a_crash(capsys, tmp_path):
    """A pass that writes a Reshape TensorFlow cannot run: --verify reports it (exit 3, one
    line), where it used to end in an internal ValueError (exit 1)."""
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [2, 3])
    shape = rw.const(np.array([3, 2], np.int32), name="shape")
    y = rw.add_node("Reshape", [x, shape], {"T": F32, "Tshape": gs.DType.int32}, name="y")
    rw.set_graph_inputs([x])
    rw.set_outputs([y])
    model = gs.save(g, tmp_path / "m.pb")
    plugin = tmp_path / "wrong_shape_plugin.py"
    plugin.write_text(textwrap.dedent('''
        import numpy as np
        import graphsurgery as gs

        @gs.register_pass("bad::wrong_shape")
        def wrong_shape(graph, rw):
            """Point the Reshape at a [2, 1] shape constant."""
            k = rw.const(np.array([[6], [1]], np.int32), name="bad_shape")
            rw.set_input(graph.node("y"), 1, k)
    '''))
    code, _, err = run_cli(capsys, "run", model, "-p", "bad::wrong_shape", "--plugin", plugin,
                           "-o", tmp_path / "out", "--target", "none", "--verify")
    gs.registry.unregister_pass("bad::wrong_shape")
    assert code == 3, err
    assert "Traceback" not in err and "internal error" not in err
    assert "result graph does not run" in err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["verification"]["ok"] is False


def test_verify_string_outputs_compare_by_equality(capsys, tmp_path):
    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    x = rw.placeholder("x", F32, [2])
    s = rw.add_node("AsString", [x], {"T": F32}, name="s")
    rw.set_graph_inputs([x])
    rw.set_outputs([s])
    model = gs.save(g, tmp_path / "m.pb")
    code, _, err = run_cli(capsys, "run", model, "-p", "core::dce", "-o", tmp_path / "out",
                           "--target", "none", "--verify")
    assert code == 0, err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["verification"]["ok"] is True
    assert summary["verification"]["graphdef:s:0"]["max_abs"] == 0.0


# ---------------------------------------------------------------------- issue 19: polish
def test_pipeline_from_a_file(capsys, tmp_path, model):
    text = tmp_path / "pipeline.txt"
    text.write_text("# strip identities, then clean up\ncore::remove_identity,\ncore::dce\n")
    code, out, err = run_cli(capsys, "run", model, "-p", f"@{text}", "--target", "none",
                             "-o", tmp_path / "out")
    assert code == 0, err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [p["pass_id"] for p in summary["passes"]] == ["core::remove_identity", "core::dce"]
    other = tmp_path / "other"
    other.mkdir()
    code, _, err = run_cli(capsys, "run", model, "-p", f"@{tmp_path / 'nope.txt'}",
                           "-o", other / "out")
    assert_clean_failure(other, code, err, 2, "nope.txt", "no such pipeline file")
    text.write_text("core::dcee\n")
    code, _, err = run_cli(capsys, "run", model, "-p", f"@{text}", "-o", tmp_path / "out3")
    assert code == 2 and "pipeline.txt" in err and "did you mean core::dce?" in err


def test_reproducer_readme_holds_the_command_that_reproduces(capsys, tmp_path, model,
                                                              monkeypatch):
    plugin = tmp_path / "fail_plugin.py"
    plugin.write_text(textwrap.dedent('''
        import graphsurgery as gs

        @gs.register_pass("bad::fail")
        def fail(graph, rw):
            """Always fail."""
            raise ValueError("no")
    '''))
    code, _, err = run_cli(capsys, "run", model, "-p", "core::remove_identity,bad::fail",
                           "--plugin", plugin, "-o", tmp_path / "out")
    assert code == 3, err
    repro = tmp_path / "out" / "reproducer"
    readme = (repro / "README.md").read_text()
    command = next(line.strip() for line in readme.splitlines() if "graphsurgery run" in line)
    assert "-p @pipeline.txt" in command and f"--plugin {plugin}" in command
    monkeypatch.chdir(repro)
    argv = command.split()[1:]
    code, _, err = run_cli(capsys, *argv)
    assert code == 3 and "pass bad::fail failed after [core::remove_identity]" in err
    gs.registry.unregister_pass("bad::fail")


@pytest.mark.parametrize("args, hint", [
    (["-p", "core::dcee"], "did you mean core::dce?"),
    (["-p", "stylegan-to-tflit"], "did you mean stylegan-to-tflite?"),
    (["-p", "core::dce", "--verfy"], "did you mean --verify?"),
    (["-p", "core::dce", "--target", "tflit"], "did you mean tflite?"),
    (["-p", "core::dce", "--quantize", "fp61"], "did you mean fp16?"),
    (["-p", "core::fold_constants", "--set", "core::fold_constants.max_byte=1"],
     "did you mean max_bytes?"),
])
def test_did_you_mean(capsys, tmp_path, model, args, hint):
    code, _, err = run_cli(capsys, "run", model, *args, "-o", tmp_path / "out")
    assert_clean_failure(tmp_path, code, err, 2, hint)


def test_every_option_has_help():
    from graphsurgery.cli import build_parser

    parser = build_parser()
    missing = []

    def walk(p, where):
        for action in p._actions:
            if action.choices and isinstance(action.choices, dict):  # subcommands
                for name, sub in action.choices.items():
                    walk(sub, f"{where} {name}")
            elif not action.help:
                missing.append(f"{where} {action.option_strings or action.dest}")

    walk(parser, "graphsurgery")
    assert not missing


def test_pass_docs_are_whole_sentences_without_rst(capsys):
    from graphsurgery.registry import one_line_doc

    assert one_line_doc("Fold ``Mul`` by :class:`~a.B`\nconstants. More text.") == \
        "Fold Mul by B constants."
    code, out, _ = run_cli(capsys, "passes")
    summaries = [line[35:] for line in out.splitlines() if "::" in line[:34]]
    assert summaries and all("`" not in s for s in summaries)
    assert all(s.rstrip().endswith((".", ")")) for s in summaries), summaries


def test_final_lines_name_existing_paths_and_the_figures(capsys, tmp_path, model):
    """Without -v: verification figures; with -v the summary ends with the pass count."""
    code, out, err = run_cli(capsys, "run", model, "-p", "generic", "--target", "none",
                             "--verify", "-v", "-o", tmp_path / "out")
    assert code == 0, err
    head = out.splitlines()[0]
    assert head.endswith("nodes 7 -> 5") and "fixpoint" not in head
    assert "max abs error 0, PSNR inf (identical)" in out
    for token in out.split():
        token = token.rstrip(":,")
        if "/" in token and not token.startswith("graphdef:"):
            assert Path(token).exists(), token
