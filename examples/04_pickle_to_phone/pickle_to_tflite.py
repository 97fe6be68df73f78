"""A StyleGAN2 snapshot ``.pkl`` to a clean, verified ``.tflite`` with ``gs.convert``.

    python examples/04_pickle_to_phone/pickle_to_tflite.py [SNAPSHOT.pkl] [OUTDIR]
    python examples/04_pickle_to_phone/pickle_to_tflite.py [OUTDIR]

``SNAPSHOT.pkl`` is an NVlabs snapshot, the ``(G, D, Gs)`` pickle StyleGAN training writes
and the official FFHQ/MetFaces/AFHQ files are. Without one, the script writes one first: the
zoo's tiny StyleGAN2 as ``sg2-tiny.pkl`` beside OUTDIR (same format, 55 kB). graphsurgery
reads it as data (a restricted unpickler: nothing in the file runs), rebuilds ``Gs`` from
its weights, runs the ``stylegan-to-tflite`` pipeline, exports ``model.tflite``, audits it
against what mobile runtimes accept and compares it with the rebuilt generator.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import graphsurgery as gs


def write_example_snapshot(path: Path, preset: str = "sg2-tiny") -> Path:
    """A zoo generator written as an NVlabs ``(G, D, Gs)`` snapshot at ``path``."""
    from graphsurgery.zoo.nvlabs_write import write_snapshot

    return write_snapshot(preset, path)


def main(snapshot: str | None = None, outdir: str = "pickle-to-phone-out") -> int:
    if snapshot is None:
        snapshot = str(write_example_snapshot(Path(outdir).parent / "sg2-tiny.pkl"))
        print(f"{snapshot}: written from the zoo's sg2-tiny (an NVlabs snapshot)")

    # The whole job, as `graphsurgery run SNAPSHOT.pkl -p stylegan-to-tflite --verify` does
    # it. For truncation or another network, load first and convert the graph:
    #   graph = gs.load(snapshot, pickle_options=PickleOptions(psi=0.7))  # graphsurgery.ir.pickle
    result = gs.convert(snapshot, "stylegan-to-tflite", target="tflite", outdir=outdir,
                        verify=True)
    changed = sum(1 for r in result.records if r.changed)
    print(f"{snapshot}: read as data, Gs rebuilt from its weights ({result.nodes_before} "
          f"nodes); {len(result.records)} passes, {changed} changed it ({result.nodes_after} "
          "nodes)")

    tflite = Path(result.artefacts["tflite"])
    audit = result.audit
    verdict = "clean" if audit.clean else f"NOT clean: {'; '.join(audit.violations)}"
    print(f"{tflite}: {tflite.stat().st_size / 1e3:.0f} kB, audit {verdict}")
    for output, cmp in (result.fidelity or {}).items():
        if output.startswith("tflite:"):  # the .tflite against the rebuilt generator
            print(f"  {output}: PSNR {cmp['psnr']:.1f} dB, max abs error {cmp['max_abs']:.3g}")
    return result.status


if __name__ == "__main__":
    # The zoo builds its generator with TensorFlow 1 APIs: hide their deprecation notices.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    args = sys.argv[1:]
    pkl = next((a for a in args if a.endswith((".pkl", ".pickle"))), None)
    sys.exit(main(pkl, *[a for a in args if a != pkl][:1]))
