"""StyleGAN2's up-sampling convolution in onnxruntime: ConvTranspose against exact rewrites.

``python -m benchmarks.onnx_upsample --layers 256x128x128 512x256x64 64x32x512 --runs 10``

One layer as the ONNX target writes it (``CinxCoutxH``: input ``[1, Cin, H, H]``)::

    x -> ConvTranspose(W 3x3, stride 2, VALID) -> Mul(demod [1,Cout,1,1]) -> Pad(1)
      -> depthwise FIR 4x4 -> z [1, Cout, 2H, 2H]

and three exact rewrites of it, each checked against it numerically, timed in alternation
in one process (a short sleep before each run, as :mod:`benchmarks.paired` does):

* ``phase``: the four stride phases as ``Conv`` s (2x2, 2x1, 1x2, 1x1 taps: the same FLOPs),
  ``Concat`` + ``DepthToSpace``; the zero row and column they add are taken off the Pad;
* ``union``: one ``Conv`` with ``4 * Cout`` outputs and a 2x2 kernel holding all phases
  (16 taps for 9: 1.8x the FLOPs, no Concat) + ``DepthToSpace``;
* ``folded``: the FIR folded into the kernel, one 6x6 stride-2 ``ConvTranspose`` (pads 2),
  then the demodulation (4x the FLOPs, no Pad and FIR).

Prints one JSON line per layer: medians in ms, ``base / variant`` ratios (above 1: the
variant is faster) and each variant's max abs difference from the ConvTranspose.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

VARIANTS = ("base", "phase", "union", "folded")


def layer(cin: int, cout: int, h: int, seed: int = 0) -> Any:
    """The ONNX model of one up-sampling layer (inputs ``x`` and ``d``)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(
        (rng.standard_normal((cin, cout, 3, 3)) / np.sqrt(9 * cin)).astype(np.float32), "w")
    taps = np.outer([1, 3, 3, 1], [1, 3, 3, 1]).astype(np.float32) / 16
    f = numpy_helper.from_array(np.tile(taps, (cout, 1, 1, 1)), "f")
    p = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "p")
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2],
                              kernel_shape=[3, 3]),
             helper.make_node("Mul", ["y", "d"], ["yd"]),
             helper.make_node("Pad", ["yd", "p"], ["yp"]),
             helper.make_node("Conv", ["yp", "f"], ["z"], group=cout, kernel_shape=[4, 4])]
    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes, "upsample", [value("x", TensorProto.FLOAT, [1, cin, h, h]),
                            value("d", TensorProto.FLOAT, [1, cout, 1, 1])],
        [value("z", TensorProto.FLOAT, [1, cout, 2 * h, 2 * h])], [w, f, p])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _parts(graph: Any) -> tuple[Any, ...]:
    """The layer's nodes: ConvTranspose, Mul, Pad, FIR Conv."""
    conv_t = next(n for n in graph.nodes if n.op == "ConvTranspose")
    mul = conv_t.outputs[0].outputs[0]
    pad = mul.outputs[0].outputs[0]
    fir = pad.outputs[0].outputs[0]
    return conv_t, mul, pad, fir


def _phase_kernel(w: np.ndarray, a: int, b: int) -> np.ndarray:
    """Taps of parity (a, b) of a [Cin, Cout, 3, 3] transposed-convolution weight as a
    [Cout, Cin, ka, kb] convolution weight (flipped into correlation order)."""
    return np.ascontiguousarray(w[:, :, a::2, b::2][:, :, ::-1, ::-1].transpose(1, 0, 2, 3))


