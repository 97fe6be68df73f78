"""benchmarks/onnx_upsample.py: each exact rewrite of the up-sampling layer (phase convs,
union kernel, FIR folded into a 6x6 ConvTranspose) computes what the ConvTranspose + FIR
computes, with the op types it claims; the timing harness runs."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx_graphsurgeon")
ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("name, ops", [
    ("phase", ["Conv"] * 4 + ["Concat", "DepthToSpace", "Mul", "Pad", "Conv"]),
    ("union", ["Conv", "DepthToSpace", "Mul", "Pad", "Conv"]),
    ("folded", ["ConvTranspose", "Mul"]),
])
def test_each_rewrite_matches_the_conv_transpose(name, ops):
    from benchmarks.onnx_upsample import layer, variant

    base = layer(6, 5, 7)
    assert [n.op_type for n in base.graph.node] == ["ConvTranspose", "Mul", "Pad", "Conv"]
    model = variant(base, name)
    assert sorted(n.op_type for n in model.graph.node) == sorted(ops)
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((1, 6, 7, 7)).astype(np.float32),
             "d": rng.random((1, 5, 1, 1)).astype(np.float32)}
    want = ort.InferenceSession(base.SerializeToString()).run(None, feeds)[0]
    got = ort.InferenceSession(model.SerializeToString()).run(None, feeds)[0]
    assert got.shape == want.shape == (1, 5, 14, 14)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_the_harness_reports_paired_medians():
    from benchmarks.onnx_upsample import measure

    rep = measure(4, 4, 6, runs=1, threads=1)
    assert set(rep["base_over"]) == {"phase", "union", "folded"}
    assert max(rep["max_abs_diff"].values()) < 1e-5 * rep["output_range"]
