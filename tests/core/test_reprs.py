"""Readable reprs of the public objects."""

from __future__ import annotations

import graphsurgery as gs

from .graphs import chain


def test_graph_repr_shows_size_and_interface():
    g = chain()
    assert repr(g) == "<Graph '<memory>': 7 nodes, 5 op types, inputs [x], outputs [y]>"
    g.outputs = [gs.TensorRef("x"), gs.TensorRef("mul"), gs.TensorRef("y"), gs.TensorRef("c"),
                 gs.TensorRef("id0"), gs.TensorRef("unused")]
    assert "outputs [x, mul, y, c, ... 2 more]>" in repr(g)
