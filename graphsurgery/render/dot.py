"""Graphviz text for a :class:`~graphsurgery.render.diffgraph.DiffView`, and its SVG.

Every drawn node carries ``id="n:<node name>"`` and ``class="<status>"`` (boxes
``id="box:<scope>"``, ``rest:<scope>`` or ``repeat:<scope>``; clusters ``cluster:<scope>``),
so the SVG can be searched and styled by node name. The legend is the graph's label and
costs the layout nothing. ``dot`` runs as a subprocess with a time limit.
"""

from __future__ import annotations

import html
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Iterator

from ..errors import UsageError
from .diffgraph import DiffView, DrawBox, DrawNode

# status -> (fill, border)
COLOURS = {
    "added": ("#c8f7c5", "#2e7d32"),
    "removed": ("#ffcdd2", "#c62828"),
    "changed": ("#ffe082", "#ef6c00"),
    "unchanged": ("#ffffff", "#9e9e9e"),
    "mixed": ("#fff3e0", "#ef6c00"),  # a collapsed box that hides changes
    "collapsed": ("#eceff1", "#78909c"),  # a collapsed box of unchanged nodes
    "repeat": ("#e3f2fd", "#1565c0"),  # folded repeated blocks
    "annotation": ("#f5f5f5", "#bdbdbd"),
}
EDGE_COLOURS = {
    "same": "#9e9e9e",
    "added": "#2e7d32",
    "removed": "#c62828",
    "mixed": "#ef6c00",
    "replaced": "#6a1b9a",
}
FONT = "Helvetica,Arial,sans-serif"


class RenderTimeout(Exception):
    """``dot`` did not finish within its time limit."""


