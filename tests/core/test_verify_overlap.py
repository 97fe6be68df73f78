"""``run --verify`` runs the references in the background (driver._start_run,
runners.BackgroundRun) while the passes and the converter work: the reference must stay
the INPUT graph's computation, so a wrong rewrite is still caught, and outputs computed on
other feeds are never used."""

from __future__ import annotations

import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery import driver, runners

from .graphs import chain


@pytest.fixture
def wrong_constant():
    @gs.register_pass("test::wrong_constant")
    def wrong(graph, rw):
        """mul = x * c  ->  x * (c + 1): structurally sound, numerically wrong."""
        c = rw.const(np.arange(4, dtype=np.float32) + 1, name="c_wrong")
        rw.set_input("mul", 1, c)

    yield "test::wrong_constant"
    gs.registry.unregister_pass("test::wrong_constant")


@pytest.fixture
def used(monkeypatch):
    """The labels of the background runs whose outputs verification used."""
    calls = []
    real = runners.BackgroundRun.result

    def result(self):
        calls.append(self._thread.name)
        return real(self)

    monkeypatch.setattr(runners.BackgroundRun, "result", result)
    return calls


def test_a_wrong_rewrite_is_caught_from_the_background_runs(tmp_path, wrong_constant, used):
    model = gs.save(chain(), tmp_path / "model.pb")
    result = gs.convert(str(model), f"core::remove_identity,{wrong_constant},core::dce",
                        target="tflite", outdir=tmp_path / "o", verify=True)
    assert result.status == 3 and not result.verification["ok"]
    for label in ("graphdef", "tflite"):  # both results are x * (c + 1), not x * c
        assert result.verification[f"{label}:y:0"]["max_abs"] > 0.5
    # the .tflite failed: the GraphDef then runs too (on the main thread), to say where
    assert used == ["graphsurgery-reference"]
    assert {"reference_run", "export", "verify"} <= set(result.timings)
    (x,) = driver.random_feeds(gs.load(model), seed=0).values()
    y = result.values["reference"][result.outputs.index("y:0")]
    np.testing.assert_allclose(y, x * np.arange(4), rtol=1e-6)  # the input graph's maths


def test_a_right_rewrite_passes_from_the_background_runs(tmp_path, used):
    model = gs.save(chain(), tmp_path / "model.pb")
    result = gs.convert(str(model), "core::remove_identity,core::dce", target="tflite",
                        outdir=tmp_path / "o", verify=True)
    assert result.status == 0 and result.verification["ok"], result.verification
    assert used == ["graphsurgery-reference"]  # the .tflite's comparison checks the GraphDef
    assert result.verification["graphdef"].startswith("not run: the tflite model")
    assert "graphdef:y:0" not in result.verification and "graphdef_run" not in result.timings


@pytest.mark.parametrize("target", ["none", "tflite:fp16"])
def test_without_an_exact_artefact_the_graphdef_runs_in_the_background(tmp_path, used, target,
                                                                        wrong_constant):
    """No target, or a quantized one (held to a looser criterion): the GraphDef's own run
    is the exact check, started in the background, and it catches a wrong rewrite."""
    model = gs.save(chain(), tmp_path / "model.pb")
    name, _, quantize = target.partition(":")
    result = gs.convert(str(model), f"core::remove_identity,{wrong_constant},core::dce",
                        target=name, quantize=quantize or None, outdir=tmp_path / "o",
                        verify=True)
    assert result.status == 3 and not result.verification["graphdef:y:0"]["ok"]
    assert used == ["graphsurgery-reference", "graphsurgery-graphdef"]


def test_outputs_computed_on_other_feeds_are_not_used(tmp_path):
    graph = chain()

    class Elsewhere:  # a run on other inputs: must never be asked for its outputs
        feeds = {"x": np.full((1, 4), 7, np.float32)}

        def result(self):
            raise AssertionError("outputs of other feeds used")

    result = driver.Result(model="m", outdir=tmp_path, pipeline="p", records=[], failures=[],
                           pipeline_seconds=0.0, inputs=["x"], outputs=["y"], ops_before={},
                           ops_after={}, nodes_after=0)
    driver._verify(graph, graph.copy(), None, None, result, seed=0, tolerance=1e-3,
                   allow=False, jobs={"reference": Elsewhere(), "graphdef": Elsewhere()})
    assert result.verification["ok"] and result.status == 0


