"""Fast unit tests of the morphometry layer (no registration)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest

from synthsr_nipype.atomic import read_tsv
from synthsr_nipype.bids.derivatives import write_bidsignore
from synthsr_nipype.errors import AntsError
from synthsr_nipype.isolation import run_isolated
from synthsr_nipype.morphometry import (
    TEMPLATE_SPACE,
    ants_backend,
    brainmask,
    derivatives,
    labels,
    templates,
)
from synthsr_nipype.morphometry.volumetry import (
    label_volumes,
    morph_table,
    probability_volumes,
    tissue_fractions,
    with_tiv,
)
from synthsr_nipype.workflows.outputs import init_ds_morphometry_wf


@pytest.fixture(scope="module")
def tpl2(tmp_path_factory):
    return templates.get_template(2, root=tmp_path_factory.mktemp("tpl"))


def test_template_offline_and_priors(tpl2):
    t1 = nb.load(tpl2.t1w)
    assert t1.shape == (99, 117, 95) and np.allclose(t1.header.get_zooms()[:3], 2.0)
    mask = np.asarray(nb.load(tpl2.mask).dataobj) > 0.5
    priors = np.stack([nb.load(p).get_fdata() for p in tpl2.priors])
    assert priors.min() >= 0 and priors.sum(0).max() <= 1.0 + 1e-4
    # priors live inside the brain mask and fill it
    assert np.all(priors[:, ~mask] == 0)
    assert np.allclose(priors.sum(0)[mask].mean(), 1.0, atol=0.02)
    # cached: a second call does not rewrite
    mtime = tpl2.t1w.stat().st_mtime_ns
    assert templates.get_template(2, root=tpl2.t1w.parent.parent).t1w.stat().st_mtime_ns == mtime
    with pytest.raises(ValueError):
        templates.get_template(3)


def test_dseg_table_and_mapping():
    table = labels.dseg_table(labels.ANTS_LABELS)
    assert list(table.columns) == ["index", "name", "abbreviation", "mapping"]
    assert table.set_index("abbreviation")["mapping"].to_dict() == {"CSF": 3, "GM": 1, "WM": 2}
    fs = labels.dseg_table(labels.FREESURFER_LABELS, present={2, 17, 165})
    assert fs["index"].tolist() == [2, 17, 165]
    assert pd.isna(fs.set_index("index").at[165, "mapping"])
    assert labels.freesurfer_index("left hippocampus") == 17 == labels.freesurfer_index("Left-Hippocampus")
    with pytest.raises(ValueError):
        labels.labels_for_backend("fsl")


def test_volumes_and_morph_table():
    dseg = np.zeros((4, 4, 4), np.uint8)
    dseg[0] = 1
    dseg[1:3] = 2
    rows = label_volumes(dseg, 0.5, labels.ANTS_LABELS)
    assert rows == [(1, "CSF", 8.0), (2, "GM", 16.0), (3, "WM", 0.0)]
    table = morph_table(with_tiv(rows, 24.0))
    assert list(table.columns) == ["index", "name", "volume-mm3"]
    assert pd.isna(table["index"].iloc[-1]) and table["name"].iloc[-1] == labels.TIV_NAME
    mask = dseg > 0
    post = {"CSF": (dseg == 1).astype(float), "GM": (dseg == 2).astype(float), "WM": np.zeros(dseg.shape)}
    assert probability_volumes(post, {"CSF": 1, "GM": 2, "WM": 3}, mask, 0.5)[1] == (2, "GM", 16.0)
    assert tissue_fractions(table) == pytest.approx({"CSF": 1 / 3, "GM": 2 / 3, "WM": 0.0})


def _phantom(skull: bool) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A bright 'brain' ball, dark CSF/skull ring, bright scalp shell (when skull)."""
    zz, yy, xx = np.mgrid[-40:40, -48:48, -40:40].astype(float)
    r = np.sqrt(xx**2 + yy**2 + zz**2)
    data = np.where(r < 30, 100.0, 0.0) + np.where((r >= 30) & (r < 32), 20.0, 0.0)
    data += np.where(r < 15, 30.0, 0.0)  # "white matter" core
    if skull:
        data += np.where((r >= 32) & (r < 35), 5.0, 0.0) + np.where((r >= 35) & (r < 39), 140.0, 0.0)
    return data, (2.0, 2.0, 2.0)


