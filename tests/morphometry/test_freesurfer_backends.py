"""FreeSurfer backends: command lines (always), availability checks, output parsers; real runs
only where FreeSurfer is installed (``FREESURFER_HOME`` set)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import nibabel as nb
import numpy as np
import pytest

from synthsr_nipype.atomic import read_tsv
from synthsr_nipype.interfaces.freesurfer import FreeSurferVolumetry, MRISynthSeg, SAMSeg
from synthsr_nipype.morphometry import freesurfer as fs
from tests.paths import SHARED

HAS_FS = bool(os.environ.get("FREESURFER_HOME"))
needs_fs = pytest.mark.skipif(not HAS_FS, reason="FreeSurfer not installed (FREESURFER_HOME is unset)")


@pytest.fixture
def t1w(tmp_path):
    img = nb.Nifti1Image(np.zeros((8, 8, 8), np.uint8), np.diag([2.0, 2.0, 2.0, 1.0]))
    path = tmp_path / "sub-01_desc-synthsr_T1w.nii.gz"
    img.to_filename(path)
    return path


# ----------------------------------------------------------------------------- command lines
def test_synthseg_interface_cmdline(t1w, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seg = MRISynthSeg(in_file=str(t1w), threads=4)
    assert seg.cmdline == (
        f"mri_synthseg --i {t1w} --o sub-01_desc-synthsr_T1w_synthseg.nii.gz --cpu --robust "
        "--threads 4 --vol sub-01_desc-synthsr_T1w_volumes.csv"
    )
    seg = MRISynthSeg(in_file=str(t1w), parc=True, robust=False, cpu=False, out_file="s.nii.gz", vol_file="v.csv")
    assert seg.cmdline == f"mri_synthseg --i {t1w} --o s.nii.gz --parc --threads 1 --vol v.csv"


def test_synthseg_threads_do_not_change_the_hash(t1w):
    a, b = MRISynthSeg(in_file=str(t1w), threads=1), MRISynthSeg(in_file=str(t1w), threads=8, cpu=False)
    assert a.inputs.get_hashval()[1] == b.inputs.get_hashval()[1]


def test_samseg_cmdline(t1w):
    sam = SAMSeg(in_files=[str(t1w)], threads=3, output_dir="samseg_out")
    assert sam.cmdline == f"run_samseg --input {t1w} --output samseg_out --threads 3"
    outs = sam._list_outputs()
    assert outs["seg_file"].endswith("samseg_out/seg.mgz") and outs["tiv_file"].endswith("sbtiv.stats")
    both = SAMSeg(in_files=[str(t1w), str(t1w)], output_dir="o")
    assert both.cmdline == f"run_samseg --input {t1w} {t1w} --output o --threads 1"


def test_recon_all_and_segstats_cmdlines(t1w, tmp_path):
    from nipype.interfaces.freesurfer import ReconAll, SegStats

    recon = ReconAll(subject_id="sub-01", directive="all", subjects_dir=str(tmp_path), T1_files=str(t1w),
                     openmp=4)
    assert recon.cmdline == f"recon-all -all -i {t1w} -openmp 4 -subjid sub-01 -sd {tmp_path}"
    stats = SegStats(segmentation_file=str(t1w), default_color_table=True, exclude_id=0, etiv=True,
                     summary_file="aseg_segstats.stats", args="--subject sub-01")
    assert stats.cmdline == (
        f"mri_segstats --subject sub-01 --ctab-default --etiv --excludeid 0 --seg {t1w} --sum ./aseg_segstats.stats"
    )


def test_workflow_recon_all_passes_license(tmp_path):
    from synthsr_nipype.settings import MorphometryOptions
    from synthsr_nipype.workflows.morphometry import init_morphometry_wf

    lic = tmp_path / "license.txt"
    lic.write_text("x")
    wf = init_morphometry_wf(MorphometryOptions(seg_backend="recon-all", fs_license_file=str(lic),
                                                fs_subjects_dir=str(tmp_path)), omp_nthreads=3)
    recon = wf.get_node("recon_all")
    assert recon.inputs.environ == {"FS_LICENSE": str(lic)}
    assert recon.inputs.openmp == 3 and recon.inputs.subjects_dir == str(tmp_path)


# ----------------------------------------------------------------------------- availability
def _fake_exe(folder: Path, name: str) -> None:
    exe = folder / name
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)


def test_missing_freesurfer_is_detected(tmp_path):
    env = {"PATH": str(tmp_path)}
    assert fs.check_backend_available("synthseg-fs", environ=env) == (
        "mri_synthseg not found on PATH; FREESURFER_HOME is unset")
    assert fs.check_backend_available("samseg", environ=env) == "run_samseg not found on PATH; FREESURFER_HOME is unset"
    msg = fs.check_backend_available("recon-all", environ={"PATH": str(tmp_path), "FREESURFER_HOME": "/opt/fs"})
    assert msg == "recon-all, mri_segstats not found on PATH; FREESURFER_HOME=/opt/fs"
    assert fs.check_backend_available("ants", environ=env) is None
    with pytest.raises(ValueError):
        fs.check_backend_available("spm")


def test_available_with_executables_and_license(tmp_path):
    for exe in ("mri_synthseg", "run_samseg", "recon-all", "mri_segstats"):
        _fake_exe(tmp_path, exe)
    env = {"PATH": str(tmp_path), "FREESURFER_HOME": str(tmp_path)}
    assert fs.check_backend_available("synthseg-fs", environ=env) is None
    assert fs.check_backend_available("samseg", environ=env) is None
    assert "license not found" in fs.check_backend_available("recon-all", environ=env)
    lic = tmp_path / "lic.txt"
    lic.write_text("x")
    assert fs.check_backend_available("recon-all", environ=env, fs_license_file=lic) is None
    assert fs.check_backend_available("recon-all", environ={**env, "FS_LICENSE": str(lic)}) is None
    (tmp_path / "license.txt").write_text("x")
    assert fs.check_backend_available("recon-all", environ=env) is None
    assert fs.find_license(environ=env) == tmp_path / "license.txt"


def test_freesurfer_version(tmp_path):
    assert fs.freesurfer_version({}) is None
    (tmp_path / "build-stamp.txt").write_text("freesurfer-linux-ubuntu22_x86_64-7.4.1-20230614-7eb8460\n")
    assert fs.freesurfer_version({"FREESURFER_HOME": str(tmp_path)}).endswith("7.4.1-20230614-7eb8460")


# ----------------------------------------------------------------------------- parsers
SYNTHSEG_CSV = (
    "subject,total intracranial,left cerebral white matter,left cerebral cortex,left hippocampus,ctx-lh-bankssts\n"
    "/data/sub-01_T1w.nii.gz,1500000.5,230000.25,250000.0,4000.0,2500.0\n"
)
SAMSEG_STATS = "# Measure Left-Cerebral-White-Matter, 230000.100, mm^3\n# Measure Left-Hippocampus, 4100.000, mm^3\n"
SBTIV_STATS = "# Measure Intra-Cranial, 1450000.000, mm^3\n"
SEGSTATS = """# Title Segmentation Statistics
# Measure EstimatedTotalIntraCranialVol, eTIV, Estimated Total Intracranial Volume, 1520000.000000, mm^3
# NRows 2
# ColHeaders  Index SegId NVoxels Volume_mm3 StructName normMean normStdDev normMin normMax normRange
  1   2   230500   230500.0  Left-Cerebral-White-Matter  0 0 0 0 0
  2  17     4200     4200.0  Left-Hippocampus            0 0 0 0 0
