"""Structural diff of two graphs: nodes matched by name, classified.

A node is *added* or *removed* when its name exists on one side only, *changed* when the
op, inputs, device or attributes differ, and *unchanged* otherwise. Inside a pipeline the
rewriter already knows which nodes a pass touched (``PassRecord.changes``); given those
``changes`` the classification skips comparing every NodeDef.

Beyond the classification a diff records where each node came from (the rewriter's
provenance: which pass and rule created or last changed it, when the graph carries it)
and which node took over the uses of each removed one (``replaced``: read from the inputs
of the nodes that used it, so it works on two files as well as inside a pipeline).

``DiffResult.write`` saves the classification as JSON or text; drawings (SVG, HTML) are
made by :mod:`graphsurgery.render`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError
from .ir.graph import Graph
from .ir.names import Input

STATUSES = ("added", "removed", "changed", "unchanged")


def op_count_deltas(before: Mapping[str, int], after: Mapping[str, int]) -> list[str]:
    """One line per op type whose count changed, largest change first:
    ``"Transpose -18 (20 -> 2)"``."""
    rows = []
    for op in set(before) | set(after):
        a, b = before.get(op, 0), after.get(op, 0)
        if a != b:
            rows.append((-abs(b - a), op, f"{op} {b - a:+d} ({a} -> {b})"))
    return [r[2] for r in sorted(rows)]


@dataclass
class DiffResult:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)  # name -> what changed
    unchanged: list[str] = field(default_factory=list)
    ops_before: dict[str, int] = field(default_factory=dict)
    ops_after: dict[str, int] = field(default_factory=dict)
    # name -> "created by core::cse (rule)" for added and changed nodes, when known
    provenance: dict[str, str] = field(default_factory=dict)
    # removed (or no longer used) node -> the node its users read instead
    replaced: dict[str, str] = field(default_factory=dict)
    outputs_before: list[str] = field(default_factory=list)
    outputs_after: list[str] = field(default_factory=list)

    def status(self) -> dict[str, str]:
        """Every node of either graph -> added | removed | changed | unchanged."""
        out = dict.fromkeys(self.unchanged, "unchanged")
        out.update(dict.fromkeys(self.changed, "changed"))
        out.update(dict.fromkeys(self.added, "added"))
        out.update(dict.fromkeys(self.removed, "removed"))
        return out

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed) and (
            self.outputs_before == self.outputs_after
        )

    def summary(self) -> str:
        return (f"{len(self.added)} added, {len(self.removed)} removed, "
                f"{len(self.changed)} changed, {len(self.unchanged)} unchanged")

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "unchanged": len(self.unchanged),
            "op_deltas": op_count_deltas(self.ops_before, self.ops_after),
            "replaced": self.replaced,
            "provenance": self.provenance,
            "outputs": {"before": self.outputs_before, "after": self.outputs_after},
        }

    def text(self) -> str:
        lines = [self.summary()]
        lines += [f"+ {n}" + _prov(self.provenance.get(n)) for n in self.added]
        lines += [f"- {n}" + (f" (replaced by {self.replaced[n]})" if n in self.replaced else "")
                  for n in self.removed]
        lines += [f"~ {n} ({', '.join(w)})" + _prov(self.provenance.get(n))
                  for n, w in self.changed.items()]
        if self.outputs_before != self.outputs_after:
            lines.append(f"outputs {self.outputs_before} -> {self.outputs_after}")
        return "\n".join(lines) + "\n"

    def write(self, path: Path) -> None:
        if path.suffix == ".json":
            text = json.dumps(self.to_json(), indent=2) + "\n"
        elif path.suffix in (".txt", ""):
            text = self.text()
        else:
            raise UsageError(f"{path}: diff output must be .json, .txt, .svg, .html or .dot")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        except OSError as exc:
            raise UsageError(f"{path}: cannot write: {exc.strerror or exc}") from None


def _prov(p: str | None) -> str:
    return f" [{p}]" if p else ""


def what_changed(nb: Any, na: Any) -> list[str]:
    """What differs between two NodeDefs of the same name (op, inputs, device, attrs)."""
    what = []
    if nb.op != na.op:
        what.append(f"op {nb.op}->{na.op}")
    if list(nb.input) != list(na.input):
        what.append("inputs")
    if nb.device != na.device:
        what.append("device")
    keys = set(nb.attr) | set(na.attr)
    diff_attrs = sorted(k for k in keys if k not in nb.attr or k not in na.attr
                        or nb.attr[k] != na.attr[k])
    if diff_attrs:
        what.append("attrs " + ",".join(diff_attrs))
    return what or ["other fields"]


def diff_graphs(
    before: Graph, after: Graph, *, changes: Mapping[str, str] | None = None
) -> DiffResult:
    """Classify every node of ``before`` and ``after`` by name.

    ``changes`` (name -> added | removed | changed, as ``Rewriter.changes`` and
    ``PassRecord.changes`` give them) trusts the rewriter's journal: nodes it does not
    name are unchanged, and only the named ones are compared.
    """
    res = DiffResult(ops_before=dict(before.op_counts()), ops_after=dict(after.op_counts()),
                     outputs_before=[str(t) for t in before.outputs],
                     outputs_after=[str(t) for t in after.outputs])
    b, a = before._nodes, after._nodes
    if changes is None:
        res.removed = [n for n in b if n not in a]
        res.added = [n for n in a if n not in b]
        candidates = (n for n in b if n in a)
    else:
        res.removed = [n for n in b if changes.get(n) == "removed" and n not in a]
        res.added = [n for n in a if changes.get(n) == "added" and n not in b]
        candidates = (n for n in b if n in a and changes.get(n) is not None)
        touched = {n for n in changes if n in a and n in b}
        res.unchanged = [n for n in a if n in b and n not in touched]
    for name in candidates:
        nb, na = b[name], a[name]
        if nb is na or nb == na:
            res.unchanged.append(name)
        else:
            res.changed[name] = what_changed(nb, na)
    for name in [*res.added, *res.changed]:
        p = after.provenance.get(name)
        if p is not None:
            res.provenance[name] = f"{p.action} by {p.pass_id}" + (f" ({p.rule})" if p.rule
                                                                   else "")
    res.replaced = _replacements(before, after, res.removed)
    return res


def _replacements(before: Graph, after: Graph, removed: list[str]) -> dict[str, str]:
    """For each removed node, the node that its former users (or outputs) now read."""
    out: dict[str, str] = {}
    b, a = before._nodes, after._nodes
    for name in removed:
        for user in sorted(before._users.get(name, ())):
            nb, na = b[user], a.get(user)
            if na is None or len(nb.input) != len(na.input):
                continue
            for sb, sa in zip(nb.input, na.input):
                ib, ia = Input.parse(sb), Input.parse(sa)
                if ib.node == name and ia.node != name and ia.control == ib.control:
                    out[name] = ia.node
                    break
            if name in out:
                break
        if name not in out and len(before.outputs) == len(after.outputs):
            for tb, ta in zip(before.outputs, after.outputs):
                if tb.node == name and ta.node != name:
                    out[name] = ta.node
                    break
    return out
