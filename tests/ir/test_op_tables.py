"""graphsurgery.ir.opdefs' op tables: random ops with their distributions, ref ops."""

from __future__ import annotations

from graphsurgery.ir import opdefs
from graphsurgery.noise import NOISE_OPS


def _args(specs: list) -> list:
    """An argument list without its reference flags."""
    return [[*a[:2]] for a in specs]


def test_every_ref_op_has_a_value_form_with_the_same_arguments():
    """``RefSelect`` -> ``Select`` (in the reference runner's old table) was wrong: RefSelect
    picks one of N inputs by index, Select takes a condition and two tensors."""
    table = opdefs._table()
    assert {"RefSwitch", "RefMerge", "RefIdentity"} <= set(opdefs.REF_OPS)
    for ref, value in opdefs.REF_OPS.items():
        assert opdefs.has_ref_input(ref) or any(a[2] for a in table[ref]["out"]), ref
        assert _args(table[ref]["in"]) == _args(table[value]["in"]), (ref, value)
        assert _args(table[ref]["out"]) == _args(table[value]["out"]), (ref, value)
        assert not any(a[0] == "one" and a[2] for a in table[value]["in"] + table[value]["out"])


def test_random_ops_and_their_distributions():
    assert opdefs.RANDOM_OPS["RandomStandardNormal"] == "normal"
    assert all(opdefs.is_random(op) for op in opdefs.RANDOM_OPS)
    # input 0 is the shape of the tensor drawn
    table = opdefs._table()
    assert all(table[op]["in"][0] == ["one", "T", False] for op in opdefs.RANDOM_OPS)
    every = opdefs.random_ops()
    assert set(opdefs.RANDOM_OPS) <= every
    assert {"Multinomial", "RandomShuffle", "RandomGamma", "RandomPoisson", "RandomCrop",
            "ParameterizedTruncatedNormal", "StatelessRandomNormalV2",
            "StatefulStandardNormalV2"} <= every
    assert not {"RandomShuffleQueue", "RandomShuffleQueueV2", "Identity"} & every
    # the noise inputs of the reference: the float distributions it can draw
    assert set(NOISE_OPS) == {"RandomStandardNormal", "RandomUniform", "TruncatedNormal"}
