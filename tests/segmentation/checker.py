"""Compare one output folder with a SynthSeg fixture case at the tolerances of the fixture README, section 4.

numpy + nibabel only; every check returns the figures it measured, so the tests can print them.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np

SET = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "synthseg-reference"
DEVSET = SET / "devset"
FSHOME = DEVSET / "fshome"


def manifest() -> dict:
    return json.loads((SET / "manifest.json").read_text())


def cases() -> list[dict]:
    return manifest()["cases"] if SET.is_dir() else []


def _header(img: nib.Nifti1Image) -> dict:
    hdr = img.header
    slope, inter = hdr.get_slope_inter()
    return {"shape": list(img.shape), "dtype": str(hdr.get_data_dtype()), "affine": img.affine,
            "qform_code": int(hdr["qform_code"]), "sform_code": int(hdr["sform_code"]),
            "zooms": list(hdr.get_zooms()), "slope": slope, "inter": inter}


def check_header(name: str, ours: nib.Nifti1Image, expected: dict) -> list[str]:
    got = _header(ours)
    problems = []
    for key in ("shape", "dtype", "qform_code", "sform_code"):
        if got[key] != expected[key]:
            problems.append(f"{name}: {key} {got[key]} != {expected[key]}")
    if not np.allclose(got["affine"], np.asarray(expected["affine"]), atol=1e-5):
        problems.append(f"{name}: affine differs")
    if not np.allclose(got["zooms"], expected["zooms"], rtol=1e-6):
        problems.append(f"{name}: zooms {got['zooms']} != {expected['zooms']}")
    for key, ref in (("slope", expected.get("scl_slope")), ("inter", expected.get("scl_inter"))):
        mine = got[key]
        ref_none = ref is None or (isinstance(ref, float) and math.isnan(ref))
        mine_none = mine is None or (isinstance(mine, float) and math.isnan(mine))
        if ref_none != mine_none or (not ref_none and not np.isclose(mine, ref, rtol=1e-6)):
            problems.append(f"{name}: scl_{key} {mine} != {ref}")
    return problems


def _read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def check_case(case: dict, out: Path) -> tuple[list[str], dict[str, float]]:
    """(problems, figures) for the outputs in ``out`` against ``case``'s expected files."""
    exp = DEVSET / "expected" / case["name"]
    problems: list[str] = []
    figures: dict[str, float] = {}
    headers = json.loads((exp / "header.json").read_text()) if (exp / "header.json").is_file() else {}
    for rel in case["expected_absent"]:
        if (out / Path(rel).name).exists():
            problems.append(f"{Path(rel).name} written; the reference does not write it")
    for rel in case["expected"]:
        name = Path(rel).name
        if name in ("header.json", "stdout.txt", "intermediates.npz"):
            continue
        mine = out / name
        if not mine.is_file():
            problems.append(f"{name} missing")
            continue
        if name.endswith(".nii.gz"):
            ours, ref = nib.load(mine), nib.load(exp / name)
            problems += check_header(name, ours, headers[name])
            if ours.shape != ref.shape:
                continue
            a, b = np.asarray(ours.dataobj), np.asarray(ref.dataobj)
            if name == "seg.nii.gz":
                same = float(np.mean(a == b))
                figures["labels_identical"] = same
                need = case["tolerances"]["min_identical_labels"]
                if same < need:
                    problems.append(f"seg: {same:.5f} of labels identical < {need}")
            elif name == "posteriors.nii.gz":
                diff = np.abs(ours.get_fdata() - ref.get_fdata())
                figures["posteriors_max"], figures["posteriors_mean"] = float(diff.max()), float(diff.mean())
                if diff.max() > 1e-3 or diff.mean() > 1e-5:
                    problems.append(f"posteriors: max {diff.max():.2e} mean {diff.mean():.2e}")
            elif name == "resampled.nii.gz":
                x, y = ours.get_fdata(), ref.get_fdata()
                rel_l2 = float(np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-30))
                figures["resampled_rel_l2"] = rel_l2
                if rel_l2 > 1e-6:
                    problems.append(f"resampled: relative L2 {rel_l2:.2e}")
        elif name == "volumes.csv":
            a, b = _read_csv(mine), _read_csv(exp / name)
            if a[0] != b[0] or len(a) != len(b) or (len(b) > 1 and a[1][0] != b[1][0]):
                problems.append("volumes.csv: header, subject or row count differs")
                continue
            if len(b) == 1:  # the header alone (the image failed)
                continue
            x = np.array(a[1][1:], dtype=float)
            y = np.array(b[1][1:], dtype=float)
            if not np.array_equal(np.isnan(x), np.isnan(y)):
                problems.append("volumes.csv: NaN pattern differs")
                continue
            ok = ~np.isnan(y)
            excess = np.abs(x - y)[ok] - (1e-3 * np.abs(y[ok]) + 2)
            figures["volumes_max_abs"] = float(np.abs(x - y)[ok].max()) if ok.any() else 0.0
            if ok.any() and excess.max() > 0:
                problems.append(f"volumes.csv: {int((excess > 0).sum())} column(s) beyond 1e-3*ref + 2 mm3")
        elif name == "qc.csv":
            a, b = _read_csv(mine), _read_csv(exp / name)
            if a[0] != b[0] or a[1][0] != b[1][0]:
                problems.append("qc.csv: header or subject differs")
                continue
            diff = np.abs(np.array(a[1][1:], dtype=float) - np.array(b[1][1:], dtype=float))
            figures["qc_max_abs"] = float(diff.max())
            if diff.max() > 2e-3:
                problems.append(f"qc.csv: max difference {diff.max():.4f} > 2e-3")
    return problems, figures
