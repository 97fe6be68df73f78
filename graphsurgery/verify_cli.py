"""``graphsurgery verify MODEL --reference GRAPH``: a converted model against its reference.

The model's target is told by its suffix (``.tflite``, ``.onnx``, ``.mlpackage``). The
target's structural audit runs first; then, where the target has a runner here, the model
and the reference graph (graphsurgery's reference runner: NCHW ops, custom ops by their
reference maths, random ops fed seeded noise) run on the same seeded random inputs and
each output is compared like ``run --verify`` (max abs error, PSNR, SSIM;
:func:`graphsurgery.driver.compare_outputs`)::

    $ graphsurgery verify out/model.mlpackage --reference out/model.pb     # on macOS
      out/model.mlpackage (58 kB): audit clean
      verified coreml:images_out:0: max abs error 2.1e-06, PSNR 133.2 dB, SSIM 1.00000

Exit codes: 0 verified; 3 the audit or a comparison failed; 4 (:data:`EXIT_CANNOT_RUN`) the
model cannot run on this system (Core ML predictions need macOS: on Linux the audit is
all that runs, and one line on stderr says so); 2 bad input.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError, UsageError

log = logging.getLogger("graphsurgery")

EXIT_OK, EXIT_PROBLEMS, EXIT_CANNOT_RUN = 0, 3, 4


@dataclass
class ArtefactVerification:
    """What :func:`verify_artefact` found: the audit, and the comparisons when it ran."""

    path: Path
    target: str
    audit: Any
    #: ``{"ok": ..., "tolerance": ..., "seed": ..., "<target>:<output>": {...}}``, or None
    #: when the model could not run here (:attr:`cannot_run` says why).
    verification: dict[str, Any] | None = None
    cannot_run: str | None = None
    values: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def status(self) -> int:
        if not self.audit.clean or (self.verification is not None
                                    and not self.verification["ok"]):
            return EXIT_PROBLEMS
        return EXIT_CANNOT_RUN if self.cannot_run else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": str(self.path), "target": self.target,
                               "audit": self.audit.to_json(), "status": self.status}
        if self.verification is not None:
            out["verification"] = self.verification
        if self.cannot_run:
            out["cannot_run"] = self.cannot_run
        return out


def tflite_quantization(path: str | os.PathLike) -> str | None:
    """The ``--quantize`` mode a ``.tflite``'s tensors show: ``"int8"`` when activations
    are 8-bit integers, ``"dynamic"`` when only constant weights are (``mobile`` too),
    ``"fp16"`` when constant weights are float16, else None (float32)."""
    from .export._schema import _schema

    schema = _schema()
    types = schema.TensorType
    model = schema.Model.GetRootAs(Path(path).read_bytes(), 0)
    has_data = [model.Buffers(i).DataLength() > 0 or model.Buffers(i).Offset() > 1
                for i in range(model.BuffersLength())]
    weights, activations = set(), set()
    for g in range(model.SubgraphsLength()):
        sub = model.Subgraphs(g)
        for t in range(sub.TensorsLength()):
            tensor = sub.Tensors(t)
            b = tensor.Buffer()
            (weights if 0 < b < len(has_data) and has_data[b] else activations).add(tensor.Type())
    if activations & {types.INT8, types.UINT8, types.INT16}:
        return "int8"
    if weights & {types.INT8, types.INT4}:
        return "dynamic"
    if types.FLOAT16 in weights:
        return "fp16"
    return None


def verify_artefact(model: str | os.PathLike, reference: str | os.PathLike, *,
                    inputs: Sequence[str] | None = None, outputs: Sequence[str] | None = None,
                    seed: int = 0, tolerance: float | None = None,
                    allow_side_effects: bool = False) -> ArtefactVerification:
    """Audit ``model`` (a converted model) and, where its target can run it here, compare
    it with ``reference`` (a graph graphsurgery loads) on seeded random inputs.

    Without ``tolerance`` the comparison is held to what ``--verify`` holds it to: max abs
    error within 1e-3 of the output range (float16's precision for a float16 reference),
    and a quantized ``.tflite`` to the floors of its mode
    (:func:`graphsurgery.metrics.quantized_criterion`, the mode read off its tensors);
    a given ``tolerance`` holds it to that number."""
    from .check import artefact_target
    from .driver import (
        FLOAT16_TOLERANCE,
        compare_outputs,
        computes_in_float16,
        load_model,
        random_feeds,
    )
    from .metrics import quantized_criterion
    from .runners import ReferenceRunner, refuse_side_effects
    from .targets import Artefact, get_target

    path = Path(model)
    if not path.exists():
        raise InputError(f"{model}: no such file")
    if not Path(reference).exists():
        raise InputError(f"--reference {reference}: no such file")
    name = artefact_target(str(path))
    if name is None:
        raise UsageError(f"{model}: not a converted model (a .tflite, .onnx or .mlpackage)")
    tgt = get_target(name)
    tgt.check_options({})  # the target's extra is installed (one line naming it otherwise)
    size = path.stat().st_size if path.is_file() else sum(
        f.stat().st_size for f in path.rglob("*") if f.is_file())
    artefact = Artefact(name, path, size)
    found = ArtefactVerification(path, name, tgt.audit(artefact))
    why = getattr(tgt, "runner_unavailable", lambda: None)()
    runner = None if why else tgt.runner(artefact)
    if runner is None:
        found.cannot_run = why or f"target {name} has no runner: only the audit runs"
        return found
    with runner:
        graph = load_model(reference, inputs, outputs)
        if not allow_side_effects:
            refuse_side_effects(graph, "--allow-side-effects")
        feeds = random_feeds(graph, seed=seed)
        with ReferenceRunner(graph, noise="seeded", seed=seed,
                             allow_side_effects=allow_side_effects) as ref:
            expected = ref.run(feeds)
        got = runner.run(runner.select_feeds(feeds))
    explicit = tolerance is not None
    tolerance = 1e-3 if tolerance is None else tolerance
    report: dict[str, Any] = {"ok": True, "tolerance": tolerance, "seed": seed}
    if computes_in_float16(graph) and not explicit:  # the reference is only as exact as fp16
        report.update(tolerance=max(tolerance, FLOAT16_TOLERANCE), original_precision="float16")
    criteria = {}
    mode = tflite_quantization(path) if name == "tflite" and not explicit else None
    criterion = quantized_criterion(name, mode)
    if criterion is not None:  # held to what its quantization can reach, as --verify does
        criteria[name] = criterion
        report["quantize"] = mode
    found.verification = compare_outputs(graph.outputs, expected, {name: got},
                                         report["tolerance"], report, criteria)
    found.values = {"reference": expected, name: got}
    return found


def lines(found: ArtefactVerification) -> list[str]:
    """The audit verdict, then one line per compared output (max abs error, PSNR, SSIM)."""
    from .metrics import verdict as judged_by

    audit = found.audit.to_json()
    bad = audit.get("violations") or []
    verdict = "clean" if audit.get("clean") else (
        f"NOT clean ({len(bad)} violation(s)" + (f": {bad[0]}" if bad else "") + ")")
    size = found.audit.to_json().get("size") or 0
    out = [f"  {found.path} ({size / 1e3:.0f} kB): audit {verdict}"]
    for key, val in (found.verification or {}).items():
        if not isinstance(val, dict):
            continue
        if "max_abs" not in val:
            out.append(f"  verified {key}: FAILED: {val.get('error', 'failed')}")
            continue
        psnr, ssim = val.get("psnr"), val.get("ssim")
        psnr_text = "n/a" if psnr is None else (
            "inf (identical)" if psnr == float("inf") else f"{psnr:.1f} dB")
        ssim_text = "n/a" if ssim is None else f"{ssim:.5f}"
        judged = judged_by(val)
        out.append(f"  verified {key}: max abs error {val['max_abs']:.3g}, PSNR {psnr_text}, "
                   f"SSIM {ssim_text}" + (f": {judged}" if judged else ""))
    ver = found.verification
    if ver is not None and not ver["ok"]:
        held = (f"--quantize {ver['quantize']} floors" if ver.get("quantize")
                else f"tolerance {ver['tolerance']}")
        out.append(f"  verification FAILED ({held})")
    return out


def cmd_verify(args: argparse.Namespace) -> int:
    import sys

    from .driver import dump_json

    found = verify_artefact(args.model, args.reference, inputs=args.inputs or None,
                            outputs=args.outputs or None, seed=args.seed,
                            tolerance=args.tolerance,
                            allow_side_effects=args.allow_side_effects)
    if args.json:
        print(dump_json(found.to_json()))
    else:
        for line in lines(found):
            print(line)
    if found.cannot_run:
        print(f"graphsurgery: {found.path}: {found.cannot_run}; only the structural audit "
              "ran", file=sys.stderr)
    return found.status


def add_verify_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """``graphsurgery verify``."""
    v = sub.add_parser("verify", parents=parents,
                       help="audit a converted model and compare it with its reference graph")
    v.add_argument("model", metavar="MODEL",
                   help="a converted model: .tflite, .onnx or .mlpackage (Core ML predictions "
                        "need macOS: elsewhere only the audit runs, exit 4)")
    v.add_argument("--reference", required=True, metavar="GRAPH",
                   help="the graph it must match (.pb, .pbtxt, SavedModel, .pkl): the input "
                        "model, or OUTDIR/model.pb")
    v.add_argument("--inputs", nargs="+", default=[], metavar="NAME[:SHAPE]",
                   help="the reference's inputs; a shape is written name:1,512")
    v.add_argument("--outputs", nargs="+", default=[], metavar="NAME",
                   help="the reference's outputs, in the model's output order")
    v.add_argument("--seed", type=int, default=0, help="seed of the random inputs and noise")
    v.add_argument("--tolerance", type=float, default=None,
                   help="fails above this max abs error / output range (default: 1e-3, or "
                        "what a quantized .tflite's mode can reach, as for run --verify)")
    v.add_argument("--allow-side-effects", action="store_true",
                   help="let the reference run a graph holding ops that act on this machine")
    v.set_defaults(func=cmd_verify)


__all__ = ["EXIT_CANNOT_RUN", "ArtefactVerification", "add_verify_parser", "cmd_verify",
           "lines", "verify_artefact"]
