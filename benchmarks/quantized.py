"""graphsurgery's rewritten graph converted with dynamic-range int8, and how close it stays.

``python -m benchmarks.quantized OUTDIR/model.pb FP32.tflite OUT.tflite --mode dynamic``

Converts the ``model.pb`` that :mod:`benchmarks.ours` saved (the pipeline's result) with
``convert_tflite(quantize=MODE)``, then runs it and the fp32 ``.tflite`` in LiteRT on the
same seeded inputs (:func:`benchmarks.latency._feeds`) and reports size, conversion time
and fidelity against fp32 (max abs error, PSNR, SSIM; :func:`graphsurgery.metrics.compare`).
Latency is measured separately, paired with onnxruntime (:mod:`benchmarks.paired`).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from benchmarks._measure import emit, peak_rss_mb, record_error


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("graph")
    ap.add_argument("fp32")
    ap.add_argument("out")
    ap.add_argument("--mode", default="dynamic")
    args = ap.parse_args(argv)
    rep: dict[str, Any] = {"mode": args.mode, "ok": False}
    try:
        import graphsurgery as gs
        from benchmarks.latency import _feeds
        from graphsurgery.export import convert_tflite
        from graphsurgery.export.tflite import capture_output
        from graphsurgery.metrics import compare
        from graphsurgery.runners import TFLiteRunner

        graph = gs.load(args.graph)
        t0 = time.perf_counter()
        conv = convert_tflite(graph, args.out, quantize=args.mode)
        rep.update(convert_s=time.perf_counter() - t0, bytes=conv.size, path=str(conv.path))
        with capture_output():
            ref, got = TFLiteRunner(args.fp32), TFLiteRunner(conv.path)
        feeds = _feeds(ref)
        a = ref.run(feeds)[0]
        b = got.run({s.name: feeds[s.name] for s in got.inputs})[0]
        c = compare(a, b)
        rep.update(ok=True, max_abs=c.max_abs, range=c.value_range, psnr=c.psnr, ssim=c.ssim)
    except Exception as exc:  # recorded
        record_error(rep, exc)
    rep["peak_rss_mb"] = peak_rss_mb()
    emit(rep)


if __name__ == "__main__":
    main()
