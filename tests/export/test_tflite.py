"""convert_tflite: builtins-only conversion, quantization, one-line failures, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.export.audit import audit_tflite
from graphsurgery.export.tflite import convert_tflite, explain_converter_error
from graphsurgery.runners import run_tflite
from graphsurgery.testing import run_tf

from . import build, conv_bias_relu, weights


@pytest.fixture(scope="module")
def clean_graph():
    return build(conv_bias_relu)


@pytest.fixture(scope="module")
def fp32(clean_graph, tmp_path_factory):
    return convert_tflite(clean_graph, tmp_path_factory.mktemp("fp32") / "model.tflite")


def test_fp32_conversion_is_clean_and_matches_tensorflow(clean_graph, fp32):
    assert fp32.path.is_file() and fp32.size == fp32.path.stat().st_size
    assert fp32.quantize == "fp32" and fp32.seconds > 0
    assert fp32.input_shapes == {"x:0": [1, 8, 8, 16]}  # unknown batch became 1
    audit = audit_tflite(fp32.path)
    assert audit.clean, audit.violations
    assert audit.runs is True
    assert audit.ops == {"CONV_2D": 1}  # bias and ReLU fused into the convolution
    x = np.random.default_rng(0).standard_normal((1, 8, 8, 16)).astype(np.float32)
    (ref,) = run_tf(clean_graph, {"x": x})
    (got,) = run_tflite(fp32.path, [x])
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5)


def test_no_temp_files_left(fp32):
    assert sorted(p.name for p in fp32.path.parent.iterdir()) == ["model.tflite"]


@pytest.mark.parametrize("mode", ["fp16", "dynamic"])
def test_quantized_models_are_smaller_and_clean(clean_graph, fp32, tmp_path, mode):
    result = convert_tflite(clean_graph, tmp_path / f"{mode}.tflite", quantize=mode)
    assert result.size < fp32.size, (mode, result.size, fp32.size)
    audit = audit_tflite(result.path)
    # fp16 weights reach the conv through DEQUANTIZE of a constant: still constant weights
    assert audit.clean, audit.violations
    x = np.random.default_rng(1).standard_normal((1, 8, 8, 16)).astype(np.float32)
    (ref,) = run_tflite(fp32.path, [x])
    (got,) = run_tflite(result.path, [x])
    np.testing.assert_allclose(got, ref, atol=0.05 * float(np.abs(ref).max()))


def test_int8_calibrates_on_a_representative_dataset(clean_graph, fp32, tmp_path):
    default = convert_tflite(clean_graph, tmp_path / "a.tflite", quantize="int8")
    assert audit_tflite(default.path).clean  # calibrated on standard-normal inputs
    rng = np.random.default_rng(0)

    def data():
        for _ in range(4):
            yield [rng.standard_normal((1, 8, 8, 16)).astype(np.float32)]

    result = convert_tflite(
        clean_graph, tmp_path / "int8.tflite", quantize="int8", representative_dataset=data
    )
    assert result.size < fp32.size
    audit = audit_tflite(result.path)
    assert audit.runs and audit.clean, audit.violations
    assert "QUANTIZE" in audit.ops


def test_bad_quantize_mode(clean_graph, tmp_path):
    with pytest.raises(gs.UsageError, match="quantize"):
        convert_tflite(clean_graph, tmp_path / "m.tflite", quantize="int4")


def test_input_shapes(tmp_path):
    graph = build(conv_bias_relu, shape=(None, None, None, 16))
    with pytest.raises(gs.UsageError, match="input_shapes"):
        convert_tflite(graph, tmp_path / "m.tflite")
    with pytest.raises(gs.UsageError, match="not a graph input"):
        convert_tflite(graph, tmp_path / "m.tflite", input_shapes={"nope": [1, 2]})
    result = convert_tflite(graph, tmp_path / "m.tflite", input_shapes={"x": [2, 4, 4, 16]})
    assert result.input_shapes == {"x:0": [2, 4, 4, 16]}
    assert audit_tflite(result.path).inputs[0]["shape"] == [2, 4, 4, 16]


def _nchw_depthwise(t, x):
    w = t.constant(weights(3, 3, 3, 1))
    y = t.nn.depthwise_conv2d(x, w, [1, 1, 1, 1], "SAME", data_format="NCHW", name="blur")
    return t.identity(y, name="out")


def _six_d_pad(t, x):
    y = t.reshape(x, [-1, 3, 8, 1, 8, 1])
    y = t.pad(y, [[0, 0], [0, 0], [0, 0], [0, 1], [0, 0], [0, 1]], name="upsample_pad")
    return t.reshape(y, [-1, 3, 16, 16], name="out")


@pytest.mark.parametrize(
    ("fn", "op", "node", "extra"),
    [
        (_nchw_depthwise, "tf.DepthwiseConv2dNative", "blur", "data_format=NCHW"),
        (_six_d_pad, "tf.Pad", "upsample_pad", "tensor<1x3x8x1x8x1xf32>"),
    ],
)
def test_failure_is_one_line_naming_the_op_and_node(tmp_path, fn, op, node, extra):
    graph = build(fn, shape=(None, 3, 8, 8))
    out = tmp_path / "m.tflite"
    with pytest.raises(gs.VerificationError) as info:
        convert_tflite(graph, out)
    msg = str(info.value)
    assert "\n" not in msg
    assert f"'{op}'" in msg and repr(node) in msg and extra in msg, msg
    assert any("Select TF ops" in p or "TF Select ops" in p for p in info.value.problems)
    assert not out.exists() and list(tmp_path.iterdir()) == []  # nothing half-written


def test_import_failure_is_one_line(tmp_path):
    # A frozen graph still holding `Assign` on its (now constant) variable, like StyleGAN's lod
    graph = gs.Graph([], inputs=[], outputs=[])
    rw = gs.Rewriter(graph, "test")
    x = rw.placeholder("x", gs.DType.float32, (1, 4))
    lod = rw.const(np.float32(0), name="lod")
    rw.add_node("Assign", [lod, rw.const(np.float32(1))], {"T": gs.DType.float32}, name="upd")
    out = rw.add_node("Relu", [x], {"T": gs.DType.float32}, name="out")
    rw.set_graph_inputs([x])
    rw.set_outputs([out])
    with pytest.raises(gs.VerificationError, match="does not import into TensorFlow") as info:
        convert_tflite(graph, tmp_path / "m.tflite")
    assert "\n" not in str(info.value) and "float_ref" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_random_op_converts_to_a_builtin_that_the_audit_rejects(tmp_path):
    # TFLite has a builtin RANDOM_STANDARD_NORMAL, so builtins-only conversion succeeds;
    # the no-random rule is enforced by the audit (and by check.lint_tflite before it).
    def noisy(t, x):
        noise = t.random.normal(t.shape(x), name="noise")
        return t.add(x, noise, name="out")

    result = convert_tflite(build(noisy), tmp_path / "m.tflite")
    audit = audit_tflite(result.path)
    assert audit.random_count == 1 and not audit.clean
    assert any(v.startswith("no-random: RANDOM_STANDARD_NORMAL") for v in audit.violations)


def test_explain_converter_error_without_structured_errors():
    text = (
        "loc(\"G/up\"): error: 'tf.Pad' op is neither a custom op nor a flex op\n"
        "TF Select ops: Pad\nDetails:\n"
        "\ttf.Pad(tensor<1x3x8x1x8x1xf32>, tensor<6x2xi32>) -> (tensor<1x3x8x2x8x2xf32>) : "
        '{device = ""}\n'
    )
    summary, problems = explain_converter_error(RuntimeError(text))
    assert summary.startswith("'tf.Pad' op is neither a custom op nor a flex op (node 'G/up')")
    assert "tensor<1x3x8x1x8x1xf32>" in summary
    assert problems[-1] == "TF Select ops needed: Pad"


def test_capture_output_waits_for_the_background_quiet_load():
    """``capture_output`` (the converter's and LiteRT's logging) and the shape library's
    quiet load in its thread both point fd 2 elsewhere. Here the capture starts while the
    load holds fd 2: without the shared lock the capture saved the load's pipe as "stderr"
    and restored it, so the load's reader waited forever for the pipe's end."""
    import subprocess
    import sys

    code = (
        "import threading\n"
        "from graphsurgery import _quiet\n"
        "from graphsurgery.ir import tf_capi\n"
        "from graphsurgery.export.tflite import capture_output\n"
        "_quiet.ACTIVE = True\n"
        "a_in, capturing, a_done = threading.Event(), threading.Event(), threading.Event()\n"
        "def load():\n"
        "    tf_capi._quietly(lambda: (a_in.set(), capturing.wait(0.5)))\n"
        "    a_done.set()\n"
        "t = threading.Thread(target=load, daemon=True)\n"
        "t.start()\n"
        "a_in.wait(5)\n"
        "with capture_output():\n"
        "    capturing.set()\n"
        "    a_done.wait(2)\n"
        "t.join(5)\n"
        "print('hung' if t.is_alive() else 'ok', flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout == "ok\n", (done.stdout, done.stderr)
