"""Does a model super-resolve real scans that no generator saw?  (issue 16 section 5)

1. ``real/hires-t1/T1.nii.gz`` (0.8 mm) degraded to clinical acquisitions (default: 5 mm axial, 5 mm coronal,
   6 mm sagittal with 1 mm gaps; ``--spacing X Y Z --thickness X Y Z`` for one of your own), then SynthSR and,
   as the baseline every user has, the thick-slice scan upsampled trilinearly to 1 mm.  Each is compared with
   the real T1: Dice of the ANTs backend's p > 0.5 GM against ``GM.nii.gz``, GM volume error against it, and the
   intensity correlation inside the brain (on the real T1's grid, after a linear fit: Pearson r and NRMSE).
   A third row, ``linear``, is the trilinear upsampling after the least-squares linear map of its intensities
   onto the real T1 (the trainer's linear baseline); ``--methods`` measures only some rows.
2. Cross-contrast: ``real/ms-clinical`` FLAIR and T2 (4 mm) -> T1-like, each rigidly registered (antspyx) to
   the same patient's clinical T1: normalised mutual information of the output with that T1 next to the
   input's own.
3. ``real/stroke-t2/T2`` degraded to 5 mm axial -> SynthSR; the ANTs GM/WM maps agree (Dice, p > 0.5) with
   those of SynthSR on the 1 mm T2?

The last line is ``dice_synthsr=… dice_trilinear=… gm_err_synthsr=… gm_err_trilinear=…`` (5 mm axial).

    python benchmarks/superres_real.py --model lite --json benchmarks/superres_lite.json --figures docs/figures
    python benchmarks/superres_real.py --model lite --spacing 1 1 7 --thickness 1 1 5
    python benchmarks/superres_real.py --model tiny_weights.h5 --quick      # 2 mm ANTs template: smoke run
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from volumetry_vs_hires import gm_agreement, measure  # noqa: E402  (the ANTs measurement of its sibling)

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"
HIRES = REAL / "hires-t1"

#: the rows of each degraded case: the model, the baseline every user has, and the oracle linear intensity map
METHODS = ("synthsr", "trilinear", "linear")
#: name: (spacing mm, thickness mm) per RAS axis of the hires T1
ACQUISITIONS = {
    "axial5": ((1.0, 1.0, 5.0), (1.0, 1.0, 5.0)),
    "coronal5": ((1.0, 5.0, 1.0), (1.0, 5.0, 1.0)),
    "sagittal6gap1": ((6.0, 1.0, 1.0), (5.0, 1.0, 1.0)),
}


def intensity_agreement(candidate: nib.Nifti1Image, reference: nib.Nifti1Image) -> dict[str, float]:
    """Pearson r and NRMSE (of the reference's brain range) after a least-squares linear fit, inside the brain."""
    moved = resample_from_to(candidate, reference, order=1).get_fdata()
    ref = reference.get_fdata()
    brain = ref > 0  # the real T1 is skull-stripped
    x, y = moved[brain], ref[brain]
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    return {"pearson_r": float(np.corrcoef(x, y)[0, 1]),
            "nrmse": float(np.sqrt(np.mean(residual ** 2)) / (np.percentile(y, 99) - np.percentile(y, 1)))}


def normalised_mutual_information(a: np.ndarray, b: np.ndarray, bins: int = 64) -> float:
    """(H(A) + H(B)) / H(A, B) over the voxels where both are defined (1 = independent, 2 = identical)."""
    joint, _, _ = np.histogram2d(a.ravel(), b.ravel(), bins=bins)
    p = joint / joint.sum()

    def entropy(q: np.ndarray) -> float:
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())

    return (entropy(p.sum(0)) + entropy(p.sum(1))) / entropy(p)


def rigid_nmi(moving: Path, fixed: Path, work: Path) -> float:
    """NMI with ``fixed`` after a rigid antspyx registration (MI metric), inside ``fixed``'s head."""
    import ants

    fixed_img, moving_img = ants.image_read(str(fixed)), ants.image_read(str(moving))
    reg = ants.registration(fixed_img, moving_img, type_of_transform="Rigid", aff_metric="mattes",
                            outprefix=str(work / f"{moving.name}_"))
    warped = reg["warpedmovout"].numpy()
    target = fixed_img.numpy()
    head = (target > np.percentile(target, 60)) & (warped > 0)
    return normalised_mutual_information(warped[head], target[head])


def upsample_trilinear(image: nib.Nifti1Image) -> nib.Nifti1Image:
    return resample_to_output(image, voxel_sizes=(1.0, 1.0, 1.0), order=1)


