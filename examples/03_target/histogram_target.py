"""A graphsurgery target plugin: the graph's op histogram as JSON, audited for one rule.

A target is one object: its rules (with ids), a lint over the GraphDef (``check``), an
export writing the artefact into OUTDIR, and an audit of that artefact against the same
rules. This toy target's artefact is ``ops.json``; its one rule, ``no-random``, asks for a
graph without random ops (noise made a constant or an input first)::

    graphsurgery check model.pb --plugin histogram_target.py --target histogram
    graphsurgery run model.pb -p generic --plugin histogram_target.py --target histogram -o out
    graphsurgery targets --plugin histogram_target.py -v

Installed packages declare a target in the ``graphsurgery.targets`` entry-point group
instead (``histogram = "mypackage.histogram_target:HistogramTarget"``).
"""

import json
import time
from pathlib import Path

from graphsurgery.ir import opdefs
from graphsurgery.targets import Artefact, Audit, Finding, Rule, Target, register_target

NO_RANDOM = Rule("no-random", "no random ops: make the noise a constant or a graph input")


@register_target
class HistogramTarget(Target):
    """The op histogram of the rewritten graph, as ``ops.json``."""

    name = "histogram"
    description = "the op histogram as JSON (a toy target: examples/03_target)"
    filename = "ops.json"
    rules = (NO_RANDOM,)

    def lint(self, graph):  # noqa: ANN001, ANN201 - Graph -> list[Finding]
        return [Finding(n.name, n.op, "random op; the histogram target wants none",
                        rule=NO_RANDOM.id) for n in graph.nodes() if opdefs.is_random(n)]

    def export(self, graph, outdir, **options):  # noqa: ANN001, ANN201, ANN003
        t0 = time.perf_counter()
        path = Path(outdir) / self.filename
        path.write_text(json.dumps(dict(sorted(graph.op_counts().items())), indent=1) + "\n")
        return Artefact(self.name, path, path.stat().st_size, time.perf_counter() - t0)

    def audit(self, artefact):  # noqa: ANN001, ANN201 - Artefact -> Audit
        ops = json.loads(Path(artefact.path).read_text())
        bad = [f"{NO_RANDOM.id}: {n} x {op}" for op, n in ops.items() if opdefs.is_random(op)]
        return Audit(self.name, str(artefact.path), artefact.size, bad, {"ops": ops})
