"""The ``graphsurgery`` command line.

Exit codes: 0 ok; 2 bad input or usage (one line on stderr, no traceback); 3 check or
verification found problems; 4 ``verify``: the model cannot run on this system (Core ML
predictions need macOS; the audit still ran); 1 internal error; 130 or 143 interrupted by
SIGINT or SIGTERM (after removing the unfinished OUTDIR). What an OUTDIR may be: see
:mod:`graphsurgery.outdir`.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .driver import EXIT_OK, EXIT_PROBLEMS, Result, parse_input_spec
from .errors import GraphSurgeryError, UsageError, VerificationError
from .ir.graph import Graph

if TYPE_CHECKING:
    from .progress import Progress

log = logging.getLogger("graphsurgery")

EXIT_INTERNAL, EXIT_USAGE = 1, 2
__all__ = ["EXIT_OK", "EXIT_PROBLEMS", "build_parser", "main", "parse_input_spec"]


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line, exit 2) instead of printing usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message + self._suggestion(message))

    def _suggestion(self, message: str) -> str:
        """``; did you mean --verify?`` for an unknown option, or an invalid choice."""
        from .registry import did_you_mean

        if message.startswith("unrecognized arguments: "):
            first = message.split(": ", 1)[1].split()[0]
            if first.startswith("-"):
                return did_you_mean(first.split("=")[0], self._option_string_actions)
        if "invalid choice: " in message:
            bad = message.split("invalid choice: ", 1)[1].split(" ")[0].strip("'")
            for action in self._actions:
                if action.choices and bad and f"'{bad}'" in message:
                    return did_you_mean(bad, action.choices)
        return ""


# ---------------------------------------------------------------------- helpers
def _display(args: argparse.Namespace) -> Progress:
    """The progress display: on stderr when it is a terminal, never with ``-q``."""
    from .progress import for_terminal

    return for_terminal(quiet=getattr(args, "quiet", False))


def _load(args: argparse.Namespace, model: str, inputs: list[str] | None = None,
          outputs: list[str] | None = None) -> Graph:
    from .driver import load_model

    with _display(args) as shown, shown.stage(f"loading {Path(model).name}"):
        return load_model(model, inputs, outputs,
                          progress=shown.bytes_callback(f"loading {Path(model).name}"))


def _print_json(obj: Any) -> None:
    from .driver import dump_json

    print(dump_json(obj))


# ---------------------------------------------------------------------- commands
def cmd_run(args: argparse.Namespace) -> int:
    from .driver import convert

    with _display(args) as shown:
        result = convert(
            args.model, args.pipeline, target=args.target, outdir=args.output,
            inputs=args.inputs, outputs=args.outputs, verify=args.verify, report=args.report,
            quantize=args.quantize, seed=args.seed, tolerance=args.tolerance,
            target_options=_target_options(args),
            allow_side_effects=args.allow_side_effects, overrides=args.set,
            plugins=args.plugin, keep_going=args.keep_going,
            verify_each=not args.no_verify_each, verify_shapes=args.verify_shapes,
            dump_changed=args.dump_changed, progress=shown, pickle_options=_pickle_options(args),
        )
    print(f"{result.outdir}: {run_summary_line(result, verbose=args.verbose)}")
    for line in result_lines(result):
        print(line)
    return result.status


def _target_options(args: argparse.Namespace) -> dict[str, str]:
    from .targets.base import parse_target_options

    name = args.target if args.target != "none" else None
    return parse_target_options(args.target_option, name)


def _pickle_options(args: argparse.Namespace) -> Any:
    """``--trust-pickle-code`` and its options as PickleOptions (None without them)."""
    from .ir.pickle import PickleOptions
    from .ir.pickle_trusted import trust_options

    trust = trust_options(args)
    if trust["trust_code"] and Path(args.model).suffix not in (".pkl", ".pickle"):
        raise UsageError(f"--trust-pickle-code: {args.model} is not an NVlabs pickle (.pkl)")
    return PickleOptions(**trust) if trust["trust_code"] else None


def run_summary_line(result: Result, verbose: int = 0) -> str:
    """One line: passes run and changed, node counts, the audit verdict, failed passes.

    The same with or without ``-v`` (which logs every pass above it): it ends with the
    pass count, never the whole pipeline text (``graphsurgery pipelines -v`` prints that).
    """
    changed = sum(1 for r in result.records if r.changed)
    n0, n1 = result.nodes_before, result.nodes_after
    head = f"{len(result.records)} passes ({changed} changed the graph); nodes {n0} -> {n1}"
    parts = [head]
    label = _target_label(result.target)
    if result.audit is not None:
        parts.append(f"{label}: " + ("clean" if result.audit.clean else
                                     f"{len(result.audit.violations)} violation(s)"))
    elif result.export is not None and not result.export.get("ok"):
        parts.append(f"{label}: conversion failed")
    if result.failures:
        parts.append(f"{len(result.failures)} pass(es) FAILED (see summary.json)")
    return "; ".join(parts)


def result_lines(result: Result) -> list[str]:
    """The lines after the summary: the artefact and its audit verdict, the verification
    figures (max abs error, PSNR, SSIM) per output with the criterion each was held to and
    its verdict, the report. Every path printed exists."""
    from .metrics import verdict as held_to

    lines = []
    if result.audit is not None and result.target in result.artefacts:
        path = result.artefacts[result.target]
        size = _path_size(path)
        audit = result.audit.to_json()
        if audit.get("clean"):
            verdict = "clean"
        else:
            bad = audit.get("violations") or []
            verdict = f"NOT clean ({len(bad)} violation(s)" + (f": {bad[0]}" if bad else "") + ")"
        lines.append(f"  {path} ({_size(size)}): audit {verdict}")
        for variant, vpath in result.artefacts.items():  # compressed Core ML models...
            if variant.startswith(f"{result.target}.") and vpath.exists():
                lines.append(f"  {vpath} ({_size(_path_size(vpath))})")
    ver = result.verification
    if ver is not None:
        if "error" in ver:
            lines.append(f"  verification FAILED: {ver['error']}")
        for key, val in (result.fidelity or {}).items():
            if "max_abs" not in val:
                lines.append(f"  verified {key}: {val.get('error', 'failed')}")
                continue
            psnr = val.get("psnr")
            if psnr == float("inf") or (psnr is None and val.get("psnr_note")):
                psnr_text = "inf (identical)"
            else:
                psnr_text = "n/a" if psnr is None else f"{psnr:.1f} dB"
            ssim = val.get("ssim")  # and the criterion it was held to, with its verdict
            ssim_text = "" if ssim is None else f", SSIM {ssim:.5f}"
            said = held_to(val)
            lines.append(f"  verified {key}: max abs error {val['max_abs']:.3g}, "
                         f"PSNR {psnr_text}{ssim_text}" + (f": {said}" if said else ""))
        if isinstance(ver.get("graphdef"), str):  # the GraphDef's own run was not needed
            lines.append(f"  verified graphdef: {ver['graphdef']}")
        if not ver.get("ok", True) and "error" not in ver:
            failed = [k for k, v in (result.fidelity or {}).items() if v.get("ok") is False]
            lines.append(f"  verification FAILED: {', '.join(failed)}" if failed else
                         f"  verification FAILED (tolerance {ver.get('tolerance')})")
    report = result.artefacts.get("report")
    if report is not None and report.exists():
        lines.append(f"  report: {report}")
    return lines


def _path_size(path: Path) -> int:
    """Bytes of a file, or of the files under a folder (an .mlpackage); 0 if missing."""
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size if path.exists() else 0


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _target_label(name: str | None) -> str:
    from .targets import get_target

    try:
        return get_target(name).display_name if name else ""
    except UsageError:  # a target object given to the API, never registered
        return name or ""


def cmd_check(args: argparse.Namespace) -> int:
    from .check import artefact_target, check_artefact, check_report
    from .plugins import load_plugin
    from .targets import get_target

    for p in args.plugin:
        load_plugin(p)
    made_for = artefact_target(args.model)  # a converted model: its target's audit
    if made_for is not None and args.target not in (None, made_for):
        raise UsageError(f"{args.model} is a {made_for} model; check it with --target "
                         f"{made_for} (or leave --target out)")
    target = made_for or args.target or "tflite"
    get_target(target)  # an unknown target fails before the model is read
    if made_for is not None:
        with _display(args) as shown, shown.stage(f"auditing {Path(args.model).name}"):
            report = check_artefact(args.model, target)
    else:
        graph = _load(args, args.model, args.inputs or None, args.outputs or None)
        with _display(args) as shown, shown.stage("checking"):
            report = check_report(graph, target, model=args.model)
    if args.json:
        _print_json(report.to_json())
    else:
        for line in report.lines(per_rule=args.nodes if not args.verbose else None):
            print(line)
    return EXIT_PROBLEMS if report.errors else EXIT_OK


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
    from .registry import all_passes, describe_options, option_json

    for p in args.plugin:
        load_plugin(p)
    table = all_passes()
    if args.json:
        _print_json([{"id": pass_id, "summary": cls.summary(), "module": cls.module,
                      "options": option_json(cls)} for pass_id, cls in table.items()])
        return EXIT_OK
    for pass_id, cls in table.items():
        print(f"{pass_id:34s} {cls.summary()}")
        for line in describe_options(cls):
            print(f"{'':36s}--set {pass_id}.{line}")
    return EXIT_OK


def cmd_pipelines(args: argparse.Namespace) -> int:
    from .pipeline import groups, presets
    from .plugins import load_plugin

    for p in args.plugin:
        load_plugin(p)
    if args.json:
        _print_json({
            "presets": [{"name": name, "description": preset.description,
                         "passes": preset.factory().text()}
                        for name, preset in presets().items()],
            "groups": [{"name": name, "description": group.description, "passes": group.text}
                       for name, group in groups().items()],
        })
        return EXIT_OK
    for name, preset in presets().items():
        print(f"{name:22s} {preset.description}")
        if args.verbose:
            for line in str(preset.factory()).splitlines():  # one pass per line
                print(f"{'':22s} {line}")
    for name, group in groups().items():  # names usable in pipeline text, like passes
        print(f"{name:22s} (group) {group.description}")
        if args.verbose:
            print(f"{'':22s} {group.text}")
    return EXIT_OK


def cmd_targets(args: argparse.Namespace) -> int:
    from .plugins import load_plugin
    from .targets import all_targets

    for p in args.plugin:
        load_plugin(p)
    for name, target in all_targets().items():
        print(f"{name:22s} {target.description}")
        passes = target.passes()
        if passes:
            print(f"{'':22s} passes: {passes}")
        if args.verbose:
            for rule in target.rules:
                print(f"{'':24s}{rule.id:20s} {rule.description}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on a built-in model: a zoo generator written as an NVlabs snapshot
    (``.pkl``, the file StyleGAN users have), read back as data, converted to TFLite,
    verified, with a report. ``--frozen`` starts from the zoo's frozen GraphDef instead;
    ``--model builtin`` is the small graph of the ``generic`` pipeline."""
    from .demo import describe
    from .driver import convert
    from .ir.io import save

    tmp = Path(tempfile.mkdtemp(prefix="graphsurgery-demo-"))
    try:
        with _display(args) as shown:
            canary = None
            if args.model == "builtin":
                from .demo import build_demo_graph

                graph = build_demo_graph()
                pipeline = "generic"
                head = [f"demo: a small built-in graph ({len(graph)} nodes)"]
            else:
                from . import zoo

                try:
                    entry = zoo.get(args.model)
                except KeyError as exc:
                    raise UsageError(str(exc.args[0])) from None
                pipeline = "stylegan-to-tflite"
                with shown.stage(f"building zoo graph {entry.name}"):
                    built = entry.builder()
                if not args.frozen and _has_pickle_form(built):
                    with shown.stage(f"writing {entry.name}.pkl"):
                        model, canary, head = _demo_snapshot(entry, built, tmp)
                else:  # the built model as zoo.load(name) loads it, without building again
                    from .ir.io import load

                    graph = (load(built.saved_model_dir) if built.saved_model_dir is not None
                             else load(built.graph_def, inputs=built.inputs,
                                       outputs=built.outputs))
                    head = [f"demo: zoo graph {entry.name} ({len(graph)} nodes: "
                            f"{entry.description})"]
            if canary is None:  # the graph itself, as a frozen GraphDef
                model = save(graph, tmp / "demo.pb")
                io: dict[str, Any] = {"inputs": [str(t) for t in graph.inputs],
                                      "outputs": [str(t) for t in graph.outputs]}
                head.append(f"  -> {pipeline} -> TFLite, verified against the input graph")
            else:  # the snapshot names its own interface
                io = {}
                head.append(f"  -> {pipeline} -> TFLite, verified against the rebuilt "
                            "generator")
            print("\n".join(head), flush=True)
            result = convert(str(model), pipeline, target="tflite", outdir=args.output,
                             verify=True, report=True, progress=shown, **io)
        print(f"{args.output}: {run_summary_line(result, verbose=args.verbose)}")
        if canary is not None:
            if canary.exists():  # never: the loader only reads the file
                raise RuntimeError("the snapshot's build_module_src ran while loading it")
            print("  nothing in the pickle ran: its build_module_src (code the NVlabs loader "
                  f"executes)\n    would have written {canary.name}; it was never run")
        print(describe(result))
        return result.status
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _has_pickle_form(built: Any) -> bool:
    """Whether a zoo generator has an NVlabs snapshot form (StyleGAN v1/v2/ADA, ProGAN)."""
    from .zoo.nvlabs_write import family

    try:
        family(str(built.meta.get("kind")))
    except UsageError:
        return False
    return True


