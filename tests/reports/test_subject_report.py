"""sub-X.html from a derivatives folder laid out as a run with ``--seg-backend ants --tbm`` leaves it (small
synthetic images, no pipeline run: seconds): transforms named after the reference, Methods as HTML in data-flow
order with numbered citations, the segmentation legend, the TBM map, volumes in mL, the sessions row."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from synthsr_nipype.atomic import atomic_write_tsv
from synthsr_nipype.bids import (
    build_derivative_relpath,
    fused_output_entities,
    scan_output_entities,
)
from synthsr_nipype.bids.plan import GroupPlan, Job
from synthsr_nipype.inference.fusion import REGISTRATION_TARGET, write_itk_affine
from synthsr_nipype.morphometry.derivatives import derivative_names, sidecar_metadata
from synthsr_nipype.morphometry.labels import ANTS_LABELS, dseg_table
from synthsr_nipype.morphometry.templates import get_template
from synthsr_nipype.morphometry.volumetry import morph_table
from synthsr_nipype.reports.subject import write_subject_report

#: GM volume written into the table (mm³) and how the page must show it (mL)
GM_MM3, GM_SHOWN = 612345.678, "612.3"


def _head(shape: tuple[int, ...], zooms: tuple[float, ...], shift_mm: float = 0.0) -> nib.Nifti1Image:
    """An ellipsoid 'head' with an inner 'brain', centred on the world origin (+ ``shift_mm`` in x)."""
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = -(np.asarray(shape) - 1) / 2 * np.asarray(zooms) + [shift_mm, 0, 0]
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    xyz = (ijk * zooms + affine[:3, 3]).reshape(*shape, 3)
    r = np.sqrt(((xyz / [30, 36, 28]) ** 2).sum(-1))
    data = np.where(r < 1, 300.0, 0) + np.where(r < 0.7, 400.0, 0) + np.where(r < 0.4, 200.0, 0)
    image = nib.Nifti1Image(data.astype(np.float32), affine)
    image.set_qform(affine, 1)
    image.set_sform(affine, 1)
    return image


def _job(subject: str, session: str | None, suffix: str, inputs: Path) -> Job:
    source = {"subject": subject, **({"session": session} if session else {})}
    entities = scan_output_entities(source, suffix)
    return Job(name=suffix, inputs=[str(inputs / f"{suffix}.nii.gz")],
               sources=[f"sub-{subject}/anat/x_{suffix}.nii.gz"], suffixes=[suffix], model="v2",
               entities=entities, out_relpath=build_derivative_relpath(entities))


def build_outputs(root: Path, *, session: str | None = None) -> tuple[Path, GroupPlan]:
    """sub-01: a T2w and a FLAIR (the reference), SynthSR outputs, their transform, the fused image, the
    ants segmentation with its look-up table and volumes, the TBM map and logs/CITATION.md."""
    from synthsr_nipype.bids.plan import Plan
    from synthsr_nipype.settings import MorphometryOptions
    from synthsr_nipype.workflows import citation_markdown, init_synthsr_bids_wf

    out, inputs = root / "out", root / "raw"
    inputs.mkdir(parents=True)
    jobs = [_job("01", session, "T2w", inputs), _job("01", session, "FLAIR", inputs)]
    fused_entities = fused_output_entities("01", session)
    group = GroupPlan("01", session, jobs, reference=jobs[1].sources[0], reference_job=1,
                      fused_entities=fused_entities, fused_relpath=build_derivative_relpath(fused_entities))
    for job, shift in zip(jobs, (3.0, 0.0)):
        _head((40, 48, 12), (1.5, 1.5, 5.0), shift).to_filename(job.inputs[0])
        target = out / job.out_relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        _head((64, 76, 60), (1.0, 1.0, 1.0), shift).to_filename(target)
        target.with_name(target.name.replace(".nii.gz", ".json")).write_text(
            json.dumps({"Model": {"Name": "v2", "SHA256": "ab" * 32}}))
    write_itk_affine(np.array([[1, 0, 0, 3.0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]),
                     out / group.xfm_relpath(0))
    fused = out / group.fused_relpath
    nib.save(nib.load(out / jobs[1].out_relpath), fused)
    names = derivative_names("01", session, "ants")
    anat = fused.parent
    data = np.asarray(nib.load(fused).dataobj)
    dseg = np.select([data >= 900, data >= 700, data >= 300], [3, 2, 1], 0).astype(np.uint8)
    nib.Nifti1Image(dseg, nib.load(fused).affine).to_filename(anat / names["dseg"])
    atomic_write_tsv(anat / names["dseg_tsv"], dseg_table(ANTS_LABELS))
    atomic_write_tsv(anat / names["morph_tsv"], morph_table([(1, "CSF", 234567.891), (2, "GM", GM_MM3),
                                                             (3, "WM", 456789.012), (None, "TIV", 1304.0)]))
    template = get_template(2)
    tpl = nib.load(template.t1w)
    mask = np.asarray(nib.load(template.mask).dataobj) > 0
    rng = np.random.default_rng(0)
    logjac = np.where(mask, rng.normal(0, 0.1, tpl.shape), 0).astype(np.float32)
    nib.Nifti1Image(logjac, tpl.affine).to_filename(anat / names["logjacobian"])
    (anat / names["logjacobian"].replace(".nii.gz", ".json")).write_text(
        json.dumps(sidecar_metadata("logjacobian")))
    workflow = init_synthsr_bids_wf(plan=Plan(str(inputs), "v2", "v2", [group]), output_dir=out,
                                    morphometry=MorphometryOptions(seg_backend="ants", tbm=True))
    (out / "logs").mkdir()
    (out / "logs" / "CITATION.md").write_text(citation_markdown(workflow))
    return out, group


def _page(tmp_path: Path, session: str | None = None) -> tuple[Path, str, GroupPlan]:
    out, group = build_outputs(tmp_path, session=session)
    page = write_subject_report(out, "01", [group])
    return out, page.read_text(), group


def test_transform_figure_names_the_reference(tmp_path):
    out, html, group = _page(tmp_path)
    xfm = Path(group.xfm_relpath(0)).name
    assert xfm == "sub-01_from-synthsrT2w_to-synthsrFLAIR_mode-image_xfm.txt"
    captions = [unescape(c) for c in re.findall(r"<figcaption>([^<]*)</figcaption>", html)]
    (registration,) = [c for c in captions if c.startswith("Registration")]
    assert registration.startswith(f"Registration onto {REGISTRATION_TARGET} (sub-01_desc-synthsrFLAIR_T1w")
    assert xfm in registration
    # the methods text names the same target, in the same words
    assert f"registered onto {REGISTRATION_TARGET}" in unescape(html)
    assert "registration figure" not in html  # nothing missing


def test_methods_as_html_synthsr_first_with_citations(tmp_path):
    _, html, _ = _page(tmp_path)
    methods = html[html.index('<section id="methods">'):html.index('<section id="errors">')]
    assert "[@" not in methods and "# Methods" not in methods and "<pre>" not in methods
    paragraphs = re.findall(r"<p>(.*?)</p>", methods, flags=re.S)
    assert paragraphs[1].startswith("Each anatomical scan was converted")  # after the generated-by line
    assert "SynthSR [<a class=\"citation\" href=\"#ref-synthsr1\"" in paragraphs[1]
    assert paragraphs[1:].index(next(p for p in paragraphs if "MNI152NLin2009aSym" in p)) > 1
    refs = re.findall(r'<li id="ref-([\w-]+)">', methods)
    assert refs[:2] == ["synthsr1", "synthsr2"] and "nipype" in refs and "ants" in refs
    assert "<code>v2</code>" in methods


def test_legend_tbm_volumes_in_ml_and_no_sessions_row(tmp_path):
    out, html, _ = _page(tmp_path)
    legend = re.findall(r'<li><span class="swatch" style="background: (#[0-9a-f]{6})"></span>([^<]+)</li>', html)
    assert [name for _, name in legend] == ["Cerebrospinal fluid", "Gray matter", "White matter"]
    assert len({colour for colour, _ in legend}) == 3
    svg = (out / "sub-01" / "figures" / "sub-01_desc-segmentation_T1w.svg").read_text()
    assert all(colour in svg for colour, _ in legend)  # the contours are drawn in the legend's colours
    tbm = re.findall(r'<img src="(sub-01/figures/[^"]*logjacobian[^"]*)"', html)
    assert tbm == ["sub-01/figures/sub-01_space-MNI152NLin2009aSym_desc-logjacobian_map.svg"]
    assert (out / tbm[0]).is_file() and "locally larger than the template" in html
    assert "<th>volume (mL)</th>" in html and f"<td>{GM_SHOWN}</td>" in html and "612345" not in html
    assert "<td>1.30</td>" in html  # small volumes keep two decimals
    assert "session" not in html[html.index('<section id="summary">'):html.index("</section>")]


def test_sessions_row_when_there_are_sessions(tmp_path):
    _, html, _ = _page(tmp_path, session="pre")
    summary = html[html.index('<section id="summary">'):html.index("</section>")]
    assert "<tr><th>sessions</th><td>ses-pre</td></tr>" in summary


def test_thickness_table_when_the_run_made_one(tmp_path):
    from synthsr_nipype.morphometry.thickness import THICKNESS_COLUMNS

    out, group = build_outputs(tmp_path)
    assert "Cortical thickness" not in write_subject_report(out, "01", [group]).read_text()
    name = derivative_names("01", None, "ants")["thickness_tsv"]
    rows = [(1, "Left-Cerebral-Cortex", 2.4321, 3e5), (2, "Right-Cerebral-Cortex", 2.5, 3e5),
            (None, "Cortex", 2.466, 6e5)]
    atomic_write_tsv((out / group.fused_relpath).parent / name, pd.DataFrame(rows, columns=THICKNESS_COLUMNS))
    html = write_subject_report(out, "01", [group]).read_text()
    assert "<h4>Cortical thickness</h4>" in html and "<th>thickness-mm</th>" in html
    assert "<td>Left-Cerebral-Cortex</td><td>2.4321</td>" in html


SYNTHSEG_QC = {"general white matter": 0.91, "general grey matter": 0.88, "general csf": 0.83, "cerebellum": 0.64,
               "brainstem": 0.9, "thalamus": 0.41, "putamen+pallidum": 0.8, "hippocampus+amygdala": 0.77}


def with_synthseg_segmentation(out: Path, group: GroupPlan, qc: dict[str, float] | None = SYNTHSEG_QC) -> Path:
    """Replace build_outputs' ants segmentation by a SynthSeg one: FreeSurfer labels, the tool's volume names and
    the sidecars the volumetry step writes (morphometry.freesurfer.volumetry_metadata, QC scores included)."""
    from synthsr_nipype.morphometry.freesurfer import volumetry_metadata
    from synthsr_nipype.morphometry.labels import FREESURFER_LABELS

    anat = (out / group.fused_relpath).parent
    for path in anat.glob("*_seg-ants_*"):
        path.unlink()
    names = derivative_names(group.subject, group.session, "synthseg")
    fused = nib.load(out / group.fused_relpath)
    data = np.asarray(fused.dataobj)
    half = np.arange(data.shape[0])[:, None, None] < data.shape[0] // 2
    labels = np.select([data >= 900, data >= 700, data >= 300], [np.where(half, 2, 41), np.where(half, 3, 42), 24], 0)
    nib.Nifti1Image(labels.astype(np.int32), fused.affine).to_filename(anat / names["dseg"])
    atomic_write_tsv(anat / names["dseg_tsv"], dseg_table(FREESURFER_LABELS, present={2, 3, 24, 41, 42}))
    atomic_write_tsv(anat / names["morph_tsv"], morph_table([
        (2, "left cerebral white matter", 230123.4), (3, "left cerebral cortex", 250321.0), (24, "csf", 1234.5),
        (41, "right cerebral white matter", 231000.0), (42, "right cerebral cortex", 251000.0),
        (None, "TIV", 1400000.0)]))
    meta = volumetry_metadata("synthseg", software_version="SynthSeg-robust 2.0", qc_scores=qc)
    for name in (names["dseg"], names["morph_tsv"]):
        (anat / (name.removesuffix(".nii.gz").removesuffix(".tsv") + ".json")).write_text(json.dumps(meta))
    return anat / names["dseg"]


def test_synthseg_qc_section_flags_groups_below_the_threshold(tmp_path):
    """Issue 26: the segmentation part of sub-X.html lists SynthSeg's QC scores; the groups below 0.65 are
    flagged (a note each, their rows highlighted); a segmentation without QC scores has no such section."""
    from synthsr_nipype.segmentation.quality import QC_THRESHOLD

    out, group = build_outputs(tmp_path)
    assert "Segmentation QC" not in write_subject_report(out, "01", [group]).read_text()  # ants: no QC scores
    dseg = with_synthseg_segmentation(out, group)
    sidecar = json.loads(dseg.with_name(dseg.name.replace(".nii.gz", ".json")).read_text())
    assert sidecar["SynthSegQCThreshold"] == QC_THRESHOLD == 0.65
    assert sidecar["SynthSegQCFlags"] == ["SynthSeg QC cerebellum 0.64 < 0.65", "SynthSeg QC thalamus 0.41 < 0.65"]
    html = write_subject_report(out, "01", [group]).read_text()
    section = html[html.index('<section class="segmentation-qc"'):]
    section = section[:section.index("</section>")]
    print(re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", section)))[:600])
    assert 'data-qc-flags="2"' in section and dseg.name in section
    assert re.findall(r'<div class="note qc-flag">([^<]*)</div>', section) == [
        "SynthSeg QC cerebellum 0.64 &lt; 0.65", "SynthSeg QC thalamus 0.41 &lt; 0.65"]
    flagged = re.findall(r'<tr class="qc-flagged"><td>([^<]*)</td><td>([^<]*)</td>', section)
    assert flagged == [("cerebellum", "0.6400"), ("thalamus", "0.4100")]
    assert len(re.findall(r"<tr><td>", section)) == 6  # the other groups, not flagged
    # the section sits in the segmentation part: after the contours and the volumes of the fused image
    assert html.index("desc-segmentation_T1w.svg") < html.index("<h4>Volumes</h4>") < html.index(
        "<h4>Segmentation QC</h4>")
    assert "left cerebral cortex" in html
