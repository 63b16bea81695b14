"""Group level: tables, z-scores, outlier flags, figures, HTML, refusal to mix; and the
participant morphometry workflow end to end (ants + TBM, 2 mm) feeding the group level."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest

from synthsr_nipype.atomic import read_tsv
from synthsr_nipype.errors import GroupError
from synthsr_nipype.morphometry.derivatives import derivative_names
from synthsr_nipype.morphometry.group_level import run_group_level
from synthsr_nipype.morphometry.volumetry import morph_table, with_tiv
from tests.paths import REAL


def _dataset(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "t", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
         "GeneratedBy": [{"Name": "synthsr-nipype"}]}))
    return root


def _participant(root: Path, sub: str, ses: str | None, vols: dict[str, float], *, backend: str = "ants",
                 model: str = "synthsr_v2") -> None:
    names = derivative_names(sub, ses, backend)
    anat = root / f"sub-{sub}" / (f"ses-{ses}" if ses else "") / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    rows = [(i + 1, n, v) for i, (n, v) in enumerate(vols.items())]
    table = morph_table(with_tiv(rows, sum(vols.values())))
    table.to_csv(anat / names["morph_tsv"], sep="\t", index=False, na_rep="n/a")
    (anat / names["morph_tsv"].replace(".tsv", ".json")).write_text(
        json.dumps({"SegmentationBackend": backend, "SynthSRModel": {"Name": model, "SHA256": "0" * 64}}))


def _cohort(root: Path, n: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for k in range(n):
        gm = 650e3 + rng.normal(0, 10e3)
        if k == 0:
            gm = 900e3  # one clear outlier
        _participant(root, f"{k + 1:02d}", "pre" if k % 2 else None,
                     {"CSF": 250e3 + rng.normal(0, 10e3), "GM": gm, "WM": 550e3 + rng.normal(0, 10e3)})
    return root


def test_group_selects_sessions_and_participants(tmp_path):
    root = _cohort(_dataset(tmp_path / "out"))
    assert run_group_level(root, session_label=["ses-pre"]) == root / "group"
    wide = read_tsv(root / "group" / "volumes.tsv")
    # the odd-numbered cohort members (sub-02, sub-04, ...) have ses-pre; the others have no session
    assert sorted(wide["participant_id"]) == [f"sub-{k:02d}" for k in range(2, 13, 2)]
    assert set(wide["session_id"]) == {"ses-pre"}
    assert run_group_level(root, participant_label=["02", "04", "05"], session_label=["pre"]) == root / "group"
    assert sorted(read_tsv(root / "group" / "volumes.tsv")["participant_id"]) == ["sub-02", "sub-04"]


def test_group_session_without_volumes_is_one_line(tmp_path):
    root = _cohort(_dataset(tmp_path / "out"))
    with pytest.raises(GroupError) as exc:
        run_group_level(root, session_label=["post"])
    assert len(str(exc.value).splitlines()) == 1 and "--session-label post" in str(exc.value)
    assert not (root / "group").exists()

def test_group_tables_zscores_figures(tmp_path):
    root = _cohort(_dataset(tmp_path / "out"))
    assert run_group_level(root) == root / "group"
    group = root / "group"
    wide = read_tsv(group / "volumes.tsv")
    assert list(wide.columns) == ["participant_id", "session_id", "seg_backend", "synthsr_model",
                                  "CSF", "GM", "WM", "TIV"]
    assert len(wide) == 12 and set(wide["seg_backend"]) == {"ants"} and set(wide["synthsr_model"]) == {"synthsr_v2"}
    assert wide.loc[wide["participant_id"] == "sub-02", "session_id"].item() == "ses-pre"
    assert pd.isna(wide.loc[wide["participant_id"] == "sub-01", "session_id"].item())
    long = read_tsv(group / "volumes_long.tsv")
    assert len(long) == 12 * 4 and {"index", "name", "volume-mm3"} <= set(long.columns)
    z = read_tsv(group / "zscores.tsv")
    flagged = z[z["outlier"]]
    assert set(zip(flagged["participant_id"], flagged["name"])) >= {("sub-01", "GM")}
    gm = z[z["name"] == "GM"]
    assert gm["z"].mean() == pytest.approx(0, abs=1e-9) and gm["z"].std() == pytest.approx(1)
    for svg in ("volumes.svg", "volumes_icv.svg"):
        text = (group / "figures" / svg).read_text()
        assert text.lstrip().startswith("<?xml") and "<svg" in text
    html = (group / "group.html").read_text()
    assert "figures/volumes.svg" in html and "sub-01" in html and "synthsr_v2" in html
    assert "group/" in (root / ".bidsignore").read_text()
    # reproducible bytes
    first = (group / "figures" / "volumes.svg").read_bytes()
    assert run_group_level(root) == root / "group"
    assert (group / "figures" / "volumes.svg").read_bytes() == first


def test_group_thickness_tables(tmp_path):
    """--thickness participants: thickness.tsv (mm per region), its z-scores, a figure in group.html."""
    from synthsr_nipype.morphometry.thickness import THICKNESS_COLUMNS

    root = _cohort(_dataset(tmp_path / "out"))
    assert not (run_group_level(root) / "thickness.tsv").exists()  # none written without thickness tables
    rng = np.random.default_rng(1)
    for anat in sorted(root.glob("sub-*/**/anat")):
        morph = next(anat.glob("*_desc-volume_morph.tsv"))
        left, right = 2.4 + rng.normal(0, 0.05), 2.5 + rng.normal(0, 0.05)
        rows = [(1, "Left-Cerebral-Cortex", left, 3e5), (2, "Right-Cerebral-Cortex", right, 3e5),
                (None, "Cortex", (left + right) / 2, 6e5)]
        pd.DataFrame(rows, columns=THICKNESS_COLUMNS).to_csv(
            anat / morph.name.replace("desc-volume", "desc-thickness"), sep="\t", index=False, na_rep="n/a")
    group = run_group_level(root)
    wide = read_tsv(group / "thickness.tsv")
    assert list(wide.columns) == ["participant_id", "session_id", "seg_backend", "synthsr_model",
                                  "Cortex", "Left-Cerebral-Cortex", "Right-Cerebral-Cortex"]
    assert len(wide) == 12 and wide["Cortex"].between(2.2, 2.7).all()
    z = read_tsv(group / "thickness_zscores.tsv")
    assert {"thickness-mm", "z", "outlier"} <= set(z.columns) and "z_icv" not in z.columns
    assert z[z["name"] == "Cortex"]["z"].std() == pytest.approx(1)
    assert "figures/thickness.svg" in (group / "group.html").read_text()
    assert "<svg" in (group / "figures" / "thickness.svg").read_text()
    # the volumes are untouched by the thickness tables
    assert list(read_tsv(group / "volumes.tsv").columns)[-1] == "TIV"


def test_group_refuses_to_mix_backends(tmp_path):
    root = _dataset(tmp_path / "out")
    _participant(root, "01", None, {"CSF": 1.0, "GM": 2.0, "WM": 3.0})
    _participant(root, "02", None, {"Left-Hippocampus": 4000.0}, backend="synthseg")
    with pytest.raises(GroupError) as exc:
        run_group_level(root)
    err = str(exc.value)
    assert "refusing to mix seg backends" in err and "ants, synthseg" in err and "--seg-backend" in err
    assert not (root / "group").exists()
    assert run_group_level(root, seg_backend="ants") == root / "group"


def test_group_refuses_to_mix_models(tmp_path):
    root = _dataset(tmp_path / "out")
    _participant(root, "01", None, {"GM": 2.0}, model="a")
    _participant(root, "02", None, {"GM": 2.0}, model="b")
    with pytest.raises(GroupError, match="refusing to mix synthsr models"):
        run_group_level(root)


def test_group_without_participant_outputs(tmp_path):
    with pytest.raises(GroupError, match="not a derivatives dataset"):
        run_group_level(tmp_path)
    with pytest.raises(GroupError, match="no participant volumes"):
        run_group_level(_dataset(tmp_path / "empty"))


@pytest.mark.skipif(not REAL.is_dir(), reason="shared data (../shared) not available")
def test_participant_workflow_then_group(tmp_path, monkeypatch):
    """ants + TBM through the Nipype workflow for two subjects (2 mm), then the group level."""
    from nibabel.processing import resample_to_output

    from synthsr_nipype.workflows.morphometry import init_morphometry_wf

    monkeypatch.setenv("SYNTHSR_CACHE_DIR", str(tmp_path / "cache"))
    out = _dataset(tmp_path / "derivatives")
    inputs = {"01": REAL / "hires-t1" / "T1.nii.gz", "02": REAL / "ms-clinical" / "T1.nii.gz"}
    for sub, src in inputs.items():
        img = resample_to_output(nb.load(src), voxel_sizes=(2.0, 2.0, 2.0), order=1)
        t1 = tmp_path / f"sub-{sub}_desc-synthsr_T1w.nii.gz"
        nb.Nifti1Image(np.clip(img.get_fdata(), 0, 255).astype(np.uint8), img.affine).to_filename(t1)
        wf = init_morphometry_wf(seg_backend="ants", tbm=True, template_resolution=2, output_dir=out,
                                 name=f"morph_{sub}")
        wf.base_dir = str(tmp_path / "work")
        wf.inputs.inputnode.t1w = str(t1)
        wf.inputs.inputnode.source_entities = {"subject": sub}
        wf.inputs.inputnode.sources = [f"bids::sub-{sub}/anat/sub-{sub}_desc-synthsr_T1w.nii.gz"]
        wf.inputs.inputnode.synthsr_metadata = {"Model": {"Name": "tiny-fixture", "SHA256": "ab"}}
        wf.run()
        anat = out / f"sub-{sub}" / "anat"
        names = derivative_names(sub, None, "ants")
        for key in ("dseg", "dseg_tsv", "probseg_CSF", "probseg_GM", "probseg_WM", "morph_tsv",
                    "to_template_xfm", "from_template_xfm", "logjacobian", "brain_mask"):
            assert (anat / names[key]).is_file(), names[key]
        side = json.loads((anat / names["morph_tsv"].replace(".tsv", ".json")).read_text())
        assert side["Sources"] == [f"bids::sub-{sub}/anat/sub-{sub}_desc-synthsr_T1w.nii.gz"]
        assert side["SynthSRModel"]["Name"] == "tiny-fixture" and side["RandomSeed"] and side["SoftwareVersion"]
        assert json.loads((anat / names["logjacobian"].replace(".nii.gz", ".json")).read_text())[
            "SpatialReference"] == "MNI152NLin2009aSym"
    assert run_group_level(out) == out / "group"
    wide = read_tsv(out / "group" / "volumes.tsv")
    assert wide["participant_id"].tolist() == ["sub-01", "sub-02"]
    assert list(wide.columns)[4:] == ["CSF", "GM", "WM", "TIV"]
    assert set(wide["synthsr_model"]) == {"tiny-fixture"}
    assert (wide[["CSF", "GM", "WM"]].sum(axis=1) / wide["TIV"]).between(0.995, 1.005).all()
    assert (out / "group" / "figures" / "volumes_icv.svg").stat().st_size > 1000
