"""Cortical thickness (ants backend + DiReCT) on the real hires T1 and on its 5 mm axial degradation through SynthSR.

A measurement, not a test (figures in docs/morphometry.md)::

    python benchmarks/thickness_vs_hires.py --model lite --resolution 2 --json thickness.json

``--resolution`` resamples both images before the ants backend (2 mm: minutes; 1 mm: DiReCT alone
takes tens of minutes on one thread).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.processing import resample_to_output

REPO = Path(__file__).resolve().parents[1]
HIRES = REPO.parent / "shared" / "data" / "real" / "hires-t1" / "T1.nii.gz"


def measure(t1: Path, out: Path, resolution: int, threads: int) -> dict:
    from synthsr_nipype.morphometry import ants_backend, thickness

    start = time.time()
    reg = ants_backend.register_to_template(t1, out, template_resolution=resolution, num_threads=threads)
    seg = ants_backend.segment_tissues(t1, reg["from_template"], out, template_resolution=resolution,
                                       num_threads=threads, skull_stripped=reg["skull_stripped"])
    hemis = thickness.hemisphere_regions(reg["from_template"], seg["dseg"], out / "hemispheres.nii.gz",
                                         template_resolution=resolution)
    res = thickness.cortical_thickness(seg["dseg"], seg["probseg_GM"], seg["probseg_WM"], out, regions=hemis,
                                       region_names=thickness.HEMISPHERES, num_threads=threads)
    import pandas as pd

    table = pd.read_csv(res["thickness_tsv"], sep="\t").set_index("name")
    return {"skull_stripped": reg["skull_stripped"], "tiv_ml": seg["tiv"] / 1e3,
            "thickness_mm": table["thickness-mm"].round(3).to_dict(), "seconds": round(time.time() - start)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lite")
    parser.add_argument("--resolution", type=int, choices=[1, 2], default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("thickness-work"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--cases", nargs="+", choices=["hires", "axial5_synthsr"], default=["hires", "axial5_synthsr"])
    args = parser.parse_args(argv)
    from synthsr_nipype.inference import run
    from synthsr_nipype.inference.simulate import simulate_acquisition

    args.work.mkdir(parents=True, exist_ok=True)
    hires = nib.load(HIRES)
    results = {"model": args.model, "resolution_mm": args.resolution}
    for name in args.cases:
        img = hires if name == "hires" else run(
            simulate_acquisition(hires, (1.0, 1.0, 5.0), thickness=(1.0, 1.0, 5.0)), model=args.model,
            threads=args.threads)
        img = resample_to_output(img, voxel_sizes=(float(args.resolution),) * 3, order=1)
        path = args.work / f"{name}.nii.gz"
        nib.Nifti1Image(np.clip(img.get_fdata(), 0, None).astype(np.float32), img.affine).to_filename(path)
        results[name] = measure(path, args.work / name, args.resolution, args.threads)
        print(name, results[name], flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
