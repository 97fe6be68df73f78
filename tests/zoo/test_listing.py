"""Listing the zoo reads the preset tables only: TensorFlow is imported when a model is built."""

from __future__ import annotations

from graphsurgery.testing import assert_runs_alone


def test_listing_the_zoo_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from graphsurgery import zoo\n"
        "names = [e.name for e in zoo.entries()]\n"
        "assert {'sg1-tiny', 'sg2-tiny-cuda', 'tf2-tiny-savedmodel'} <= set(names), names\n"
        "assert 'tensorflow' not in sys.modules, 'listing imported tensorflow'\n"
        "zoo.build('sg2-tiny')\n"
        "assert 'tensorflow' in sys.modules\n"
    )
    assert_runs_alone(code)
