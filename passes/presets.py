"""The core's pipeline presets and groups (StyleGAN's live in ``passes/stylegan/presets.py``)."""

from __future__ import annotations

from graphsurgery.pipeline import register_group, register_pipeline


@register_pipeline("generic", "clean up any frozen graph: training leftovers, control flow, "
                   "identities, constants, duplicates, dead nodes")
def generic() -> str:
    # Training leftovers go first: until they are gone the graph does not even import.
    # Constant predicates are folded next, which drops whole dead branches before any
    # constant folding would spend time on them. Identities are removed before CSE so
    # duplicates hidden behind different Identity nodes become equal. Folding, scaling
    # chains, CSE and DCE feed each other (a folded constant makes two nodes equal, a
    # merge makes a constant dead), so they repeat until nothing changes.
    return (
        "core::strip_training,"
        "core::fold_switch_merge,"
        "core::remove_identity,"
        "fixpoint(max_iter=10){core::fold_constants,core::fold_scalings,core::cse,core::dce}"
    )


# Cleanup that follows every structural stage: what a rewrite leaves behind (constants to
# fold, x * 1, duplicates, dead nodes) is gone before the next stage looks at the graph.
# Folding, arithmetic identities, scaling chains, CSE and DCE feed each other, so they
# repeat until a whole round changes nothing.
register_group(
    "core::canonicalize",
    "fixpoint(max_iter=10){core::fold_constants,core::simplify_arith,core::fold_scalings,"
    "core::cse,core::dce}",
    "fold constants, arithmetic identities and scaling chains, merge duplicates, drop dead "
    "nodes, until nothing changes",
)