def linear_rescaling(image: nib.Nifti1Image, reference: nib.Nifti1Image) -> nib.Nifti1Image:
    """The trilinear upsampling mapped onto the real T1's intensities by a least-squares line fitted inside the
    brain (negative values clipped): the trainer's linear baseline, the best any purely linear intensity map of
    the input can do.  A network that only rescales the input's intensities would score this row."""
    up = upsample_trilinear(image)
    moved = resample_from_to(up, reference, order=1).get_fdata()
    ref = reference.get_fdata()
    brain = ref > 0
    slope, intercept = np.polyfit(moved[brain], ref[brain], 1)
    data = np.clip(slope * up.get_fdata() + intercept, 0, None).astype(np.float32)
    return nib.Nifti1Image(data, up.affine)


def figure(panels: dict[str, nib.Nifti1Image], reference: nib.Nifti1Image, path: Path, title: str = "") -> None:
    """The panels side by side on the grid of ``reference`` (e.g. input / trilinear / SynthSR / real T1), one
    coronal and one axial slice each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(panels), figsize=(3 * len(panels), 6))
    for column, (name, image) in enumerate(panels.items()):
        data = resample_from_to(image, reference, order=1).get_fdata()
        top = np.percentile(data[data > 0], 99.5) if (data > 0).any() else 1.0
        for row, view in enumerate((data[:, data.shape[1] // 2 + 10, :], data[:, :, data.shape[2] // 2 + 10])):
            axes[row, column].imshow(np.rot90(view), cmap="gray", vmin=0, vmax=top)
            axes[row, column].axis("off")
        axes[0, column].set_title(name)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def degraded_case(name: str, spacing, thickness, args, work: Path, hires: nib.Nifti1Image,
                  reference_1mm: nib.Nifti1Image) -> dict:
    from synthsr_nipype.inference import run
    from synthsr_nipype.inference.simulate import simulate_acquisition

    sim = simulate_acquisition(hires, tuple(spacing), thickness=tuple(thickness))
    sim.to_filename(work / f"{name}_input.nii.gz")
    makers = {"synthsr": lambda: run(sim, model=args.model, threads=args.threads),
              "trilinear": lambda: upsample_trilinear(sim),
              "linear": lambda: linear_rescaling(sim, reference_1mm)}
    outputs = {method: makers[method]() for method in METHODS if method in args.methods}
    result: dict = {"spacing_mm": list(spacing), "thickness_mm": list(thickness)}
    for method, image in outputs.items():
        path = work / f"{name}_{method}.nii.gz"
        if args.quick:
            image = resample_to_output(image, voxel_sizes=(2.0,) * 3, order=1)
        image.to_filename(path)
        seg = measure(path, work / f"{name}_{method}_ants", template_resolution=2 if args.quick else 1,
                      threads=args.threads)
        agreement = gm_agreement(seg["probseg_GM"], HIRES / "GM.nii.gz")
        result[method] = {"gm_dice": agreement["dice_p_gt_0.5"],
                          "gm_error_percent": agreement["gm_difference_percent"],
                          **intensity_agreement(image, reference_1mm)}
        print(f"  {name:14s} {method:9s} GM Dice {agreement['dice_p_gt_0.5']:.3f}  GM volume "
              f"{agreement['gm_difference_percent']:+6.1f} %  r {result[method]['pearson_r']:.3f}  "
              f"NRMSE {result[method]['nrmse']:.3f}", flush=True)
    if args.figures and {"trilinear", "synthsr"} <= set(outputs):
        figure({"input (thick slices)": sim, "trilinear": outputs["trilinear"], "SynthSR": outputs["synthsr"],
                "real T1": reference_1mm}, reference_1mm, args.figures / f"superres_{name}.png",
               title=f"model {Path(str(args.model)).name}")
    return result


def cross_contrast(args, work: Path) -> dict:
    from synthsr_nipype.inference import run

    clinical = REAL / "ms-clinical"
    results = {}
    panels: dict[str, nib.Nifti1Image] = {}
    for contrast in ("FLAIR", "T2"):
        source = clinical / f"{contrast}.nii.gz"
        out = work / f"ms_{contrast}_synthsr.nii.gz"
        run(str(source), model=args.model, threads=args.threads).to_filename(out)
        results[contrast] = {"nmi_input": rigid_nmi(source, clinical / "T1.nii.gz", work),
                             "nmi_synthsr": rigid_nmi(out, clinical / "T1.nii.gz", work)}
        print(f"  ms-clinical {contrast:5s} NMI with the clinical T1: input {results[contrast]['nmi_input']:.4f}"
              f"  SynthSR {results[contrast]['nmi_synthsr']:.4f}", flush=True)
        panels[f"{contrast} (clinical)"] = nib.load(source)
        panels[f"SynthSR from {contrast}"] = nib.load(out)
    if args.figures:
        # skull on, whole field of view: on the grid of the FLAIR's output (the scans share the scanner space)
        panels["clinical T1"] = nib.load(clinical / "T1.nii.gz")
        figure(panels, panels["SynthSR from FLAIR"], args.figures / "superres_ms_clinical.png",
               title=f"model {Path(str(args.model)).name}")
    return results


def stroke(args, work: Path) -> dict:
    from synthsr_nipype.inference import run
    from synthsr_nipype.inference.simulate import simulate_acquisition

    t2 = nib.load(REAL / "stroke-t2" / "T2.nii.gz")
    seg = {}
    for name, image in (("t2_1mm", t2), ("t2_5mm", simulate_acquisition(t2, (1.0, 1.0, 5.0)))):
        path = work / f"stroke_{name}_synthsr.nii.gz"
        output = run(image, model=args.model, threads=args.threads)
        if args.quick:
            output = resample_to_output(output, voxel_sizes=(2.0,) * 3, order=1)
        output.to_filename(path)
        seg[name] = measure(path, work / f"stroke_{name}_ants", template_resolution=2 if args.quick else 1,
                            threads=args.threads)
    result = {}
    for tissue in ("GM", "WM"):
        a = nib.load(seg["t2_5mm"][f"probseg_{tissue}"])
        b = resample_from_to(nib.load(seg["t2_1mm"][f"probseg_{tissue}"]), a, order=1)
        ma, mb = a.get_fdata() > 0.5, b.get_fdata() > 0.5
        result[f"{tissue.lower()}_dice_5mm_vs_1mm"] = float(2 * (ma & mb).sum() / max(ma.sum() + mb.sum(), 1))
    print(f"  stroke T2 5 mm vs 1 mm through SynthSR: GM Dice {result['gm_dice_5mm_vs_1mm']:.3f}, "
          f"WM Dice {result['wm_dice_5mm_vs_1mm']:.3f}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="lite", help="model name or weights file (default: lite)")
    parser.add_argument("--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"),
                        help="one acquisition of your own instead of the defaults: slice spacing per axis (mm)")
    parser.add_argument("--thickness", type=float, nargs=3, metavar=("X", "Y", "Z"),
                        help="its slice thickness per axis (mm; default: the spacing)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="measure on 2 mm copies (ANTs 2 mm template)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["cross-contrast", "stroke"])
    parser.add_argument("--acquisitions", nargs="+", default=list(ACQUISITIONS), choices=list(ACQUISITIONS),
                        help="the degraded-T1 cases to measure (default all three)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS,
                        help="rows of the degraded-T1 cases (default all; the headline needs synthsr and trilinear)")
    parser.add_argument("--work", type=Path, default=None, help="keep the intermediate images here")
    parser.add_argument("--figures", type=Path, default=None, help="write side-by-side PNGs here")
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)
    if not HIRES.is_dir():
        print(f"shared data not found: {HIRES}", file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="superres_real_"))
    work.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    hires = nib.load(HIRES / "T1.nii.gz")
    reference_1mm = upsample_trilinear(hires)
    if args.spacing:
        acquisitions = {"custom": (args.spacing, args.thickness or args.spacing)}
    else:
        acquisitions = {name: ACQUISITIONS[name] for name in args.acquisitions}
    results: dict = {"model": str(args.model), "acquisitions": {}}
    print(f"== {args.model}: degraded real T1 -> SynthSR vs trilinear", flush=True)
    for name, (spacing, thickness) in acquisitions.items():
        results["acquisitions"][name] = degraded_case(name, spacing, thickness, args, work, hires, reference_1mm)
    if "cross-contrast" not in args.skip:
        results["cross_contrast"] = cross_contrast(args, work)
    if "stroke" not in args.skip:
        results["stroke"] = stroke(args, work)
    results["seconds"] = time.monotonic() - start
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    headline = results["acquisitions"].get("axial5") or next(iter(results["acquisitions"].values()))
    if not {"synthsr", "trilinear"} <= set(headline):
        return 0
    print(f"dice_synthsr={headline['synthsr']['gm_dice']:.4f} dice_trilinear={headline['trilinear']['gm_dice']:.4f} "
          f"gm_err_synthsr={headline['synthsr']['gm_error_percent']:.2f} "
          f"gm_err_trilinear={headline['trilinear']['gm_error_percent']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