def _phases(graph: Any, union: bool) -> None:
    import onnx_graphsurgeon as ogs

    conv_t, mul, pad, _ = _parts(graph)
    x, y = conv_t.inputs[0], conv_t.outputs[0]
    w = np.asarray(conv_t.inputs[1].values)
    cout, (_, _, h, _) = w.shape[1], x.shape
    size = h + 1  # each phase: H + 1 rows (the odd ones end with a zero row)
    kernels = [_phase_kernel(w, a, b) for a in (0, 1) for b in (0, 1)]
    cat = ogs.Variable("phases", dtype=np.float32, shape=[1, 4 * cout, size, size])
    if union:  # one 2x2 kernel: each phase's taps at its bottom-right corner
        big = np.zeros((4 * cout, w.shape[0], 2, 2), np.float32)
        for i, k in enumerate(kernels):
            big[i * cout:(i + 1) * cout, :, 2 - k.shape[2]:, 2 - k.shape[3]:] = k
        graph.nodes.append(ogs.Node("Conv", "union", attrs={"pads": [1, 1, 1, 1]},
                                    inputs=[x, ogs.Constant("union_w", big)], outputs=[cat]))
    else:
        outs = []
        for i, k in enumerate(kernels):
            ka, kb = k.shape[2:]
            out = ogs.Variable(f"phase{i}", dtype=np.float32, shape=[1, cout, size, size])
            graph.nodes.append(ogs.Node("Conv", f"phase{i}",
                                        attrs={"pads": [ka - 1, kb - 1, 1, 1]},
                                        inputs=[x, ogs.Constant(f"phase{i}_w", k)],
                                        outputs=[out]))
            outs.append(out)
        graph.nodes.append(ogs.Node("Concat", "concat", attrs={"axis": 1}, inputs=outs,
                                    outputs=[cat]))
    graph.nodes.append(ogs.Node("DepthToSpace", "interleave",
                                attrs={"blocksize": 2, "mode": "DCR"}, inputs=[cat],
                                outputs=[y]))
    conv_t.outputs.clear()
    # y is now 2H + 2: its last row and column are zeros, which the Pad no longer adds
    pad.inputs[1] = ogs.Constant("pads_phase", np.array([0, 0, 1, 1, 0, 0, 0, 0], np.int64))
    y.shape = mul.outputs[0].shape = [1, cout, 2 * size, 2 * size]


def _folded(graph: Any) -> None:
    import onnx_graphsurgeon as ogs

    conv_t, mul, pad, fir = _parts(graph)
    w = np.asarray(conv_t.inputs[1].values)
    g = np.asarray(fir.inputs[1].values)[0, 0][::-1, ::-1]
    w6 = np.zeros(w.shape[:2] + (6, 6), np.float32)
    for a in range(4):
        for b in range(4):
            w6[:, :, a:a + 3, b:b + 3] += w * g[a, b]
    z, y = fir.outputs[0], conv_t.outputs[0]
    inner = ogs.Variable("z6", dtype=np.float32)
    conv_t.inputs[1] = ogs.Constant("w6", w6)
    conv_t.attrs.update(kernel_shape=[6, 6], pads=[2, 2, 2, 2])
    conv_t.outputs = [inner]
    mul.inputs = [inner if i is y else i for i in mul.inputs]
    mul.outputs = [z]  # the demodulation (per channel) commutes with the FIR
    fir.outputs.clear()
    pad.outputs.clear()


def variant(model: Any, name: str) -> Any:
    """``model`` (a :func:`layer`) rewritten as ``name`` (one of :data:`VARIANTS`)."""
    import onnx
    import onnx_graphsurgeon as ogs

    if name == "base":
        return model
    graph = ogs.import_onnx(onnx.shape_inference.infer_shapes(model))
    if name == "folded":
        _folded(graph)
    else:
        _phases(graph, union=name == "union")
    graph.cleanup().toposort()
    out = ogs.export_onnx(graph)
    out.ir_version = model.ir_version
    onnx.checker.check_model(out)
    return out


def measure(cin: int, cout: int, h: int, runs: int, threads: int) -> dict[str, Any]:
    from graphsurgery.runners import ONNXRunner

    model = layer(cin, cout, h)
    runners = {v: ONNXRunner(variant(model, v).SerializeToString(), num_threads=threads)
               for v in VARIANTS}
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((1, cin, h, h)).astype(np.float32),
             "d": (0.5 + rng.random((1, cout, 1, 1))).astype(np.float32)}
    outs = {v: r.run(feeds)[0] for v, r in runners.items()}
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for k in range(runs):
        for v in VARIANTS if k % 2 == 0 else VARIANTS[::-1]:
            time.sleep(0.05)  # onnxruntime's threads spin after a run
            t0 = time.perf_counter()
            runners[v].run(feeds)
            times[v].append(time.perf_counter() - t0)
    med = {v: float(np.median(t)) * 1e3 for v, t in times.items()}
    return {"layer": f"{cin}x{cout}x{h}", "threads": threads, "runs": runs,
            "median_ms": {v: round(m, 2) for v, m in med.items()},
            "base_over": {v: round(med["base"] / med[v], 3) for v in VARIANTS[1:]},
            "max_abs_diff": {v: float(np.abs(outs[v] - outs["base"]).max())
                             for v in VARIANTS[1:]},
            "output_range": float(outs["base"].max() - outs["base"].min())}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", nargs="+", default=["256x128x128", "512x256x64"],
                    help="CinxCoutxH (config-f at 256 px: 512x512x32, 512x256x64, "
                         "256x128x128; at 1024 px also 128x64x256, 64x32x512)")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    for spec in args.layers:
        cin, cout, h = (int(v) for v in spec.split("x"))
        print(json.dumps(measure(cin, cout, h, args.runs, args.threads)))


if __name__ == "__main__":
    main()
