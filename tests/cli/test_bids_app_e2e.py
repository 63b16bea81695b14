"""End-to-end: a small BIDS dataset of real clinical and simulated thick-slice scans through
``synthsr-bids ... participant`` with the tiny fixture model.

sub-01: the three real MS clinical scans as they are (T1w 3 mm, T2w 4 mm, FLAIR 4 mm).
sub-02: thick slices simulated from a real 0.8 mm T1 (ses-pre: 5 mm axial, 5 mm coronal,
        5 mm axial tilted 20 degrees; ses-post: 6 mm axial).
sub-03: a real stroke T2 resliced to 5 mm axial.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from synthsr_nipype.reports.browser import find_chromium
from tests.paths import REAL, TINY
from tests.validator import AVAILABLE as VALIDATOR_AVAILABLE
from tests.validator import bids_validator_errors

pytestmark = pytest.mark.skipif(
    not (REAL.is_dir() and TINY.is_file()), reason="shared data (../shared) not available"
)


# ----------------------------------------------------------------------------- dataset
def _rotation_x(degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    return np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])


def simulate_thick_slices(
    img: nib.Nifti1Image,
    *,
    inplane: float,
    thickness: float,
    axes: np.ndarray,
    slice_axis: int = 2,
) -> nib.Nifti1Image:
    """Resample ``img`` onto a grid of thick slices along ``axes[:, slice_axis]``.

    ``axes`` holds the world (RAS) direction of each voxel axis. Each slice is the average
    of 1 mm sub-slices (a box slice profile), as a 2D acquisition would integrate them.
    """
    from scipy.ndimage import affine_transform

    data = np.asarray(img.dataobj, dtype=np.float32)
    # Field of view of the source, in the new axes' frame.
    corners = np.array(
        [[i, j, k, 1] for i in (0, data.shape[0]) for j in (0, data.shape[1]) for k in (0, data.shape[2])]
    ).T
    world = (img.affine @ corners)[:3]
    local = axes.T @ world
    lo, hi = local.min(axis=1), local.max(axis=1)
    fine = np.array([inplane, inplane, inplane])
    fine[slice_axis] = 1.0
    n_sub = int(round(thickness / 1.0))
    shape = np.ceil((hi - lo) / fine).astype(int)
    shape[slice_axis] = int(np.ceil(shape[slice_axis] / n_sub)) * n_sub
    fine_affine = np.eye(4)
    fine_affine[:3, :3] = axes @ np.diag(fine)
    fine_affine[:3, 3] = axes @ lo
    matrix = np.linalg.inv(img.affine) @ fine_affine
    sampled = affine_transform(data, matrix[:3, :3], matrix[:3, 3], output_shape=tuple(shape), order=1)
    new_shape = list(shape)
    new_shape[slice_axis] //= n_sub
    split = list(shape)
    split[slice_axis : slice_axis + 1] = [new_shape[slice_axis], n_sub]
    thick = sampled.reshape(split).mean(axis=slice_axis + 1)
    zooms = fine.copy()
    zooms[slice_axis] = thickness
    affine = np.eye(4)
    affine[:3, :3] = axes @ np.diag(zooms)
    # Centre of the first thick slice = centre of its sub-slices.
    offset = np.zeros(3)
    offset[slice_axis] = (thickness - 1.0) / 2
    affine[:3, 3] = axes @ (lo + offset)
    scaled = np.clip(thick / max(float(thick.max()), 1e-6) * 1000, 0, 32767).astype(np.int16)
    out = nib.Nifti1Image(scaled, affine)
    out.set_qform(affine, code=1)
    out.set_sform(affine, code=1)
    return out


def _write(path: Path, img_or_src, sidecar: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(img_or_src, Path):
        shutil.copyfile(img_or_src, path)  # real scans go in as they are
    else:
        img_or_src.to_filename(path)
    path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(sidecar, indent=1))


def build_dataset(root: Path) -> Path:
    """Write the three-subject dataset described in the module docstring under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "synthsr e2e", "BIDSVersion": "1.9.0", "License": "CC-BY-4.0"})
    )
    (root / "participants.tsv").write_text("participant_id\nsub-01\nsub-02\nsub-03\n")
    anat = root / "sub-01" / "anat"
    for src, suffix, thick in (("T1", "T1w", 3), ("T2", "T2w", 4), ("FLAIR", "FLAIR", 4)):
        _write(anat / f"sub-01_{suffix}.nii.gz", REAL / "ms-clinical" / f"{src}.nii.gz",
               {"SliceThickness": thick, "MagneticFieldStrength": 1.5})
    hires = nib.load(REAL / "hires-t1" / "T1.nii.gz")
    eye = np.eye(3)
    coronal = eye[:, [0, 2, 1]]  # voxel axes R, S, A: slices along A
    for ses, acq, thick, axes, slice_axis in (
        ("pre", "ax", 5, eye, 2),
        ("pre", "cor", 5, coronal, 2),
        ("pre", "obl", 5, _rotation_x(20), 2),
        ("post", "ax", 6, eye, 2),
    ):
        img = simulate_thick_slices(hires, inplane=1.2, thickness=thick, axes=axes,
                                    slice_axis=slice_axis)
        _write(root / "sub-02" / f"ses-{ses}" / "anat" / f"sub-02_ses-{ses}_acq-{acq}_T1w.nii.gz",
               img, {"SliceThickness": thick, "Simulated": True})
    stroke = nib.load(REAL / "stroke-t2" / "T2.nii.gz")
    axes = stroke.affine[:3, :3] / np.linalg.norm(stroke.affine[:3, :3], axis=0)
    img = simulate_thick_slices(stroke, inplane=1.0, thickness=5, axes=axes)
    _write(root / "sub-03" / "anat" / "sub-03_acq-ax_T2w.nii.gz", img, {"SliceThickness": 5})
    return root


