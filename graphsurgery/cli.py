"""The ``graphsurgery`` command line.

Exit codes: 0 ok; 2 bad input or usage (one line on stderr, no traceback); 3 check or
verification found problems; 1 internal error; 130 or 143 interrupted by SIGINT or SIGTERM
(after removing the unfinished OUTDIR). What an OUTDIR may be: see :mod:`graphsurgery.outdir`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import GraphSurgeryError, PassFailure, UsageError, VerificationError
from .ir.graph import Graph
from .ir.names import TensorRef
from .outdir import OutputDir

log = logging.getLogger("graphsurgery")

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_PROBLEMS = 0, 1, 2, 3


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line, exit 2) instead of printing usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


# ---------------------------------------------------------------------- helpers
def _progress(label: str, enabled: bool) -> Any:
    """A progress callback printing ``label: 45%`` on stderr, or None."""
    if not enabled:
        return None
    state = {"last": -1}

    def report(done: int, total: int) -> None:
        pct = int(100 * done / max(total, 1))
        if pct // 10 != state["last"] // 10 or done >= total:
            state["last"] = pct
            end = "\n" if done >= total else ""
            sys.stderr.write(f"\r{label}: {pct:3d}%{end}")
            sys.stderr.flush()

    return report


def _show_progress(args: argparse.Namespace, path: Path | None = None) -> bool:
    if getattr(args, "verbose", 0):
        return True
    if not sys.stderr.isatty():
        return False
    try:
        return path is not None and path.is_file() and path.stat().st_size > (16 << 20)
    except OSError:
        return False


_SHAPE = re.compile(r"^\[?\s*-?\d+(\s*,\s*-?\d+)*\s*\]?$|^\[\s*\]$")
_MAX_ELEMENTS = 2**31 - 1  # TFLite's dimensions and element counts are int32


def parse_input_spec(spec: str) -> tuple[str, list[int] | None]:
    """``name``, ``name:1`` (a port), ``name:1,512`` or ``name:[1,512]`` (a shape).

    A dimension is a size from 0 to 2**31-1, or -1 for "unknown" (as in TensorFlow's
    shapes; ``--verify`` feeds 1 there); the known sizes multiply to at most 2**31-1
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


def _resolve_tensors(graph: Graph, names: Sequence[str], what: str, model: str) -> list[TensorRef]:
    refs = []
    for n in names:
        ref = TensorRef.parse(n)
        if ref.node not in graph:
            raise UsageError(f"--{what} {n}: no node named {ref.node!r} in {model}")
        refs.append(ref)
    return refs


def _load(args: argparse.Namespace, model: str, inputs: list[str] | None = None,
          outputs: list[str] | None = None) -> Graph:
    from .ir.io import load

    path = Path(model)
    progress = _progress(f"loading {path.name}", _show_progress(args, path))
    graph = load(model, progress=progress)
    if inputs:
        graph.inputs = _resolve_tensors(graph, inputs, "inputs", model)
    if outputs:
        graph.outputs = _resolve_tensors(graph, outputs, "outputs", model)
    if not graph.outputs:
        raise UsageError(f"{model}: no outputs found; name them with --outputs")
    return graph


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


_OutDir = OutputDir  # OUTDIR safety lives in outdir.py; the name the helpers below annotate


def _random_feeds(graph: Graph, seed: int = 0) -> dict[str, Any]:
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


# ---------------------------------------------------------------------- commands
def cmd_run(args: argparse.Namespace) -> int:
    from .pipeline import Pipeline
    from .plugins import load_plugin

    specs = [parse_input_spec(s) for s in args.inputs]
    # Refuse an OUTDIR that is not ours to replace before any work (this touches nothing).
    out = OutputDir(args.output, protect=[args.model, *(p for p in args.plugin
                                                        if os.path.exists(p))])
    for p in args.plugin:
        load_plugin(p)
    pipeline = Pipeline.from_spec(args.pipeline)
    pipeline.apply_overrides(args.set)
    pipeline.warm_up()  # the shape library loads while the model is read
    graph = _load(args, args.model, [n for n, _ in specs] or None, args.outputs or None)
    shapes = {n: d for n, d in specs if d is not None}
    if shapes:
        _apply_input_shapes(graph, shapes)
    # Locked, written in a temporary sibling (removed on any error, SIGINT or SIGTERM),
    # swapped into place by out.commit().
    with out:
        try:
            return _run_into(args, pipeline, graph, out)
        except PassFailure as exc:
            # Keep only the reproducer: it is what the user needs to report the failure.
            if out.keep_only("reproducer"):
                out.commit()
                if exc.reproducer:
                    final = out.final_path(exc.reproducer)
                    exc.args = (str(exc).replace(exc.reproducer, final),)
                    exc.reproducer = final
            raise


