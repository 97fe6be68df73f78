"""``graphsurgery run --report``: per-pass diffs and ``OUTDIR/report.html``.

:class:`ReportRecorder` is a pipeline instrument. Before each pass it takes a snapshot
(``graph.copy()``: the NodeDefs are shared, nothing is copied), after a pass that changed
the graph it classifies the change from the rewriter's journal (``PassRecord.changes``,
no full comparison), builds the drawing (:func:`~graphsurgery.render.build_view`) and
drops the snapshot, so no old weight outlives its pass. With reference feeds it also
measures the numeric error after every changing pass, as long as one reference run is
cheap (a 1024 px generator is checked once, at the end, by ``--verify``).

:func:`write_report` lays out every drawing (``dot`` processes in parallel), writes
``report/NN_<pass>.svg``/``.html``/``.json``, the overall diff (input -> result), output
images as PNG thumbnails and ``report.html``: one file plus its SVG/PNG files, relative
links, no script or font from the network.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..diff import DiffResult, diff_graphs, op_count_deltas
from ..ir import proto
from ..ir.graph import Graph
from ..pipeline import Instrument, PassRecord
from . import images
from .diffgraph import DiffView, build_view
from .dot import placeholder_svg, to_dot

log = logging.getLogger("graphsurgery")

# A pass's numeric error is measured only while one reference run takes less than this,
# and not at all on graphs above these sizes (a 1024 px generator runs for many seconds).
ERROR_RUN_BUDGET_S = 2.0
ERROR_MAX_NODES = 2000
ERROR_MAX_WEIGHT_BYTES = 16 << 20
# Const NodeDefs above this size are kept by shape only in the input snapshot.
_SKELETON_BYTES = 1024


# ---------------------------------------------------------------------- recording
@dataclass
class PassEntry:
    """What the report shows for one pass run (same order as summary.json's passes)."""

    index: int
    record: PassRecord
    stem: str = ""  # report/<stem>.svg, when the pass changed the graph
    result: DiffResult | None = None
    rows: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    view: DiffView | None = None
    error: float | None = None  # max relative error of any output after the pass
    seconds: float = 0.0  # classifying the change and choosing what to draw


def change_rows(diff: DiffResult, before: Graph, after: Graph) -> list[tuple[str, str, str,
                                                                               str, str]]:
    """(status, name, op, detail, provenance) for every added, removed and changed node."""
    rows = []
    for n in diff.added:
        rows.append(("added", n, after.node_def(n).op, "", diff.provenance.get(n, "")))
    for n in diff.removed:
        detail = f"replaced by {diff.replaced[n]}" if n in diff.replaced else ""
        rows.append(("removed", n, before.node_def(n).op, detail, ""))
    for n, what in diff.changed.items():
        detail = _attr_changes(before.node_def(n), after.node_def(n)) or ", ".join(what)
        rows.append(("changed", n, after.node_def(n).op, detail, diff.provenance.get(n, "")))
    return rows


def _attr_changes(old: Any, new: Any) -> str:
    """``"inputs a, b -> a, c; data_format NCHW -> NHWC"``: what changed, old -> new."""
    parts = []
    a_in, b_in = list(old.input), list(new.input)
    if a_in != b_in and len(a_in) == len(b_in):  # name the inputs that changed
        parts += [f"input {i} {a} \u2192 {b}" for i, (a, b) in enumerate(zip(a_in, b_in))
                  if a != b]
    elif a_in != b_in:
        parts.append(f"inputs {', '.join(a_in)} \u2192 {', '.join(b_in)}")
    if old.op != new.op:
        parts.append(f"op {old.op} \u2192 {new.op}")
    for key in sorted(set(old.attr) | set(new.attr)):
        a = old.attr[key] if key in old.attr else None
        b = new.attr[key] if key in new.attr else None
        if a is not None and b is not None and a == b:
            continue
        parts.append(f"{key} {_attr_text(a)} \u2192 {_attr_text(b)}")
    if old.device != new.device:
        parts.append(f"device {old.device or '(none)'} \u2192 {new.device or '(none)'}")
    return "; ".join(parts)


def _attr_text(av: Any) -> str:
    """A short text of an AttrValue: tensors by dtype and shape only (never decoded)."""
    from ..ir.attrs import attr_to_python, tensor_shape
    from ..ir.dtypes import DType

    if av is None:
        return "(none)"
    try:
        if av.WhichOneof("value") == "tensor":
            dims = ",".join(str(d) for d in tensor_shape(av.tensor))
            return f"tensor {DType.of(av.tensor.dtype).name}[{dims}]"
        value = attr_to_python(av)
    except Exception:  # noqa: BLE001 - an odd attribute is shown by its kind only
        return f"({av.WhichOneof('value')})"
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return _short(str(getattr(value, "name", value)))


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def _is_big_const(nd: Any) -> bool:
    return nd.op == "Const" and "value" in nd.attr and nd.ByteSize() > _SKELETON_BYTES


def _lite_const(nd: Any) -> Any:
    """A copy of a Const NodeDef with its dtype and shape but not its data."""
    lite = proto.NodeDef(name=nd.name, op=nd.op, device=nd.device)
    lite.input.extend(nd.input)
    for key, value in nd.attr.items():
        if key == "value":
            t = lite.attr["value"].tensor
            t.dtype = value.tensor.dtype
            t.tensor_shape.CopyFrom(value.tensor.tensor_shape)
        else:
            lite.attr[key].CopyFrom(value)
    return lite


class ReportRecorder(Instrument):
    """Keeps a drawing of every pass that changed the graph (see the module docstring).

    The snapshot taken before each pass shares every NodeDef with the graph except the
    large constants, which it holds by dtype and shape only: a pass that replaces the
    weights frees the old ones at once, as it would without the report. (A NodeDef the
    rewriter did not report changed is the same object, so those data-less copies are made
    once and renewed only for the constants a pass changed.)

    ``feeds`` (input name -> array) turns on the per-pass numeric error, measured with the
    reference runner against the input graph's outputs while a run stays cheap.
    """

    def __init__(
        self,
        *,
        context: int = 1,
        max_nodes: int = 300,
        shapes: str = "auto",
        feeds: Mapping[str, np.ndarray] | None = None,
        seed: int = 0,
        error_budget_s: float = ERROR_RUN_BUDGET_S,
    ) -> None:
        self.context, self.max_nodes, self.shapes = context, max_nodes, shapes
        self.feeds, self.seed, self.error_budget_s = feeds, seed, error_budget_s
        self.entries: list[PassEntry] = []
        self.input: Graph | None = None
        self.touched: set[str] = set()
        self.error_note = "" if feeds is not None else "run with --verify to measure it"
        self.seconds = 0.0
        self._snapshot: Graph | None = None
        self._lite: dict[str, Any] | None = None  # large Const name -> data-less NodeDef
        self._reference: list[np.ndarray] | None = None
        self._errors_on = feeds is not None

    # instrument hooks ---------------------------------------------------------------
    def before_pass(self, pass_id: str, graph: Graph) -> None:
        t0 = time.perf_counter()
        if self._lite is None:
            self._lite = {}
            self._renew(graph, graph.names)
        snapshot = graph.copy(stand_ins=self._lite)
        self._snapshot = snapshot
        if self.input is None:
            self.input = snapshot
            if self._errors_on and not self._cheap(graph):
                self._errors_on = False
                self.error_note = ("not measured per pass on a graph of this size (a run takes "
                                   "seconds); the final error is under Fidelity")
            if self._errors_on:
                self._reference = self._run(graph, "the input graph")
        self.seconds += time.perf_counter() - t0

    def _renew(self, graph: Graph, names: Any) -> None:
        for name in names:
            self._lite.pop(name, None)
            nd = graph.node_def(name) if name in graph else None
            if nd is not None and _is_big_const(nd):
                self._lite[name] = _lite_const(nd)

    def after_pass(self, record: PassRecord, graph: Graph) -> None:
        t0 = time.perf_counter()
        entry = PassEntry(len(self.entries) + 1, record)
        self.entries.append(entry)
        before, self._snapshot = self._snapshot, None
        if record.changed and before is not None:
            t_view = time.perf_counter()
            self.touched.update(record.changes)
            diff = diff_graphs(before, graph, changes=record.changes)
            entry.stem = f"{entry.index:02d}_{_slug(record.pass_id)}"
            entry.result = diff
            entry.rows = change_rows(diff, before, graph)
            it = f" (round {record.iteration})" if record.iteration else ""
            entry.view = build_view(
                before, graph, diff, context=self.context, max_nodes=self.max_nodes,
                shapes=self.shapes, title=f"{entry.index:02d} {record.pass_id}{it}")
            entry.seconds = time.perf_counter() - t_view
            if self._errors_on and self._reference is not None:
                outs = self._run(graph, record.pass_id)
                if outs is not None:
                    entry.error = _max_rel_error(self._reference, outs)
        if self._lite is not None:
            self._renew(graph, record.changes)
        self.seconds += time.perf_counter() - t0

    def on_failure(self, record: PassRecord, graph: Graph) -> None:
        self.entries.append(PassEntry(len(self.entries) + 1, record))
        self._snapshot = None
        self._lite = None  # the graph may be restored: renew every copy before the next pass

    # numeric error ------------------------------------------------------------------
    @staticmethod
    def _cheap(graph: Graph) -> bool:
        if len(graph) > ERROR_MAX_NODES:
            return False
        weights = sum(graph.const_nbytes(n.name) for n in graph.nodes("Const"))
        return weights <= ERROR_MAX_WEIGHT_BYTES

    def _run(self, graph: Graph, what: str) -> list[np.ndarray] | None:
        from ..runners import ReferenceRunner

        try:
            import tensorflow  # noqa: F401 - imported once, outside the timing
        except ImportError:
            pass
        t0 = time.perf_counter()
        try:
            with ReferenceRunner(graph, noise="seeded", seed=self.seed) as runner:
                outs = runner.run(self.feeds)
        except Exception as exc:  # the error column is informative, never fatal
            self._errors_on = False
            self.error_note = f"not measured: {what} did not run ({str(exc).splitlines()[0]})"
            log.info("report: per-pass error %s", self.error_note)
            return None
        took = time.perf_counter() - t0
        if took > self.error_budget_s:
            self._errors_on = False
            self.error_note = (f"measured up to here only: one reference run takes {took:.1f} s; "
                               "the final error is under Fidelity")
        return outs

    # the overall diff ---------------------------------------------------------------
    def overall(self, graph: Graph) -> tuple[DiffResult, DiffView, list] | None:
        """The diff from the pipeline's input to ``graph`` (the result)."""
        if self.input is None:
            return None
        before = self.input
        changes = {}
        for n in self.touched:
            was, now = n in before, n in graph
            if was and now:
                changes[n] = "changed"
            elif now:
                changes[n] = "added"
            elif was:
                changes[n] = "removed"
        diff = diff_graphs(before, graph, changes=changes)
        view = build_view(before, graph, diff, context=self.context, max_nodes=self.max_nodes,
                          shapes=self.shapes, title="overall: input \u2192 result")
        return diff, view, change_rows(diff, before, graph)


def _max_rel_error(reference: Sequence[np.ndarray], outs: Sequence[np.ndarray]) -> float:
    worst = 0.0
    for a, b in zip(reference, outs):
        a = np.asarray(a, np.float64)
        b = np.asarray(b, np.float64)
        if a.shape != b.shape:
            return float("inf")
        span = float(a.max() - a.min()) if a.size else 0.0
        err = float(np.abs(a - b).max()) if a.size else 0.0
        worst = max(worst, err / span if span > 0 else err)
    return worst


def _slug(pass_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", pass_id.replace("::", "__"))


# ---------------------------------------------------------------------- HTML pieces
_CSS = """
body{font:14px/1.45 -apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px;
color:#212121;background:#fff;max-width:1400px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid
#e0e0e0;padding-bottom:4px}h3{font-size:14px;margin:16px 0 6px}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 8px;border-bottom:1px solid
#eee;text-align:left;vertical-align:top}th{background:#fafafa;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;
overflow-wrap:anywhere}th{white-space:nowrap}
.muted{color:#757575}.ok{color:#2e7d32;font-weight:600}.bad{color:#c62828;font-weight:600}
.warn{color:#ef6c00;font-weight:600}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;margin-right:6px;
border:1px solid #ccc}.badge.ok{border-color:#2e7d32;background:#e8f5e9}
.badge.bad{border-color:#c62828;background:#ffebee}.badge.warn{border-color:#ef6c00;
background:#fff3e0}
.added{background:#c8f7c5}.removed{background:#ffcdd2}.changed{background:#ffe082}
.images{display:flex;gap:16px;flex-wrap:wrap}.images figure{margin:0}
.images img{image-rendering:pixelated;border:1px solid #ddd;width:256px;height:auto}
figcaption{font-size:12px;color:#616161;max-width:256px}
.bar{display:inline-block;height:10px;vertical-align:middle}
.bar.b{background:#90a4ae}.bar.a{background:#1e88e5}
.card{border:1px solid #e0e0e0;border-radius:6px;padding:10px 12px;margin:10px 0}
.preview{display:block;max-width:100%;max-height:420px;margin-top:8px;border:1px solid #eee}
details summary{cursor:pointer}
.verdicts{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0}.verdict{border:2px solid #ccc;
border-radius:8px;padding:8px 14px;min-width:220px}.verdict.ok{border-color:#2e7d32;
background:#f1f8e9}.verdict.bad{border-color:#c62828;background:#ffebee}
.verdict.none{border-color:#bdbdbd;background:#fafafa}.verdict{color:#212121;font-weight:400}
.verdict b{font-size:16px}.verdict.ok b{color:#2e7d32}.verdict.bad b{color:#c62828}
nav.toc{margin:8px 0 12px}
.drawing{border:1px solid #e0e0e0;cursor:grab;overflow:hidden;user-select:none}
.navbar{margin:8px 0}.found polygon,.found path,.found ellipse{stroke:#d500f9;stroke-width:5px}
text.found{fill:#d500f9;font-weight:700}nav.toc a{margin-right:12px}
.purpose{color:#616161;font-size:12px}
#show-unchanged:not(:checked)~table tr.nochange{display:none}
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) {
    var good = imgs[i].complete && imgs[i].naturalWidth > 0;
    imgs[i].setAttribute("data-loaded", good ? "yes" : "no");
    if (good) { ok++; }
  }
  document.body.setAttribute("data-images-loaded", ok + "/" + imgs.length);
});
"""


#: Pan (drag), zoom (wheel, buttons) and search by node name in a diff page's drawing, all
#: in the page itself (no network). ``?find=NAME`` in the URL searches on load; the body's
#: ``data-found`` then holds the number of hits (read by the Chromium test).
_NAV_SCRIPT = """
(function () {
  function init() {
    var box = document.querySelector(".drawing"), svg = box && box.querySelector("svg");
    if (!svg || !svg.viewBox || !svg.viewBox.baseVal || !svg.viewBox.baseVal.width) { return; }
    var v0 = svg.viewBox.baseVal, full = [v0.x, v0.y, v0.width, v0.height];
    svg.removeAttribute("width"); svg.removeAttribute("height");
    svg.style.width = "100%"; svg.style.height = "75vh";
    function vb() { var v = svg.viewBox.baseVal; return [v.x, v.y, v.width, v.height]; }
    function set(a) { svg.setAttribute("viewBox", a.join(" ")); }
    function geom() {  /* client px -> viewBox units (xMidYMid meet) */
      var r = svg.getBoundingClientRect(), v = vb();
      var s = Math.min(r.width / v[2], r.height / v[3]);
      return {r: r, v: v, s: s, ox: (r.width - v[2] * s) / 2, oy: (r.height - v[3] * s) / 2};
    }
    function toView(cx, cy) {
      var g = geom();
      return [g.v[0] + (cx - g.r.left - g.ox) / g.s, g.v[1] + (cy - g.r.top - g.oy) / g.s];
    }
    function zoom(f, cx, cy) {
      var v = vb(), p = toView(cx, cy);
      set([p[0] - (p[0] - v[0]) * f, p[1] - (p[1] - v[1]) * f, v[2] * f, v[3] * f]);
    }
    box.addEventListener("wheel", function (ev) {
      ev.preventDefault(); zoom(ev.deltaY < 0 ? 0.8 : 1.25, ev.clientX, ev.clientY);
    }, {passive: false});
    var drag = null;
    box.addEventListener("mousedown", function (ev) { drag = [ev.clientX, ev.clientY]; });
    window.addEventListener("mouseup", function () { drag = null; });
    window.addEventListener("mousemove", function (ev) {
      if (!drag) { return; }
      var g = geom(), v = g.v;
      set([v[0] - (ev.clientX - drag[0]) / g.s, v[1] - (ev.clientY - drag[1]) / g.s, v[2], v[3]]);
      drag = [ev.clientX, ev.clientY];
    });
    var input = document.getElementById("find"), status = document.getElementById("found");
    function find(q) {
      var marked = svg.querySelectorAll(".found");
      for (var i = 0; i < marked.length; i++) { marked[i].classList.remove("found"); }
      var hits = [];
      if (q) {
        var groups = svg.querySelectorAll("g[id]");
        for (var j = 0; j < groups.length; j++) {
          if (groups[j].id.indexOf("n:") === 0 && groups[j].id.slice(2).indexOf(q) >= 0) {
            hits.push(groups[j]);
          }
        }
        if (!hits.length) {  /* constants and folded nodes: their label text */
          var texts = svg.querySelectorAll("text");
          for (var k = 0; k < texts.length; k++) {
            if (texts[k].textContent.indexOf(q) >= 0) { hits.push(texts[k]); }
          }
        }
      }
      for (var m = 0; m < hits.length; m++) { hits[m].classList.add("found"); }
      document.body.setAttribute("data-found", String(hits.length));
      status.textContent = q ? hits.length + " match(es)" : "";
      if (hits.length) {
        box.scrollIntoView({block: "start"});
        var rb = hits[0].getBoundingClientRect(), a = toView(rb.left, rb.top);
        var b = toView(rb.right, rb.bottom), w = Math.max(b[0] - a[0], 1) * 6;
        var h = Math.max(b[1] - a[1], 1) * 6, c = [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
        var v = vb(), f = Math.max(w / v[2], h / v[3]);
        set([c[0] - v[2] * f / 2, c[1] - v[3] * f / 2, v[2] * f, v[3] * f]);
      }
      return hits.length;
    }
    function mid(f) {
      var b = box.getBoundingClientRect(); zoom(f, b.left + b.width / 2, b.top + b.height / 2);
    }
    function on(id, fn) { document.getElementById(id).addEventListener("click", fn); }
    input.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter") { find(input.value); }
    });
    on("find-go", function () { find(input.value); });
    on("zoom-in", function () { mid(0.8); });
    on("zoom-out", function () { mid(1.25); });
    on("zoom-reset", function () { set(full); });
    var q = new URLSearchParams(window.location.search).get("find");
    if (q) { input.value = q; find(q); }
  }
  window.addEventListener("load", init);
})();
"""

_NAV_BAR = (
    "<div class=\"navbar\"><input id=\"find\" type=\"search\" placeholder=\"find a node by name\" "
    "size=\"40\"> <button id=\"find-go\">find</button> <button id=\"zoom-in\">+</button> "
    "<button id=\"zoom-out\">\u2212</button> <button id=\"zoom-reset\">fit</button> "
    "<span id=\"found\" class=\"muted\"></span> <span class=\"muted\">drag to pan, wheel to "
    "zoom</span></div>")


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _page(title: str, body: str, script: str = "") -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style>"
            f"<script>{_SCRIPT}{script}</script></head>\n<body>\n{body}\n</body></html>\n")


def _inline_svg(svg: str) -> str:
    """An SVG document as an element to embed in HTML (no XML prolog or doctype)."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


def _change_table(rows: Sequence[tuple[str, str, str, str, str]], limit: int = 5000) -> str:
    if not rows:
        return "<p class=\"muted\">no node changed</p>"
    out = []
    for status in ("added", "removed", "changed"):
        these = [r for r in rows if r[0] == status]
        if not these:
            continue
        body = "".join(
            f"<tr><td class=\"{status}\">{status}</td><td class=\"mono\">{_e(n)}</td>"
            f"<td>{_e(op)}</td><td>{_e(d)}</td><td class=\"muted\">{_e(p)}</td></tr>"
            for _, n, op, d, p in these[:limit])
        more = (f"<p class=\"muted\">... and {len(these) - limit} more</p>"
                if len(these) > limit else "")
        out.append(f"<details {'open' if len(these) <= 60 else ''}><summary>{len(these)} "
                   f"{status}</summary><table><tr><th></th><th>node</th><th>op</th>"
                   f"<th>what</th><th>provenance</th></tr>{body}</table>{more}</details>")
    return "\n".join(out)


def diff_page(
    diff: DiffResult,
    view: DiffView,
    svg: str,
    *,
    before: Graph | None = None,
    after: Graph | None = None,
    rows: Sequence[tuple[str, str, str, str, str]] | None = None,
    back: str | None = None,
) -> str:
    """One HTML file: the drawing (inline SVG, with tooltips) and every change listed."""
    if rows is None:
        rows = change_rows(diff, before, after) if before is not None and after is not None \
            else []
    deltas = op_count_deltas(diff.ops_before, diff.ops_after)
    parts = []
    if back:
        parts.append(f"<p><a href=\"{_e(back)}\">\u2190 report</a></p>")
    parts.append(f"<h1>{_e(view.title or 'diff')}</h1>")
    parts.append(f"<p>{_e(diff.summary())}</p>")
    if deltas:
        parts.append("<p class=\"mono\">" + "<br>".join(_e(d) for d in deltas[:20]) + "</p>")
    if view.notes:
        parts.append(f"<p class=\"muted\">drawing: {_e('; '.join(view.notes))}</p>")
    parts.append(_NAV_BAR)
    parts.append(f"<div class=\"drawing\">{_inline_svg(svg)}</div>")
    parts.append("<h2>Changes</h2>")
    parts.append(_change_table(rows))
    if diff.outputs_before != diff.outputs_after:
        parts.append(f"<p>outputs: {_e(diff.outputs_before)} \u2192 "
                     f"{_e(diff.outputs_after)}</p>")
    return _page(view.title or "diff", "\n".join(parts), _NAV_SCRIPT)


def render_view_all(views: Sequence[DiffView], workers: int | None = None) -> list[str]:
    """Lay out several views at once: each is one ``dot`` process. Without graphviz, each
    SVG is a placeholder saying so (the report then keeps the ``.dot`` text)."""
    from . import render_view

    if not views:
        return []
    if shutil.which("dot") is None:
        log.warning("graphviz's dot is not installed: the report has no drawings, only .dot "
                    "files (apt-get install graphviz)")
        return [placeholder_svg("graphviz's dot is not installed: see the .dot file")
                for _ in views]
    workers = workers or max(2, min(4, os.cpu_count() or 2))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(render_view, views))


# ---------------------------------------------------------------------- the report
def write_report(
    outdir: Path,
    summary: Mapping[str, Any],
    recorder: ReportRecorder,
    graph: Graph,
    *,
    outputs: Mapping[str, Sequence[np.ndarray]] | None = None,
) -> Path:
    """Write ``outdir/report.html`` and ``outdir/report/*``; returns the HTML path.

    ``outputs``: ``{"reference": [...], "graphdef": [...], "tflite": [...]}`` as
    ``--verify`` computed them, in ``summary["outputs"]`` order (images are drawn from
    the 4-D ones).
    """
    t0 = time.perf_counter()
    outdir = Path(outdir)
    rdir = outdir / "report"
    rdir.mkdir(parents=True, exist_ok=True)

    overall = recorder.overall(graph)
    changed = [e for e in recorder.entries if e.view is not None]
    views = [e.view for e in changed] + ([overall[1]] if overall else [])
    svgs = render_view_all(views)
    keep_dot = shutil.which("dot") is None
    for entry, svg in zip(changed, svgs):
        (rdir / f"{entry.stem}.svg").write_text(svg, encoding="utf-8")
        if keep_dot:
            (rdir / f"{entry.stem}.dot").write_text(to_dot(entry.view), encoding="utf-8")
        (rdir / f"{entry.stem}.json").write_text(
            json.dumps(entry.result.to_json(), indent=1) + "\n")
        (rdir / f"{entry.stem}.html").write_text(
            diff_page(entry.result, entry.view, svg, rows=entry.rows, back="../report.html"),
            encoding="utf-8")
        entry.view = None  # drop the drawing once written
    overall_stem = None
    if overall:
        diff, view, rows = overall
        overall_stem = "00_overall"
        svg = svgs[-1]
        (rdir / f"{overall_stem}.svg").write_text(svg, encoding="utf-8")
        if keep_dot:
            (rdir / f"{overall_stem}.dot").write_text(to_dot(view), encoding="utf-8")
        (rdir / f"{overall_stem}.json").write_text(
            json.dumps(diff.to_json(), indent=1, allow_nan=False) + "\n")
        (rdir / f"{overall_stem}.html").write_text(
            diff_page(diff, view, svg, rows=rows, back="../report.html"), encoding="utf-8")
    prov = {n: {"pass": p.pass_id, "rule": p.rule, "action": p.action}
            for n, p in sorted(graph.provenance.items())}
    (rdir / "provenance.json").write_text(json.dumps(prov, indent=1) + "\n")
    figures = _write_images(rdir, summary, outputs) if outputs else []

    body = [
        _header(summary, first=_verdicts(summary)
                + _toc(summary, figures, overall_stem is not None)),
        _images_section(figures),
        _pipeline_section(summary, recorder),
        _overall_section(overall_stem, overall[0] if overall else None),
        _pass_cards(recorder),
        _histogram_section(summary),
        _audit_section(summary),
        _fidelity_section(summary),
        _files_section(outdir),
    ]
    took = time.perf_counter() - t0 + recorder.seconds
    body.append(f"<p class=\"muted\">report written by graphsurgery "
                f"{_e(summary.get('graphsurgery', ''))} in {took:.1f} s.</p>")
    path = outdir / "report.html"
    path.write_text(_page(f"graphsurgery report: {Path(str(summary.get('model', ''))).name}",
                          "\n".join(b for b in body if b)), encoding="utf-8")
    return path


def _header(summary: Mapping[str, Any], first: str = "") -> str:
    """The title, the badges, then ``first`` (the verdicts), then the run's facts."""
    badges = []
    failures = summary.get("failures") or []
    badges.append(f"<span class=\"badge {'bad' if failures else 'ok'}\">"
                  f"{len(summary.get('passes', []))} passes"
                  + (f", {len(failures)} failed" if failures else "") + "</span>")
    audit = summary.get("audit")
    label = _target(summary)[0]
    if audit is not None:
        clean = audit.get("clean")
        badges.append(f"<span class=\"badge {'ok' if clean else 'bad'}\">{_e(label)}: "
                      + ("clean" if clean else f"{len(audit.get('violations', []))} violation(s)")
                      + "</span>")
    elif summary.get("export") and not summary["export"].get("ok"):
        badges.append(f"<span class=\"badge bad\">{_e(label)} conversion failed</span>")
    ver = summary.get("verification")
    if ver is not None:
        badges.append(f"<span class=\"badge {'ok' if ver.get('ok') else 'bad'}\">verification "
                      f"{'passed' if ver.get('ok') else 'FAILED'}</span>")
    rows = [
        ("model", f"<code>{_e(summary.get('model', ''))}</code>"),
        ("pipeline", f"<code>{_e(summary.get('pipeline', ''))}</code>"),
        ("inputs", _e(", ".join(summary.get("inputs", [])))),
        ("outputs", _e(", ".join(summary.get("outputs", [])))),
        ("nodes", f"{summary.get('nodes_before', '?')} \u2192 {summary.get('nodes_after', '?')}"),
        ("passes took", f"{float(summary.get('seconds', 0.0)):.2f} s"),
    ]
    warnings = summary.get("warnings") or []
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    warn = "".join(f"<p class=\"warn\">{_e(w)}</p>" for w in warnings)
    return (f"<h1>graphsurgery conversion report</h1><p>{''.join(badges)}</p>{first}"
            f"<table>{table}</table>{warn}")


def _write_images(rdir: Path, summary: Mapping[str, Any],
                  outputs: Mapping[str, Sequence[np.ndarray]]) -> list[list[tuple[str, str]]]:
    """PNG thumbnails per image output: [(file, caption), ...] per output."""
    names = list(summary.get("outputs", []))
    reference = list(outputs.get("reference", []))
    figures = []
    for i, ref in enumerate(reference):
        if not images.is_image(ref):
            continue
        label = names[i] if i < len(names) else f"output {i}"
        lo, hi = images.value_range(ref)
        row = []
        stem = f"out{i}"
        variants = [("reference", ref)] + [
            (k, v[i]) for k, v in outputs.items() if k != "reference" and i < len(v)]
        for kind, arr in variants:
            if np.shape(arr) != np.shape(ref):
                continue
            path = rdir / f"{stem}_{kind}.png"
            images.write_png(path, images.thumbnail(images.to_pixels(arr, lo, hi)))
            row.append((f"report/{path.name}", f"{label}: {kind}"))
        last = variants[-1]
        if last[0] != "reference" and np.shape(last[1]) == np.shape(ref):
            err, peak = images.error_image(ref, last[1])
            path = rdir / f"{stem}_error.png"
            images.write_png(path, images.thumbnail(err))
            row.append((f"report/{path.name}",
                        f"|reference \u2212 {last[0]}|, white = {peak:.3g}"))
        figures.append(row)
    return figures


def _images_section(figures: list[list[tuple[str, str]]]) -> str:
    if not figures:
        return ""
    rows = []
    for row in figures:
        figs = "".join(f"<figure><img src=\"{_e(src)}\" alt=\"{_e(cap)}\">"
                       f"<figcaption>{_e(cap)}</figcaption></figure>" for src, cap in row)
        rows.append(f"<div class=\"images\">{figs}</div>")
    return "<h2 id=\"images\">Output images</h2>" + "".join(rows)


def _pipeline_section(summary: Mapping[str, Any], recorder: ReportRecorder) -> str:
    passes = list(summary.get("passes", []))
    entries = recorder.entries
    rows = []
    for i, p in enumerate(passes):
        e = entries[i] if i < len(entries) else None
        it = f" <span class=\"muted\">round {p['iteration']}</span>" if p.get("iteration") else ""
        opts = p.get("options") or {}
        opt_text = (f"<br><span class=\"muted mono\">{_e(opts)}</span>" if opts else "")
        failed = _failed(p)
        if failed:
            state = f"<span class=\"bad\">FAILED</span> {_e(p.get('error') or '')}"
        elif p.get("changed"):
            state = "<span class=\"warn\">changed</span>"
        else:
            state = "<span class=\"muted\">no change</span>"
        c = p.get("counts", {})
        counts = (f"<span class=\"added\">+{c.get('added', 0)}</span> "
                  f"<span class=\"removed\">\u2212{c.get('removed', 0)}</span> "
                  f"<span class=\"changed\">~{c.get('changed', 0)}</span>"
                  if p.get("changed") else "")
        deltas = p.get("deltas", [])
        delta_text = "<br>".join(_e(d) for d in deltas[:4]) + (
            f"<br><span class=\"muted\">+{len(deltas) - 4} more</span>" if len(deltas) > 4
            else "")
        if e is not None and e.error is not None:
            err = f"{e.error:.2g}"
        else:
            err = "<span class=\"muted\">\u2013</span>"
        link = ""
        if e is not None and e.stem:
            link = (f"<a href=\"report/{e.stem}.html\">diff</a> \u00b7 "
                    f"<a href=\"report/{e.stem}.svg\">svg</a>")
        purpose = _purpose(p["pass_id"])
        purpose_text = f"<br><span class=\"purpose\">{_e(purpose)}</span>" if purpose else ""
        cls = "" if p.get("changed") or failed else " class=\"nochange\""
        rows.append(
            f"<tr{cls}><td class=\"num\">{i + 1}</td><td><code>{_e(p['pass_id'])}</code>{it}"
            f"{purpose_text}{opt_text}</td>"
            f"<td class=\"num\">{1e3 * float(p.get('seconds', 0)):.1f}</td>"
            f"<td>{state}</td><td>{counts}</td><td class=\"mono\">{delta_text}</td>"
            f"<td class=\"num\">{err}</td><td>{link}</td></tr>")
    note = (f"<p class=\"muted\">numeric error after each pass (max |error| / output range, "
            f"against the input graph): {_e(recorder.error_note)}</p>"
            if recorder.error_note else
            "<p class=\"muted\">numeric error: max |error| / output range after the pass, "
            "against the input graph, same seeded inputs and noise.</p>")
    unchanged = sum(1 for p in passes if not p.get("changed") and not _failed(p))
    toggle = (f"<input type=\"checkbox\" id=\"show-unchanged\"><label for=\"show-unchanged\"> "
              f"show the {unchanged} passes that changed nothing</label>" if unchanged else "")
    return ("<h2 id=\"pipeline\">Pipeline</h2>" + toggle +
            "<table><tr><th class=\"num\">#</th><th>pass</th>"
            "<th class=\"num\">ms</th><th>result</th><th>nodes</th><th>op counts</th>"
            "<th class=\"num\">error</th><th>diff</th></tr>" + "".join(rows) + "</table>" + note)


def _failed(p: Mapping[str, Any]) -> bool:
    return bool(p.get("error") or p.get("verification") == "failed")


def _purpose(pass_id: str) -> str:
    """The pass's one-line doc, or "" for a pass no longer registered."""
    from ..errors import UsageError
    from ..registry import get_pass

    try:
        return get_pass(pass_id).summary()
    except UsageError:
        return ""


def _verdicts(summary: Mapping[str, Any]) -> str:
    """The answers first: is the model clean, and does it compute what the input did?"""
    cards = []
    label = _target(summary)[0]
    audit = summary.get("audit")
    export = summary.get("export")
    if audit is not None:
        bad = audit.get("violations") or []
        text = ("every rule holds" if audit.get("clean") else
                f"{len(bad)} violation(s): " + "; ".join(str(v) for v in bad[:3]))
        cards.append(("ok" if audit.get("clean") else "bad",
                      f"{label} audit: {'clean' if audit.get('clean') else 'NOT clean'}", text))
    elif export is not None and not export.get("ok"):
        cards.append(("bad", f"{label}: conversion failed", str(export.get("error", ""))))
    else:
        cards.append(("none", "audit: none", "no target (--target none)"))
    ver = summary.get("verification")
    if ver is None:
        cards.append(("none", "fidelity: not measured", "run with --verify"))
    else:
        lines = []
        for key, val in ver.items():
            if not isinstance(val, dict):
                continue
            if "max_abs" in val:
                psnr = val.get("psnr")
                ptext = (f"PSNR {float(psnr):.1f} dB" if psnr is not None else
                         "identical" if val.get("psnr_note") else "PSNR n/a")
                lines.append(f"{key}: max abs error {float(val['max_abs']):.3g}, {ptext}")
            else:
                lines.append(f"{key}: {val.get('error', 'failed')}")
        if "error" in ver:
            lines.insert(0, str(ver["error"]))
        cards.append(("ok" if ver.get("ok") else "bad",
                      f"fidelity: {'within tolerance' if ver.get('ok') else 'FAILED'}",
                      "<br>".join(_e(x) for x in lines)))
    failures = summary.get("failures") or []
    if failures:
        cards.append(("bad", f"{len(failures)} pass(es) failed",
                      ", ".join(_e(f.get("pass_id", "")) for f in failures)))
    html_cards = "".join(
        f"<div class=\"verdict {cls}\"><b>{_e(title)}</b><br>"
        f"{text if title.startswith('fidelity') or 'failed' in title else _e(text)}</div>"
        for cls, title, text in cards)
    return f"<div class=\"verdicts\" id=\"verdicts\">{html_cards}</div>"


def _toc(summary: Mapping[str, Any], figures: list, overall: bool) -> str:
    label = _target(summary)[0]
    items = [("images", "output images") if figures else None, ("pipeline", "pipeline"),
             ("overall", "overall diff") if overall else None, ("diffs", "pass diffs"),
             ("histogram", "op histogram"),
             ("audit", f"{label} audit") if summary.get("audit") or summary.get("export")
             else None,
             ("fidelity", "fidelity"), ("files", "files")]
    links = "".join(f"<a href=\"#{i[0]}\">{_e(i[1])}</a>" for i in items if i)
    return f"<nav class=\"toc\">{links}</nav>"


def _overall_section(stem: str | None, diff: DiffResult | None) -> str:
    if stem is None or diff is None:
        return ""
    return (f"<h2 id=\"overall\">Overall diff</h2><div class=\"card\"><b>input \u2192 result</b>: "
            f"{_e(diff.summary())} \u00b7 <a href=\"report/{stem}.html\">open</a> \u00b7 "
            f"<a href=\"report/{stem}.svg\">svg</a> \u00b7 <a href=\"report/{stem}.json\">json</a>"
            f"<a href=\"report/{stem}.html\"><img class=\"preview\" src=\"report/{stem}.svg\" "
            f"alt=\"overall diff\"></a></div>")


def _pass_cards(recorder: ReportRecorder) -> str:
    cards = []
    for e in recorder.entries:
        if not e.stem:
            continue
        res = e.result or DiffResult()
        deltas = "; ".join(op_count_deltas(res.ops_before, res.ops_after)[:5])
        it = f" (round {e.record.iteration})" if e.record.iteration else ""
        cards.append(
            f"<div class=\"card\" id=\"pass-{e.index}\"><b>{e.index:02d} "
            f"<code>{_e(e.record.pass_id)}</code>{it}</b>: {_e(res.summary())}"
            f"<br><span class=\"mono\">{_e(deltas)}</span><br>"
            f"<a href=\"report/{e.stem}.html\">open diff</a> \u00b7 "
            f"<a href=\"report/{e.stem}.svg\">svg</a> \u00b7 "
            f"<a href=\"report/{e.stem}.json\">json</a>"
            f"<a href=\"report/{e.stem}.html\"><img class=\"preview\" "
            f"src=\"report/{e.stem}.svg\" alt=\"diff of {_e(e.record.pass_id)}\"></a></div>")
    if not cards:
        return "<h2 id=\"diffs\">Diffs</h2><p class=\"muted\">no pass changed the graph</p>"
    return ("<h2 id=\"diffs\">Diffs of the passes that changed the graph</h2>"
            + "".join(cards))


def _histogram_section(summary: Mapping[str, Any]) -> str:
    before = dict(summary.get("ops_before", {}))
    after = dict(summary.get("ops_after", {}))
    ops = sorted(set(before) | set(after), key=lambda o: (-max(before.get(o, 0),
                                                               after.get(o, 0)), o))
    if not ops:
        return ""
    peak = max(max(before.values(), default=1), max(after.values(), default=1), 1)
    rows = []
    for op in ops:
        b, a = before.get(op, 0), after.get(op, 0)
        wb, wa = 240 * b / peak, 240 * a / peak
        delta = a - b
        cls = "ok" if delta < 0 else ("warn" if delta > 0 else "muted")
        rows.append(
            f"<tr><td>{_e(op)}</td><td class=\"num\">{b}</td><td><span class=\"bar b\" "
            f"style=\"width:{wb:.1f}px\"></span></td><td class=\"num\">{a}</td><td>"
            f"<span class=\"bar a\" style=\"width:{wa:.1f}px\"></span></td>"
            f"<td class=\"num {cls}\">{delta:+d}</td></tr>")
    return ("<h2 id=\"histogram\">Op histogram</h2><table><tr><th>op</th>"
            "<th class=\"num\">before</th><th></th>"
            "<th class=\"num\">after</th><th></th><th class=\"num\">\u0394</th></tr>"
            + "".join(rows) + "</table>")


def _target(summary: Mapping[str, Any]) -> tuple[str, Any]:
    """The label and the registered target of the run's export (None when unknown)."""
    from ..targets import get_target

    name = (summary.get("export") or {}).get("target") or "tflite"
    try:
        target = get_target(name)
    except Exception:  # a plugin target not loaded in this process: its name will do
        return name, None
    return target.display_name, target


def _violation_items(violations: Sequence[str], target: Any) -> str:
    """Violations grouped by the rule they break, each rule with its description."""
    from ..targets import violation_rule

    groups: dict[str, list[str]] = {}
    for v in violations:
        groups.setdefault(violation_rule(v), []).append(v)
    parts = []
    for rule_id, items in groups.items():
        rule = target.rule(rule_id) if target is not None else None
        what = f": {_e(rule.description)}" if rule is not None else ""
        lis = "".join(f"<li class=\"mono\">{_e(x)}</li>" for x in items[:200])
        parts.append(f"<li><code>{_e(rule_id)}</code>{what} ({len(items)})<ul>{lis}</ul></li>")
    return "".join(parts)


def _audit_section(summary: Mapping[str, Any]) -> str:
    audit = summary.get("audit")
    export = summary.get("export")
    label, target = _target(summary)
    if audit is None:
        if export and not export.get("ok"):
            return (f"<h2 id=\"audit\">{_e(label)} audit</h2><p class=\"bad\">conversion failed: "
                    f"{_e(export.get('error', ''))}</p>")
        return ""
    parts = [f"<h2 id=\"audit\">{_e(label)} audit</h2>"]
    clean = audit.get("clean")
    parts.append(f"<p class=\"{'ok' if clean else 'bad'}\">"
                 + ("clean" if clean else f"{len(audit.get('violations', []))} violation(s)")
                 + "</p>")
    facts: list[tuple[str, Any]] = [("size", _bytes(int(audit.get("size", 0))))]
    if "num_ops" in audit:  # the TFLite audit's facts
        facts += [
            ("ops / tensors / subgraphs", f"{audit.get('num_ops')} / "
                                          f"{audit.get('num_tensors')} / {audit.get('subgraphs')}"),
            ("max rank", audit.get("max_rank")),
            ("TRANSPOSE", f"{audit.get('transpose_count')} (at the boundary: "
                          f"{len(audit.get('boundary_transposes', []))})"),
            ("Flex / custom / random", f"{audit.get('flex_count')} / "
                                       f"{audit.get('custom_count')} / "
                                       f"{audit.get('random_count')}"),
            ("runs in LiteRT", {True: "yes", False: f"no: {audit.get('run_error')}",
                                None: "not tried"}[audit.get("runs")]),
            ("GPU delegate (analyzer)", {True: "compatible", False: "warnings",
                                         None: "unknown"}[audit.get("analyzer_gpu_compatible")]),
        ]
    for key in ("opset", "model_type", "sizes", "prediction"):  # ONNX / Core ML audit facts
        if key in audit:
            facts.append((key.replace("_", " "), audit[key]))
    io = []
    for key in ("inputs", "outputs"):
        for t in audit.get(key, []):
            if isinstance(t, Mapping):
                io.append(f"{key[:-1]} <code>{_e(t.get('name'))}</code> {_e(t.get('dtype'))} "
                          f"{_e(t.get('shape'))}")
    if io:
        facts.append(("interface", "<br>".join(io)))
    parts.append("<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{v if k == 'interface' else _e(v)}"
                                     f"</td></tr>" for k, v in facts) + "</table>")
    violations = audit.get("violations") or []
    if violations:
        parts.append(f"<h3 class=\"bad\">Violations ({len(violations)})</h3>"
                     f"<ul>{_violation_items(violations, target)}</ul>")
    for title, key in (("GPU-delegate warnings", "gpu_warnings"),
                       ("TFLite analyzer warnings", "analyzer_gpu_warnings")):
        items = audit.get(key) or []
        if items:
            lis = "".join(f"<li class=\"mono\">{_e(x)}</li>" for x in items[:200])
            parts.append(f"<h3 class=\"warn\">{title} ({len(items)})</h3><ul>{lis}</ul>")
    ops = audit.get("ops") or {}
    if ops:
        peak = max(ops.values())
        rows = "".join(
            f"<tr><td><code>{_e(op)}</code></td><td class=\"num\">{n}</td><td><span "
            f"class=\"bar a\" style=\"width:{200 * n / peak:.1f}px\"></span></td></tr>"
            for op, n in ops.items())
        parts.append(f"<h3>{_e(label)} ops</h3><table>{rows}</table>")
    return "".join(parts)


def _bytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def _fidelity_section(summary: Mapping[str, Any]) -> str:
    ver = summary.get("verification")
    if ver is None:
        return ("<h2 id=\"fidelity\">Fidelity</h2><p class=\"muted\">not measured: run with "
                "--verify to compare the result with the input graph.</p>")
    parts = ["<h2 id=\"fidelity\">Fidelity</h2>"]
    if "error" in ver:
        parts.append(f"<p class=\"bad\">{_e(ver['error'])}</p>")
    rows = []
    for key, val in ver.items():
        if not isinstance(val, dict):
            continue
        rel = val.get("rel_max_abs")
        ok = val["ok"] if "ok" in val else (  # held to its criterion (a quantized model's)
            rel is not None and rel <= float(ver.get("tolerance", 1e-3)))
        psnr = val.get("psnr")
        infinite = psnr == float("inf") or (psnr is None and val.get("psnr_note"))
        psnr_text = "\u221e (identical)" if infinite else (
            "n/a" if psnr is None else f"{psnr:.1f} dB")
        ssim = val.get("ssim")
        rows.append(
            f"<tr><td><code>{_e(key)}</code></td>"
            f"<td class=\"num\">{val.get('max_abs', 0):.3g}</td>"
            f"<td class=\"num\">{val.get('mean_abs', 0):.3g}</td>"
            f"<td class=\"num {'ok' if ok else 'bad'}\">{(rel or 0):.3g}</td>"
            f"<td class=\"num\">{psnr_text}</td>"
            f"<td class=\"num\">{'n/a' if ssim is None else f'{ssim:.5f}'}</td></tr>")
    if rows:
        parts.append("<table><tr><th>model:output</th><th class=\"num\">max abs</th>"
                     "<th class=\"num\">mean abs</th><th class=\"num\">max abs / range</th>"
                     "<th class=\"num\">PSNR</th><th class=\"num\">SSIM</th></tr>"
                     + "".join(rows) + "</table>")
    if isinstance(ver.get("graphdef"), str):  # the GraphDef's own run was not needed
        parts.append(f"<p class=\"muted\">graphdef: {_e(ver['graphdef'])}</p>")
    parts.append(f"<p class=\"muted\">tolerance {ver.get('tolerance')} of the output range; "
                 f"seed {ver.get('seed')}; verification "
                 f"{'passed' if ver.get('ok') else 'FAILED'}.</p>")
    return "".join(parts)


def _files_section(outdir: Path) -> str:
    files = [p.name for p in sorted(outdir.iterdir()) if p.is_file() and p.name[0] != "."]
    links = " \u00b7 ".join(f"<a href=\"{_e(f)}\">{_e(f)}</a>" for f in files
                            if f != "report.html")
    return f"<h2 id=\"files\">Files</h2><p>{links}</p>" if links else ""
