import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.ir import proto

from .graphs import chain, raw_graph_def


def test_pb_and_pbtxt_round_trip(tmp_path):
    g = chain()
    for name in ("g.pb", "g.pbtxt"):
        path = gs.save(g, tmp_path / name)
        h = gs.load(path, outputs=["y"])
        assert h.names == g.names
        assert h.to_graph_def() == g.to_graph_def()
        np.testing.assert_array_equal(h.const_value("c"), g.const_value("c"))


def test_binary_output_matches_protobuf_serialisation(tmp_path):
    g = chain()
    path = gs.save(g, tmp_path / "g.pb")
    assert proto.GraphDef.FromString(path.read_bytes()) == g.to_graph_def()


def test_load_tf_objects():
    import tensorflow as tf
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        tf.identity(x * 2.0, name="y")
    g1 = gs.load(graph, outputs=["y"])
    g2 = gs.load(graph.as_graph_def(), outputs=["y"])
    assert g1.names == g2.names and "y" in g1
    assert g1.inputs == [gs.TensorRef("x")]


def test_load_saved_model(tmp_path):
    import tensorflow as tf

    class M(tf.Module):
        def __init__(self):
            self.w = tf.Variable(np.ones((3, 2), np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def __call__(self, x):
            return {"y": tf.matmul(x, self.w)}

    m = M()
    tf.saved_model.save(m, str(tmp_path / "sm"), signatures=m.__call__)
    g = gs.load(tmp_path / "sm")
    assert g.op_counts()["Const"] >= 1 and "VarHandleOp" not in g.op_counts()
    from graphsurgery.testing import run_tf

    (y,) = run_tf(g, {str(g.inputs[0]): np.ones((2, 3), np.float32)})
    np.testing.assert_allclose(y, np.full((2, 2), 3.0))


def test_progress_is_reported(tmp_path):
    seen = []
    gs.load(gs.save(chain(), tmp_path / "g.pb"), progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1][0] == seen[-1][1]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (b"\x0a\xff\xff\x03abc", "truncated or corrupt"),
        (bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)), "not a GraphDef"),
    ],
)
def test_bad_binary_files(tmp_path, content, message):
    path = tmp_path / "bad.pb"
    path.write_bytes(content)
    with pytest.raises(gs.InputError, match=message):
        gs.load(path)


def test_truncated_real_graph(tmp_path):
    data = gs.serialize(chain())
    path = tmp_path / "t.pb"
    path.write_bytes(data[: len(data) - 7])
    with pytest.raises(gs.InputError, match="truncated or corrupt"):
        gs.load(path)


def test_structural_problems_are_load_errors(tmp_path):
    cases = {
        "cycle": ([("x", "Placeholder", []), ("a", "Relu", ["b"]), ("b", "Relu", ["a"])],
                  "cycle"),
        "missing": ([("x", "Placeholder", []), ("a", "Relu", ["nope"])], "missing node"),
        "port": ([("x", "Placeholder", []), ("a", "Relu", ["x:3"])], "has 1 output"),
        "dup": ([("x", "Placeholder", []), ("x", "Relu", [])], "duplicate node name"),
        "order": ([("x", "Placeholder", []), ("a", "AddV2", ["^x", "x", "x"])],
                  "after a control input"),
    }
    for name, (nodes, message) in cases.items():
        path = tmp_path / f"{name}.pb"
        path.write_bytes(raw_graph_def(nodes))
        with pytest.raises(gs.GraphError, match=message):
            gs.load(path)


def test_pbtxt_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "bad.pbtxt"
    path.write_text('node {\n  name: "x"\n  op: "Placeholder"\n  input: \n')
    with pytest.raises(gs.InputError, match=r"bad.pbtxt: pbtxt syntax error: 4:"):
        gs.load(path)


def test_pickle_without_a_network_is_refused(tmp_path):
    # Pickles are read as data (tests/ir/test_pickle.py); one holding no network is an error.
    path = tmp_path / "network.pkl"
    path.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(gs.InputError, match="holds no NVlabs network"):
        gs.load(path)