def _q(text: str) -> str:
    """A double-quoted DOT string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _h(text: str, limit: int = 60) -> str:
    """Text for an HTML-like label: shortened, escaped."""
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return html.escape(text, quote=True)


def _tail(name: str, scope: str) -> str:
    return name[len(scope) + 1:] if scope and name.startswith(scope + "/") else name


def _node_label(n: DrawNode, scope: str) -> str:
    rows = [f'<TR><TD><B>{_h(n.op, 30)}</B>'
            + (f' <FONT POINT-SIZE="8">{_h(n.type_text, 36)}</FONT>' if n.type_text else "")
            + "</TD></TR>",
            f'<TR><TD><FONT POINT-SIZE="8">{_h(_tail(n.name, scope), 44)}</FONT></TD></TR>']
    if n.detail:
        rows.append(f'<TR><TD><FONT POINT-SIZE="7" COLOR="#5d4037">{_h(n.detail, 56)}'
                    "</FONT></TD></TR>")
    if n.provenance:
        rows.append(f'<TR><TD><FONT POINT-SIZE="7" COLOR="#37474f"><I>{_h(n.provenance, 56)}'
                    "</I></FONT></TD></TR>")
    for a in n.annotations:
        fill = COLOURS["annotation"][0] if a.status == "unchanged" else COLOURS[a.status][0]
        mark = {"added": "+ ", "removed": "\u2212 ", "changed": "~ "}.get(a.status, "")
        icon = "\u25c6 " if a.kind == "const" else "\u21e0 "
        rows.append(f'<TR><TD ALIGN="LEFT" BGCOLOR="{fill}"><FONT POINT-SIZE="7">'
                    f"{mark}{icon}{_h(a.text, 44)}</FONT></TD></TR>")
    if n.more_annotations:
        rows.append(f'<TR><TD ALIGN="LEFT"><FONT POINT-SIZE="7" COLOR="#616161">'
                    f"+{n.more_annotations} more input(s)</FONT></TD></TR>")
    return ('<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">'
            + "".join(rows) + "</TABLE>>")


def _box_label(b: DrawBox) -> str:
    rows = [f"<TR><TD><B>{_h(b.title, 44)}</B></TD></TR>",
            f'<TR><TD><FONT POINT-SIZE="8">{b.count} node{"s" if b.count != 1 else ""}'
            "</FONT></TD></TR>"]
    if b.ops:
        ops = " \u00b7 ".join(f"{op} {c}" for op, c in b.ops)
        rows.append(f'<TR><TD><FONT POINT-SIZE="7" COLOR="#455a64">{_h(ops, 56)}</FONT></TD></TR>')
    changes = [(k, v) for k, v in b.statuses.items() if k != "unchanged" and v]
    if changes:
        cells = "".join(f'<TD BGCOLOR="{COLOURS[k][0]}"><FONT POINT-SIZE="7">{v} {k}</FONT></TD>'
                        for k, v in sorted(changes))
        rows.append('<TR><TD><TABLE BORDER="0" CELLSPACING="1" CELLPADDING="1"><TR>'
                    + cells + "</TR></TABLE></TD></TR>")
    if b.note:
        rows.append(f'<TR><TD><FONT POINT-SIZE="7" COLOR="#0d47a1"><I>{_h(b.note, 56)}</I>'
                    "</FONT></TD></TR>")
    return ('<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">'
            + "".join(rows) + "</TABLE>>")


def _legend(view: DiffView) -> str:
    c = view.counts
    summary = (f'{c["added"]} added, {c["removed"]} removed, {c["changed"]} changed, '
               f'{c["unchanged"]} unchanged; drawn: {len(view.nodes)} nodes, '
               f"{len(view.boxes)} boxes")
    notes = "; ".join(view.notes)
    cells = []
    for key, text in (("added", "added"), ("removed", "removed"), ("changed", "changed"),
                      ("unchanged", "unchanged (context)"), ("collapsed", "collapsed scope"),
                      ("mixed", "collapsed, with changes"), ("repeat", "repeated blocks")):
        fill, border = COLOURS[key]
        cells.append(f'<TD BORDER="1" COLOR="{border}" BGCOLOR="{fill}">'
                     f'<FONT POINT-SIZE="9">{text}</FONT></TD>')
    edges = "".join(
        f'<TD><FONT POINT-SIZE="9" COLOR="{EDGE_COLOURS[k]}">{t}</FONT></TD>'
        for k, t in (("added", "\u2192 new edge"), ("removed", "\u2192 removed edge"),
                     ("replaced", "\u2192 replaced by"))
    )
    span = len(cells) + 3
    rows = [f'<TR><TD COLSPAN="{span}" ALIGN="LEFT"><B>{_h(view.title or "diff", 120)}</B>'
            "</TD></TR>",
            f'<TR><TD COLSPAN="{span}" ALIGN="LEFT"><FONT POINT-SIZE="9">{_h(summary, 160)}'
            "</FONT></TD></TR>"]
    if notes:
        rows.append(f'<TR><TD COLSPAN="{span}" ALIGN="LEFT"><FONT POINT-SIZE="8" '
                    f'COLOR="#616161">{_h(notes, 200)}</FONT></TD></TR>')
    rows.append("<TR>" + "".join(cells) + edges + "</TR>")
    rows.append(f'<TR><TD COLSPAN="{span}" ALIGN="LEFT"><FONT POINT-SIZE="8" COLOR="#616161">'
                "\u25c6 constant inputs and \u21e0 widely shared inputs are listed inside the "
                "nodes that read them</FONT></TD></TR>")
    return ('<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="3" CELLPADDING="2">'
            + "".join(rows) + "</TABLE>>")


def to_dot(view: DiffView, *, clusters: bool | None = None, splines: str = "spline") -> str:
    """The DOT text of ``view``."""
    clusters = view.clusters if clusters is None else clusters
    ids: dict[str, str] = {}
    lines = [
        "digraph diff {",
        f'  graph [rankdir=TB, newrank=true, fontname="{FONT}", fontsize=10, labelloc=t, '
        f'labeljust=l, nodesep=0.2, ranksep=0.3, pad=0.2, splines={splines}, '
        f'outputorder=edgesfirst, id="diff", label={_legend(view)}];',
        f'  node [shape=box, style="rounded,filled", fontname="{FONT}", fontsize=9, '
        f'margin="0.05,0.02", height=0.25, penwidth=1];',
        '  edge [arrowsize=0.5, penwidth=0.9, color="#9e9e9e"];',
    ]
    items: dict[str, list[str]] = defaultdict(list)

    def item_scope(scope: str) -> str:
        return scope if clusters else ""

    for i, n in enumerate(view.nodes):
        ids[n.key] = f"n{i}"
        fill, border = COLOURS[n.status]
        style = "rounded,filled" + (",dashed" if n.status == "removed" else "")
        width = 2 if n.status != "unchanged" else 1
        tip = f"{n.name} ({n.op})" + (f": {n.detail}" if n.detail else "") + (
            f" [{n.provenance}]" if n.provenance else "")
        scope = item_scope(n.scope)
        items[scope].append(
            f"n{i} [id={_q(n.key)}, class={_q(n.status)}, label={_node_label(n, scope)}, "
            f'fillcolor="{fill}", color="{border}", style="{style}", penwidth={width}, '
            f"tooltip={_q(tip)}];")
    for i, b in enumerate(view.boxes):
        ids[b.key] = f"b{i}"
        status = b.status
        fill, border = COLOURS["collapsed" if status == "unchanged" else status]
        shape = "box3d" if b.kind == "repeat" else "box"
        tip = f"{b.key.partition(':')[2] or 'top level'}: {b.count} nodes"
        items[item_scope(b.scope)].append(
            f"b{i} [id={_q(b.key)}, class={_q(b.kind)}, shape={shape}, label={_box_label(b)}, "
            f'fillcolor="{fill}", color="{border}", style="filled,dashed", tooltip={_q(tip)}];')

    children: dict[str, set[str]] = defaultdict(set)
    for scope in list(items):
        parts = scope.split("/") if scope else []
        for i in range(len(parts)):
            parent = "/".join(parts[:i])
            children[parent].add("/".join(parts[: i + 1]))
    counter = [0]

    def emit(scope: str, shown: str, depth: int) -> Iterator[tuple[str, str, int]]:
        """Write one cluster; yields its child clusters, each written before this one is
        closed (driven by a stack below: scopes may nest thousands deep)."""
        # A scope with nothing of its own and one child scope is merged into the child.
        while scope and not items.get(scope) and len(children.get(scope, ())) == 1:
            scope = next(iter(children[scope]))
        pad = "  " * (depth + 1)
        if scope:
            counter[0] += 1
            label = _tail(scope, shown) if shown else scope
            fill = "#fafafa" if depth % 2 else "#f3f6f9"
            lines.append(f"{pad}subgraph cluster_{counter[0]} {{")
            lines.append(f'{pad}  id={_q("cluster:" + scope)}; label={_q(label)}; '
                         f'tooltip={_q(scope)}; style="rounded,filled"; fillcolor="{fill}"; '
                         f'color="#b0bec5"; fontsize=10; fontcolor="#37474f";')
        for line in items.get(scope, ()):
            lines.append(f"{pad}  {line}")
        for child in sorted(children.get(scope, ())):
            yield child, scope if scope else "", depth + 1
        if scope:
            lines.append(f"{pad}}}")

    stack = [emit("", "", 0)]
    while stack:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
        else:
            stack.append(emit(*child))
    for e in view.edges:
        a, b = ids.get(e.src), ids.get(e.dst)
        if a is None or b is None:
            continue
        colour = EDGE_COLOURS[e.status]
        attrs = [f'color="{colour}"']
        if e.status == "removed":
            attrs.append("style=dashed")
        if e.status == "replaced":
            attrs += ["style=dotted", "constraint=false", "penwidth=1.4",
                      'tooltip="replaced by"']
        elif e.control:
            attrs += ["style=dotted", "arrowhead=odot"]
        if e.count > 1:
            attrs += [f'label="{e.count}"', "fontsize=8", f'fontcolor="{colour}"']
        if e.status in ("added", "removed"):
            attrs.append("penwidth=1.4")
        lines.append(f"  {a} -> {b} [{', '.join(attrs)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def dot_executable() -> str:
    exe = shutil.which("dot")
    if exe is None:
        raise UsageError("graphviz's 'dot' program is needed to draw diffs; install graphviz "
                         "(apt-get install graphviz, or `make system-deps`), or write .json/.txt")
    return exe


def render_svg(dot_text: str, *, timeout: float = 20.0) -> str:
    """Lay out ``dot_text`` with ``dot -Tsvg``; :class:`RenderTimeout` after ``timeout`` s."""
    exe = dot_executable()
    try:
        proc = subprocess.run([exe, "-Tsvg"], input=dot_text.encode(), capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RenderTimeout(f"dot did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise UsageError(f"dot failed: {err[0] if err else f'exit {proc.returncode}'}")
    return proc.stdout.decode("utf-8", errors="replace")


def placeholder_svg(message: str) -> str:
    """A small SVG saying why there is no drawing."""
    text = html.escape(message)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
            'width="640" height="60" viewBox="0 0 640 60"><rect width="640" height="60" '
            'fill="#fff3e0" stroke="#ef6c00"/><text x="12" y="34" font-family="Helvetica, '
            f'Arial, sans-serif" font-size="13">{text}</text></svg>\n')