@pytest.mark.parametrize("skull", [True, False])
def test_rough_brain_mask_phantom(skull):
    data, zooms = _phantom(skull)
    brain = brainmask.rough_brain_mask(data, zooms)
    true = np.sqrt(sum(g**2 for g in np.mgrid[-40:40, -48:48, -40:40].astype(float))) < 30
    dice = 2 * (brain & true).sum() / (brain.sum() + true.sum())
    assert dice > 0.9
    assert brainmask.is_skull_stripped(data, brain) is (not skull)


def test_otsu3_separates_three_modes():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(10, 2, 1000), rng.normal(50, 3, 1000), rng.normal(100, 3, 1000)])
    lo, hi = brainmask.otsu3(v)
    assert 15 < lo < 45 and 55 < hi < 95


def test_derivative_names():
    names = derivatives.derivative_names("01", "pre", "ants")
    assert names["dseg"] == "sub-01_ses-pre_seg-ants_dseg.nii.gz"
    assert names["probseg_GM"] == "sub-01_ses-pre_seg-ants_label-GM_probseg.nii.gz"
    assert names["morph_tsv"] == "sub-01_ses-pre_seg-ants_desc-volume_morph.tsv"
    assert names["to_template_xfm"] == f"sub-01_ses-pre_from-T1w_to-{TEMPLATE_SPACE}_mode-image_xfm.h5"
    assert names["logjacobian"] == f"sub-01_ses-pre_space-{TEMPLATE_SPACE}_desc-logjacobian_map.nii.gz"
    assert derivatives.sidecar_name(names["morph_tsv"]).endswith("_morph.json")
    assert names["thickness"] == "sub-01_ses-pre_seg-ants_desc-thickness_map.nii.gz"
    assert names["thickness_tsv"] == "sub-01_ses-pre_seg-ants_desc-thickness_morph.tsv"
    assert derivatives.sidecar_metadata("thickness_tsv")["thickness-mm"]["Units"] == "mm"


def test_write_derivatives_sidecars_and_bidsignore(tmp_path):
    src = tmp_path / "work"
    src.mkdir()
    img = nb.Nifti1Image(np.ones((2, 2, 2), np.uint8), np.eye(4))
    img.to_filename(src / "dseg.nii.gz")
    morph = morph_table(with_tiv([(1, "CSF", 1.0), (2, "GM", 2.0), (3, "WM", 3.0)], 6.0))
    morph.to_csv(src / "morph.tsv", sep="\t", index=False, na_rep="n/a")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".bidsignore").write_text("logs/\n")
    sources = ["bids::sub-01/anat/sub-01_desc-synthsr_T1w.nii.gz"]

    ds_wf = init_ds_morphometry_wf(output_dir=tmp_path / "out", backend="ants",
                                   fields=["dseg", "dseg_tsv", "morph_tsv"])
    ds_wf.base_dir = str(tmp_path / "work_ds")
    (src / "dseg.tsv").write_text("index\tname\n1\tCSF\n")
    ds_wf.inputs.inputnode.trait_set(
        source_entities={"subject": "01"}, sources=sources, dseg=str(src / "dseg.nii.gz"),
        dseg_tsv=str(src / "dseg.tsv"), morph_tsv=str(src / "morph.tsv"),
        metadata={"SegmentationBackend": "ants", "RandomSeed": 1, "SkullStripped": True},
    )
    previous = os.umask(0o022)
    try:
        result = ds_wf.run(plugin="Linear")
    finally:
        os.umask(previous)
    (merge,) = [n for n in result.nodes() if n.name == "merge_ds"]
    anat = tmp_path / "out" / "sub-01" / "anat"
    assert sorted(Path(p).name for p in merge.result.outputs.out) == [
        "sub-01_seg-ants_desc-volume_morph.tsv", "sub-01_seg-ants_dseg.nii.gz", "sub-01_seg-ants_dseg.tsv"]
    side = json.loads((anat / "sub-01_seg-ants_desc-volume_morph.json").read_text())
    assert side["Sources"] == sources and side["RandomSeed"] == 1 and side["volume-mm3"]["Units"] == "mm^3"
    assert "SoftwareName" not in side  # the backend's provenance, not this package's
    dseg_side = json.loads((anat / "sub-01_seg-ants_dseg.json").read_text())
    assert dseg_side["SkullStripped"] is True and "Grid" not in dseg_side
    assert not (anat / "sub-01_seg-ants_dseg.tsv.json").exists()  # described by the dseg sidecar
    assert sorted(p.name for p in anat.glob("*.json")) == [
        "sub-01_seg-ants_desc-volume_morph.json", "sub-01_seg-ants_dseg.json"]
    assert read_tsv(anat / "sub-01_seg-ants_desc-volume_morph.tsv")["volume-mm3"].sum() == 12.0
    assert (anat / "sub-01_seg-ants_dseg.nii.gz").stat().st_mode & 0o777 == 0o644
    # one writer of .bidsignore: existing lines kept, each pattern once, idempotent
    write_bidsignore(tmp_path / "out", derivatives.bidsignore_patterns())
    ignore = (tmp_path / "out" / ".bidsignore").read_text().splitlines()
    assert ignore[0] == "logs/" and "*_morph.tsv" in ignore and "group/" in ignore
    write_bidsignore(tmp_path / "out", derivatives.bidsignore_patterns())
    assert (tmp_path / "out" / ".bidsignore").read_text().splitlines() == ignore
    assert not list(anat.glob(".*"))  # no temporary left behind


