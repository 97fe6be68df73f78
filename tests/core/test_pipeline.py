import logging
import re

import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.pipeline import Fixpoint, Step

from .graphs import F32, chain, deep_chain


@pytest.fixture(autouse=True)
def _test_passes():
    """Register a few passes for these tests only."""

    @gs.register_pass("t::drop_identity")
    def drop_identity(graph, rw, *, limit: int = 0):
        """Remove Identity nodes (at most ``limit`` per run when > 0)."""
        done = 0
        for node in graph.nodes("Identity"):
            if graph.is_output(node.name) or (limit and done >= limit):
                continue
            rw.replace_uses(node.output(), node.data_inputs[0])
            rw.erase(node)
            done += 1

    @gs.register_pass("t::dangle")
    def dangle(graph, rw):
        """Leave a dangling input behind (a broken plugin)."""
        rw.erase("c", force=True)

    @gs.register_pass("t::boom")
    def boom(graph, rw):
        """Raise."""
        rw.add_node("Relu", ["x"], {"T": F32}, name="half_done")
        raise RuntimeError("kaboom")

    @gs.register_pass("t::flip")
    def flip(graph, rw):
        """Change something on every run: never converges."""
        node = graph.node("mul")
        rw.set_attr(node, "_flip", not node.attr("_flip", False))

    class Typed(gs.Pass):
        """A class pass with typed options."""

        size = gs.Option(int, 256, "output size")
        mode = gs.Option(("const", "input", "zero"), "const")
        scale = gs.Option(float, 1.0)
        strict = gs.Option(bool, False)

        def run(self, graph, rw):
            self.seen = self.options

    gs.register_pass("t::typed")(Typed)
    yield
    for pid in ("t::drop_identity", "t::dangle", "t::boom", "t::flip", "t::typed"):
        gs.registry.unregister_pass(pid)


def test_text_round_trip_and_editing():
    p = gs.Pipeline.parse("t::drop_identity(limit=1), fixpoint(max_iter=3){t::typed(size=64)}")
    assert p.text() == "t::drop_identity(limit=1),fixpoint(max_iter=3){t::typed(size=64)}"
    assert isinstance(p.items[1], Fixpoint)
    p.append("t::typed", mode="input").insert(0, "t::flip")
    p.set_options("t::typed", strict="true")
    assert p.pass_ids() == ["t::flip", "t::drop_identity", "t::typed", "t::typed"]
    p.remove("t::flip")
    assert gs.Pipeline.parse(str(p)).pass_ids() == p.pass_ids()


def test_options_are_typed_and_validated():
    inst = gs.get_pass("t::typed")(size="128", scale="0.5", strict="yes", mode="zero")
    assert inst.options == {"size": 128, "mode": "zero", "scale": 0.5, "strict": True}
    for text, message in [
        ("t::typed(size=big)", "size='big' is not a valid int"),
        ("t::typed(mode=other)", "must be one of const, input, zero"),
        ("t::typed(colour=red)", "unknown option 'colour'"),
        ("t::nope", "unknown pass 't::nope'"),
        ("dce", "needs a namespace"),
        ("t::typed(size=1", "expected ')'"),
        ("t::typed,,t::typed", "expected a pass id"),
        ("", "empty"),
    ]:
        with pytest.raises(gs.UsageError, match=re.escape(message)):
            gs.Pipeline.parse(text)


def test_presets_return_copies():
    a = gs.Pipeline.preset("generic")
    a.append("t::typed")
    b = gs.Pipeline.preset("generic")
    assert "t::typed" not in b.pass_ids()
    with pytest.raises(gs.UsageError, match="unknown pipeline preset"):
        gs.Pipeline.preset("nope")


def test_fresh_instance_per_run():
    p = gs.Pipeline.parse("t::typed(size=8),t::typed(size=16)")
    seen = []

    class Spy(gs.Instrument):
        def before_pass(self, pass_id, graph):
            seen.append(pass_id)

    p.run(chain(), instruments=[Spy()])
    assert seen == ["t::typed", "t::typed"]
    assert gs.get_pass("t::typed")().options["size"] == 256


def test_records_deltas_and_honest_changes():
    g = chain()
    result = gs.Pipeline.parse("t::drop_identity,t::drop_identity").run(g)
    first, second = result.records
    assert first.changed and not second.changed
    assert first.deltas() == ["Identity -2 (3 -> 1)"]
    assert first.ops_before["Identity"] == 3 and first.ops_after["Identity"] == 1
    assert first.verification == "ok"


def test_fixpoint_converges_and_warns_when_it_does_not(caplog):
    g = chain()
    res = gs.Pipeline.parse("fixpoint(max_iter=5){t::drop_identity(limit=1)}").run(g)
    assert [r.iteration for r in res.records] == [1, 2, 3] and not res.warnings
    with caplog.at_level(logging.WARNING, logger="graphsurgery"):
        res = gs.Pipeline.parse("fixpoint(max_iter=4){t::flip}").run(chain())
    assert len(res.records) == 4
    assert "did not converge after 4 iterations" in res.warnings[0]
    assert "did not converge" in caplog.text


def test_failing_pass_names_itself_and_writes_reproducer(tmp_path):
    g = chain()
    p = gs.Pipeline.parse("t::drop_identity,t::typed,t::dangle")
    with pytest.raises(gs.PassFailure) as info:
        p.run(g, reproducer_dir=tmp_path)
    msg = str(info.value)
    assert msg.startswith("pass t::dangle failed after [t::drop_identity, t::typed]")
    assert "names a missing node" in msg
    repro = tmp_path / "reproducer"
    assert (repro / "pipeline.txt").read_text().strip() == "t::dangle"
    reloaded = gs.load(repro / "input.pb")
    assert "c" in reloaded and "id0" not in reloaded  # the graph as t::dangle received it
    with pytest.raises(gs.PassFailure, match="t::dangle failed"):
        gs.Pipeline.parse(str(p)).run(reloaded)


