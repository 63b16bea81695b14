"""Does the reliability map (docs/qc.md) say where a SynthSR output is wrong?  (issue 25)

The real 0.8 mm T1 (``real/hires-t1/T1.nii.gz``, skull-stripped) degraded as ``superres_real.py`` does it, then
SynthSR with reliability.  Per acquisition: the Spearman correlation, inside the brain (T1 > 0), between each
voxel's reliability and its absolute error against the real T1 (on the output's grid, after a least-squares
linear fit of the output to the T1, as ``superres_real.intensity_agreement``), the mean absolute error in the
most and the least reliable thirds, and the mean reliability.  Then three orthogonal 5 mm scans fused (the
simulated scans share the T1's world space, so no registration is needed: identity transforms): the fused map's
mean in the brain against the best single scan's.

    python benchmarks/reliability_real.py --model lite --json benchmarks/reliability_lite.json
    python benchmarks/reliability_real.py --model ../shared/fixtures/tf-reference/devset/models/tiny_weights.h5
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to
from scipy.stats import spearmanr

REPO = Path(__file__).resolve().parents[1]
HIRES = REPO.parent / "shared" / "data" / "real" / "hires-t1" / "T1.nii.gz"

sys.path.insert(0, str(REPO))
from synthsr_nipype.inference import synthesise  # noqa: E402
from synthsr_nipype.inference.fusion import map_onto_reference  # noqa: E402
from synthsr_nipype.inference.reliability import fused_reliability  # noqa: E402
from synthsr_nipype.inference.simulate import simulate_acquisition  # noqa: E402

#: name: (spacing mm, thickness mm) per RAS axis of the hires T1 (superres_real.py's, plus a sagittal 5 mm for
#: the three orthogonal 5 mm scans)
ACQUISITIONS = {
    "axial5": ((1.0, 1.0, 5.0), (1.0, 1.0, 5.0)),
    "coronal5": ((1.0, 5.0, 1.0), (1.0, 5.0, 1.0)),
    "sagittal5": ((5.0, 1.0, 1.0), (5.0, 1.0, 1.0)),
    "sagittal6gap1": ((6.0, 1.0, 1.0), (5.0, 1.0, 1.0)),
}
ORTHOGONAL = ("axial5", "coronal5", "sagittal5")


def error_against_truth(output: nib.Nifti1Image, truth: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray]:
    """|fit(output) - T1| on the output's grid and the brain mask there (T1 > 0)."""
    ref = resample_from_to(truth, output, order=1).get_fdata()
    brain = ref > 0.05 * np.percentile(ref[ref > 0], 99)
    out = np.asarray(output.dataobj, dtype=np.float64)
    slope, intercept = np.polyfit(out[brain], ref[brain], 1)
    return np.abs(slope * out + intercept - ref), brain


def measure_acquisition(truth: nib.Nifti1Image, name: str, model: str, threads: int = 2):
    """One acquisition of :data:`ACQUISITIONS` simulated from ``truth`` and run through SynthSR: the figures
    (Spearman of reliability against absolute error in the brain, MAE of the most and least reliable thirds,
    mean reliability, the QC numbers), the output image and its :class:`ScanReliability`."""
    spacing, thickness = ACQUISITIONS[name]
    scan = simulate_acquisition(truth, spacing, thickness=thickness)
    syn = synthesise(scan, model, device="cpu", threads=threads)
    # as its sidecar would say it: the slice thickness (the slice axis is the one of the largest spacing)
    rel = syn.reliability(slice_thickness=[max(thickness)])
    error, brain = error_against_truth(syn.image, truth)
    r = rel.reliability[brain]
    e = error[brain]
    low, high = np.percentile(r, [100 / 3, 200 / 3])
    row = {"spacing_mm": list(spacing), "thickness_mm": list(thickness),
           "spearman_reliability_vs_abs_error": float(spearmanr(r, e).statistic),
           "mae_most_reliable_third": float(e[r >= high].mean()),
           "mae_least_reliable_third": float(e[r <= low].mean()),
           "mean_reliability": float(r.mean()), "qc": rel.qc}
    return row, syn.image, rel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lite")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    truth = nib.load(HIRES)
    results: dict = {"model": args.model, "acquisitions": {}}
    outputs = {}
    for name in ACQUISITIONS:
        row, image, rel = measure_acquisition(truth, name, args.model, args.threads)
        results["acquisitions"][name] = row
        outputs[name] = (image, rel)
        print(f"{name}: rho={row['spearman_reliability_vs_abs_error']:+.3f} MAE most/least reliable third "
              f"{row['mae_most_reliable_third']:.1f}/{row['mae_least_reliable_third']:.1f} "
              f"mean reliability {row['mean_reliability']:.3f}", flush=True)
    ref_image = outputs[ORTHOGONAL[0]][0]
    maps, stack = [], []
    for name in ORTHOGONAL:
        image, rel = outputs[name]
        maps.append(map_onto_reference(nib.Nifti1Image(rel.reliability, image.affine), None, ref_image))
        stack.append(map_onto_reference(image, None, ref_image))
    fused = np.median(np.stack(stack), axis=0)
    fused_map = fused_reliability(maps, np.stack(stack), fused)
    _, brain = error_against_truth(ref_image, truth)
    singles = {name: float(m[brain].mean()) for name, m in zip(ORTHOGONAL, maps)}
    results["fused_orthogonal_5mm"] = {"mean_reliability": float(fused_map[brain].mean()),
                                       "single_scans": singles}
    print(f"three orthogonal 5 mm fused: mean reliability {fused_map[brain].mean():.3f}, single scans "
          + ", ".join(f"{k} {v:.3f}" for k, v in singles.items()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
