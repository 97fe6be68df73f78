import numpy as np
import pytest

from graphsurgery.testing import check_pass, run_pass, tf_graph

PASS = "core::bias_into_phases"


def _phases_then_bias(bias_shape=(6,), co=6, widths=None, add="add", extra_reader=False):
    """Four phase convs -> concat -> DepthToSpace(2) -> + per-channel bias -> ReLU."""
    rng = np.random.default_rng(0)
    widths = widths or [co] * 4
    ws = [rng.standard_normal((2, 2, 3, w)).astype(np.float32) for w in widths]
    b = rng.standard_normal(bias_shape).astype(np.float32)

    def build(tf, x):
        convs = [tf.nn.conv2d(x, w, 1, "SAME") for w in ws]
        y = tf.nn.depth_to_space(tf.concat(convs, axis=3), 2)
        z = tf.nn.bias_add(y, b) if add == "bias_add" else (b + y if add == "radd" else y + b)
        out = {"y": tf.nn.relu(z)}
        if extra_reader:
            out["d"] = y
        return out

    return tf_graph(build, x=(1, 5, 4, 3))


@pytest.mark.parametrize(("add", "bias_shape"), [
    ("add", (6,)), ("radd", (6,)), ("bias_add", (6,)), ("add", (1, 1, 1, 6)),
])
def test_the_bias_moves_onto_every_phase_convolution(add, bias_shape):
    g, feeds = _phases_then_bias(bias_shape, add=add)
    after = check_pass(g, PASS, feeds=feeds, atol=1e-5, rtol=1e-5,
                       before={"BiasAdd": int(add == "bias_add"),
                               "AddV2": int(add != "bias_add")},
                       after={"BiasAdd": 4, "AddV2": 0, "Conv2D": 4, "DepthToSpace": 1})
    (bias,) = [g.const_value(m.name) for m in g.nodes("Const")
               if g.const_shape(m.name) == bias_shape]
    for n in after.nodes("BiasAdd"):
        assert after.node(n.data_inputs[0].node).op == "Conv2D"
        # each phase's channels are whole copies of the C channels: the same vector
        np.testing.assert_array_equal(after.const_value(n.data_inputs[1]), bias.reshape(-1))


def test_unequal_phase_widths_take_their_slices():
    # two convs of 12 channels: each holds two block positions' worth of the 6 channels
    g, feeds = _phases_then_bias(widths=[12, 12])
    after = check_pass(g, PASS, feeds=feeds, atol=1e-5, rtol=1e-5, after={"BiasAdd": 2})
    assert [after.const_shape(n.data_inputs[1].node) for n in after.nodes("BiasAdd")] == [
        (12,), (12,)]


def test_left_alone_when_the_interleaved_tensor_is_read_elsewhere_or_the_add_broadcasts():
    g, _ = _phases_then_bias(extra_reader=True)
    check_pass(g, PASS, expect_change=False)
    g, _ = tf_graph(lambda tf, x: tf.nn.depth_to_space(tf.concat(
        [tf.nn.conv2d(x, np.ones((1, 1, 2, 2), np.float32), 1, "SAME")] * 4, axis=3), 2)
        + np.ones((1, 1, 8, 2), np.float32), x=(1, 4, 4, 2))  # per column, not per channel
    check_pass(g, PASS, expect_change=False)


def test_litert_fuses_the_moved_bias_into_the_convolutions(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from graphsurgery.export import audit_tflite, convert_tflite

    g, _ = _phases_then_bias()
    after = g.copy()
    run_pass(after, PASS)
    ops = [audit_tflite(convert_tflite(x, tmp_path / f"{i}.tflite").path, run=False,
                        analyzer=False).ops for i, x in enumerate((g, after))]
    assert ops[0].get("ADD") == 1 and "ADD" not in ops[1]
    assert ops[1]["CONV_2D"] == 4


@pytest.mark.parametrize("crop", [(1, 1, 10, 7), None])
def test_a_fused_form_gets_the_bias_through_its_crop(crop):
    # one conv of 4 * 6 channels -> DepthToSpace(2) -> Slice of rows and columns -> + b
    rng = np.random.default_rng(1)
    w = rng.standard_normal((2, 2, 3, 24)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)

    def build(tf, x):
        y = tf.nn.depth_to_space(tf.nn.conv2d(x, w, 1, "VALID"), 2)
        if crop is not None:
            y = tf.slice(y, [0, crop[0], crop[1], 0], [1, crop[2], crop[3], 6])
        return tf.nn.relu(y + b)

    g, feeds = tf_graph(build, x=(1, 7, 6, 3))
    after = check_pass(g, PASS, feeds=feeds, atol=1e-5, rtol=1e-5,
                       before={"AddV2": 1, "BiasAdd": 0, "Slice": int(crop is not None)},
                       after={"AddV2": 0, "BiasAdd": 1, "Conv2D": 1,
                              "Slice": int(crop is not None)})
    (add,) = after.nodes("BiasAdd")
    assert after.node(add.data_inputs[0].node).op == "Conv2D"
    np.testing.assert_array_equal(after.const_value(add.data_inputs[1]), np.tile(b, 4))


def test_left_alone_when_the_crop_drops_channels():
    w = np.ones((1, 1, 2, 8), np.float32)
    g, _ = tf_graph(lambda tf, x: tf.slice(tf.nn.depth_to_space(
        tf.nn.conv2d(x, w, 1, "VALID"), 2), [0, 0, 0, 0], [1, 8, 8, 1])
        + np.ones(1, np.float32), x=(1, 4, 4, 2))
    check_pass(g, PASS, expect_change=False)
