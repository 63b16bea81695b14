"""Cortical thickness (ants backend + DiReCT) on the real hires T1 and on its 5 mm axial degradation, through
SynthSR and through trilinear upsampling, compared region by region.

A measurement, not a test (figures in docs/morphometry.md)::

    python benchmarks/thickness_vs_hires.py --model lite --resolution 2 --json benchmarks/thickness_lite.json

``--resolution`` resamples every image before the ants backend (2 mm: minutes; 1 mm: DiReCT alone takes tens
of minutes on one thread).

The regions: no real SynthSeg weights exist in this sandbox (its parcellation would need them), so the regions
are a deterministic partition of the template's cortex that needs no atlas (:func:`cortex_patches`): k-means
(fixed seed) of the MNI152NLin2009aSym cortical grey-matter voxel coordinates, ``--patches`` per hemisphere,
moved onto each image with the template-to-subject transform the ants backend computes for it, so the hires and
the 5 mm runs are measured on the same anatomical patches.  Per comparison the JSON gives the Pearson r across
patches, the mean absolute difference and the mean difference (bias) against the hires T1.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.processing import resample_to_output

REPO = Path(__file__).resolve().parents[1]
HIRES = REPO.parent / "shared" / "data" / "real" / "hires-t1" / "T1.nii.gz"
CASES = ("hires", "axial5_synthsr", "axial5_trilinear")
#: template grey matter counted as cortex: GM probability above this, outside the two boxes below
GM_THRESHOLD = 0.5
#: MNI mm boxes (x, y, z ranges) left out of "cortex": the deep grey matter (basal ganglia, thalami) and the
#: posterior fossa (cerebellum, brain stem); crude, and it drops some inferior temporo-occipital cortex too
DEEP_GM_BOX = ((-33, 33), (-38, 28), (-14, 22))
POSTERIOR_FOSSA_BOX = ((-60, 60), (-110, -30), (-80, -18))
SEED = 0


def _in_box(xyz: np.ndarray, box) -> np.ndarray:
    return np.all([(xyz[:, a] >= lo) & (xyz[:, a] <= hi) for a, (lo, hi) in enumerate(box)], axis=0)


def cortex_patches(resolution: int, per_hemisphere: int, out_file: Path) -> dict[int, str]:
    """The template's cortex cut into ``per_hemisphere`` k-means patches per hemisphere (labels 1.. left,
    then right), written on the template grid; returns label -> name (``lh-07 (x, y, z)``: centroid, MNI mm)."""
    from sklearn.cluster import KMeans

    from synthsr_nipype.morphometry.templates import get_template

    tpl = get_template(resolution)
    gm_img = nib.load(tpl.gm)
    gm = np.asarray(gm_img.dataobj, dtype=np.float32)
    inside = (gm > GM_THRESHOLD) & (np.asarray(nib.load(tpl.mask).dataobj) > 0.5)
    ijk = np.argwhere(inside)
    xyz = nib.affines.apply_affine(gm_img.affine, ijk)
    keep = ~_in_box(xyz, DEEP_GM_BOX) & ~_in_box(xyz, POSTERIOR_FOSSA_BOX)
    ijk, xyz = ijk[keep], xyz[keep]
    labels = np.zeros(gm.shape, dtype=np.int16)
    names: dict[int, str] = {}
    for h, (hemi, side) in enumerate((("lh", xyz[:, 0] < 0), ("rh", xyz[:, 0] >= 0))):
        km = KMeans(n_clusters=per_hemisphere, random_state=SEED, n_init=4).fit(xyz[side])
        # number the patches in a fixed anatomical order: front to back, then bottom to top
        order = np.lexsort((km.cluster_centers_[:, 2], -km.cluster_centers_[:, 1]))
        rank = np.empty(per_hemisphere, dtype=np.int64)
        rank[order] = np.arange(per_hemisphere)
        value = 1 + h * per_hemisphere + rank[km.labels_]
        labels[tuple(ijk[side].T)] = value
        for k in range(per_hemisphere):
            x, y, z = km.cluster_centers_[k]
            names[int(1 + h * per_hemisphere + rank[k])] = f"{hemi}-{rank[k] + 1:02d} ({x:.0f}, {y:.0f}, {z:.0f})"
    out_file.parent.mkdir(parents=True, exist_ok=True)
    nib.Nifti1Image(labels, gm_img.affine).to_filename(out_file)
    return dict(sorted(names.items()))


def measure(t1: Path, out: Path, resolution: int, threads: int, patches: Path, patch_names: dict[int, str]) -> dict:
    import pandas as pd

    from synthsr_nipype.morphometry import ants_backend, thickness

    start = time.time()
    reg = ants_backend.register_to_template(t1, out, template_resolution=resolution, num_threads=threads)
    seg = ants_backend.segment_tissues(t1, reg["from_template"], out, template_resolution=resolution,
                                       num_threads=threads, skull_stripped=reg["skull_stripped"])
    hemis = thickness.hemisphere_regions(reg["from_template"], seg["dseg"], out / "hemispheres.nii.gz",
                                         template_resolution=resolution)
    res = thickness.cortical_thickness(seg["dseg"], seg["probseg_GM"], seg["probseg_WM"], out, regions=hemis,
                                       region_names=thickness.HEMISPHERES, num_threads=threads)
    table = pd.read_csv(res["thickness_tsv"], sep="\t").set_index("name")
    on_subject = thickness.template_regions(reg["from_template"], seg["dseg"], patches, out / "patches.nii.gz")
    ptable = thickness.region_table(res["thickness"], on_subject, patch_names).set_index("name")
    return {"skull_stripped": reg["skull_stripped"], "tiv_ml": round(seg["tiv"] / 1e3, 1),
            "thickness_mm": table["thickness-mm"].round(3).to_dict(),
            "patch_thickness_mm": ptable["thickness-mm"].round(3).to_dict(),
            "patch_volume_mm3": ptable["volume-mm3"].round(0).to_dict(),
            "seconds": round(time.time() - start)}


def agreement(reference: dict[str, float], other: dict[str, float]) -> dict:
    """Across the patches measured in both: Pearson r, mean absolute difference, mean difference (other - ref)."""
    names = [n for n in reference if n != "Cortex" and np.isfinite(reference[n]) and np.isfinite(other.get(n, np.nan))]
    a = np.array([reference[n] for n in names])
    b = np.array([other[n] for n in names])
    return {"n_regions": len(names), "pearson_r": round(float(np.corrcoef(a, b)[0, 1]), 3),
            "mean_abs_diff_mm": round(float(np.mean(np.abs(b - a))), 3),
            "mean_diff_mm": round(float(np.mean(b - a)), 3),
            "sd_hires_mm": round(float(a.std(ddof=1)), 3), "sd_other_mm": round(float(b.std(ddof=1)), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lite")
    parser.add_argument("--resolution", type=int, choices=[1, 2], default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--patches", type=int, default=20, help="cortex patches per hemisphere")
    parser.add_argument("--work", type=Path, default=Path("thickness-work"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    args = parser.parse_args(argv)
    from synthsr_nipype.inference import run
    from synthsr_nipype.inference.simulate import simulate_acquisition

    args.work.mkdir(parents=True, exist_ok=True)
    start = time.time()
    patches = args.work / "template_patches.nii.gz"
    names = cortex_patches(args.resolution, args.patches, patches)
    cpu = next((ln.split(":", 1)[1].strip() for ln in subprocess.run(["lscpu"], capture_output=True, text=True)
                .stdout.splitlines() if ln.startswith("Model name")), platform.processor())
    results: dict = {"model": args.model, "resolution_mm": args.resolution, "threads": args.threads,
                     "cpu": cpu, "regions": f"k-means patches of the template cortex, {args.patches} per hemisphere, "
                     f"seed {SEED}", "patch_names": names}
    hires = nib.load(HIRES)
    for name in args.cases:
        t0 = time.time()
        if name == "hires":
            img = hires
        else:
            low = simulate_acquisition(hires, (1.0, 1.0, 5.0), thickness=(1.0, 1.0, 5.0))
            img = run(low, model=args.model, threads=args.threads) if name == "axial5_synthsr" else low
        img = resample_to_output(img, voxel_sizes=(float(args.resolution),) * 3, order=1)
        path = args.work / f"{name}.nii.gz"
        nib.Nifti1Image(np.clip(img.get_fdata(), 0, None).astype(np.float32), img.affine).to_filename(path)
        results[name] = measure(path, args.work / name, args.resolution, args.threads, patches, names)
        results[name]["seconds_with_input"] = round(time.time() - t0)
        results[name]["uptime"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        print(name, {k: v for k, v in results[name].items() if not k.startswith("patch")}, flush=True)
    if "hires" in results:
        for name in CASES[1:]:
            if name in results:
                results[f"agreement_{name}"] = agreement(results["hires"]["patch_thickness_mm"],
                                                         results[name]["patch_thickness_mm"])
                print(name, results[f"agreement_{name}"], flush=True)
    results["seconds_total"] = round(time.time() - start)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