def test_provenance_records_seed_and_version():
    prov = ants_backend.provenance(seed=7, num_threads=1, template_resolution=1)
    assert prov["RandomSeed"] == 7 and prov["Deterministic"] is True
    assert prov["SoftwareVersion"].startswith("antspyx ")


def test_isolated_worker_reports_failure(tmp_path):
    with pytest.raises(AntsError, match="failed"):
        run_isolated(ants_backend.STEPS, "logjacobian", str(tmp_path / "missing.h5"),
                     str(tmp_path / "x.nii.gz"), str(tmp_path / "o.nii.gz"), template_resolution=2)


@pytest.mark.parametrize("backend", ["ants", "synthseg", "synthseg-fs", "samseg", "recon-all"])
def test_workflow_builds(backend, tmp_path):
    from synthsr_nipype.settings import MorphometryOptions
    from synthsr_nipype.workflows.morphometry import init_morphometry_wf

    wf = init_morphometry_wf(MorphometryOptions(seg_backend=backend, tbm=True), omp_nthreads=2, output_dir=tmp_path,
                             name="m")
    names = {n.name for n in wf._graph.nodes()}
    assert {"inputnode", "outputnode", "tbm", "template_reg", "ds_morphometry_wf"} <= names
    assert ("ants_seg" in names) is (backend == "ants")
    words = ("Atropos",) if backend == "ants" else ("FreeSurfer", "SAMSEG", "port")
    assert any(w in wf.__desc__ for w in words)
    assert "Workflow Graph" in init_morphometry_wf.__doc__
    wf_plain = init_morphometry_wf(MorphometryOptions(seg_backend=backend), name="p")
    assert "tbm" not in {n.name for n in wf_plain._graph.nodes()}
    with pytest.raises(ValueError):
        init_morphometry_wf(MorphometryOptions(seg_backend="fast"))
    with pytest.raises(ValueError, match="not None"):  # no backend: nothing to build
        init_morphometry_wf(MorphometryOptions())


def test_template_head_wraps_the_brain(tpl2):
    """The synthetic head: the template brain unchanged, a dark skull then a bright scalp shell around it."""
    head = nb.load(tpl2.head)
    brain = nb.load(tpl2.t1w)
    assert np.allclose(head.header.get_zooms()[:3], 2.0)
    # same world: the brain template's corner voxel sits inside the padded grid
    corner = np.linalg.inv(head.affine) @ brain.affine @ np.array([0, 0, 0, 1.0])
    pad = np.round(corner[:3]).astype(int)
    assert np.allclose(corner[:3], pad) and (pad > 0).all()
    h = head.get_fdata()
    mask = np.asarray(nb.load(tpl2.mask).dataobj) > 0.5
    inner = h[tuple(slice(p, p + n) for p, n in zip(pad, mask.shape))]
    assert np.allclose(inner[mask], brain.get_fdata()[mask], atol=1e-3)
    wm = np.percentile(brain.get_fdata()[mask], 90)
    levels = np.unique(np.round(h[h > 0] / wm, 2))
    assert {templates.HEAD_SKULL_LEVEL, templates.HEAD_SCALP_LEVEL} <= set(levels)
    # the skull and scalp shells hold about as much volume as an adult's (~0.7-1.2 L at MNI size)
    shell = ((h > 0).sum() - mask.sum()) * 8e-3
    assert 500 < shell < 1500, shell
