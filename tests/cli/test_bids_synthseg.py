"""``--seg-backend synthseg`` in the BIDS-App: the package's SynthSeg port on sub-02 of the BIDS-App test
dataset (two sessions, one fused from three scans), with the tiny fixture weights of
``../shared/fixtures/synthseg-reference`` (random weights under the published names, so the labels are
not anatomy: the tests check names, tables, sidecars and their paths, not volumes), with ``--synthseg-parc
--thickness --tbm``: the tissue posteriors as ``_probseg``, DiReCT per cortical parcel (3 iterations, the fewest
``--thickness-iterations`` takes: 5 took about 3 min per session, DiReCT's 45 about 25 min per 1 mm head on one
thread), and the TBM map, which takes the template registration of the ``ants`` backend (2 mm template)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.cli.test_bids_app_e2e import build_dataset
from tests.paths import REAL, SHARED, TINY
from tests.validator import AVAILABLE as VALIDATOR_AVAILABLE
from tests.validator import bids_validator_errors

SEG_MODELS = SHARED / "fixtures" / "synthseg-reference" / "devset" / "fshome" / "models"
pytestmark = pytest.mark.skipif(
    not (REAL.is_dir() and TINY.is_file() and SEG_MODELS.is_dir()), reason="shared data (../shared) not available"
)
GROUPS = (("02", "post"), ("02", "pre"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Participant (MultiProc, 2 processes, --parc, --thickness) then group level."""
    from synthsr_nipype.cli.bids_app import main

    base = tmp_path_factory.mktemp("synthseg")
    bids = build_dataset(base / "bids")
    out = base / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHSR_CACHE_DIR", str(base / "weight-cache"))
        mp.delenv("FREESURFER_HOME", raising=False)  # the port needs no FreeSurfer
        start = time.monotonic()
        code = main([str(bids), str(out), "participant", "--model", str(TINY), "--participant-label", "02",
                     "--seg-backend", "synthseg", "--synthseg-parc", "--thickness", "--thickness-iterations", "3",
                     "--tbm", "--template-resolution", "2",  # TBM beside a backend other than ants
                     "--seg-models-dir", str(SEG_MODELS),
                     # MultiProc: the two sessions' SynthSeg and DiReCT nodes (one thread each) side by side
                     "--nprocs", "2", "--omp-nthreads", "1", "-w", str(base / "work")])
        seconds = time.monotonic() - start
        print(f"participant --seg-backend synthseg --synthseg-parc --thickness --tbm: {seconds:.0f} s")
        group_code = main([str(bids), str(out), "group", "--seg-backend", "synthseg"])
    return {"out": out, "code": code, "group_code": group_code, "seconds": seconds}


def _names(sub: str, ses: str) -> dict[str, str]:
    from synthsr_nipype.morphometry.derivatives import derivative_names

    return derivative_names(sub, ses, "synthseg")