def _demo_snapshot(entry: Any, built: Any, tmp: Path) -> tuple[Path, Path, list[str]]:
    """Write ``built`` as an NVlabs ``(G, D, Gs)`` snapshot in ``tmp``, with a
    ``build_module_src`` that writes a canary file if anything ever executes it; read the
    file back as data (nothing runs) to say what it holds. Returns the .pkl, the canary
    path and the lines that introduce the demo."""
    from .ir.pickle import read_pickle, select_network
    from .zoo.nvlabs_write import snapshot, write

    canary = tmp / "pickle-code-ran.txt"
    src = ("# If this module source runs (the NVlabs loader execs it), it leaves a mark.\n"
           f"open({str(canary)!r}, 'w').write('the pickle code ran')\n")
    pkl = write(tmp / f"{entry.name}.pkl", snapshot(built, build_module_src=src))
    gs_net = select_network(read_pickle(pkl), "Gs", str(pkl))
    head = [f"demo: {pkl.name} ({_size(pkl.stat().st_size)}), an NVlabs snapshot (G, D, Gs) "
            f"of zoo graph {entry.name}\n      ({entry.description})",
            f"  -> read as data: Gs is {gs_net.build_func_name} with "
            f"{len(gs_net.all_variables())} variables,\n     rebuilt from its weights by "
            "graphsurgery (no TensorFlow 1, NVlabs code or CUDA)"]
    return pkl, canary, head


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
    if out.suffix == ".pkl":  # an NVlabs (G, D, Gs) snapshot of the preset's weights
        from .zoo.nvlabs_write import write_snapshot

        write_snapshot(model, out)
    else:
        zoo.write(model, out)
    print(f"{out}: {entry.name} (inputs {', '.join(model.inputs)}; "
          f"outputs {', '.join(model.outputs)})")
    return EXIT_OK


