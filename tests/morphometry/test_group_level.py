"""Group level: tables, z-scores, outlier flags, figures, HTML, refusal to mix; and the
participant morphometry workflow end to end (ants + TBM, 2 mm) feeding the group level."""

from __future__ import annotations

import json
import re
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
                                  "Left-Cerebral-Cortex", "Right-Cerebral-Cortex", "Cortex"]  # the tables' order
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

    from synthsr_nipype.settings import MorphometryOptions
    from synthsr_nipype.workflows.morphometry import init_morphometry_wf

    monkeypatch.setenv("SYNTHSR_CACHE_DIR", str(tmp_path / "cache"))
    out = _dataset(tmp_path / "derivatives")
    inputs = {"01": REAL / "hires-t1" / "T1.nii.gz", "02": REAL / "ms-clinical" / "T1.nii.gz"}
    for sub, src in inputs.items():
        img = resample_to_output(nb.load(src), voxel_sizes=(2.0, 2.0, 2.0), order=1)
        t1 = tmp_path / f"sub-{sub}_desc-synthsr_T1w.nii.gz"
        nb.Nifti1Image(np.clip(img.get_fdata(), 0, 255).astype(np.uint8), img.affine).to_filename(t1)
        options = MorphometryOptions(seg_backend="ants", tbm=True, template_resolution=2)
        wf = init_morphometry_wf(options, output_dir=out, name=f"morph_{sub}")
        wf.base_dir = str(tmp_path / "work")
        wf.inputs.inputnode.t1w = str(t1)
        wf.inputs.inputnode.source_entities = {"subject": sub}
        wf.inputs.inputnode.sources = [f"bids::sub-{sub}/anat/sub-{sub}_desc-synthsr_T1w.nii.gz"]
        wf.inputs.inputnode.synthsr_metadata = {"Model": {"Name": "tiny-fixture", "SHA256": "ab"}}
        if sub == "01":  # a reliability map of 0.25 on the left half of the image, 1 on the right
            half = np.ones(img.shape[:3], np.float32)
            half[: img.shape[0] // 2] = 0.25
            nb.Nifti1Image(half, img.affine).to_filename(tmp_path / "rel.nii.gz")
            wf.inputs.inputnode.reliability = str(tmp_path / "rel.nii.gz")
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
        table = read_tsv(anat / names["morph_tsv"])
        if sub == "01":  # each structure straddles both halves: its mean lies between
            assert table["mean-reliability"].between(0.3, 0.95).all(), table
        else:
            assert "mean-reliability" not in table.columns
    assert run_group_level(out) == out / "group"
    wide = read_tsv(out / "group" / "volumes.tsv")
    assert wide["participant_id"].tolist() == ["sub-01", "sub-02"]
    assert list(wide.columns)[4:] == ["CSF", "GM", "WM", "TIV"]
    assert set(wide["synthsr_model"]) == {"tiny-fixture"}
    assert (wide[["CSF", "GM", "WM"]].sum(axis=1) / wide["TIV"]).between(0.995, 1.005).all()
    # two rows: values, not distributions (MIN_N_STATISTICS)
    assert not (out / "group" / "figures" / "volumes_icv.svg").exists()


def test_small_sample_shows_values_not_statistics(tmp_path):
    """n = 2: no z-scores (every z would be +-0.7071), no distributions; the page says so (issue 25)."""
    from synthsr_nipype.morphometry.plausibility import MIN_N_STATISTICS

    root = _cohort(_dataset(tmp_path / "out"), n=2)
    run_group_level(root)
    group = root / "group"
    z = read_tsv(group / "zscores.tsv")
    assert z["z"].isna().all() and z["z_icv"].isna().all() and not z["outlier"].any()
    assert z["volume-mm3"].notna().all()
    assert not (group / "figures" / "volumes.svg").exists()
    html = (group / "group.html").read_text()
    assert f"fewer than {MIN_N_STATISTICS}" in html and "sub-02" in html
    # the documented n is where |z| > 3 first becomes possible: (n - 1) / sqrt(n) > 3
    assert (MIN_N_STATISTICS - 1) / np.sqrt(MIN_N_STATISTICS) > 3 >= (MIN_N_STATISTICS - 2) / np.sqrt(
        MIN_N_STATISTICS - 1)


def test_implausible_volumes_are_flagged(tmp_path):
    """The new user's skull-on case: TIV 2,559 mL, grey matter 1,330 mL; flagged whatever the sample size."""
    root = _dataset(tmp_path / "out")
    _participant(root, "01", None, {"CSF": 700e3, "GM": 1330e3, "WM": 529e3})
    _participant(root, "02", None, {"CSF": 250e3, "GM": 650e3, "WM": 550e3})
    run_group_level(root)
    flags = read_tsv(root / "group" / "plausibility.tsv")
    assert set(zip(flags["participant_id"], flags["quantity"])) == {("sub-01", "TIV")}
    assert flags["value"].item() == pytest.approx(2559.0) and "Buckner" in flags["source"].item()
    html = (root / "group" / "group.html").read_text()
    assert "Outside the published adult range" in html and "2559" in html


def test_group_qc_table_ranks_scans_and_links_reports(tmp_path):
    root = _cohort(_dataset(tmp_path / "out"), n=3)
    for sub, desc, mean, flags in (("01", "synthsrFLAIR", 0.41, ["mean reliability 0.41 < 0.50"]),
                                   ("01", "synthsr", 0.7, []), ("03", "synthsrT2w", 0.9, [])):
        anat = root / f"sub-{sub}" / "anat"
        (anat / f"sub-{sub}_desc-{desc}_T1w.json").write_text(json.dumps(
            {"ReliabilityQC": {"MeanReliability": mean, "UncoveredFraction": 0.2, "TTADisagreement": 0.03},
             "QCFlags": flags}))
    run_group_level(root)
    qc = read_tsv(root / "group" / "qc.tsv")
    assert list(qc["MeanReliability"]) == [0.41, 0.7, 0.9]
    assert list(qc["kind"]) == ["scan", "fused", "scan"] and qc["flags"][0].startswith("mean reliability")
    html = (root / "group" / "group.html").read_text()
    assert '<a href="../sub-01.html">' in html and "qc-flagged" in html


def test_plausibility_table_in_the_docs_matches_the_code():
    import re

    from synthsr_nipype.morphometry.plausibility import RANGES
    from tests.paths import DOCS

    text = (DOCS / "morphometry.md").read_text()
    for rng in RANGES:
        low, high = (f"{v:,.0f}" if v >= 100 else f"{v:g}" for v in (rng.low, rng.high))
        row = re.search(rf"^\| {re.escape(rng.quantity)}[^|]* \| ([^|]+) \|", text, flags=re.M)
        assert row, rng.quantity
        assert row.group(1).replace(" mL", "").strip() in (f"{low}-{high}", f"{rng.low:.2f}-{rng.high:.2f}"), row
        assert rng.source.split(",")[0] in text


def test_structure_reliability_column(tmp_path):
    from synthsr_nipype.atomic import atomic_write_tsv
    from synthsr_nipype.morphometry.volumetry import structure_reliability

    labels = np.zeros((8, 8, 8), np.int16)
    labels[:4], labels[4:] = 1, 2
    rel = np.where(labels == 1, 0.2, 0.9).astype(np.float32)
    table = morph_table(with_tiv([(1, "CSF", 10.0), (2, "GM", 20.0), (3, "WM", 0.0)], 30.0))
    atomic_write_tsv(tmp_path / "m.tsv", table)
    out = structure_reliability(read_tsv(tmp_path / "m.tsv"), nb.Nifti1Image(labels, np.eye(4)),
                                nb.Nifti1Image(rel, np.eye(4)))
    assert list(out["mean-reliability"][:2]) == pytest.approx([0.2, 0.9])
    assert pd.isna(out["mean-reliability"][2]) and out["mean-reliability"][3] == pytest.approx(0.55)
    assert str(out["index"].dtype) == "Int64"
    # a map on another grid (2 mm) is resampled onto the segmentation's
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = 0.5  # 2 mm voxel centres between the 1 mm ones
    coarse = nb.Nifti1Image(rel[::2, ::2, ::2], affine)
    out2 = structure_reliability(table, nb.Nifti1Image(labels, np.eye(4)), coarse)
    assert out2["mean-reliability"][0] < out2["mean-reliability"][1] <= 0.9  # (0 beyond the coarse field of view)


def test_group_page_says_what_lite_is(tmp_path):
    from html import escape

    from synthsr_nipype.model.registry import MODELS

    root = _dataset(tmp_path / "out")
    for k in range(3):
        _participant(root, f"{k + 1:02d}", None, {"CSF": 250e3 + k, "GM": 650e3 + k, "WM": 550e3}, model="lite")
    run_group_level(root)
    html = (root / "group" / "group.html").read_text()
    assert 'class="model-note"' in html and "not a published SynthSR model" in html
    assert escape(MODELS["lite"].notes.note) in html
    # the published models get no banner
    other = _cohort(_dataset(tmp_path / "v2"))
    run_group_level(other)
    assert 'class="model-note"' not in (other / "group" / "group.html").read_text()


# the names of a SynthSeg run's _desc-volume_morph.tsv: mri_synthseg's CSV columns, parcels by their LUT names
SYNTHSEG_STRUCTURES = ("left cerebral white matter", "left cerebral cortex", "left lateral ventricle",
                       "left hippocampus", "right hippocampus", "brain-stem", "ctx-lh-insula", "ctx-rh-insula")
QC_GROUPS = ("general white matter", "general grey matter", "general csf", "cerebellum", "brainstem", "thalamus",
             "putamen+pallidum", "hippocampus+amygdala")


def _synthseg_cohort(root: Path, n: int, low: dict[str, dict[str, float]]) -> Path:
    """n SynthSeg participants (FreeSurfer names, parcels); sub-01's left hippocampus an outlier; QC scores
    in the dseg sidecars, 0.9 unless ``low`` says otherwise (subject -> {group: score})."""
    rng = np.random.default_rng(1)
    for k in range(n):
        sub = f"{k + 1:02d}"
        vols = {name: 4e3 + 1e3 * i + rng.normal(0, 50.0) for i, name in enumerate(SYNTHSEG_STRUCTURES)}
        if k == 0:
            vols["left hippocampus"] = 9e3
        _participant(root, sub, None, vols, backend="synthseg")
        names = derivative_names(sub, None, "synthseg")
        scores = {g: low.get(sub, {}).get(g, 0.9) for g in QC_GROUPS}
        (root / f"sub-{sub}" / "anat" / names["dseg"].replace(".nii.gz", ".json")).write_text(
            json.dumps({"SegmentationBackend": "synthseg", "SynthSegQC": scores}))
    return root


def test_synthseg_structures_get_zscores_and_qc_flags(tmp_path):
    """Issue 26: z-scores per SynthSeg structure (parcels included) from 11 rows on, none below; SynthSeg's QC
    scores in group/segmentation_qc.tsv and on group.html, the flagged subject first, visible and linked."""
    from synthsr_nipype.morphometry.plausibility import MIN_N_STATISTICS
    from synthsr_nipype.segmentation.quality import QC_THRESHOLD

    root = _synthseg_cohort(_dataset(tmp_path / "out"), 12, {"07": {"thalamus": 0.41, "cerebellum": 0.64}})
    run_group_level(root, seg_backend="synthseg")
    group = root / "group"
    wide = read_tsv(group / "volumes.tsv")
    assert set(SYNTHSEG_STRUCTURES) <= set(wide.columns) and set(wide["seg_backend"]) == {"synthseg"}
    z = read_tsv(group / "zscores.tsv")
    assert set(SYNTHSEG_STRUCTURES) | {"TIV"} == set(z["name"])
    assert z["z"].notna().all() and z[z["name"] != "TIV"]["z_icv"].notna().all()
    hippo = z[(z["name"] == "left hippocampus")].set_index("participant_id")["z"]
    print(f"left hippocampus z of the outlier: {hippo['sub-01']:.2f}; largest other |z|: "
          f"{hippo.drop('sub-01').abs().max():.2f}; outlier rows {int(z['outlier'].sum())}")
    assert hippo["sub-01"] > 3 and (hippo.drop("sub-01").abs() < 3).all()
    assert set(z[z["outlier"]]["participant_id"]) == {"sub-01"}
    qc = read_tsv(group / "segmentation_qc.tsv")
    assert list(qc.columns) == ["participant_id", "session_id", "segmentation", *QC_GROUPS, "flags", "report"]
    assert qc["participant_id"][0] == "sub-07" and len(qc) == 12
    assert qc["flags"][0] == f"SynthSeg QC cerebellum 0.64 < {QC_THRESHOLD:g}; SynthSeg QC thalamus 0.41 < 0.65"
    assert qc["flags"][1:].isna().all() or (qc["flags"][1:].fillna("") == "").all()
    html = (group / "group.html").read_text()
    section = html[html.index("<h2>Segmentation QC"):]
    flagged = re.findall(r"<tr class=qc-flagged>(.*?)</tr>", section)
    assert len(flagged) == 1 and '<a href="../sub-07.html">' in flagged[0]
    assert flagged[0].count('class="qc-low"') == 2 and 'data-flagged="1"' in section

    # n = 10 (< MIN_N_STATISTICS): the values, no z-scores; the QC flags whatever the n
    small = _synthseg_cohort(_dataset(tmp_path / "small"), MIN_N_STATISTICS - 1, {"02": {"brainstem": 0.2}})
    run_group_level(small)
    z = read_tsv(small / "group" / "zscores.tsv")
    assert z["z"].isna().all() and z["volume-mm3"].notna().all()
    assert read_tsv(small / "group" / "segmentation_qc.tsv")["participant_id"][0] == "sub-02"


def test_no_segmentation_qc_table_without_synthseg(tmp_path):
    root = _cohort(_dataset(tmp_path / "out"), n=3)
    run_group_level(root)
    assert not (root / "group" / "segmentation_qc.tsv").exists()
    assert "Segmentation QC" not in (root / "group" / "group.html").read_text()


def test_plausibility_reads_synthseg_names_and_counts_the_cortex_once():
    """mri_synthseg's CSV names (lower case) map to their FreeSurfer labels; cortical parcels, which subdivide
    the cortex, are not added to it again."""
    from synthsr_nipype.morphometry.plausibility import quantities

    row = pd.Series({"TIV": 1500e3, "left cerebral cortex": 250e3, "right cerebral cortex": 250e3,
                     "ctx-lh-precuneus": 10e3, "ctx-rh-precuneus": 10e3, "left cerebral white matter": 230e3,
                     "right cerebral white matter": 230e3, "left lateral ventricle": 9e3,
                     "right lateral ventricle": 8e3, "left inferior lateral ventricle": 0.5e3,
                     "right inferior lateral ventricle": 0.5e3, "csf": 300e3, "left hippocampus": 4e3})
    got = quantities(row, [c for c in row.index if c != "TIV"])
    print(got)
    assert got["GM / TIV"] == pytest.approx((500e3 + 4e3) / 1500e3)
    assert got["WM / TIV"] == pytest.approx(460e3 / 1500e3)
    assert got["CSF / TIV"] == pytest.approx((300e3 + 18e3) / 1500e3)
    assert got["lateral ventricles"] == pytest.approx(18.0)