"""


def test_parse_synthseg_csv(tmp_path):
    csv = tmp_path / "vol.csv"
    csv.write_text(SYNTHSEG_CSV)
    rows = fs.parse_synthseg_volumes(csv)
    assert rows[0] == (None, "TIV", 1500000.5)
    assert rows[1] == (2, "left cerebral white matter", 230000.25)
    assert rows[3] == (17, "left hippocampus", 4000.0)
    assert rows[4] == (None, "ctx-lh-bankssts", 2500.0)


def test_parse_stats_files(tmp_path):
    (tmp_path / "samseg.stats").write_text(SAMSEG_STATS)
    (tmp_path / "sbtiv.stats").write_text(SBTIV_STATS)
    (tmp_path / "aseg.stats").write_text(SEGSTATS)
    assert fs.parse_freesurfer_stats(tmp_path / "samseg.stats") == [
        (2, "Left-Cerebral-White-Matter", 230000.1), (17, "Left-Hippocampus", 4100.0)]
    assert fs.parse_freesurfer_stats(tmp_path / "sbtiv.stats") == [(None, "TIV", 1450000.0)]
    assert fs.parse_freesurfer_stats(tmp_path / "aseg.stats") == [
        (None, "TIV", 1520000.0), (2, "Left-Cerebral-White-Matter", 230500.0), (17, "Left-Hippocampus", 4200.0)]


def test_freesurfer_volumetry_interface(tmp_path, monkeypatch):
    """A 1 mm FreeSurfer label map onto a 2 mm reference grid, volumes from the tool's table."""
    labels = np.zeros((16, 16, 16), np.int32)
    labels[2:8, 2:14, 2:14] = 2
    labels[8:14, 2:14, 2:14] = 41
    labels[6:10, 6:10, 6:10] = 1035  # a parcel (--parc) not in the aseg table
    seg = tmp_path / "seg.nii.gz"
    nb.Nifti1Image(labels, np.eye(4)).to_filename(seg)
    ref = tmp_path / "ref.nii.gz"
    nb.Nifti1Image(np.zeros((8, 8, 8), np.uint8), np.diag([2.0, 2.0, 2.0, 1.0])).to_filename(ref)
    (tmp_path / "samseg.stats").write_text(SAMSEG_STATS)
    (tmp_path / "sbtiv.stats").write_text(SBTIV_STATS)
    monkeypatch.setenv("FREESURFER_HOME", str(tmp_path))
    (tmp_path / "build-stamp.txt").write_text("freesurfer-7.4.1\n")
    monkeypatch.chdir(tmp_path)
    res = FreeSurferVolumetry(seg_file=str(seg), reference=str(ref), backend="samseg",
                              volumes=[str(tmp_path / "samseg.stats"), str(tmp_path / "sbtiv.stats")]).run()
    out = res.outputs
    dseg = nb.load(out.dseg)
    assert dseg.shape == (8, 8, 8) and np.allclose(dseg.affine, np.diag([2.0, 2.0, 2.0, 1.0]))
    d = np.asarray(dseg.dataobj)
    assert {0, 2, 41, 1035} >= set(np.unique(d).tolist())
    # reference voxel i sits on label voxel 2i
    assert d[2, 5, 5] == 2 and d[5, 5, 5] == 41 and d[4, 4, 4] == 1035 and d[0, 0, 0] == 0
    lut = read_tsv(out.dseg_tsv).set_index("index")
    assert lut.at[2, "name"] == "Left-Cerebral-White-Matter" and lut.at[2, "mapping"] == 2
    assert lut.at[1035, "name"] == "ctx-lh-insula" and lut.at[1035, "mapping"] == 1  # the parcel LUT name
    morph = read_tsv(out.morph_tsv)
    assert morph["name"].tolist() == ["Left-Cerebral-White-Matter", "Left-Hippocampus", "TIV"]
    assert out.metadata["SoftwareVersion"] == "freesurfer-7.4.1"