def test_participant_derivatives_have_freesurfer_names_tissue_mapping_and_qc(run):
    from synthsr_nipype.atomic import read_tsv
    from synthsr_nipype.morphometry.derivatives import sidecar_name
    from synthsr_nipype.morphometry.labels import FREESURFER_LABELS, freesurfer_index
    from synthsr_nipype.segmentation.quality import QC_THRESHOLD, qc_flags

    assert run["code"] == 0
    out = run["out"]
    fs_names = {lab.index: lab.name for lab in FREESURFER_LABELS}
    for sub, ses in GROUPS:
        anat = out / f"sub-{sub}" / f"ses-{ses}" / "anat"
        names = _names(sub, ses)
        assert "seg-synthseg_dseg.nii.gz" in names["dseg"]
        fused = nib.load(anat / f"sub-{sub}_ses-{ses}_desc-synthsr_T1w.nii.gz")
        dseg = nib.load(anat / names["dseg"])
        assert dseg.shape == fused.shape and np.allclose(dseg.affine, fused.affine)
        present = {int(v) for v in np.unique(np.asarray(dseg.dataobj))} - {0}
        assert present and any(v >= 1000 for v in present)  # --synthseg-parc: cortical parcels
        lut = read_tsv(anat / names["dseg_tsv"])
        assert list(lut.columns) == ["index", "name", "abbreviation", "mapping"]
        assert set(lut["index"]) == present
        aseg, parcels = lut[lut["index"] < 1000], lut[lut["index"] >= 1000]
        assert all(fs_names[i] == n for i, n in zip(aseg["index"], aseg["name"]))
        # parcels by their FreeSurfer LUT names (1001 ctx-lh-bankssts, 2035 ctx-rh-insula), grey matter
        assert len(parcels) > 30
        assert all(n.startswith("ctx-lh-" if i < 2000 else "ctx-rh-")
                   for i, n in zip(parcels["index"], parcels["name"]))
        assert set(parcels["mapping"]) == {1}
        assert set(aseg["mapping"].dropna()) <= {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}  # BIDS tissue codes
        assert aseg["mapping"].notna().any()
        morph = read_tsv(anat / names["morph_tsv"])
        assert "TIV" in set(morph["name"]) and (morph["volume-mm3"] >= 0).all()
        # the tool's CSV names, as for mri_synthseg: aseg rows keep their label value, parcels their ctx- names
        aseg_rows = morph[morph["index"].notna()]
        assert len(aseg_rows) > 20
        assert all(freesurfer_index(n) == int(i) for i, n in zip(aseg_rows["index"], aseg_rows["name"]))
        assert sum(n.startswith(("ctx-lh-", "ctx-rh-")) for n in morph["name"]) > 60
        side = json.loads((anat / sidecar_name(names["morph_tsv"])).read_text())
        assert side["SegmentationBackend"] == "synthseg"
        assert side["SoftwareVersion"].startswith("SynthSeg-robust 2.0")
        assert side["SynthSRModel"]["Name"] == TINY.name
        qc = side["SynthSegQC"]
        assert len(qc) > 1 and all(0 <= v <= 1 for v in qc.values())
        assert json.loads((anat / sidecar_name(names["dseg"])).read_text())["SynthSegQC"] == qc
        assert side["SynthSegQCThreshold"] == QC_THRESHOLD
        # in the QC classes' order; the sidecar writer sorts the scores' keys, hence sorted
        assert sorted(side["SynthSegQCFlags"]) == sorted(qc_flags(qc))


def test_tbm_beside_the_synthseg_backend(run):
    """``--tbm`` with ``--seg-backend synthseg``: the template registration runs for TBM alone; the map on the
    2 mm template grid and both transforms, their sidecars naming the backend and the registration's provenance;
    no ``ants`` segmentation beside SynthSeg's."""
    from synthsr_nipype.morphometry.derivatives import sidecar_name

    for sub, ses in GROUPS:
        anat = run["out"] / f"sub-{sub}" / f"ses-{ses}" / "anat"
        names = _names(sub, ses)
        lj = nib.load(anat / names["logjacobian"])
        data = lj.get_fdata()
        assert np.allclose(lj.header.get_zooms()[:3], 2.0) and lj.get_data_dtype() == np.float32
        assert np.isfinite(data).all() and np.abs(data).max() > 0
        for key in ("logjacobian", "to_template_xfm", "from_template_xfm"):
            assert (anat / names[key]).is_file() and (anat / sidecar_name(names[key])).is_file(), key
        side = json.loads((anat / sidecar_name(names["logjacobian"])).read_text())
        registration = side["TemplateRegistration"]  # what reproduces the warp: ANTs, its seed and grid
        assert side["SegmentationBackend"] == "synthseg" and "SegmentationBackend" not in registration
        assert registration["TemplateResolution"] == 2 and registration["Deterministic"] is True
        assert registration["SoftwareVersion"] and registration["RandomSeed"]
        assert not list(anat.glob("*seg-ants*"))


def test_pybids_reindexes_the_synthseg_outputs(run):
    from bids import BIDSLayout

    layout = BIDSLayout(str(run["out"]), config=["bids", "derivatives"], validate=False)
    for sub, ses in GROUPS:
        q = {"subject": sub, "session": ses, "segmentation": "synthseg", "return_type": "filename"}
        assert len(layout.get(suffix="dseg", extension=".nii.gz", **q)) == 1
        assert len(layout.get(suffix="dseg", extension=".tsv", **q)) == 1
        assert len(layout.get(suffix="morph", desc="volume", extension=".tsv", **q)) == 1
        labels = {layout.get_file(f).entities["label"]
                  for f in layout.get(suffix="probseg", extension=".nii.gz", **q)}
        assert labels == {"CSF", "GM", "WM"}
        assert len(layout.get(suffix="map", desc="thickness", extension=".nii.gz", **q)) == 1
        assert len(layout.get(suffix="morph", desc="thickness", extension=".tsv", **q)) == 1
        images = layout.get(extension=".nii.gz", **q)
        assert len(images) == 5  # dseg, three probsegs, thickness map: each with its sidecar
        assert all(Path(f.replace(".nii.gz", ".json")).is_file() for f in images)