class _Ran:
    """A finished background run: its feeds, and whether its outputs were asked for."""

    def __init__(self, feeds, outputs):
        self.feeds, self.outputs, self.used = feeds, outputs, False

    def result(self):
        self.used = True
        return self.outputs


def test_the_reference_run_fed_an_input_the_passes_dropped_is_used(tmp_path):
    graph = chain()  # the input graph also takes "labels" [1, 0], which the passes dropped
    rw = gs.Rewriter(graph, "test::labels")
    labels = rw.placeholder("labels", gs.DType.float32, [1, 0])
    rw.set_graph_inputs([*graph.inputs, labels])
    graph.outputs = [gs.TensorRef("y")]
    result_graph = chain()
    result_graph.outputs = [gs.TensorRef("y")]
    feeds = driver.random_feeds(graph, seed=0)  # what the background run was fed
    assert set(feeds) == {"x", "labels"}
    ran = _Ran(feeds, [feeds["x"] * np.arange(4, dtype=np.float32)])
    result = driver.Result(model="m", outdir=tmp_path, pipeline="p", records=[], failures=[],
                           pipeline_seconds=0.0, inputs=["x"], outputs=["y"], ops_before={},
                           ops_after={}, nodes_after=0)
    driver._verify(graph, result_graph, None, None, result, seed=0, tolerance=1e-3,
                   allow=False, jobs={"reference": ran})
    assert ran.used and result.verification["ok"]


@pytest.fixture
def interpreters(monkeypatch):
    """How many LiteRT interpreters were made (each one loads and runs the model)."""
    from ai_edge_litert import interpreter

    made = []
    real = interpreter.Interpreter

    def counting(*a, **kw):
        made.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(interpreter, "Interpreter", counting)
    return made


def test_verification_uses_the_audits_litert_run(tmp_path, interpreters):
    """The audit ran the .tflite on verification's own feeds: verification takes those
    outputs (one interpreter in all), and they are what LiteRT gives on those feeds."""
    model = gs.save(chain(), tmp_path / "model.pb")
    result = gs.convert(str(model), "core::remove_identity,core::dce", target="tflite",
                        outdir=tmp_path / "o", verify=True)
    assert result.status == 0 and result.verification["ok"] and result.audit.runs
    assert len(interpreters) == 1
    feeds = driver.random_feeds(gs.load(model), seed=0)
    want = runners.TFLiteRunner(result.artefacts["tflite"]).run(feeds)
    assert len(want) == len(result.values["tflite"])
    for got, w in zip(result.values["tflite"], want):
        np.testing.assert_array_equal(got, w)


def test_a_wrong_tflite_is_caught_from_the_audits_run(tmp_path, monkeypatch, interpreters):
    """A .tflite that computes something else than the graph (here converted from x * (c+1))
    fails verification when its outputs come from the audit's run."""
    from graphsurgery.export import tflite as export_tflite

    real = export_tflite.convert_tflite

    def wrong(graph, out_path, **kw):
        g = graph.copy()
        rw = gs.Rewriter(g, "test::break")
        rw.set_input("mul", 1, rw.const(np.arange(4, dtype=np.float32) + 1, name="c_wrong"))
        return real(g, out_path, **kw)

    monkeypatch.setattr(export_tflite, "convert_tflite", wrong)
    model = gs.save(chain(), tmp_path / "model.pb")
    result = gs.convert(str(model), "core::remove_identity,core::dce", target="tflite",
                        outdir=tmp_path / "o", verify=True)
    assert result.status == 3 and not result.verification["ok"]
    assert result.verification["graphdef:y:0"]["max_abs"] == 0
    assert result.verification["tflite:y:0"]["max_abs"] > 0.5
    assert len(interpreters) == 1


def test_the_audits_run_on_other_feeds_is_not_used(tmp_path, interpreters):
    """With another seed the audit's inputs (seed 0) are not verification's: LiteRT runs
    the model again on verification's feeds."""
    model = gs.save(chain(), tmp_path / "model.pb")
    result = gs.convert(str(model), "core::remove_identity,core::dce", target="tflite",
                        outdir=tmp_path / "o", verify=True, seed=5)
    assert result.status == 0 and result.verification["ok"]
    assert len(interpreters) == 2
    feeds = driver.random_feeds(gs.load(model), seed=5)
    y = result.values["tflite"][result.outputs.index("y:0")]
    np.testing.assert_allclose(y, feeds["x"] * np.arange(4), rtol=1e-6)