def test_exceptions_in_passes_are_failures():
    with pytest.raises(gs.PassFailure, match="pass t::boom failed after \\[\\]: RuntimeError"):
        gs.Pipeline.parse("t::boom").run(chain())


def test_keep_going_restores_and_reports_loudly(caplog):
    g = chain()
    before = g.to_graph_def()
    with caplog.at_level(logging.ERROR, logger="graphsurgery"):
        res = gs.Pipeline.parse("t::boom,t::dangle,t::drop_identity").run(g, keep_going=True)
    assert [f.pass_id for f in res.failures] == ["t::boom", "t::dangle"]
    assert not res.ok
    assert "half_done" not in g and "c" in g
    assert "FAILED" in caplog.text and "restored" in caplog.text
    assert g.op_counts()["Identity"] == 1 and before != g.to_graph_def()


def test_dump_only_after_changes(tmp_path):
    dump = gs.DumpChanged(tmp_path)
    gs.Pipeline.parse("t::drop_identity,t::typed,t::drop_identity").run(chain(), instruments=[dump])
    assert [p.name for p in dump.written] == ["01_t__drop_identity.pb"]


def test_interface_changes_fail_verification():
    @gs.register_pass("t::retype")
    def retype(graph, rw):
        """Cast the output to int32."""
        cast = rw.add_node("Cast", ["mul"], {"SrcT": F32, "DstT": gs.DType.int32}, name="cast")
        rw.replace_uses("y", cast)

    try:
        with pytest.raises(gs.PassFailure, match="changed dtype from float32 to int32"):
            gs.Pipeline.parse("t::retype").run(chain())
    finally:
        gs.registry.unregister_pass("t::retype")


def test_duplicate_registration_is_refused():
    with pytest.raises(gs.UsageError, match="registered twice"):
        @gs.register_pass("t::typed")
        def other(graph, rw):
            """Another."""


def test_set_overrides():
    p = gs.Pipeline.parse("t::typed")
    p.apply_overrides(["t::typed.size=32"])
    assert p.items[0].options == {"size": "32"}
    for bad, message in [("t::typed.size", "expected PASS.OPTION=VALUE"),
                         ("core::dce.keep=x", "no pass 'core::dce'"),
                         ("t::typed.size=x", "not a valid int")]:
        with pytest.raises(gs.UsageError, match=message):
            p.apply_overrides([bad])


def test_step_text_quotes_nothing():
    assert Step("a::b", {"x": True, "y": 2}).text() == "a::b(x=true,y=2)"
    assert np.isfinite(1.0)


def test_warm_up_loads_the_shape_library_only_for_passes_that_infer():
    """The generic preset never infers shapes: neither it nor its warm-up loads the 790 MB
    library (its peak RSS target is 2.5x the file); the StyleGAN preset's warm-up starts the
    load in the background."""
    from graphsurgery.testing import assert_runs_alone

    assert_runs_alone(
        "import graphsurgery as gs\n"
        "from graphsurgery import zoo\n"
        "from graphsurgery.ir import tf_capi\n"
        "pipe = gs.Pipeline.preset('generic')\n"
        "assert pipe.warm_up() is False\n"
        "assert pipe.run(gs.load(zoo.cached('sg2-tiny'))).ok\n"
        "assert not tf_capi._TRIED, 'loaded the shape library'\n"
        "assert gs.Pipeline.preset('stylegan-to-tflite').warm_up() is True\n"
        "assert tf_capi.load() is not None and tf_capi._TRIED\n"
    )


@pytest.mark.parametrize("kind", ["data", "control", "const_control"])
def test_generic_runs_over_5000_long_chains(kind):
    # 500 control-dependent constants ended in a RecursionError in core::fold_constants.
    g = deep_chain(5000, kind)
    res = gs.Pipeline.preset("generic").run(g)
    assert res.ok
    if kind == "const_control":
        assert sorted(g.op_counts().items()) == [("AddV2", 1), ("Const", 1), ("Placeholder", 1)]


def test_check_command_on_a_5000_long_chain(tmp_path, capsys):
    from graphsurgery.cli import main

    path = gs.save(deep_chain(5000, "control"), tmp_path / "deep.pb")
    assert main(["check", str(path)]) == 0
    assert "0 blocker(s)" in capsys.readouterr().out


def test_diff_of_scopes_nested_deeper_than_the_stack_allows(tmp_path, capsys):
    # The drawn diff walked name scopes recursively: RecursionError past ~1000 levels. Here
    # the stack gets 150 frames beyond the test's own, and the scopes nest 300 deep.
    import sys

    from graphsurgery.cli import main

    g = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(g, "test::build")
    t = x = rw.placeholder("x", F32, [1, 4])
    for i in range(300):
        t = rw.add_node("Identity" if i % 3 else "Relu", [t], {"T": F32}, name="s/" * i + f"n{i}")
    rw.set_graph_inputs([x])
    rw.set_outputs([t])
    before = gs.save(g, tmp_path / "before.pb")
    gs.Pipeline.parse("core::remove_identity").run(g)
    after = gs.save(g, tmp_path / "after.pb")
    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + 150)
    try:
        code = main(["diff", str(before), str(after), "-o", str(tmp_path / "d.html")])
    finally:
        sys.setrecursionlimit(old_limit)
    assert code == 0, capsys.readouterr().err
    assert "199 removed" in capsys.readouterr().out
