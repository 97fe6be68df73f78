"""The pass registry: ids, duplicates, function passes, typed options, rule counts."""

from __future__ import annotations

import pytest

import graphsurgery as gs
from graphsurgery.registry import (
    Option,
    count_rule,
    counting_rules,
    describe_options,
    passes_in_namespace,
    unregister_pass,
)


@pytest.fixture
def clean():
    ids: list[str] = []
    yield ids
    for pass_id in ids:
        unregister_pass(pass_id)


def test_ids_need_a_namespace():
    for bad in ("dce", "core:dce", "core::", "::dce", "core::d-ce"):
        with pytest.raises(gs.UsageError, match="must look like 'namespace::name'"):
            gs.register_pass(bad)


def test_duplicates_are_refused_naming_both_modules(clean):
    @gs.register_pass("t_reg::once")
    def once(graph, rw):
        """Do nothing."""

    clean.append("t_reg::once")
    with pytest.raises(gs.UsageError, match="registered twice"):
        @gs.register_pass("t_reg::once")
        def again(graph, rw):
            """Do nothing either."""


def test_function_pass_options_come_from_keyword_parameters(clean):
    @gs.register_pass("t_reg::opts")
    def opts(graph, rw, *, size: int = 256, name: str = "x", strict: bool = False):
        """A pass with options.

        Before:: x   After:: x
        """

    clean.append("t_reg::opts")
    cls = gs.get_pass("t_reg::opts")
    assert cls.summary() == "A pass with options."
    assert cls(size="64", strict="yes").options == {"size": 64, "name": "x", "strict": True}
    assert describe_options(cls)[0] == "size: int (default 256)"
    assert passes_in_namespace("t_reg") == ["t_reg::opts"]
    with pytest.raises(TypeError, match="needs a bool/int/float/str type"):
        @gs.register_pass("t_reg::bad")
        def bad(graph, rw, *, shape: list = None):  # noqa: B006
            """Bad option type."""


def test_required_options_and_choices():
    class Needs(gs.Pass):
        """Needs a mode."""

        mode = Option(("a", "b"))

    Needs.id = "t_reg::needs"
    with pytest.raises(gs.UsageError, match="option 'mode' is required"):
        Needs()
    with pytest.raises(gs.UsageError, match="must be one of a, b"):
        Needs(mode="c")
    assert Needs(mode="b").options == {"mode": "b"}


def test_unknown_pass_suggests_the_namespaced_one():
    with pytest.raises(gs.UsageError, match="did you mean core::dce"):
        gs.get_pass("other::dce")


def test_rule_counts_are_collected_only_inside_the_block():
    count_rule("outside")  # no collector: nothing happens, no error
    with counting_rules() as counts:
        count_rule("a")
        count_rule("a", 2)
        with counting_rules() as inner:
            count_rule("b")
        count_rule("c")
    assert counts == {"a": 3, "c": 1} and inner == {"b": 1}