# ----------------------------------------------------------------------------- helpers
def _is_report(relpath: Path) -> bool:
    """The per-subject reports: sub-X.html and sub-X/figures/ (they name the run, its plugin and times)."""
    return "figures" in relpath.parts or (len(relpath.parts) == 1 and relpath.suffix == ".html")


def _digest(root: Path) -> dict[str, str]:
    """SHA-256 of every derivative file (logs and reports excluded: they hold run ids and times)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "logs" not in p.relative_to(root).parts and not _is_report(p.relative_to(root))
    }


def _synthsr_results(work: Path) -> dict[str, int]:
    """Finished SynthSR/fusion nodes: result file -> mtime (ns)."""
    out = {}
    for pattern in ("**/synthsr/result_synthsr.pklz", "**/fusion/result_fusion.pklz"):
        for p in work.glob(pattern):
            out[p.relative_to(work).as_posix()] = p.stat().st_mtime_ns
    return out


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "synthsr_nipype.cli.bids_app", *args]


EXPECTED_SCANS = {
    "sub-01/anat/sub-01_desc-synthsrT1w_T1w": ("sub-01/anat/sub-01_T1w.nii.gz",),
    "sub-01/anat/sub-01_desc-synthsrT2w_T1w": ("sub-01/anat/sub-01_T2w.nii.gz",),
    "sub-01/anat/sub-01_desc-synthsrFLAIR_T1w": ("sub-01/anat/sub-01_FLAIR.nii.gz",),
    "sub-02/ses-pre/anat/sub-02_ses-pre_acq-ax_desc-synthsrT1w_T1w":
        ("sub-02/ses-pre/anat/sub-02_ses-pre_acq-ax_T1w.nii.gz",),
    "sub-02/ses-pre/anat/sub-02_ses-pre_acq-cor_desc-synthsrT1w_T1w":
        ("sub-02/ses-pre/anat/sub-02_ses-pre_acq-cor_T1w.nii.gz",),
    "sub-02/ses-pre/anat/sub-02_ses-pre_acq-obl_desc-synthsrT1w_T1w":
        ("sub-02/ses-pre/anat/sub-02_ses-pre_acq-obl_T1w.nii.gz",),
    "sub-02/ses-post/anat/sub-02_ses-post_acq-ax_desc-synthsrT1w_T1w":
        ("sub-02/ses-post/anat/sub-02_ses-post_acq-ax_T1w.nii.gz",),
    "sub-03/anat/sub-03_acq-ax_desc-synthsrT2w_T1w": ("sub-03/anat/sub-03_acq-ax_T2w.nii.gz",),
}
EXPECTED_FUSED = {
    "sub-01/anat/sub-01_desc-synthsr_T1w": 3,
    "sub-02/ses-pre/anat/sub-02_ses-pre_desc-synthsr_T1w": 3,
    "sub-02/ses-post/anat/sub-02_ses-post_desc-synthsr_T1w": 1,
    "sub-03/anat/sub-03_desc-synthsr_T1w": 1,
}

# the transform of each non-reference scan onto its group's reference synthetic image (which the fused
# image's grid is): none for a reference or a single-scan group; the reference's twin scans (same desc)
# make its space label name its acquisition
EXPECTED_XFMS = {
    "sub-01/anat/sub-01_from-synthsrFLAIR_to-synthsrT2w_mode-image_xfm":
        ("sub-01/anat/sub-01_desc-synthsrFLAIR_T1w", "sub-01/anat/sub-01_desc-synthsrT2w_T1w"),
    "sub-01/anat/sub-01_from-synthsrT1w_to-synthsrT2w_mode-image_xfm":
        ("sub-01/anat/sub-01_desc-synthsrT1w_T1w", "sub-01/anat/sub-01_desc-synthsrT2w_T1w"),
    "sub-02/ses-pre/anat/sub-02_ses-pre_acq-cor_from-synthsrT1w_to-synthsrT1wacqax_mode-image_xfm":
        ("sub-02/ses-pre/anat/sub-02_ses-pre_acq-cor_desc-synthsrT1w_T1w",
         "sub-02/ses-pre/anat/sub-02_ses-pre_acq-ax_desc-synthsrT1w_T1w"),
    "sub-02/ses-pre/anat/sub-02_ses-pre_acq-obl_from-synthsrT1w_to-synthsrT1wacqax_mode-image_xfm":
        ("sub-02/ses-pre/anat/sub-02_ses-pre_acq-obl_desc-synthsrT1w_T1w",
         "sub-02/ses-pre/anat/sub-02_ses-pre_acq-ax_desc-synthsrT1w_T1w"),
}


# each output's reliability map (docs/qc.md): desc-<the output's desc>Reliability, suffix mask
EXPECTED_RELIABILITY = {
    stem.replace("_T1w", "").rsplit("_desc-", 1)[0] + "_desc-" + stem.rsplit("_desc-", 1)[1].replace("_T1w", "")
    + "Reliability_mask": stem
    for stem in [*EXPECTED_SCANS, *EXPECTED_FUSED]
}


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    """Build the dataset and run it once in-process with the Linear plugin."""
    from synthsr_nipype.cli.bids_app import main

    base = tmp_path_factory.mktemp("e2e")
    bids_dir = build_dataset(base / "bids")
    (base / "linear.yml").write_text("plugin: Linear\n")
    (base / "multiproc.yml").write_text(
        "plugin: MultiProc\nplugin_args:\n  n_procs: 2\n  raise_insufficient: false\n"
    )
    out = base / "out_linear"
    start = time.monotonic()
    stderr = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(stderr):
        # Module-scoped: conftest's per-test cache isolation is not active yet.
        mp.setenv("SYNTHSR_CACHE_DIR", str(base / "weight-cache"))
        code = main([
            str(bids_dir), str(out), "participant", "--model", str(TINY),
            "--use-plugin", str(base / "linear.yml"), "--omp-nthreads", "1",
            "-w", str(base / "work_linear"), "--write-graph",
        ])
    return {"base": base, "bids": bids_dir, "out": out, "code": code,
            "seconds": time.monotonic() - start, "stderr": stderr.getvalue()}


def test_e2e_progress_lines_and_log(e2e):
    """Without -v: one line per finished node ("[3/12] sub-01 ... done (41 s)") and a non-empty
    logs/<run>/pypeline.log holding the same lines."""
    import re

    lines = [line for line in e2e["stderr"].splitlines() if re.match(r"^\[\d+/\d+\] .+ done \(\d+ s\)$", line)]
    print("\n".join(lines[:5]), f"\n... {len(lines)} progress lines")
    assert len(lines) >= 4, e2e["stderr"][-2000:]
    assert any(" synthsr " in f" {line} " for line in lines), lines
    counts = [int(re.match(r"^\[(\d+)/", line).group(1)) for line in lines]
    assert counts == list(range(1, len(lines) + 1))
    (log,) = [p for p in (e2e["out"] / "logs").glob("*/pypeline.log")]
    text = log.read_text()
    assert log.stat().st_size > 0 and lines[-1] in text


def test_e2e_exit_code_and_files(e2e):
    assert e2e["code"] == 0
    out = e2e["out"]
    written = {p.relative_to(out).as_posix() for p in out.rglob("sub-*/**/*")
               if p.is_file() and not _is_report(p.relative_to(out))}
    expected = {f"{stem}{ext}" for stem in [*EXPECTED_SCANS, *EXPECTED_FUSED]
                for ext in (".nii.gz", ".json")}
    expected |= {f"{stem}{ext}" for stem in EXPECTED_XFMS for ext in (".txt", ".json")}
    expected |= {f"{stem}{ext}" for stem in EXPECTED_RELIABILITY for ext in (".nii.gz", ".json")}
    assert written == expected
    # No temporary files left behind (outputs appear only when complete).
    assert not [p for p in out.rglob(".*") if p.name != ".bidsignore"]
    for stem in [*EXPECTED_SCANS, *EXPECTED_FUSED]:
        img = nib.load(out / f"{stem}.nii.gz")
        assert np.allclose(img.header.get_zooms()[:3], 1.0, atol=1e-3)
        assert img.get_data_dtype() == np.uint8


def test_e2e_sidecars(e2e):
    from synthsr_nipype import __version__
    from synthsr_nipype.model import load_model

    out, sha = e2e["out"], load_model(str(TINY)).sha256
    for stem, sources in EXPECTED_SCANS.items():
        meta = json.loads((out / f"{stem}.json").read_text())
        assert meta["Sources"] == [f"bids:raw:{s}" for s in sources]
        assert meta["SkullStripped"] is False
        assert meta["Model"] == {"Name": TINY.name, "SHA256": sha}
        assert meta["Flags"] == {"ct": False, "flip": True, "sharpen": True}
        assert meta["SoftwareVersion"] == __version__
        img = nib.load(out / f"{stem}.nii.gz")
        assert meta["Grid"]["Shape"] == list(img.shape)
        assert meta["Grid"]["VoxelSizeMM"] == [1.0, 1.0, 1.0]
        assert meta["Grid"]["Description"] == "1 mm isotropic grid"
    for stem, n in EXPECTED_FUSED.items():
        meta = json.loads((out / f"{stem}.json").read_text())
        assert meta["FusionInputs"] == n
        assert meta["FusionMethod"] == ("median" if n > 1 else "pass-through")
        assert meta["SkullStripped"] is False and meta["Model"]["SHA256"] == sha
        assert len(meta["Sources"]) == n
        for uri in meta["Sources"]:  # the per-scan derivatives of this dataset
            assert uri.startswith("bids::") and (out / uri[len("bids::"):]).is_file()


def test_e2e_reliability_maps_and_qc(e2e):
    """Every SynthSR output and fused image has its reliability map (float, [0, 1], on its grid) and its QC
    numbers in its own sidecar; three 5 mm scans fused are more reliable than any one of them (issue 25)."""
    out = e2e["out"]
    means = {}
    for stem, image in EXPECTED_RELIABILITY.items():
        rel, img = nib.load(out / f"{stem}.nii.gz"), nib.load(out / f"{image}.nii.gz")
        data = rel.get_fdata()
        assert rel.get_data_dtype() == np.float32 and rel.shape == img.shape
        assert np.allclose(rel.affine, img.affine, atol=1e-4)
        assert data.min() >= 0 and data.max() <= 1 and data.max() > 0
        meta = json.loads((out / f"{stem}.json").read_text())
        assert meta["Sources"][0] == f"bids::{image}.nii.gz" and "Formula" in meta
        qc = json.loads((out / f"{image}.json").read_text())["ReliabilityQC"]
        assert qc == meta["QC"] and 0 <= qc["MeanReliability"] <= 1
        means[image] = qc["MeanReliability"]
    for stem in EXPECTED_SCANS:
        qc = json.loads((out / f"{stem}.json").read_text())["ReliabilityQC"]
        assert 0 <= qc["UncoveredFraction"] <= 1 and 0 <= qc["TTADisagreement"] <= 1
    pre = "sub-02/ses-pre/anat/sub-02_ses-pre_"
    singles = [means[f"{pre}acq-{acq}_desc-synthsrT1w_T1w"] for acq in ("ax", "cor", "obl")]
    print(f"sub-02 ses-pre mean reliability: single scans {singles}, fused {means[pre + 'desc-synthsr_T1w']}")
    assert means[pre + "desc-synthsr_T1w"] > max(singles)
    fused = json.loads((out / f"{pre}desc-synthsr_T1w.json").read_text())["ReliabilityQC"]
    assert len(fused["RegistrationResidual"]) == 3 and fused["MeanScansCovering"] > 1
    # the scans' grids moved onto the fused grid: less of the brain far from every slice than of one 5 mm scan's
    scans = [json.loads((out / f"{pre}acq-{acq}_desc-synthsrT1w_T1w.json").read_text())["ReliabilityQC"]
             for acq in ("ax", "cor", "obl")]
    print(f"sub-02 ses-pre UncoveredFraction: single scans {[qc['UncoveredFraction'] for qc in scans]}, "
          f"fused {fused['UncoveredFraction']}")
    assert 0 <= fused["UncoveredFraction"] <= min(qc["UncoveredFraction"] for qc in scans) + 0.01


def test_e2e_transforms(e2e):
    """Each non-reference scan's transform onto its reference's synthetic image: ITK text that ANTs
    reads, a rigid motion that resamples the scan onto the reference's (= the fused image's) grid;
    the sidecar names both images; no transform (no identity) for references and single-scan groups."""
    import ants

    out = e2e["out"]
    assert not list(out.glob("sub-02/ses-post/anat/*xfm*")) and not list(out.glob("sub-03/anat/*xfm*"))
    for stem, (scan, reference) in EXPECTED_XFMS.items():
        meta = json.loads((out / f"{stem}.json").read_text())
        assert meta["Sources"] == [f"bids::{scan}.nii.gz", f"bids::{reference}.nii.gz"]
        assert "Grid" not in meta and "SkullStripped" not in meta
        assert meta["FusionRegistration"]["Transform"] == "Rigid"
        tx = ants.read_transform(str(out / f"{stem}.txt"))
        params = np.asarray(tx.parameters, dtype=float)
        rotation = params[:9].reshape(3, 3)
        assert np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-3)  # rigid
        assert not np.allclose(params, np.r_[np.eye(3).ravel(), 0, 0, 0])  # these scans moved
        # it resamples the scan onto the reference's grid, the grid of the fused image
        ref_img = nib.load(out / f"{reference}.nii.gz")
        fused = next(f for f in EXPECTED_FUSED if f.split("/anat/")[0] == scan.split("/anat/")[0])
        assert np.allclose(nib.load(out / f"{fused}.nii.gz").affine, ref_img.affine)


def test_e2e_dataset_description_and_logs(e2e):
    from synthsr_nipype import CODE_URL, __version__

    out = e2e["out"]
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0] == {"Name": "synthsr-nipype", "Version": __version__,
                                      "CodeURL": CODE_URL}
    assert desc["SourceDatasets"][0]["URL"] == e2e["bids"].resolve().as_uri()
    assert desc["DatasetLinks"]["raw"] == e2e["bids"].resolve().as_uri()
    assert desc["License"] == "CC-BY-4.0"
    citation = (out / "logs" / "CITATION.md").read_text()
    assert "SynthSR" in citation and "median" in citation and "[synthsr1]" in citation
    assert (out / "logs" / "graph.dot").is_file()
    if shutil.which("dot"):  # graphviz (installed by .ci/run) renders the picture
        assert (out / "logs" / "graph.svg").is_file()
    assert "logs/" in (out / ".bidsignore").read_text()
    # the run's settings, for provenance: one file per run, the model by its absolute path
    (recorded,) = (out / "logs").glob("*/settings.json")
    settings = json.loads(recorded.read_text())
    assert settings["synthsr"]["model"] == str(TINY.resolve())
    assert settings["run"]["bids_dir"] == str(e2e["bids"].resolve())


@pytest.mark.skipif(not VALIDATOR_AVAILABLE, reason="bids-validator-deno not installed (pip install it)")
def test_e2e_passes_the_bids_schema_validator(e2e):
    assert bids_validator_errors(e2e["out"]) == []


def test_e2e_pybids_reindex_and_roundtrip(e2e):
    from bids import BIDSLayout
    from bids.layout.writing import build_path

    from synthsr_nipype.bids.derivatives import (
        EXTENDED_ANAT_PATTERN,
        XFM_PATTERN,
        pybids_derivative_patterns,
    )

    out = e2e["out"]
    layout = BIDSLayout(str(out), config=["bids", "derivatives"], validate=False)
    files = {Path(f.path).relative_to(out).as_posix(): f for f in layout.get()
             if Path(f.path).name.startswith("sub-") and not _is_report(Path(f.path).relative_to(out))}
    assert len(files) == 2 * (len(EXPECTED_SCANS) + len(EXPECTED_FUSED) + len(EXPECTED_XFMS)
                              + len(EXPECTED_RELIABILITY))
    patterns = pybids_derivative_patterns() + [EXTENDED_ANAT_PATTERN, XFM_PATTERN]
    keys = {"ses": "session", "acq": "acquisition", "desc": "desc", "from": "from", "to": "to", "mode": "mode"}
    for rel, bids_file in files.items():
        ents = bids_file.get_entities()
        name = Path(rel).name
        stem, dot, extension = rel.partition(".")
        parts = stem.rsplit("/", 1)[1].split("_")
        expected = {"subject": parts[0][4:], "suffix": parts[-1], "datatype": "anat", "extension": dot + extension}
        for part in parts[1:-1]:
            key, _, value = part.partition("-")
            expected[keys[key]] = value
        assert {k: str(v) for k, v in ents.items()} == expected, rel
        assert build_path(ents, patterns, strict=True) == rel, rel
        assert any(stem in group for group in (EXPECTED_SCANS, EXPECTED_FUSED, EXPECTED_XFMS,
                                               EXPECTED_RELIABILITY)), name


def test_e2e_interrupt_rerun_multiproc_identical(e2e):
    """Kill a MultiProc run mid-way, rerun on the CPU device: finished nodes are reused,
    and the outputs are byte-identical to the Linear run."""
    base, bids_dir = e2e["base"], e2e["bids"]
    out, work = base / "out_mp", base / "work_mp"
    args = [str(bids_dir), str(out), "participant", "--model", str(TINY), "--omp-nthreads",
            "1", "--use-plugin", str(base / "multiproc.yml"), "-w", str(work)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(_cli(*args), start_new_session=True, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 400
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done = _synthsr_results(work)
            if len([k for k in done if k.endswith("result_synthsr.pklz")]) >= 2:
                break
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finished = _synthsr_results(work)
    assert 2 <= len(finished) < 12, "the run should have been interrupted part-way"
    assert proc.returncode != 0

    # Same command, but device cpu (not hashed): the cache still applies.
    rerun = subprocess.run(_cli(*args, "--device", "cpu"), env=env, capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = _synthsr_results(work)
    assert len(after) == 8 + 4
    for node, mtime in finished.items():
        assert after[node] == mtime, f"{node} was recomputed"
    assert _digest(out) == _digest(e2e["out"])


# ----------------------------------------------------------------------------- per-subject reports
def _scan_sections(html: str) -> list[str]:
    return re.findall(r'<section class="scan" data-scan="([^"]+)"', html)


def test_e2e_subject_reports(e2e):
    """sub-X.html for every subject: one section per scan, every figure written in sub-X/figures/,
    methods, provenance (command, plugin, model SHA-256, run time per node)."""
    import hashlib as _hashlib

    out = e2e["out"]
    tiny_sha = _hashlib.sha256(TINY.read_bytes()).hexdigest()
    for subject in ("01", "02", "03"):
        html = (out / f"sub-{subject}.html").read_text()
        scans = sorted(src for (src,) in EXPECTED_SCANS.values() if src.startswith(f"sub-{subject}/"))
        assert sorted(_scan_sections(html)) == scans
        figures = re.findall(r'<img src="([^"]+)"', html)
        assert figures and all(f.startswith(f"sub-{subject}/figures/") and f.endswith(".svg") for f in figures)
        assert all((out / f).is_file() for f in figures)
        kinds = [re.search(r"_desc-([a-z]+)", Path(f).name).group(1) for f in figures]
        assert kinds.count("input") == kinds.count("outline") == kinds.count("synthsr") == len(scans)
        # registration figures for the non-reference scans of multi-scan groups (sub-01; sub-02 ses-pre)
        assert kinds.count("registration") == {"01": 2, "02": 2, "03": 0}[subject]
        assert kinds.count("fused") == {"01": 1, "02": 2, "03": 1}[subject]
        # the reliability map over every output and every fused image (issue 25)
        assert kinds.count("reliability") == len(scans) + kinds.count("fused")
        assert "QC MeanReliability" in html
        assert tiny_sha in html and "--model" in html and "Linear" in html
        assert "Results included in this manuscript come from synthsr-nipype" in html  # logs/CITATION.md
        assert re.search(r"<code>synthsr_[\w.]+</code></td><td>[0-9.]+ s</td>", html), "no run times"
    assert (out / ".bidsignore").read_text().count("sub-*/figures\n") == 1


def test_e2e_reports_only_rebuilds_without_running(e2e, tmp_path):
    from synthsr_nipype.cli.bids_app import main

    out = tmp_path / "out"
    shutil.copytree(e2e["out"], out)
    for page in out.glob("sub-*.html"):
        page.unlink()
    shutil.rmtree(out / "sub-02" / "figures")
    work = e2e["base"] / "work_linear"
    results = _synthsr_results(work)
    runs = sorted((out / "logs").iterdir())
    code = main([str(e2e["bids"]), str(out), "participant", "--model", str(TINY), "-w", str(work),
                 "--reports-only"])
    assert code == 0
    assert sorted(p.name for p in out.glob("sub-*.html")) == ["sub-01.html", "sub-02.html", "sub-03.html"]
    assert (out / "sub-02" / "figures").is_dir()
    assert _synthsr_results(work) == results and sorted((out / "logs").iterdir()) == runs  # nothing ran
    assert _digest(out) == _digest(e2e["out"])  # the derivatives are untouched


def test_e2e_reports_only_reads_the_earlier_runs_settings(e2e, tmp_path, capsys):
    """Without the options of the run that made the outputs (here its --model), --reports-only plans with the
    ones that run recorded in logs/<run>/settings.json: the same pages, nothing run."""
    from synthsr_nipype.cli.bids_app import main

    out = tmp_path / "out"
    shutil.copytree(e2e["out"], out)
    before = {p.name: p.read_text() for p in out.glob("sub-*.html")}
    for page in out.glob("sub-*.html"):
        page.unlink()
    work = e2e["base"] / "work_linear"
    results = _synthsr_results(work)
    code = main([str(e2e["bids"]), str(out), "participant", "-w", str(work), "--reports-only"])
    err = capsys.readouterr().err
    print(err)
    assert code == 0, err
    assert f"(model {TINY.resolve()}" in err and "are used, not this command's" in err
    assert sorted(p.name for p in out.glob("sub-*.html")) == sorted(before)
    assert "tiny_weights" in (out / "sub-01.html").read_text()
    assert _synthsr_results(work) == results  # nothing ran


def test_e2e_reports_only_needs_an_earlier_run(e2e, tmp_path, capsys):
    from synthsr_nipype.cli.bids_app import main

    code = main([str(e2e["bids"]), str(tmp_path / "empty"), "participant", "--model", str(TINY),
                 "--reports-only"])
    assert code == 1
    assert "--reports-only: no earlier run" in capsys.readouterr().err


@pytest.mark.skipif(find_chromium() is None, reason="no headless Chromium (apt-get install chromium)")
def test_e2e_subject_report_in_headless_chromium(e2e, tmp_path):
    """The page as a reader's browser shows it: every figure loads, no script error, one section per scan;
    with one figure deleted, the page names the missing file."""
    from synthsr_nipype.reports.browser import render_dom, screenshot

    out = tmp_path / "out"
    shutil.copytree(e2e["out"], out)
    page = out / "sub-02.html"
    dom = render_dom(page)
    body = dict(re.findall(r'([\w-]+)="([^"]*)"', re.search(r"<body\b([^>]*)>", dom).group(1)))
    expected = int(body["data-figures-expected"])
    assert expected >= 4 * 4 and body["data-figures-loaded"] == str(expected)
    assert body["data-figures-broken"] == "0" and body["data-script-errors"] == "0"
    assert len(_scan_sections(dom)) == 4
    png = screenshot(page, tmp_path / "sub-02.png", width=1100, height=3000)
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 50_000

    missing = min((out / "sub-02" / "figures").glob("*_desc-outline*.svg"))
    missing.unlink()
    dom = render_dom(page)
    body = dict(re.findall(r'([\w-]+)="([^"]*)"', re.search(r"<body\b([^>]*)>", dom).group(1)))
    assert body["data-figures-broken"] == "1"
    assert int(body["data-figures-loaded"]) == expected - 1
    assert f"Missing figure: sub-02/figures/{missing.name}" in dom


def test_e2e_error_exit_codes(e2e, tmp_path):
    """Exit codes through a real process: missing model 2, bad label 1, one line, no traceback."""
    missing = subprocess.run(
        _cli(str(e2e["bids"]), str(tmp_path / "o"), "participant", "--model",
             str(tmp_path / "absent.h5"), "-w", str(tmp_path / "w")),
        capture_output=True, text=True, timeout=300,
    )
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr and "absent.h5" in missing.stderr
    bad = subprocess.run(
        _cli(str(e2e["bids"]), str(tmp_path / "o"), "participant", "--participant-label",
             "../x", "--model", str(TINY), "-w", str(tmp_path / "w")),
        capture_output=True, text=True, timeout=300,
    )
    assert bad.returncode == 1
    assert bad.stderr.strip().count("\n") == 0 and "../x" in bad.stderr
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- morphometry
#: the subset of the dataset that the morphometry run processes (--participant-label 02):
#: two sessions, one fused from three scans, one single scan
MORPH_GROUPS = (("02", "post"), ("02", "pre"))
TISSUES = ["CSF", "GM", "WM"]


@pytest.fixture(scope="module")
def morph(e2e):
    """Participant level with ``--seg-backend ants --tbm`` (2 mm template, MultiProc with two
    processes, through a real process) on sub-02, then the group level in-process.

    It reuses the Linear run's work directory: the SynthSR and fusion nodes are cached there,
    so only the morphometry runs (~1-1.5 min per subject/session on one thread)."""
    base = e2e["base"]
    out = base / "out_morph"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SYNTHSR_CACHE_DIR": str(base / "weight-cache")}
    start = time.monotonic()
    proc = subprocess.run(
        _cli(str(e2e["bids"]), str(out), "participant", "--model", str(TINY),
             "--participant-label", "02", "--seg-backend", "ants", "--tbm",
             "--template-resolution", "2", "--omp-nthreads", "1",
             "--use-plugin", str(base / "multiproc.yml"), "-w", str(base / "work_linear")),
        env=env, capture_output=True, text=True, timeout=900,
    )
    participant_seconds = time.monotonic() - start
    from synthsr_nipype.cli.bids_app import main

    group_code = main([str(e2e["bids"]), str(out), "group"])
    return {"out": out, "bids": e2e["bids"], "proc": proc, "group_code": group_code,
            "participant_seconds": participant_seconds}


def _morph_names(sub: str, ses: str) -> dict[str, str]:
    from synthsr_nipype.morphometry.derivatives import derivative_names

    return derivative_names(sub, ses, "ants")


def test_morph_participant_outputs_and_sidecars(morph):
    from synthsr_nipype.morphometry.derivatives import sidecar_name

    proc, out = morph["proc"], morph["out"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ants morphometry and TBM" in proc.stdout
    for sub, ses in MORPH_GROUPS:
        anat = out / f"sub-{sub}" / f"ses-{ses}" / "anat"
        fused_rel = f"sub-{sub}/ses-{ses}/anat/sub-{sub}_ses-{ses}_desc-synthsr_T1w.nii.gz"
        fused = nib.load(out / fused_rel)
        names = _morph_names(sub, ses)
        thickness = {key: names.pop(key) for key in ("thickness", "thickness_tsv")}
        assert set(names) == {"dseg", "dseg_tsv", "brain_mask", "morph_tsv", "to_template_xfm",
                              "from_template_xfm", "logjacobian", "probseg_CSF", "probseg_GM",
                              "probseg_WM"}
        # this run did not ask for --thickness: none written
        assert not any((anat / name).exists() for name in thickness.values()), thickness
        for key, name in names.items():
            assert (anat / name).is_file(), name
            if key == "dseg_tsv":  # described by the dseg sidecar
                continue
            side = json.loads((anat / sidecar_name(name)).read_text())
            assert side["Sources"] == [f"bids::{fused_rel}"], name
            assert side["SegmentationBackend"] == "ants" and side["TemplateResolution"] == 2
            assert side["SynthSRModel"]["Name"] == TINY.name
            assert side["Deterministic"] is True and side["RandomSeed"]
        # segmentation on the SynthSR grid, TBM on the (2 mm) template grid
        for key in ("dseg", "brain_mask", "probseg_GM"):
            img = nib.load(anat / names[key])
            assert img.shape == fused.shape and np.allclose(img.affine, fused.affine)
        assert set(np.unique(np.asarray(nib.load(anat / names["dseg"]).dataobj))) <= {0, 1, 2, 3}
        lj = nib.load(anat / names["logjacobian"])
        assert np.allclose(lj.header.get_zooms()[:3], 2.0) and lj.get_data_dtype() == np.float32
        lut = (anat / names["dseg_tsv"]).read_text().splitlines()
        assert lut[0].split("\t")[:2] == ["index", "name"] and len(lut) == 4
    # only the selected participant, no temporary files, .bidsignore merged (each line once)
    assert not list(out.glob("sub-01")) and not list(out.glob("sub-03"))
    assert not [p for p in out.rglob(".*") if p.name != ".bidsignore"]
    ignore = (out / ".bidsignore").read_text().splitlines()
    assert "logs/" in ignore and "*_morph.tsv" in ignore and "group/" in ignore
    assert len(ignore) == len(set(ignore))


def test_morph_subject_report_shows_segmentation_legend_tbm_and_ml(morph):
    """sub-02.html of the --seg-backend ants --tbm run: per session the segmentation contours with their
    legend, the TBM map, the volumes in mL as the table gives them, Methods as HTML in data-flow order."""
    from synthsr_nipype.atomic import read_tsv
    from synthsr_nipype.morphometry.volumetry import format_ml

    out = morph["out"]
    html = (out / "sub-02.html").read_text()
    legends = re.findall(r'<ul class="legend">(.*?)</ul>', html, flags=re.S)
    assert len(legends) == len(MORPH_GROUPS)
    for legend in legends:
        assert re.findall(r"</span>([^<]+)</li>", legend) == ["Cerebrospinal fluid", "Gray matter", "White matter"]
    for sub, ses in MORPH_GROUPS:
        svg = f"sub-{sub}/figures/sub-{sub}_ses-{ses}_space-MNI152NLin2009aSym_desc-logjacobian_map.svg"
        assert f'<img src="{svg}"' in html and (out / svg).is_file()
        table = read_tsv(out / f"sub-{sub}" / f"ses-{ses}" / "anat" / _morph_names(sub, ses)["morph_tsv"])
        gm = float(table.set_index("name").loc["GM", "volume-mm3"])
        assert f"<td>{format_ml(gm)}</td>" in html
    methods = html[html.index('<section id="methods">'):html.index('<section id="errors">')]
    assert "[@" not in methods and methods.index("SynthSR [<a") < methods.index("MNI152NLin2009aSym")
    assert "sessions</th><td>ses-post, ses-pre" in html or "sessions</th><td>ses-pre, ses-post" in html


def test_morph_outputs_reindex_with_pybids(morph):
    from bids import BIDSLayout

    out = morph["out"]
    layout = BIDSLayout(str(out), config=["bids", "derivatives"], validate=False)
    for ses in ("pre", "post"):
        q = {"subject": "02", "session": ses, "return_type": "filename"}
        assert len(layout.get(suffix="dseg", segmentation="ants", extension=".nii.gz", **q)) == 1
        assert len(layout.get(suffix="dseg", segmentation="ants", extension=".tsv", **q)) == 1
        labels = {layout.get_file(f).entities["label"]
                  for f in layout.get(suffix="probseg", segmentation="ants", extension=".nii.gz", **q)}
        assert labels == set(TISSUES)
        assert len(layout.get(suffix="mask", desc="brain", segmentation="ants",
                              extension=".nii.gz", **q)) == 1
        assert len(layout.get(suffix="morph", desc="volume", segmentation="ants",
                              extension=".tsv", **q)) == 1
        xfms = layout.get(suffix="xfm", extension=".h5", **q)
        assert {(layout.get_file(f).entities["from"], layout.get_file(f).entities["to"])
                for f in xfms} == {("T1w", "MNI152NLin2009aSym"), ("MNI152NLin2009aSym", "T1w")}
        assert len(layout.get(suffix="map", desc="logjacobian", space="MNI152NLin2009aSym",
                              extension=".nii.gz", **q)) == 1
        # every morphometry image and table has its sidecar, found by pybids
        images = layout.get(segmentation="ants", extension=".nii.gz", **q)
        assert len(images) == 5  # dseg, mask, three probsegs
        for f in images:
            assert Path(f.replace(".nii.gz", ".json")).is_file()


def test_group_level_tables_figures_and_html(morph):
    from synthsr_nipype.atomic import read_tsv

    assert morph["group_code"] == 0
    out = morph["out"]
    group = out / "group"
    wide = read_tsv(group / "volumes.tsv")
    assert list(wide.columns) == ["participant_id", "session_id", "seg_backend", "synthsr_model",
                                  *TISSUES, "TIV"]
    assert [tuple(r) for r in wide[["participant_id", "session_id"]].values] == [
        (f"sub-{s}", f"ses-{t}") for s, t in MORPH_GROUPS]
    assert set(wide["seg_backend"]) == {"ants"} and set(wide["synthsr_model"]) == {TINY.name}
    for _, row in wide.iterrows():
        sub, ses = row["participant_id"][4:], row["session_id"][4:]
        anat = out / f"sub-{sub}" / f"ses-{ses}" / "anat"
        table = read_tsv(anat / _morph_names(sub, ses)["morph_tsv"])
        mine = dict(zip(table["name"], table["volume-mm3"]))
        assert {k: row[k] for k in [*TISSUES, "TIV"]} == pytest.approx(mine)
        # posteriors sum to one inside the mask: tissue volumes add up to the TIV
        assert sum(row[t] for t in TISSUES) == pytest.approx(row["TIV"], rel=5e-3)
        assert 0 < row["TIV"] < 4e6  # mm^3
    long = read_tsv(group / "volumes_long.tsv")
    assert len(long) == len(MORPH_GROUPS) * 4
    assert {"participant_id", "session_id", "index", "name", "volume-mm3"} <= set(long.columns)
    z = read_tsv(group / "zscores.tsv")
    assert list(z.columns) == ["participant_id", "session_id", "name", "volume-mm3", "z",
                               "icv_fraction", "z_icv", "outlier"]
    assert len(z) == len(MORPH_GROUPS) * 4
    # two rows: no z-scores (every z would be +-1/sqrt(2)), no distributions; the values are shown
    assert z["z"].isna().all() and not z["outlier"].any()
    html = (group / "group.html").read_text()
    assert "fewer than 11" in html and not (group / "figures" / "volumes.svg").exists()
    assert "sub-02" in html and TINY.name in html
    # the scans ranked by QC, each linked to its report; each structure's mean reliability in the tables
    qc = read_tsv(group / "qc.tsv")
    # ses-pre: 3 scans + fused; ses-post: 1 + fused
    assert len(qc) == 6 and list(qc["MeanReliability"]) == sorted(qc["MeanReliability"])
    assert '<a href="../sub-02.html">' in html
    for _, row in wide.iterrows():
        table = read_tsv(out / row["participant_id"] / row["session_id"] / "anat"
                         / _morph_names(row["participant_id"][4:], row["session_id"][4:])["morph_tsv"])
        assert table["mean-reliability"].between(0, 1).all()


def test_group_level_refuses_to_mix_and_selects(morph, tmp_path, capsys):
    """A second backend's volumes in the same folder: refused (1) until one is selected."""
    from synthsr_nipype.atomic import read_tsv
    from synthsr_nipype.cli.bids_app import main
    from synthsr_nipype.morphometry.derivatives import derivative_names

    out = tmp_path / "out"
    shutil.copytree(morph["out"], out, ignore=shutil.ignore_patterns("logs", "group", "*.nii.gz", "*.h5"))
    anat = out / "sub-03" / "anat"
    anat.mkdir(parents=True)
    name = derivative_names("03", None, "synthseg")["morph_tsv"]
    (anat / name).write_text("index\tname\tvolume-mm3\n17\tLeft-Hippocampus\t4000\nn/a\tTIV\t1500000\n")
    (anat / name.replace(".tsv", ".json")).write_text(json.dumps(
        {"SegmentationBackend": "synthseg", "SynthSRModel": {"Name": TINY.name}}))
    bids = str(morph["bids"])
    assert main([bids, str(out), "group"]) == 1
    err = capsys.readouterr().err
    assert "refusing to mix seg backends" in err and err.strip().count("\n") == 0
    assert not (out / "group").exists()
    assert main([bids, str(out), "group", "--seg-backend", "ants"]) == 0
    assert len(read_tsv(out / "group" / "volumes.tsv")) == len(MORPH_GROUPS)
    assert main([bids, str(out), "group", "--seg-backend", "synthseg"]) == 0
    assert list(read_tsv(out / "group" / "volumes.tsv")["participant_id"]) == ["sub-03"]
    # --model selects by the sidecars' model name (a file: its name; v2: none here)
    assert main([bids, str(out), "group", "--seg-backend", "ants", "--model", str(TINY)]) == 0
    assert main([bids, str(out), "group", "--seg-backend", "ants", "--model", "v2"]) == 1
    assert "model='v2'" in capsys.readouterr().err


def test_freesurfer_backend_missing_exit_2_real_process(e2e, tmp_path):
    """Through a real process: no FreeSurfer → exit 2, one line naming what is missing, and
    nothing written (no output folder, no work folder)."""
    env = {k: v for k, v in os.environ.items() if k not in ("FREESURFER_HOME", "FS_LICENSE")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    out, work = tmp_path / "out", tmp_path / "work"
    proc = subprocess.run(
        _cli(str(e2e["bids"]), str(out), "participant", "--model", str(TINY),
             "--seg-backend", "synthseg-fs", "-w", str(work)),
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "mri_synthseg not found on PATH; FREESURFER_HOME is unset" in proc.stderr
    assert not out.exists() and not work.exists()