def _run_into(args: argparse.Namespace, pipeline: Any, graph: Graph, out: _OutDir) -> int:
    from .ir.io import save
    from .pipeline import DumpChanged, LogOpDeltas, LogTimings

    # The input graph is kept only to verify against: a copy shares NodeDefs, but keeps
    # the old weights alive once the passes replace them.
    original = graph.copy() if args.verify else None
    ops_before = dict(sorted(graph.op_counts().items()))
    instruments = [LogTimings(), LogOpDeltas()]
    if args.dump_changed:
        instruments.append(DumpChanged(out.tmp / "dumps"))
    recorder = None
    if args.report:  # a drawn diff per pass; with --verify, the error after each pass
        from .render.report import ReportRecorder

        feeds = None
        if args.verify:
            try:
                feeds = _random_feeds(graph, seed=args.seed)
            except UsageError:
                feeds = None
        recorder = ReportRecorder(feeds=feeds, seed=args.seed)
        instruments.append(recorder)
    result = pipeline.run(
        graph,
        verify_each=not args.no_verify_each,
        verify_shapes=args.verify_shapes,
        keep_going=args.keep_going,
        instruments=instruments,
        reproducer_dir=out.tmp,
        # An unchanged .pb input is its own reproducer input: no per-pass snapshot needed.
        source=args.model if graph.version == 0 and Path(args.model).suffix == ".pb" else None,
    )
    save(graph, out.tmp / "model.pb")
    summary: dict[str, Any] = {
        "graphsurgery": __version__,
        "model": str(args.model),
        "inputs": [str(t) for t in graph.inputs],
        "outputs": [str(t) for t in graph.outputs],
        "ops_before": ops_before,
        "ops_after": dict(sorted(graph.op_counts().items())),
        "nodes_before": sum(ops_before.values()),
        "nodes_after": len(graph),
        **result.to_json(),
    }
    status = EXIT_OK if result.ok else EXIT_PROBLEMS
    if args.target == "tflite":
        status = max(status, _export_tflite(args, graph, out, summary))
    outputs: dict[str, Any] = {}
    if args.verify:
        status = max(status, _verify(args, original, graph, out, summary, keep=outputs))
    if recorder is not None:
        summary["report"] = "report.html"
    summary = out.relative(summary)  # paths inside OUTDIR, as they read after the move
    (out.tmp / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    if recorder is not None:
        from .render.report import write_report

        write_report(out.tmp, summary, recorder, graph, outputs=outputs or None)
    out.commit()
    _print_run_summary(args, summary)
    return status


def _export_tflite(args: argparse.Namespace, graph: Graph, out: _OutDir,
                   summary: dict[str, Any]) -> int:
    from .export.audit import audit_tflite
    from .export.tflite import convert_tflite

    t0 = time.perf_counter()
    try:
        conv = convert_tflite(graph, out.tmp / "model.tflite", quantize=args.quantize)
    except VerificationError as exc:
        summary["export"] = {"target": "tflite", "ok": False, "error": str(exc)}
        log.error("TFLite conversion failed: %s", exc)
        return EXIT_PROBLEMS
    audit = audit_tflite(out.tmp / "model.tflite")
    summary["export"] = {"target": "tflite", "ok": True, "seconds": time.perf_counter() - t0,
                         "bytes": conv.size}
    summary["audit"] = audit.to_json()
    return EXIT_OK if audit.clean else EXIT_PROBLEMS


def _verify(args: argparse.Namespace, original: Graph, graph: Graph, out: _OutDir,
            summary: dict[str, Any], keep: dict[str, Any] | None = None) -> int:
    """Compare the result (GraphDef and .tflite) with the input graph on the same inputs.

    Both graphs run through the reference runner (NCHW ops wrapped in transposes, custom
    ops by their reference maths, random ops fed the same seeded noise), so graphs that
    TensorFlow cannot run on CPU as they are can still be verified.
    """
    from .errors import InputError
    from .metrics import compare
    from .runners import ReferenceRunner, TFLiteRunner, refuse_side_effects

    allow = args.allow_side_effects
    try:  # ops acting on the host (WriteFile, PrintV2...) run only when the user says so
        for g in () if allow else (original, graph):
            refuse_side_effects(g, "--allow-side-effects")
    except InputError as exc:
        summary["verification"] = {"ok": False, "error": str(exc)}
        log.error("cannot verify: %s", exc)
        return EXIT_PROBLEMS
    feeds = _random_feeds(graph, seed=args.seed)
    try:
        with ReferenceRunner(original, noise="seeded", seed=args.seed,
                             allow_side_effects=allow) as ref:
            reference = ref.run(feeds)
    except Exception as exc:
        summary["verification"] = {"ok": False, "error": f"reference run failed: {exc}"}
        log.error("cannot verify: the input graph does not run on CPU: %s",
                  str(exc).splitlines()[0])
        return EXIT_PROBLEMS
    try:
        with ReferenceRunner(graph, noise="seeded", seed=args.seed,
                             allow_side_effects=allow) as res:
            results = {"graphdef": res.run(feeds)}
    except Exception as exc:  # a rewrite TensorFlow refuses is a failed verification
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        summary["verification"] = {"ok": False, "error": f"the result graph does not run: "
                                                         f"{first}"}
        log.error("verification FAILED: the result graph does not run: %s", first)
        return EXIT_PROBLEMS
    tfl = out.tmp / "model.tflite"
    if tfl.exists():
        with TFLiteRunner(tfl) as lite:
            results["tflite"] = lite.run(feeds)
    report: dict[str, Any] = {"ok": True, "tolerance": args.tolerance, "seed": args.seed}
    for label, outs in results.items():
        for ref_t, a, b in zip(graph.outputs, reference, outs):
            try:
                cmp = compare(a, b)
            except ValueError as exc:  # shapes differ
                report[f"{label}:{ref_t}"] = {"error": str(exc)}
                report["ok"] = False
                log.error("verify %s %s FAILED: %s", label, ref_t, exc)
                continue
            report[f"{label}:{ref_t}"] = cmp.to_json()
            ok = cmp.rel_max_abs <= args.tolerance
            report["ok"] &= ok
            log.info("verify %s %s: %s", label, ref_t, cmp)
            if not ok:
                log.error("verify %s %s FAILED: %s", label, ref_t, cmp)
    summary["verification"] = report
    if keep is not None:  # the outputs themselves, for the report's images
        keep.update(reference=reference, **results)
    return EXIT_OK if report["ok"] else EXIT_PROBLEMS


def _print_run_summary(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    n0, n1 = summary["nodes_before"], summary["nodes_after"]
    changed = sum(1 for p in summary["passes"] if p["changed"])
    line = (f"{summary['pipeline'] if args.verbose else len(summary['passes'])} passes, "
            f"{changed} changed the graph; nodes {n0} -> {n1}")
    if not args.verbose:
        line = f"{len(summary['passes'])} passes ({changed} changed the graph); nodes {n0} -> {n1}"
    parts = [line]
    if "audit" in summary:
        a = summary["audit"]
        parts.append("TFLite: " + ("clean" if a.get("clean") else
                                   f"{len(a.get('violations', []))} violation(s)"))
    elif "export" in summary and not summary["export"].get("ok"):
        parts.append("TFLite: conversion failed")
    if summary.get("failures"):
        parts.append(f"{len(summary['failures'])} pass(es) FAILED (see summary.json)")
    print(f"{args.output}: " + "; ".join(parts))


def cmd_check(args: argparse.Namespace) -> int:
    from .check import count_flops, lint_tflite

    graph = _load(args, args.model, args.inputs or None, args.outputs or None)
    blockers = lint_tflite(graph)
    errors = [b for b in blockers if b.severity == "error"]
    for b in blockers:
        print(f"{b.severity}: {b.node} ({b.op}): {b.reason}")
    try:
        flops = count_flops(graph)
        print(f"FLOPs: conv {flops.get('conv', 0):,} matmul {flops.get('matmul', 0):,}")
    except GraphSurgeryError as exc:  # shape inference may not cover every graph
        log.info("FLOPs not counted: %s", exc)
    print(f"{args.model}: {len(errors)} blocker(s), "
          f"{len(blockers) - len(errors)} warning(s) for target {args.target}")
    return EXIT_PROBLEMS if errors else EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    from .diff import diff_graphs
    from .render import DRAWING_SUFFIXES, apply_provenance, write_diff

    if args.context < 0 or args.max_nodes < 10:
        raise UsageError("--context must be >= 0 and --max-nodes >= 10")
    before = _load(args, args.before)
    after = _load(args, args.after)
    result = diff_graphs(before, after)
    apply_provenance(result, args.provenance, args.after)
    out = Path(args.output)
    if out.suffix in DRAWING_SUFFIXES:
        view = write_diff(result, before, after, out, context=args.context, expand=args.expand,
                          max_nodes=args.max_nodes, shapes=args.shapes)
        print(f"{out}: {result.summary()}; drawn {len(view.nodes)} nodes, "
              f"{len(view.boxes)} boxes")
    else:
        result.write(out)
        print(f"{out}: {result.summary()}")
    return EXIT_OK


def cmd_passes(args: argparse.Namespace) -> int:
    from .plugins import load_plugin
    from .registry import all_passes, describe_options

    for p in args.plugin:
        load_plugin(p)
    for pass_id, cls in all_passes().items():
        print(f"{pass_id:34s} {cls.summary()}")
        for line in describe_options(cls):
            print(f"{'':36s}--set {pass_id}.{line}")
    return EXIT_OK


def cmd_pipelines(args: argparse.Namespace) -> int:
    from .pipeline import presets
    from .plugins import load_plugin

    for p in args.plugin:
        load_plugin(p)
    for name, preset in presets().items():
        print(f"{name:22s} {preset.description}")
        if args.verbose:
            print(f"{'':22s} {preset.factory()}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on a built-in graph: a zoo generator through its pipeline to TFLite."""
    from .ir.io import save

    tmp = Path(tempfile.mkdtemp(prefix="graphsurgery-demo-"))
    try:
        model = tmp / "demo.pb"
        if args.model == "builtin":
            from .demo import build_demo_graph

            graph = build_demo_graph()
            pipeline = "generic"
            what = f"a small built-in graph ({len(graph)} nodes)"
        else:
            from . import zoo

            try:
                entry = zoo.get(args.model)
            except KeyError as exc:
                raise UsageError(str(exc.args[0])) from None
            graph = zoo.load(entry.name)
            pipeline = "stylegan-to-tflite"
            what = f"zoo graph {entry.name} ({len(graph)} nodes: {entry.description})"
        save(graph, model)
        print(f"demo: {what}\n  -> {pipeline} -> TFLite, verified against the reference")
        run_args = _PARSER.parse_args(
            ["run", str(model), "-p", pipeline, "-o", args.output, "--verify", "--report",
             "--inputs", *map(str, graph.inputs), "--outputs", *map(str, graph.outputs)]
            + (["-v"] * args.verbose)
        )
        status = cmd_run(run_args)
        summary = json.loads((Path(args.output) / "summary.json").read_text())
        changed = [p for p in summary["passes"] if p["changed"]]
        print(f"  {len(summary['passes'])} passes ran, {len(changed)} changed the graph:")
        for p in changed:
            print(f"    {p['pass_id']:32s} {'; '.join(p['deltas'][:3])}")
        if "audit" in summary:
            a = summary["audit"]
            verdict = "clean" if a.get("clean") else "NOT clean: " + "; ".join(a["violations"])
            print(f"  model.tflite ({a.get('size', 0) / 1e3:.0f} kB): {verdict}")
            print(f"    ops {a.get('ops')}")
        for key, val in summary.get("verification", {}).items():
            if isinstance(val, dict):
                psnr = val["psnr"]
                psnr_text = "inf" if psnr is None or psnr == float("inf") else f"{psnr:.1f} dB"
                print(f"  verified {key}: max abs error {val['max_abs']:.3g}, PSNR {psnr_text}")
        out = Path(args.output)
        names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
        print(f"  written to {out}/: {', '.join(names)}")
        if (out / "report.html").exists():
            print(f"  open {out / 'report.html'} to see what every pass changed")
        return status
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def cmd_zoo(args: argparse.Namespace) -> int:
    from . import zoo

    if args.zoo_cmd == "list":
        for e in zoo.entries():
            tag = " (full size: built on demand, cached)" if e.full_size else ""
            print(f"{e.name:24s} {e.description}{tag}")
        return EXIT_OK
    try:
        entry = zoo.get(args.name)
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
    out = Path(args.output)
    model = entry.builder()
    zoo.write(model, out)
    print(f"{out}: {entry.name} (inputs {', '.join(model.inputs)}; "
          f"outputs {', '.join(model.outputs)})")
    return EXIT_OK


# ---------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=0,
                        help="more detail (-vv for debug output)")
    plug = argparse.ArgumentParser(add_help=False)
    plug.add_argument("--plugin", action="append", default=[], metavar="X",
                      help="load passes from a .py file or a module (repeatable)")

    p = _ArgumentParser(prog="graphsurgery", description="Rewrite frozen TensorFlow graphs.")
    p.add_argument("--version", action="version", version=f"graphsurgery {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_ArgumentParser)
    sub.required = True

    r = sub.add_parser("run", parents=[common, plug], help="run a pipeline over a model")
    r.add_argument("model", metavar="MODEL")
    r.add_argument("-p", "--pipeline", required=True,
                   help="preset name or pipeline text, e.g. 'core::dce,core::cse'")
    r.add_argument("--inputs", nargs="+", default=[], metavar="NAME[:SHAPE]",
                   help="graph inputs; a shape is written name:1,512 or name:[1,512]")
    r.add_argument("--outputs", nargs="+", default=[], metavar="NAME")
    r.add_argument("--set", action="append", default=[], metavar="PASS.OPTION=VALUE")
    r.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    r.add_argument("--target", choices=["tflite", "none"], default="tflite")
    r.add_argument("--quantize", choices=["fp32", "fp16", "dynamic", "int8"], default="fp32")
    r.add_argument("--verify", action="store_true",
                   help="compare outputs with the input graph on random inputs")
    r.add_argument("--tolerance", type=float, default=1e-3,
                   help="--verify fails above this max abs error / output range")
    r.add_argument("--allow-side-effects", action="store_true",
                   help="let --verify run a graph holding ops that act on this machine "
                        "(WriteFile, ReadFile, ImmutableConst, PrintV2, PyFunc...); without "
                        "it such a graph is not run (random ops are fed seeded noise either way)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--keep-going", action="store_true",
                   help="restore the graph after a failing pass and continue (loudly)")
    r.add_argument("--no-verify-each", action="store_true",
                   help="skip structural verification after each pass")
    r.add_argument("--verify-shapes", action="store_true",
                   help="also check shapes with TensorFlow's shape inference after each pass")
    r.add_argument("--dump-changed", action="store_true",
                   help="write the graph after every pass that changed it to OUTDIR/dumps")
    r.add_argument("--report", action="store_true",
                   help="write OUTDIR/report.html: the pipeline, a drawn diff of every pass "
                        "that changed the graph (OUTDIR/report/), op histograms, the TFLite "
                        "audit, fidelity and output images (with --verify)")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("check", parents=[common], help="list what blocks conversion")
    c.add_argument("model", metavar="MODEL")
    c.add_argument("--target", choices=["tflite"], default="tflite")
    c.add_argument("--inputs", nargs="+", default=[], metavar="NAME")
    c.add_argument("--outputs", nargs="+", default=[], metavar="NAME")
    c.set_defaults(func=cmd_check)

    d = sub.add_parser("diff", parents=[common], help="compare two graphs")
    d.add_argument("before", metavar="BEFORE")
    d.add_argument("after", metavar="AFTER")
    d.add_argument("-o", "--output", required=True, metavar="FILE",
                   help=".json or .txt: the node lists; .svg, .html or .dot: a drawing")
    d.add_argument("--context", type=int, default=1, metavar="K",
                   help="hops of unchanged neighbours drawn around the changes (default 1)")
    d.add_argument("--expand", action="store_true",
                   help="draw every node, not only the changed neighbourhood (up to "
                        "--max-nodes; repeated blocks are not folded)")
    d.add_argument("--max-nodes", type=int, default=300, metavar="N",
                   help="most nodes and boxes drawn; beyond it repeated blocks are folded and "
                        "scopes collapsed (default 300)")
    d.add_argument("--shapes", choices=["auto", "static", "infer"], default="auto",
                   help="label shapes: static (Const, Placeholder, recorded shapes), infer "
                        "(TensorFlow's shape inference, slower), auto (static unless TensorFlow "
                        "is loaded already)")
    d.add_argument("--provenance", metavar="FILE",
                   help="provenance.json written by `run --report` (read from AFTER's "
                        "OUTDIR/report/ when present)")
    d.set_defaults(func=cmd_diff)

    ps = sub.add_parser("passes", parents=[common, plug], help="list registered passes")
    ps.set_defaults(func=cmd_passes)
    pl = sub.add_parser("pipelines", parents=[common, plug], help="list pipeline presets")
    pl.set_defaults(func=cmd_pipelines)

    dm = sub.add_parser("demo", parents=[common], help="convert a built-in StyleGAN2 graph "
                        "to a TFLite-clean model, verified, with a report")
    dm.add_argument("-o", "--output", default="demo-out", metavar="OUTDIR")
    dm.add_argument("--model", default="sg2-tiny-cuda", metavar="NAME",
                    help="a zoo preset (`graphsurgery zoo list`), or 'builtin' for the small "
                    "generic-pipeline graph (default: sg2-tiny-cuda)")
    dm.set_defaults(func=cmd_demo)

    z = sub.add_parser("zoo", parents=[common], help="StyleGAN-family graphs to try")
    zsub = z.add_subparsers(dest="zoo_cmd", metavar="list|build", parser_class=_ArgumentParser)
    zsub.required = True
    zsub.add_parser("list", parents=[common])
    zb = zsub.add_parser("build", parents=[common])
    zb.add_argument("name", metavar="NAME")
    zb.add_argument("-o", "--output", required=True, metavar="FILE")
    z.set_defaults(func=cmd_zoo)
    return p


_PARSER = build_parser()


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("graphsurgery")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    if verbose < 2:
        from ._quiet import install

        install()
        logging.getLogger("tensorflow").setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (also used by ``python -m graphsurgery``)."""
    args = None
    try:
        args = _PARSER.parse_args(argv)
        _setup_logging(args.verbose)
        return args.func(args)
    except GraphSurgeryError as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"graphsurgery: error: {msg}", file=sys.stderr)
        if isinstance(exc, VerificationError) and len(exc.problems) > 1 and args is not None \
                and getattr(args, "verbose", 0):
            for prob in exc.problems[1:]:
                print(f"  {prob}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM while writing an OUTDIR
        how = f" ({exc.args[0]})" if exc.args else ""
        print(f"graphsurgery: interrupted{how}", file=sys.stderr)
        return getattr(exc, "exit_code", 130)
    except Exception as exc:  # an internal error: one line unless -vv
        if args is not None and getattr(args, "verbose", 0) >= 2:
            raise
        print(f"graphsurgery: internal error: {type(exc).__name__}: {exc} "
              "(run with -vv for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
