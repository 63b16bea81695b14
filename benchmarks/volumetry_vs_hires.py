"""Volumetry with the ``ants`` backend: the real 0.8 mm T1 against SynthSR of its thick-slice simulations.

A measurement, not a pass/fail test. It prints

1. on the real skull-stripped T1 (``../shared/data/real/hires-t1/T1.nii.gz``, full resolution):
   CSF/GM/WM volumes, their sum against the brain-mask volume (±%), tissue fractions, Dice of
   the p > 0.5 GM masks against the supplied ``GM.nii.gz`` and the GM volume difference, and
   whether a second run gives the same numbers;
2. the same volumes measured on SynthSR outputs of the sub-02 acquisitions of the BIDS-App
   test dataset simulated from that T1 (ses-pre: 5 mm axial + 5 mm coronal + 5 mm axial tilted
   20°, fused; ses-post: 6 mm axial), with the per-tissue relative difference to the real T1.

The SynthSR numbers mean something only with real weights (``--model v2`` or a trained model);
with the tiny test fixture the script still runs end to end but says so.

    python benchmarks/volumetry_vs_hires.py --model v2
    python benchmarks/volumetry_vs_hires.py --model path/to/model.h5 --json results.json
    python benchmarks/volumetry_vs_hires.py --model tiny_weights.h5 --quick     # 2 mm smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to, resample_to_output

REPO = Path(__file__).resolve().parents[1]
HIRES = REPO.parent / "shared" / "data" / "real" / "hires-t1"
TINY = REPO.parent / "shared" / "fixtures" / "tf-reference" / "devset" / "models" / "tiny_weights.h5"
TISSUES = ("CSF", "GM", "WM")

#: sub-02 of the BIDS-App test dataset: (session, acquisition, voxel size in mm, tilt in degrees)
SUB02 = (
    ("pre", "ax", (1.2, 1.2, 5.0), 0.0),
    ("pre", "cor", (1.2, 5.0, 1.2), 0.0),
    ("pre", "obl", (1.2, 1.2, 5.0), 20.0),
    ("post", "ax", (1.2, 1.2, 6.0), 0.0),
)


def measure(t1: Path, out: Path, *, template_resolution: int, threads: int) -> dict:
    from synthsr_nipype.morphometry import ants_backend

    start = time.monotonic()
    reg = ants_backend.register_to_template(t1, out, template_resolution=template_resolution, num_threads=threads)
    seg = ants_backend.segment_tissues(t1, reg["from_template"], out, template_resolution=template_resolution,
                                       num_threads=threads, skull_stripped=reg["skull_stripped"])
    seg["seconds"] = time.monotonic() - start
    return seg


def gm_agreement(probseg_gm: str, reference: Path) -> dict:
    ours = nib.load(probseg_gm)
    ref = nib.load(reference)
    ref = nib.Nifti1Image(ref.get_fdata() / 255.0, ref.affine)
    if ref.shape != ours.shape or not np.allclose(ref.affine, ours.affine, atol=1e-4):
        ref = resample_from_to(ref, ours, order=1)
    vox = float(abs(np.linalg.det(ours.affine[:3, :3])))
    a, b = ours.get_fdata(), ref.get_fdata()
    ma, mb = a > 0.5, b > 0.5
    gm_ours, gm_ref = float(a.sum()) * vox, float(b.sum()) * vox
    return {
        "dice_p_gt_0.5": float(2 * (ma & mb).sum() / (ma.sum() + mb.sum())),
        "gm_ours_mm3": gm_ours,
        "gm_reference_mm3": gm_ref,
        "gm_difference_percent": 100.0 * (gm_ours - gm_ref) / gm_ref,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="v2", help="SynthSR model name or weights file (default: v2)")
    parser.add_argument("--threads", type=int, default=1, help="threads (1 = bit-reproducible ANTs)")
    parser.add_argument("--quick", action="store_true", help="2 mm images and template (smoke run, minutes)")
    parser.add_argument("--no-repeat", action="store_true", help="skip the second run of the real T1")
    parser.add_argument("--no-synthsr", action="store_true", help="only the real T1")
    parser.add_argument("--work", type=Path, default=None, help="keep the outputs here")
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)

    if not HIRES.is_dir():
        print(f"shared data not found: {HIRES}", file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="volumetry_vs_hires_"))
    work.mkdir(parents=True, exist_ok=True)
    res = 2 if args.quick else 1
    real_t1 = HIRES / "T1.nii.gz"
    if args.quick:
        img = resample_to_output(nib.load(real_t1), voxel_sizes=(2.0,) * 3, order=1)
        real_t1 = work / "T1_2mm.nii.gz"
        nib.Nifti1Image(np.clip(img.get_fdata(), 0, None).astype(np.float32), img.affine).to_filename(real_t1)
    results: dict = {"template_resolution_mm": res, "threads": args.threads, "input": str(real_t1)}

    print(f"== ants backend on the real T1 ({'2 mm copy' if args.quick else '0.8 mm'}), threads={args.threads}")
    runs = [measure(real_t1, work / "real_run1", template_resolution=res, threads=args.threads)]
    if not args.no_repeat:
        runs.append(measure(real_t1, work / "real_run2", template_resolution=res, threads=args.threads))
    first = runs[0]
    total = sum(first["volumes"][t] for t in TISSUES)
    real = {
        "volumes_mm3": first["volumes"],
        "tiv_mm3": first["mask_volume"],
        "sum_vs_mask_percent": 100.0 * (total - first["mask_volume"]) / first["mask_volume"],
        "fractions": {t: first["volumes"][t] / total for t in TISSUES},
        "skull_stripped": first["skull_stripped"],
        "seconds": first["seconds"],
        **gm_agreement(first["probseg_GM"], HIRES / "GM.nii.gz"),
    }
    if len(runs) == 2:
        same_dseg = np.array_equal(nib.load(runs[0]["dseg"]).get_fdata(), nib.load(runs[1]["dseg"]).get_fdata())
        real["repeat_identical"] = bool(runs[0]["volumes"] == runs[1]["volumes"] and same_dseg)
    results["real_t1"] = real
    for t in TISSUES:
        print(f"  {t:4s} {real['volumes_mm3'][t] / 1000:8.1f} mL  ({100 * real['fractions'][t]:.1f} %)")
    print(f"  mask (TIV) {real['tiv_mm3'] / 1000:.1f} mL; tissue sum vs mask {real['sum_vs_mask_percent']:+.3f} %")
    print(f"  GM vs GM.nii.gz: Dice(p>0.5) {real['dice_p_gt_0.5']:.3f}; volume {real['gm_ours_mm3'] / 1000:.1f} vs "
          f"{real['gm_reference_mm3'] / 1000:.1f} mL ({real['gm_difference_percent']:+.1f} %)")
    if "repeat_identical" in real:
        print(f"  second run identical: {real['repeat_identical']}")
    print(f"  {real['seconds']:.0f} s per run")

    if not args.no_synthsr:
        from synthsr_nipype.inference import run
        from synthsr_nipype.inference.fusion import fuse_images
        from synthsr_nipype.inference.simulate import simulate_acquisition

        model = str(args.model)
        tiny = "tiny" in Path(model).name
        note = "  (tiny TEST FIXTURE: the volumes below are meaningless)" if tiny else ""
        print(f"\n== SynthSR model: {model}{note}")
        results["model"] = model
        hires = nib.load(HIRES / "T1.nii.gz")
        sessions: dict[str, list] = {}
        for ses, acq, vox, tilt in SUB02:
            sim = simulate_acquisition(hires, vox, tilt_degrees=tilt)
            sessions.setdefault(ses, []).append(run(sim, model=model, threads=args.threads))
        results["synthsr"] = {}
        for ses, outputs in sessions.items():
            fused = fuse_images(outputs, threads=args.threads).image if len(outputs) > 1 else outputs[0]
            path = work / f"sub-02_ses-{ses}_desc-synthsr_T1w.nii.gz"
            if args.quick:
                fused = resample_to_output(fused, voxel_sizes=(2.0,) * 3, order=1)
            fused.to_filename(path)
            seg = measure(path, work / f"synthsr_{ses}", template_resolution=res, threads=args.threads)
            results["synthsr"][f"ses-{ses}"] = {
                "acquisitions": [a for s, a, _, _ in SUB02 if s == ses],
                "volumes_mm3": seg["volumes"],
                "tiv_mm3": seg["mask_volume"],
                "relative_difference_percent": {
                    t: 100.0 * (seg["volumes"][t] - real["volumes_mm3"][t]) / real["volumes_mm3"][t] for t in TISSUES
                },
            }
        print(f"  {'tissue':6s} {'real T1':>10s} " + " ".join(f"{k:>22s}" for k in results["synthsr"]))
        for t in [*TISSUES, "TIV"]:
            ref = real["tiv_mm3"] if t == "TIV" else real["volumes_mm3"][t]
            cells = []
            for entry in results["synthsr"].values():
                v = entry["tiv_mm3"] if t == "TIV" else entry["volumes_mm3"][t]
                cells.append(f"{v / 1000:9.1f} mL ({100 * (v - ref) / ref:+6.1f} %)")
            print(f"  {t:6s} {ref / 1000:7.1f} mL " + " ".join(f"{c:>22s}" for c in cells))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(f"\noutputs in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