# ---------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from .targets import all_targets

    target_names = list(all_targets())
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=0,
                        help="more detail: each pass's time and op-count changes (-vv: debug "
                             "output and tracebacks)")
    common.add_argument("-q", "--quiet", action="store_true",
                        help="no progress display and no warnings (errors still print)")
    js = argparse.ArgumentParser(add_help=False)
    js.add_argument("--json", action="store_true",
                    help="print strict JSON on stdout instead of text")
    plug = argparse.ArgumentParser(add_help=False)
    plug.add_argument("--plugin", action="append", default=[], metavar="X",
                      help="load passes or targets from a .py file or a module (repeatable)")

    p = _ArgumentParser(prog="graphsurgery", description="Rewrite frozen TensorFlow graphs.")
    p.add_argument("--version", action="version", version=f"graphsurgery {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_ArgumentParser)
    sub.required = True

    r = sub.add_parser("run", parents=[common, plug], help="run a pipeline over a model")
    r.add_argument("model", metavar="MODEL",
                   help="a frozen GraphDef (.pb, .pbtxt), a TF2 SavedModel folder or an "
                        "NVlabs snapshot (.pkl)")
    r.add_argument("-p", "--pipeline", required=True,
                   help="a preset name (`graphsurgery pipelines`), pipeline text such as "
                        "'core::dce,core::cse', or @FILE to read the pipeline text from FILE")
    r.add_argument("--inputs", nargs="+", default=[], metavar="NAME[:SHAPE]",
                   help="graph inputs; a shape is written name:1,512 or name:[1,512]")
    r.add_argument("--outputs", nargs="+", default=[], metavar="NAME",
                   help="graph outputs (default: read from the model)")
    r.add_argument("--set", action="append", default=[], metavar="PASS.OPTION=VALUE",
                   help="set a pass option, e.g. core::dce.keep=x (repeatable; options are "
                        "listed by `graphsurgery passes`)")
    r.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                   help="the output folder (model.pb, the target's model, summary.json)")
    # Not argparse choices: a --plugin may register a target (checked once plugins load).
    r.add_argument("--target", default="tflite", metavar="|".join([*target_names, "none"]),
                   help="what to export and audit (a registered target, see `graphsurgery "
                        "targets`; none: the rewritten GraphDef only)")
    r.add_argument("--quantize",
                   choices=["fp32", "fp16", "dynamic", "int8", "mobile", "mobile-int4"],
                   default=None,
                   help="the exported model's precision, as the target supports it: tflite "
                        "all five (mobile: per-channel int8 weights, fp16 for the dense "
                        "layers every output depends on; mobile-int4: smaller, block-wise "
                        "4-bit convolutions up to 32x32 px), coreml fp32/fp16/int8 (8-bit linear "
                        "weights), onnx fp32 (default fp32)")
    r.add_argument("--target-option", action="append", default=[],
                   metavar="[TARGET.]OPTION=VALUE",
                   help="a target's export option (repeatable): onnx opset=9..21, "
                        "layout=nchw|nhwc; coreml compress=linear8,palettize6,palettize4")
    r.add_argument("--verify", action="store_true",
                   help="compare outputs with the input graph on random inputs")
    r.add_argument("--tolerance", type=float, default=None,
                   help="--verify fails above this max abs error / output range (default "
                        "1e-3; by default a quantized .tflite is held to its mode instead: "
                        "fp16 16 float16 epsilons, dynamic and mobile PSNR >= 30 dB and SSIM "
                        ">= 0.95, int8 PSNR >= 25 dB and SSIM >= 0.9; a value given here "
                        "holds every result to it)")
    r.add_argument("--allow-side-effects", action="store_true",
                   help="let --verify run a graph holding ops that act on this machine "
                        "(WriteFile, ReadFile, ImmutableConst, PrintV2, PyFunc...); without "
                        "it such a graph is not run (random ops are fed seeded noise either way)")
    r.add_argument("--seed", type=int, default=0,
                   help="seed of --verify's random inputs and noise (default 0)")
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
    from .ir.pickle_trusted import add_trust_arguments

    add_trust_arguments(r)  # an NVlabs .pkl MODEL: --trust-pickle-code runs the file's code
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("check", parents=[common, plug, js],
                       help="list what blocks conversion, grouped by rule, with the fix")
    c.add_argument("model", metavar="MODEL",
                   help="a frozen GraphDef (.pb, .pbtxt), a TF2 SavedModel folder, an NVlabs "
                        "pickle (.pkl), or a converted model (.tflite, .onnx, .mlpackage, "
                        ".mlmodel: its target's audit)")
    c.add_argument("--target", default=None, metavar="|".join(target_names),
                   help="whose lint rules to check (default tflite, or the target a "
                        "converted model was made for; see `graphsurgery targets`)")
    c.add_argument("--inputs", nargs="+", default=[], metavar="NAME",
                   help="graph inputs (default: the placeholders)")
    c.add_argument("--outputs", nargs="+", default=[], metavar="NAME",
                   help="graph outputs (default: read from the model)")
    c.add_argument("--nodes", type=int, default=2, metavar="N",
                   help="nodes named per rule (default 2; -v names all)")
    c.set_defaults(func=cmd_check)

    d = sub.add_parser("diff", parents=[common], help="compare two graphs")
    d.add_argument("before", metavar="BEFORE", help="the graph before (.pb, .pbtxt)")
    d.add_argument("after", metavar="AFTER", help="the graph after (.pb, .pbtxt)")
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

    ps = sub.add_parser("passes", parents=[common, plug, js], help="list registered passes")
    ps.set_defaults(func=cmd_passes)
    pl = sub.add_parser("pipelines", parents=[common, plug, js], help="list pipeline presets")
    pl.set_defaults(func=cmd_pipelines)
    tg = sub.add_parser("targets", parents=[common, plug], help="list targets and their rules")
    tg.set_defaults(func=cmd_targets)

    dm = sub.add_parser("demo", parents=[common], help="convert a StyleGAN2 snapshot .pkl to "
                        "a TFLite-clean model, verified, with a report")
    dm.add_argument("-o", "--output", default="demo-out", metavar="OUTDIR",
                    help="the output folder (default demo-out)")
    dm.add_argument("--model", default="sg2-tiny", metavar="NAME",
                    help="a zoo preset (`graphsurgery zoo list`), written as an NVlabs snapshot "
                    ".pkl when it has one (StyleGAN v1/v2/ADA, ProGAN), else as a frozen .pb; "
                    "or 'builtin' for the small generic-pipeline graph (default: sg2-tiny)")
    dm.add_argument("--frozen", action="store_true",
                    help="start from the zoo preset's frozen GraphDef (.pb) instead of a "
                    "snapshot .pkl (e.g. --model sg2-tiny-cuda --frozen: the custom CUDA ops)")
    dm.set_defaults(func=cmd_demo)

    from .zoo.nvlabs import add_import_parser  # `import`: NVlabs pickles, read as data

    add_import_parser(sub, [common])
    from .verify_cli import add_verify_parser  # `verify`: a converted model vs its reference

    add_verify_parser(sub, [common, js])

    z = sub.add_parser("zoo", parents=[common], help="StyleGAN-family graphs to try")
    zsub = z.add_subparsers(dest="zoo_cmd", metavar="list|build", parser_class=_ArgumentParser)
    zsub.required = True
    zsub.add_parser("list", parents=[common], help="list the zoo's graphs")
    zb = zsub.add_parser("build", parents=[common], help="write one zoo graph")
    zb.add_argument("name", metavar="NAME", help="a name from `graphsurgery zoo list`")
    zb.add_argument("-o", "--output", required=True, metavar="FILE",
                    help="the .pb file to write (.pkl: an NVlabs (G, D, Gs) snapshot of "
                         "its weights, for StyleGAN v1/v2, ADA and ProGAN presets)")
    z.set_defaults(func=cmd_zoo)
    return p


