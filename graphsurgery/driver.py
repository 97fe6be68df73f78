"""The driver: load, rewrite, export, audit, verify and report, as one call.

``graphsurgery run`` is argument parsing around :func:`convert`, so the Python API converts,
verifies and reports exactly like the command line, and ``summary.json`` is
:meth:`Result.to_json`::

    import graphsurgery as gs

    result = gs.convert("generator.pb", "stylegan-to-tflite", target="tflite",
                        outdir="out", verify=True, report=True)
    print(result.status, result.artefacts["tflite"], result.audit.clean)

OUTDIR is written through :class:`~graphsurgery.outdir.OutputDir` (refused when it is not
ours to replace, locked, written in a temporary sibling, swapped into place at the end,
removed on any error, SIGINT or SIGTERM). Verification never runs a graph holding ops that act
on the host (``WriteFile``, ``ReadFile``, ``PyFunc``...) unless ``allow_side_effects``.
Status: 0 ok; 3 (:data:`EXIT_PROBLEMS`) when a pass failed (with ``keep_going``), the export
failed, the audit found violations or the verification failed. Errors of input or usage
raise (:class:`~graphsurgery.errors.UsageError`, exit 2).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import metrics as _metrics
from .errors import InputError, PassFailure, UsageError, VerificationError
from .ir.graph import Graph
from .ir.names import TensorRef
from .outdir import OutputDir
from .pipeline import PassRecord, Pipeline
from .targets import AuditLike, Target, get_target

if TYPE_CHECKING:
    from .ir.pickle import PickleOptions
    from .metrics import Criterion
    from .progress import Progress

log = logging.getLogger("graphsurgery")

EXIT_OK, EXIT_PROBLEMS = 0, 3

_SHAPE = re.compile(r"^\[?\s*-?\d+(\s*,\s*-?\d+)*\s*\]?$|^\[\s*\]$")
_MAX_ELEMENTS = 2**31 - 1  # TFLite's dimensions and element counts are int32


def parse_input_spec(spec: str) -> tuple[str, list[int] | None]:
    """``name``, ``name:1`` (a port), ``name:1,512`` or ``name:[1,512]`` (a shape).

    A dimension is a size from 0 to 2**31-1, or -1 for "unknown" (as in TensorFlow's
    shapes; ``verify`` feeds 1 there); the known sizes multiply to at most 2**31-1
    elements. Anything else after ``:`` is refused (UsageError naming ``--inputs``).
    """
    name, sep, rest = spec.rpartition(":")
    text = rest.strip()
    if not sep or not name or text.isdigit():  # a name, or name:PORT
        return spec, None
    if not ("," in text or "[" in text) or not _SHAPE.match(text):
        raise UsageError(f"--inputs {spec}: {rest!r} is neither a port nor a shape "
                         "(write name:1,512 or name:[1,512])")
    dims = [int(d) for d in text.strip("[] ").split(",") if d.strip()]
    elements = 1
    for d in dims:
        if d < -1 or d > _MAX_ELEMENTS:
            raise UsageError(f"--inputs {spec}: dimension {d} is out of range "
                             f"(0 to {_MAX_ELEMENTS}, or -1 for unknown)")
        elements *= max(d, 1)
    if elements > _MAX_ELEMENTS:
        raise UsageError(f"--inputs {spec}: {elements:,} elements, more than {_MAX_ELEMENTS:,}")
    return name, dims


def load_model(model: str | os.PathLike | Graph, inputs: Sequence[str] | None = None,
               outputs: Sequence[str] | None = None,
               progress: Callable[[int, int], None] | None = None,
               pickle_options: PickleOptions | None = None) -> Graph:
    """Load ``model`` (a path, or a Graph used as it is) and set its interface.

    ``inputs`` may carry shapes (``"x:1,512"``, see :func:`parse_input_spec`), set on the
    placeholders. A graph without outputs is a UsageError.
    """
    from .ir.io import load

    specs = [parse_input_spec(s) for s in inputs or ()]
    label = str(model) if not isinstance(model, Graph) else (model.source or "<graph>")
    graph = model if isinstance(model, Graph) else load(model, progress=progress,
                                                        pickle_options=pickle_options)
    if specs:
        graph.inputs = _resolve_tensors(graph, [n for n, _ in specs], "inputs", label)
    if outputs:
        graph.outputs = _resolve_tensors(graph, outputs, "outputs", label)
    if not graph.outputs:
        raise UsageError(f"{label}: no outputs found; name them with --outputs")
    if specs:
        _keep_needed_inputs(graph, label)
    shapes = {n: d for n, d in specs if d is not None}
    if shapes:
        _apply_input_shapes(graph, shapes)
    return graph


def _keep_needed_inputs(graph: Graph, model: str) -> None:
    """Keep as inputs the Placeholders the outputs need but ``--inputs`` left out (a
    conditional generator's ``labels_in``): without a value the graph cannot run."""
    declared = {t.node for t in graph.inputs}
    needed: set[str] = set()
    stack = [t.node for t in graph.outputs]
    while stack:  # what the outputs read, up to the declared inputs (a cut stops there)
        name = stack.pop()
        if name in needed or name not in graph:
            continue
        needed.add(name)
        if name not in declared:
            stack.extend(t.node for t in graph.node(name).data_inputs)
    missing = [n for n in sorted(needed - declared)
               if graph.node(n).op in ("Placeholder", "PlaceholderV2")]
    if missing:
        log.warning("%s: the outputs need %s, not named in --inputs: kept as input%s", model,
                    ", ".join(missing), "s" if len(missing) > 1 else "")
        graph.inputs = [*graph.inputs, *(TensorRef(n, 0) for n in missing)]


def _resolve_tensors(graph: Graph, names: Sequence[str], what: str, model: str) -> list[TensorRef]:
    refs = []
    for n in names:
        ref = TensorRef.parse(n)
        if ref.node not in graph:
            raise UsageError(f"--{what} {n}: no node named {ref.node!r} in {model}")
        refs.append(ref)
    return refs


def _apply_input_shapes(graph: Graph, shapes: dict[str, list[int]]) -> None:
    from .ir.attrs import Shape
    from .rewriter import Rewriter

    rw = Rewriter(graph, "cli::inputs")
    for name, dims in shapes.items():
        node = graph.node(TensorRef.parse(name).node)
        if node.op != "Placeholder":
            raise UsageError(f"--inputs {name}: a shape can only be set on a Placeholder, "
                             f"{node.name!r} is {node.op}")
        rw.set_attr(node, "shape", Shape(tuple(dims)))


def random_feeds(graph: Graph, seed: int = 0) -> dict[str, Any]:
    """Seeded inputs for every graph input: standard-normal floats, zeros otherwise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    feeds = {}
    for ref in graph.inputs:
        node = graph.node(ref.node)
        dtype = graph.dtype_hint(ref)
        shape = graph.static_shape(ref)
        if shape is None or dtype is None:
            raise UsageError(f"input {ref}: unknown shape or dtype; give it with --inputs "
                             f"{ref.node}:[dims]")
        dims = [1 if d < 0 else d for d in shape]
        if dtype.is_floating:
            feeds[node.name] = rng.standard_normal(dims).astype(dtype.numpy)
        else:
            feeds[node.name] = np.zeros(dims, dtype=dtype.numpy)
    return feeds


def resolve_target(target: str | Target | None) -> Target | None:
    """A registered target by name (``None`` or ``"none"``: no target), or ``target`` itself."""
    if target is None or isinstance(target, Target):
        return target
    return None if target == "none" else get_target(target)


# ---------------------------------------------------------------------- strict JSON
def _non_finite_note(key: str, value: float) -> str:
    if key == "psnr" and value > 0:
        return "identical outputs (infinite PSNR)"
    if value != value:
        return "not a number (NaN)"
    return "+infinity" if value > 0 else "-infinity"


def strict_json(obj: Any) -> Any:
    """``obj`` made valid for strict JSON parsers: no ``Infinity``/``NaN``.

    A non-finite float becomes ``null``; in a mapping, a ``KEY_note`` beside it says why
    (``"psnr": null, "psnr_note": "identical outputs (infinite PSNR)"``). numpy scalars
    become Python numbers, paths and other objects strings.
    """
    import math

    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            key = str(k)
            v = _plain(v)
            if isinstance(v, float) and not math.isfinite(v):
                out[key] = None
                out[f"{key}_note"] = _non_finite_note(key, v)
            else:
                out[key] = strict_json(v)
        return out
    if isinstance(obj, list | tuple):
        return [strict_json(v) for v in obj]
    obj = _plain(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    return str(obj)


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)  # numpy scalars
    if item is not None and getattr(value, "shape", None) == ():
        return item()
    return value


def dump_json(obj: Any) -> str:
    """``obj`` as indented strict JSON (see :func:`strict_json`); never writes ``NaN``."""
    return json.dumps(strict_json(obj), indent=2, allow_nan=False)


# ---------------------------------------------------------------------- the result
@dataclass
class Result:
    """What :func:`convert` did; :meth:`to_json` is ``summary.json``.

    ``artefacts`` maps ``"model"`` (the rewritten ``model.pb``), the target's name (its
    file), ``"<target>.<variant>"`` (other models it wrote, ``coreml.linear8``) and
    ``"report"`` to paths under :attr:`outdir`; ``audit`` is the target's audit of its
    artefact; ``verification`` the comparison with the input graph (``ok``, and per
    output ``max_abs``, ``psnr``...); ``status`` the exit code (0, or 3 for problems).
    """

    model: str
    outdir: Path
    pipeline: str
    records: list[PassRecord]
    failures: list[PassRecord]
    pipeline_seconds: float
    inputs: list[str]
    outputs: list[str]
    ops_before: dict[str, int]
    ops_after: dict[str, int]
    nodes_after: int
    target: str | None = None
    artefacts: dict[str, Path] = field(default_factory=dict)
    export: dict[str, Any] | None = None
    audit: AuditLike | None = None
    verification: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    status: int = EXIT_OK
    graph: Graph | None = field(default=None, repr=False)
    #: The arrays ``verify`` compared ({"reference": [...], "graphdef": [...], target: [...]}).
    values: dict[str, Any] = field(default_factory=dict, repr=False)
    #: Wall seconds of each step (``passes``, ``export``, ``verify``, ``report``), and of
    #: the reference runs made in the background (``reference_run``, ``graphdef_run``).
    timings: dict[str, float] = field(default_factory=dict, repr=False)
    _tmp: Path | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == EXIT_OK

    @property
    def nodes_before(self) -> int:
        return sum(self.ops_before.values())

    @property
    def fidelity(self) -> dict[str, Any] | None:
        """The verification's per-output comparisons (``"graphdef:y:0": {...}``)."""
        if self.verification is None:
            return None
        return {k: v for k, v in self.verification.items() if isinstance(v, dict)}

    def to_json(self) -> dict[str, Any]:
        """``summary.json``: paths relative to OUTDIR, strict JSON (:func:`strict_json`).

        Its fields are documented in ``docs/summary-schema.md``.
        """
        from . import __version__

        summary: dict[str, Any] = {
            "graphsurgery": __version__,
            "model": self.model,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "ops_before": self.ops_before,
            "ops_after": self.ops_after,
            "nodes_before": self.nodes_before,
            "nodes_after": self.nodes_after,
            "pipeline": self.pipeline,
            "seconds": round(self.pipeline_seconds, 4),
            "ok": not self.failures,
            "passes": [r.to_json() for r in self.records],
            "failures": [r.to_json() for r in self.failures],
            "warnings": self.warnings,
        }
        if self.export is not None:
            summary["export"] = self.export
        if self.audit is not None:
            summary["audit"] = self.audit.to_json()
        if self.verification is not None:
            summary["verification"] = self.verification
        if "report" in self.artefacts:
            summary["report"] = self.artefacts["report"]
        return strict_json(self._relative(summary))

    def _relative(self, obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: self._relative(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self._relative(v) for v in obj]
        if isinstance(obj, str | os.PathLike):
            text = str(obj)
            for base in (self._tmp, self.outdir):
                if base is None:
                    continue
                if text == str(base):
                    return "."
                if text.startswith(str(base) + os.sep):
                    return text[len(str(base)) + 1:]
            return text if isinstance(obj, os.PathLike) else obj
        return obj


# ---------------------------------------------------------------------- the flow
def convert(
    model: str | os.PathLike | Graph,
    pipeline: str | Pipeline = "generic",
    *,
    target: str | Target | None = "tflite",
    outdir: str | os.PathLike | None = None,
    inputs: Sequence[str] | None = None,
    outputs: Sequence[str] | None = None,
    verify: bool = False,
    report: bool = False,
    quantize: str | None = None,
    target_options: Mapping[str, Any] | None = None,
    seed: int = 0,
    tolerance: float | None = None,
    allow_side_effects: bool = False,
    overrides: Sequence[str] = (),
    plugins: Sequence[str] = (),
    keep_going: bool = False,
    verify_each: bool = True,
    verify_shapes: bool = False,
    dump_changed: bool = False,
    progress: Progress | Callable[[int, int], None] | None = None,
    pickle_options: PickleOptions | None = None,
) -> Result:
    """Run ``pipeline`` over ``model``, export it for ``target``, audit, verify, report.

    ``model``: a file (``.pb``, ``.pbtxt``, a SavedModel folder...) or a :class:`Graph`
    (copied, not changed). ``pipeline``: a preset name, pipeline text or a Pipeline.
    ``target``: a registered target's name, a :class:`~graphsurgery.targets.Target`, or
    None/``"none"`` for the rewritten GraphDef only. ``outdir``: where ``model.pb``, the
    artefact, ``summary.json`` and ``report.html`` go (a new temporary folder when None).
    ``inputs``/``outputs`` name the interface (inputs may carry shapes, ``"x:1,512"``).
    ``target_options`` are the target's export options (``{"opset": 13}`` for onnx,
    ``{"compress": "linear8,palettize4"}`` for coreml; strings are converted by the target).
    ``verify`` compares the result (GraphDef and artefact) with the input graph on seeded
    random inputs (``seed``), failing above ``tolerance`` (max abs error / output range;
    None: 1e-3, and a quantized artefact is held to its mode's criterion instead,
    :func:`graphsurgery.metrics.quantized_criterion`; a number applies to both).
    ``overrides`` are ``--set`` strings (``"core::dce.keep=x"``); ``plugins`` files or modules
    to import first. ``progress``: a :class:`~graphsurgery.progress.Progress` shown through
    every step (load, each pass, conversion, verification, report), or a ``(done, total)``
    callback for reading the model file only. ``pickle_options`` say how a ``.pkl`` is
    rebuilt (``trust_code=True`` RUNS the pickle's code; the summary's warnings say so).
    Returns the :class:`Result` (also written as ``OUTDIR/summary.json``).
    """
    from .plugins import load_plugin
    from .progress import Progress

    if isinstance(progress, Progress):
        steps, load_cb = progress, None
    else:
        steps, load_cb = Progress(enabled=False), progress

    for spec in inputs or ():  # a bad --inputs is refused before anything else
        parse_input_spec(spec)
    if outdir is None:
        outdir = Path(tempfile.mkdtemp(prefix="graphsurgery-")) / "out"
    protect = [*(p for p in plugins if os.path.exists(p))]
    if not isinstance(model, Graph):
        protect.insert(0, model)
    # Refuse an OUTDIR that is not ours to replace before any work (this touches nothing).
    out = OutputDir(outdir, protect=protect)
    for p in plugins:
        load_plugin(p)
    tgt = resolve_target(target)
    if tgt is None and target_options:
        raise UsageError(f"target option {next(iter(target_options))!r} given without a target")
    export_options = (tgt.check_options({"quantize": quantize, **(target_options or {})})
                      if tgt is not None else {})
    if isinstance(pipeline, Pipeline):
        pipe = pipeline.copy()
        pipe.name = pipeline.name
    else:
        pipe = Pipeline.from_spec(pipeline)
    if tgt is not None:  # what the export calls for (--quantize mobile: size first)
        for pass_id, opts in tgt.pass_options(export_options).items():
            if pass_id in pipe.pass_ids():
                pipe.set_options(pass_id, **opts)
    pipe.apply_overrides(overrides)
    pipe.warm_up()  # the shape library loads while the model is read
    if load_cb is None and not isinstance(model, Graph):
        load_cb = steps.bytes_callback(f"loading {Path(model).name}")
    with steps.stage(f"loading {Path(model).name if not isinstance(model, Graph) else 'graph'}"):
        graph = load_model(model.copy() if isinstance(model, Graph) else model, inputs,
                           outputs, load_cb, pickle_options)
    notes: list[str] = []
    if (pickle_options is not None and pickle_options.trust_code
            and not isinstance(model, Graph) and Path(model).suffix in (".pkl", ".pickle")):
        notes.append(f"{Path(model).name}: frozen by RUNNING the pickle's own code in a "
                     "subprocess (--trust-pickle-code), not rebuilt from its weights")
    # Locked, written in a temporary sibling (removed on any error, SIGINT or SIGTERM),
    # swapped into place by out.commit().
    with out:
        try:
            result = _run_into(out, pipe, graph, tgt, export_options, model=model,
                               verify=verify, report=report, seed=seed, tolerance=tolerance,
                               allow_side_effects=allow_side_effects, keep_going=keep_going,
                               verify_each=verify_each, verify_shapes=verify_shapes,
                               dump_changed=dump_changed, steps=steps, notes=notes)
        except PassFailure as exc:
            # Keep only the reproducer: it is what the user needs to report the failure.
            if out.keep_only("reproducer"):
                out.commit()
                if exc.reproducer:
                    final = out.final_path(exc.reproducer)
                    exc.args = (str(exc).replace(exc.reproducer, final),)
                    exc.reproducer = final
            raise
    return result


def _run_into(out: OutputDir, pipe: Pipeline, graph: Graph, tgt: Target | None,
              export_options: Mapping[str, Any], **kwargs: Any) -> Result:
    """:func:`_run_steps`, waiting for the runs it left in the background whatever happens
    (so no TensorFlow session outlives the call)."""
    jobs: dict[str, Any] = {}
    try:
        return _run_steps(out, pipe, graph, tgt, export_options, jobs=jobs, **kwargs)
    finally:
        for job in jobs.values():
            job.wait()


def _start_run(jobs: dict[str, Any], label: str, graph: Graph, seed: int,
               allow: bool) -> None:
    """Start the reference run of ``graph`` on verification's feeds in a thread
    (:class:`~graphsurgery.runners.BackgroundRun`, after the runs already started: one
    session at a time): it computes on a core the passes and the converter leave free.
    Nothing starts when verification would refuse the graph. TensorFlow is imported
    here first: two threads importing it at once break its protobuf registry. (After the
    shape library's preload: its quiet load redirects stderr in a thread, and so does
    the quiet import; interleaved, the two hang.)"""
    from .export.tflite import import_tensorflow
    from .ir import opdefs, tf_capi
    from .runners import BackgroundRun, ReferenceRunner, feed_shapes

    if not allow and opdefs.side_effects(graph):
        return
    try:
        feeds = random_feeds(graph, seed=seed)
    except UsageError:
        return
    tf_capi.load()  # waits for the preload (Pipeline.warm_up) in progress
    import_tensorflow()
    jobs[label] = BackgroundRun(
        lambda: ReferenceRunner(graph, noise="seeded", seed=seed, allow_side_effects=allow,
                                input_shapes=feed_shapes(graph, feeds)),
        feeds, name=f"graphsurgery-{label}", after=next(reversed(jobs.values()), None))


def _run_steps(out: OutputDir, pipe: Pipeline, graph: Graph, tgt: Target | None,
               export_options: Mapping[str, Any], *, model: str | os.PathLike | Graph,
              verify: bool, report: bool, seed: int, tolerance: float | None,
              allow_side_effects: bool, keep_going: bool, verify_each: bool,
              verify_shapes: bool, dump_changed: bool, steps: Progress,
              notes: Sequence[str] = (), jobs: dict[str, Any]) -> Result:
    import time

    from .ir.io import save
    from .pipeline import DumpChanged, LogOpDeltas, LogTimings

    # The input graph is kept only to verify against: a copy shares NodeDefs, but keeps
    # the old weights alive once the passes replace them.
    original = graph.copy() if verify else None
    if original is not None:  # its reference runs while the passes do
        _start_run(jobs, "reference", original, seed, allow_side_effects)
    ops_before = dict(sorted(graph.op_counts().items()))
    instruments = [LogTimings(), LogOpDeltas(), steps.pass_instrument(pipe)]
    if dump_changed:
        instruments.append(DumpChanged(out.tmp / "dumps"))
    recorder = None
    if report:  # a drawn diff per pass; with verify, the error after each pass
        from .render.report import ReportRecorder

        feeds = None
        if verify:
            try:
                feeds = random_feeds(graph, seed=seed)
            except UsageError:
                feeds = None
        recorder = ReportRecorder(feeds=feeds, seed=seed)
        instruments.append(recorder)
    with steps.stage("passes"):
        run = _run_pipeline(pipe, graph, model, out, verify_each=verify_each,
                            verify_shapes=verify_shapes, keep_going=keep_going,
                            instruments=instruments)
    save(graph, out.tmp / "model.pb")
    if verify and not _artefact_checks_graphdef(tgt, export_options):
        # the result's run in TensorFlow, while it is converted (see _verify)
        _start_run(jobs, "graphdef", graph.copy(), seed, allow_side_effects)
    label = str(model) if not isinstance(model, Graph) else (model.source or "<graph>")
    result = Result(
        model=label, outdir=Path(out.display), pipeline=run.pipeline, records=run.records,
        failures=run.failures, pipeline_seconds=run.seconds,
        inputs=[str(t) for t in graph.inputs], outputs=[str(t) for t in graph.outputs],
        ops_before=ops_before, ops_after=dict(sorted(graph.op_counts().items())),
        nodes_after=len(graph), target=tgt.name if tgt is not None else None,
        artefacts={"model": out.tmp / "model.pb"}, warnings=[*notes, *run.warnings],
        status=EXIT_OK if run.ok else EXIT_PROBLEMS, graph=graph, _tmp=out.tmp,
    )
    artefact = None
    timings, t0 = result.timings, time.perf_counter()
    timings["passes"] = run.seconds
    if tgt is not None:
        artefact = _export(tgt, graph, out, export_options, result, steps)
        timings["export"], t0 = time.perf_counter() - t0, time.perf_counter()
    if verify:
        assert original is not None
        with steps.stage("verifying against the input graph"):
            _verify(original, graph, tgt, artefact, result, seed=seed, tolerance=tolerance,
                    allow=allow_side_effects, jobs=jobs)
        timings["verify"], t0 = time.perf_counter() - t0, time.perf_counter()
    if recorder is not None:
        result.artefacts["report"] = out.tmp / "report.html"
    summary = result.to_json()
    (out.tmp / "summary.json").write_text(dump_json(summary) + "\n")
    if recorder is not None:
        from .render.report import write_report

        with steps.stage("writing the report"):
            write_report(out.tmp, summary, recorder, graph, outputs=result.values or None)
        timings["report"] = time.perf_counter() - t0
    for label, job in jobs.items():
        job.wait()
        timings[f"{label}_run"] = job.seconds
    log.info("seconds: %s", ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
    out.commit()
    result.artefacts = {k: Path(out.final_path(v)) for k, v in result.artefacts.items()}
    if result.audit is not None and isinstance(getattr(result.audit, "path", None), str):
        result.audit.path = out.final_path(result.audit.path)  # type: ignore[misc]
    result._tmp = None
    return result


def _run_pipeline(pipe: Pipeline, graph: Graph, model: str | os.PathLike | Graph,
                  out: OutputDir, *, verify_each: bool, verify_shapes: bool, keep_going: bool,
                  instruments: list[Any]) -> Any:
    is_pb = not isinstance(model, Graph) and Path(model).suffix == ".pb"
    return pipe.run(
        graph,
        verify_each=verify_each,
        verify_shapes=verify_shapes,
        keep_going=keep_going,
        instruments=instruments,
        reproducer_dir=out.tmp,
        # An unchanged .pb input is its own reproducer input: no per-pass snapshot needed.
        source=model if graph.version == 0 and is_pb else None,
    )


def _export(tgt: Target, graph: Graph, out: OutputDir, options: Mapping[str, Any],
            result: Result, steps: Progress) -> Any:
    try:
        with steps.stage(f"converting to {tgt.display_name}"):
            artefact = tgt.export(graph, out.tmp, **options)
    except VerificationError as exc:
        result.export = {"target": tgt.name, "ok": False, "error": str(exc)}
        result.status = max(result.status, EXIT_PROBLEMS)
        log.error("%s conversion failed: %s", tgt.display_name, exc)
        return None
    result.export = artefact.to_json()
    result.artefacts[tgt.name] = artefact.path
    for variant, (path, _) in artefact.variants.items():  # model.linear8.mlpackage...
        result.artefacts[f"{tgt.name}.{variant}"] = path
    with steps.stage(f"auditing {Path(artefact.path).name}"):
        result.audit = tgt.audit(artefact)
    if not result.audit.clean:
        result.status = max(result.status, EXIT_PROBLEMS)
    return artefact


#: Verification tolerance (max abs error / output range) for an input graph that computes
#: in float16, or an artefact with float16 weights: 16 float16 epsilons.
FLOAT16_TOLERANCE = _metrics.FLOAT16_TOLERANCE


def computes_in_float16(graph: Graph) -> bool:
    """True when some node of ``graph`` has a float16 type attribute (a mixed-precision
    graph: casts to half, half constants, half convolutions)."""
    from .ir.dtypes import DType

    half = int(DType.float16)
    for node in graph:
        for av in node.proto.attr.values():
            kind = av.WhichOneof("value")
            if (kind == "type" and av.type == half) or (kind == "list" and half in av.list.type):
                return True
    return False


def compare_outputs(outputs: Sequence[TensorRef], reference: Sequence[Any],
                    results: Mapping[str, Sequence[Any]], tolerance: float,
                    report: dict[str, Any],
                    criteria: Mapping[str, Criterion] | None = None) -> dict[str, Any]:
    """Compare each of ``results`` (label -> output arrays) with ``reference``, output by
    output; ``report`` gets ``"<label>:<output>"`` -> :meth:`Comparison.to_json` with
    ``ok`` and the ``criterion`` it was held to (or ``{"error": ...}`` when shapes
    differ), and ``ok`` False when one fails. A label's criterion is ``criteria[label]``,
    else ``tolerance`` (max abs error / output range). Shared by ``--verify`` and
    ``graphsurgery verify``; returns ``report``."""
    from .metrics import compare, max_abs_criterion

    report.setdefault("ok", True)
    default = max_abs_criterion(tolerance, "max abs error / output range within --tolerance")
    for label, outs in results.items():
        criterion = (criteria or {}).get(label, default)
        for ref_t, a, b in zip(outputs, reference, outs):
            try:
                cmp = compare(a, b)
            except ValueError as exc:  # shapes differ
                report[f"{label}:{ref_t}"] = {"error": str(exc)}
                report["ok"] = False
                log.error("verify %s %s FAILED: %s", label, ref_t, exc)
                continue
            missed = criterion.failures(cmp)
            report[f"{label}:{ref_t}"] = {**cmp.to_json(), "ok": not missed,
                                          "criterion": criterion.to_json(),
                                          **({"missed": missed} if missed else {})}
            report["ok"] &= not missed
            log.info("verify %s %s: %s", label, ref_t, cmp)
            if missed:
                log.error("verify %s %s FAILED (%s): %s", label, ref_t, "; ".join(missed), cmp)
    return report


def _artefact_checks_graphdef(tgt: Target | None, options: Mapping[str, Any]) -> bool:
    """Whether verification will likely hold the target's artefact to the GraphDef's own
    criterion: a target that runs its artefacts here, exported without quantization. Its
    comparison then checks the GraphDef it was converted from as well (:func:`_verify`)."""
    from .targets import Target

    if tgt is None or options.get("quantize") not in (None, "fp32"):
        return False
    if type(tgt).runner is Target.runner:  # the base class runs nothing
        return False
    unavailable = getattr(tgt, "runner_unavailable", None)
    return not (callable(unavailable) and unavailable())


#: What ``verification["graphdef"]`` says when the GraphDef's own TensorFlow run is skipped.
GRAPHDEF_NOT_RUN = ("not run: the {target} model converted from it matches the input graph "
                    "to the same tolerance")


def _verify(original: Graph, graph: Graph, tgt: Target | None, artefact: Any, result: Result,
            *, seed: int, tolerance: float, allow: bool,
            jobs: Mapping[str, Any] | None = None) -> None:
    """Compare the result (GraphDef and artefact) with the input graph on the same inputs.

    Both graphs run through the reference runner (NCHW ops wrapped in transposes, custom
    ops by their reference maths, random ops fed the same seeded noise), so graphs that
    TensorFlow cannot run on CPU as they are can still be verified. ``jobs`` may hold the
    same runs started earlier (:func:`_start_run`, ``"reference"`` and ``"graphdef"``):
    their outputs are used when they ran on exactly these feeds.

    The rewritten GraphDef's own run is skipped when the target's artefact, converted from
    it, meets the criterion the GraphDef would be held to (a float32 artefact, compared
    with the INPUT graph's reference): that comparison already checks what the rewrite
    computes, and the GraphDef's run would only tell where a mismatch came from. It runs
    whenever that is needed: no target, no runner for the artefact, a quantized artefact
    (held to a looser criterion) or a failed target comparison; ``verification``'s
    ``graphdef`` then holds :data:`GRAPHDEF_NOT_RUN` instead of its comparisons.
    """
    from .runners import ReferenceRunner, feed_shapes, refuse_side_effects, same_feeds

    def outputs(label: str, g: Graph, fed: Mapping[str, Any]) -> list[Any]:
        job = (jobs or {}).get(label)
        if job is not None and same_feeds(job.feeds, fed):
            return job.result()
        with ReferenceRunner(g, noise="seeded", seed=seed, allow_side_effects=allow,
                             input_shapes=feed_shapes(g, fed)) as runner:
            return runner.run(fed)

    def fail(error: str, message: str) -> None:
        result.verification = {"ok": False, "error": error}
        result.status = max(result.status, EXIT_PROBLEMS)
        log.error(message)

    try:  # ops acting on the host (WriteFile, PrintV2...) run only when the user says so
        for g in () if allow else (original, graph):
            refuse_side_effects(g, "--allow-side-effects")
    except InputError as exc:
        return fail(str(exc), f"cannot verify: {exc}")
    feeds = random_feeds(graph, seed=seed)
    try:  # the input graph may read inputs the passes dropped (ProGAN's [?, 0] labels_in)
        ref_feeds = {**random_feeds(original, seed=seed), **feeds}
    except UsageError:
        ref_feeds = feeds
    try:
        reference = outputs("reference", original, ref_feeds)
    except Exception as exc:
        return fail(f"reference run failed: {exc}", "cannot verify: the input graph does not "
                    f"run on CPU: {str(exc).splitlines()[0] if str(exc) else exc!r}")
    targets: dict[str, Any] = {}
    if tgt is not None and artefact is not None:
        runner = tgt.runner(artefact)
        if runner is not None:
            with runner:
                targets[tgt.name] = runner.run(feeds)
    given = tolerance is not None
    tolerance = _metrics.DEFAULT_TOLERANCE if tolerance is None else tolerance
    why = (f"--tolerance {tolerance:g} (given)" if given else
           "a float32 result: the default --tolerance")
    report: dict[str, Any] = {"ok": True, "tolerance": tolerance, "seed": seed}
    if computes_in_float16(original):  # the reference is only as exact as float16
        asked, tolerance = tolerance, max(tolerance, FLOAT16_TOLERANCE)
        report.update(tolerance=tolerance, original_precision="float16")
        why = ("the input graph computes in float16: at least 16 float16 epsilons of the "
               "output range" + (f" (--tolerance {asked:g} given)" if given else ""))
        log.info("the input graph computes in float16: verification tolerance %.3g", tolerance)
    criteria = {label: _metrics.max_abs_criterion(tolerance, why)
                for label in ("graphdef", *targets)}
    quantized = (None if given or artefact is None or tgt is None else
                 _metrics.quantized_criterion(tgt.name, artefact.details.get("quantize")))
    if quantized is not None and tgt is not None:  # a quantized model is held to its mode
        criteria[tgt.name] = quantized
        log.info("verify %s: %s (%s)", tgt.name, quantized.describe(), quantized.reason)
    checked = compare_outputs(graph.outputs, reference, targets, tolerance, {}, criteria)
    results: dict[str, Any] = {}
    exact = artefact is not None and artefact.details.get("quantize") in (None, "fp32")
    if targets and exact and checked["ok"]:
        report["graphdef"] = GRAPHDEF_NOT_RUN.format(target=next(iter(targets)))
        log.info("verify graphdef: %s", report["graphdef"])
    else:
        try:
            results["graphdef"] = outputs("graphdef", graph, feeds)
        except Exception as exc:  # a rewrite TensorFlow refuses is a failed verification
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return fail(f"the result graph does not run: {first}",
                        f"verification FAILED: the result graph does not run: {first}")
        compare_outputs(graph.outputs, reference, results, tolerance, report, criteria)
    report.update({k: v for k, v in checked.items() if k != "ok"})
    report["ok"] = report["ok"] and checked["ok"]
    results.update(targets)
    result.verification = report
    result.values = {"reference": reference, **results}  # for the report's images
    if not report["ok"]:
        result.status = max(result.status, EXIT_PROBLEMS)