@pytest.mark.skipif(not VALIDATOR_AVAILABLE, reason="bids-validator-deno not installed (pip install it)")
def test_synthseg_derivatives_pass_the_bids_schema_validator(run):
    errors = bids_validator_errors(run["out"])
    print(errors)
    assert errors == []


def test_probsegs_are_the_tissue_sums_of_the_posteriors(run):
    """CSF, GM, WM on the fused grid, float32 in [0, 1], summing to at most one; the GM probability is higher
    where the dseg says grey matter (by its dseg.tsv mapping) than where it says white matter."""
    from synthsr_nipype.atomic import read_tsv
    from synthsr_nipype.morphometry.derivatives import sidecar_name

    out = run["out"]
    for sub, ses in GROUPS:
        anat = out / f"sub-{sub}" / f"ses-{ses}" / "anat"
        names = _names(sub, ses)
        fused_rel = f"sub-{sub}/ses-{ses}/anat/sub-{sub}_ses-{ses}_desc-synthsr_T1w.nii.gz"
        fused = nib.load(out / fused_rel)
        prob = {}
        for tissue in ("CSF", "GM", "WM"):
            name = names[f"probseg_{tissue}"]
            assert name == f"sub-{sub}_ses-{ses}_seg-synthseg_label-{tissue}_probseg.nii.gz"
            img = nib.load(anat / name)
            assert img.shape == fused.shape and np.allclose(img.affine, fused.affine)
            assert img.get_data_dtype() == np.float32
            prob[tissue] = np.asarray(img.dataobj)
            assert prob[tissue].min() >= 0 and prob[tissue].max() <= 1
            side = json.loads((anat / sidecar_name(name)).read_text())
            assert side["SegmentationBackend"] == "synthseg" and side["Sources"] == [f"bids::{fused_rel}"]
            assert f"maps to {tissue}" in side["Description"]
        total = prob["CSF"] + prob["GM"] + prob["WM"]
        assert total.max() <= 1 + 1e-5
        lut = read_tsv(anat / names["dseg_tsv"])
        dseg = np.asarray(nib.load(anat / names["dseg"]).dataobj)
        gm_labels = lut.loc[lut["mapping"] == 1, "index"].tolist()
        wm_labels = lut.loc[lut["mapping"] == 2, "index"].tolist()
        in_gm, in_wm = prob["GM"][np.isin(dseg, gm_labels)].mean(), prob["GM"][np.isin(dseg, wm_labels)].mean()
        print(f"sub-{sub} ses-{ses}: GM probability {in_gm:.3f} in GM labels, {in_wm:.3f} in WM labels; "
              f"tissue sum mean {total[dseg > 0].mean():.3f} inside the segmentation")
        assert in_gm > in_wm


def test_thickness_per_parcel_present(run):
    """--synthseg-parc --thickness: one row per cortical parcel present in the dseg, by its dseg.tsv name, then
    the Cortex row; the map is zero outside the cortex; the report and the group table show it."""
    from synthsr_nipype.atomic import read_tsv
    from synthsr_nipype.morphometry.derivatives import sidecar_name

    out = run["out"]
    regions: set[str] = set()
    for sub, ses in GROUPS:
        anat = out / f"sub-{sub}" / f"ses-{ses}" / "anat"
        names = _names(sub, ses)
        lut = read_tsv(anat / names["dseg_tsv"])
        parcels = lut[lut["index"] >= 1000]
        table = read_tsv(anat / names["thickness_tsv"])
        print(f"sub-{sub} ses-{ses}: {len(table) - 1} parcels, cortex {table['thickness-mm'].iloc[-1]} mm, "
              f"{table['thickness-mm'].notna().sum() - 1} measured")
        assert list(table.columns) == ["index", "name", "thickness-mm", "volume-mm3"]
        assert list(table["name"]) == [*parcels["name"], "Cortex"]
        assert list(table["index"].dropna()) == list(parcels["index"])
        assert table["thickness-mm"].iloc[:-1].notna().any() and (table["thickness-mm"].dropna() > 0).all()
        th = np.asarray(nib.load(anat / names["thickness"]).dataobj)
        dseg = np.asarray(nib.load(anat / names["dseg"]).dataobj)
        assert th.shape == dseg.shape and th[dseg < 1000].max() == 0
        assert (anat / sidecar_name(names["thickness_tsv"])).is_file()
        regions |= set(table["name"])
    html = (out / "sub-02.html").read_text()
    assert "Cortical thickness" in html and all(r in html for r in regions)
    wide = read_tsv(out / "group" / "thickness.tsv")
    assert len(wide) == len(GROUPS) and regions <= set(wide.columns)