_PARSER = build_parser()


def _command_parser(args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the subcommand ``args`` holds (``graphsurgery run``...)."""
    parser: argparse.ArgumentParser = _PARSER
    for dest in ("command", "zoo_cmd"):
        name = getattr(args, dest, None)
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if name is None or not subs or name not in subs[0].choices:
            break
        parser = subs[0].choices[name]
    return parser


def _setup_logging(verbose: int, quiet: bool = False) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    if quiet:
        level = logging.ERROR
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
    # Other libraries' log records (coremltools, absl...) reach the root logger; with no
    # handler there Python prints their warnings on stderr, through the progress line.
    # They are shown with -v only.
    top = logging.getLogger()
    quiet_root = [h for h in top.handlers if isinstance(h, _LibraryLogsHidden)]
    if verbose == 0 and not quiet_root:
        top.addHandler(_LibraryLogsHidden())
    elif verbose > 0:
        for h in quiet_root:
            top.removeHandler(h)


class _LibraryLogsHidden(logging.NullHandler):
    """Installed on the root logger without -v: other libraries' log lines are dropped."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (also used by ``python -m graphsurgery``)."""
    args = None
    try:
        args, extra = _PARSER.parse_known_args(argv)
        if extra:  # the subcommand's parser knows which options were meant
            command = _command_parser(args)
            command.error(f"unrecognized arguments: {' '.join(extra)}")
        _setup_logging(args.verbose, getattr(args, "quiet", False))
        return args.func(args)
    except GraphSurgeryError as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"graphsurgery: error: {msg}", file=sys.stderr)
        if isinstance(exc, VerificationError) and len(exc.problems) > 1 and args is not None \
                and getattr(args, "verbose", 0):
            for prob in exc.problems[1:]:
                print(f"  {prob}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # stdout piped into `head`: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
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