# ----------------------------------------------------------------------------- real runs
@needs_fs
def test_real_synthseg_run(tmp_path):
    if fs.check_backend_available("synthseg"):
        pytest.skip(fs.check_backend_available("synthseg"))
    t1 = SHARED / "data" / "real" / "py_synthsr" / "FLAIR.nii.gz"
    res = MRISynthSeg(in_file=str(t1), threads=2, out_file=str(tmp_path / "seg.nii.gz"),
                      vol_file=str(tmp_path / "vol.csv")).run()
    rows = fs.parse_synthseg_volumes(res.outputs.vol_file)
    tiv = dict((n, v) for _, n, v in rows)["TIV"]
    assert 1.0e6 < tiv < 2.2e6


@needs_fs
def test_real_samseg_run(tmp_path):
    if fs.check_backend_available("samseg"):
        pytest.skip(fs.check_backend_available("samseg"))
    t1 = SHARED / "data" / "real" / "py_synthsr" / "FLAIR.nii.gz"
    res = SAMSeg(in_files=[str(t1)], threads=2, output_dir=str(tmp_path / "samseg")).run()
    assert fs.parse_freesurfer_stats(res.outputs.tiv_file)[0][1] == "TIV"


# ----------------------------------------------------------------------------- SynthSeg's posteriors
def test_tissue_posteriors_sum_the_labels_of_each_bids_tissue(tmp_path):
    """CSF/GM/WM probsegs: each the sum of the posteriors of the labels the dseg.tsv maps to it (vessels,
    skull and background in none), NaN (SynthSeg's all-vanished voxels) read 0; on another grid, resampled."""
    from synthsr_nipype.morphometry.labels import tissue_labels

    rng = np.random.default_rng(0)
    labels = [0, 2, 3, 4, 10, 24, 30, 41, 42]
    post = rng.random((6, 6, 6, len(labels))).astype(np.float32)
    post /= post.sum(-1, keepdims=True)
    post[0, 0, 0] = np.nan
    img = nb.Nifti1Image(post, np.eye(4))
    ref = tmp_path / "ref.nii.gz"
    nb.Nifti1Image(np.zeros((6, 6, 6), np.float32), np.eye(4)).to_filename(ref)
    groups = tissue_labels()
    out = fs.posterior_sums(img, labels, groups, ref, tmp_path / "same")
    ch = {lab: k for k, lab in enumerate(labels)}
    expected = {"GM": [3, 10, 42], "WM": [2, 41], "CSF": [4, 24]}
    total = np.zeros((6, 6, 6))
    for tissue, members in expected.items():
        got = nb.load(out[tissue]).get_fdata()
        want = post[..., [ch[m] for m in members]].sum(-1)
        print(tissue, float(got[1:, 1:, 1:].mean()), float(want[1:, 1:, 1:].mean()))
        assert np.allclose(got[1:, 1:, 1:], want[1:, 1:, 1:], atol=1e-6) and got[0, 0, 0] == 0
        assert nb.load(out[tissue]).get_data_dtype() == np.float32
        total += got
    # background (0) and vessel (30) are in no tissue: the three sum to less than one
    rest = post[..., [ch[0], ch[30]]].sum(-1)
    assert np.allclose(total[1:, 1:, 1:], 1 - rest[1:, 1:, 1:], atol=1e-5)
    # a reference on a shifted grid: linear resampling (one voxel along x)
    shifted = np.eye(4)
    shifted[0, 3] = 1.0
    nb.Nifti1Image(np.zeros((5, 6, 6), np.float32), shifted).to_filename(ref)
    moved = nb.load(fs.posterior_sums(img, labels, {"WM": groups["WM"]}, ref, tmp_path / "moved")["WM"])
    assert moved.shape == (5, 6, 6) and np.allclose(moved.affine, shifted)
    want = post[1:, ..., ch[2]] + post[1:, ..., ch[41]]
    assert np.allclose(moved.get_fdata()[:, 1:, 1:], want[:, 1:, 1:], atol=1e-6)
    with pytest.raises(ValueError, match="8 labels for 9 posterior channels"):
        fs.posterior_sums(img, labels[:-1], groups, ref, tmp_path / "bad")