def test_report_and_group_table_name_the_structures(run):
    from synthsr_nipype.atomic import read_tsv

    out = run["out"]
    assert run["group_code"] == 0
    structures: set[str] = set()
    for sub, ses in GROUPS:
        morph = read_tsv(out / f"sub-{sub}" / f"ses-{ses}" / "anat" / _names(sub, ses)["morph_tsv"])
        structures |= set(morph["name"]) - {"TIV"}
    html = (out / "sub-02.html").read_text()
    named = [s for s in structures if s in html]
    assert len(named) == len(structures), sorted(structures - set(named))[:5]
    wide = read_tsv(out / "group" / "volumes.tsv")
    assert set(wide["seg_backend"]) == {"synthseg"} and len(wide) == len(GROUPS)
    assert structures <= set(wide.columns) and "TIV" in wide.columns


def _qc(run, sub: str, ses: str) -> dict[str, float]:
    from synthsr_nipype.morphometry.derivatives import sidecar_name

    anat = run["out"] / f"sub-{sub}" / f"ses-{ses}" / "anat"
    return json.loads((anat / sidecar_name(_names(sub, ses)["dseg"])).read_text())["SynthSegQC"]


def test_group_tables_have_synthseg_qc_and_per_structure_rows(run):
    """group/segmentation_qc.tsv: a row per session with every QC group and its flags; zscores.tsv a row per
    structure and session (n/a: two rows are below MIN_N_STATISTICS)."""
    from synthsr_nipype.atomic import read_tsv
    from synthsr_nipype.segmentation.quality import qc_flags

    group = run["out"] / "group"
    qc = read_tsv(group / "segmentation_qc.tsv")
    assert sorted(zip(qc["participant_id"], qc["session_id"])) == [(f"sub-{s}", f"ses-{e}") for s, e in GROUPS]
    for _, row in qc.iterrows():
        scores = _qc(run, row["participant_id"][4:], row["session_id"][4:])
        assert {k: row[k] for k in scores} == scores
        assert (row["flags"] if isinstance(row["flags"], str) else "") == "; ".join(qc_flags(scores))
    wide = read_tsv(group / "volumes.tsv")
    z = read_tsv(group / "zscores.tsv")
    structures = [c for c in wide.columns if c not in ("participant_id", "session_id", "seg_backend", "synthsr_model")]
    assert set(z["name"]) == set(structures) and len(z) == len(structures) * len(GROUPS)
    assert z["z"].isna().all()  # n = 2


def test_synthseg_report_in_headless_chromium(run):
    """The real run's sub-02.html in a browser: per session the segmentation contours load, the volume table
    names the structures, the QC section shows the sidecar's scores with the groups below 0.65 flagged."""
    import re

    from synthsr_nipype.reports.browser import find_chromium, render_dom
    from synthsr_nipype.segmentation.quality import flagged_groups

    if find_chromium() is None:
        pytest.skip("no headless Chromium (`apt-get install chromium`)")
    dom = render_dom(run["out"] / "sub-02.html")
    body = dict(re.findall(r'([\w-]+)="([^"]*)"', re.search(r"<body\b([^>]*)>", dom).group(1)))
    assert body["data-figures-loaded"] == body["data-figures-expected"] and body["data-figures-broken"] == "0", body
    assert body["data-script-errors"] == "0"
    for sub, ses in GROUPS:
        start = dom.index(f'data-group="sub-{sub}_ses-{ses}"')
        end = dom.find('class="group"', start + 1)
        part = dom[start:end if end > 0 else dom.index('<section id="methods">')]
        assert re.search(rf'<img src="[^"]*sub-{sub}_ses-{ses}_desc-segmentation_T1w\.svg"', part)
        assert "<h4>Volumes</h4>" in part and "left cerebral white matter" in part
        qc_part = part[part.index('<section class="segmentation-qc"'):]
        qc_part = qc_part[:qc_part.index("</section>")]
        scores = _qc(run, sub, ses)
        flagged = re.findall(r'<tr class="qc-flagged"><td>([^<]*)</td>', qc_part)
        print(f"sub-{sub}_ses-{ses}: QC {scores}; flagged in the page {flagged}")
        assert sorted(flagged) == sorted(flagged_groups(scores))
        assert f'data-qc-flags="{len(flagged)}"' in qc_part
        assert len(re.findall(r"<tr(?: class=\"qc-flagged\")?><td>", qc_part)) == len(scores)
