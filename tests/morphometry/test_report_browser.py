"""The HTML reports rendered in headless Chromium: every figure loads, and a missing one shows (the group page;
sub-X.html with Methods as HTML, the segmentation legend and the TBM map).

Text checks (tests/morphometry/test_group_level.py) cannot see whether the page's figures load or its script
runs; this renders ``group/group.html`` as a reader's browser would. CI installs Chromium (.ci/run);
elsewhere the test is skipped with a reason.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from synthsr_nipype.morphometry.group_level import run_group_level
from synthsr_nipype.reports.browser import find_chromium, render_dom, screenshot
from tests.morphometry.test_group_level import _cohort, _dataset

pytestmark = pytest.mark.skipif(
    find_chromium() is None,
    reason="no headless Chromium (chromium, chromium-browser, google-chrome or $CHROMIUM); "
           "`apt-get install chromium` to run the browser check of the HTML report",
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _body_attrs(dom: str) -> dict[str, str]:
    body = re.search(r"<body\b([^>]*)>", dom)
    assert body, "rendered DOM has no <body>"
    return dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))


def _figure_counts(dom: str) -> tuple[int, int, int]:
    attrs = _body_attrs(dom)
    assert "data-figures-loaded" in attrs, f"the page's self-check script did not run: body {attrs}"
    return (int(attrs["data-figures-expected"]), int(attrs["data-figures-loaded"]),
            int(attrs["data-figures-broken"]))


def _png_is_not_blank(png: Path) -> None:
    data = png.read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{png} is not a PNG"
    assert len(data) > 10_000, f"{png} is only {len(data)} bytes: blank page?"
    try:
        from PIL import Image
    except ImportError:  # size and signature are the check without Pillow
        return
    with Image.open(png) as img:
        lo, hi = img.convert("L").getextrema()
        assert lo < hi, f"{png} is a single colour"
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is None or len(colours) > 10, f"{png} has only {len(colours)} colours"


def test_group_report_in_headless_chromium(tmp_path):
    root = _cohort(_dataset(tmp_path / "out"))
    assert run_group_level(root) == root / "group"
    page = root / "group" / "group.html"

    dom = render_dom(page)
    expected, loaded, broken = _figure_counts(dom)
    assert expected == 2 and (loaded, broken) == (2, 0), (
        f"{page}: {_body_attrs(dom)}; {re.findall(r'<p class=.figure-missing.>([^<]*)</p>', dom)}")
    assert 'class="figure-missing"' not in dom
    # the counts are for this test, not for the reader: no "All 2 figures loaded." in the page
    assert "figures loaded" not in dom and re.search(r'<p id="figure-status" hidden=""></p>', dom)
    assert "sub-01" in dom and "synthsr_v2" in dom

    shot = screenshot(page, tmp_path / "group.png")
    _png_is_not_blank(shot)

    # the check must be able to fail: take one figure away
    missing = root / "group" / "figures" / "volumes_icv.svg"
    missing.unlink()
    dom = render_dom(page)
    assert _figure_counts(dom) == (2, 1, 1), _body_attrs(dom)
    notes = re.findall(r'<p class="figure-missing">([^<]*)</p>', dom)
    assert notes == ["figure missing: figures/volumes_icv.svg"], notes
    assert "1 of 2 figures failed to load." in dom


def test_subject_report_in_headless_chromium(tmp_path):
    """sub-01.html as a browser shows it: Methods is HTML (paragraphs, numbered citations linking to the
    references, no Markdown left), the segmentation legend is there, the TBM map is drawn and loads."""
    from synthsr_nipype.reports.subject import write_subject_report
    from tests.reports.test_subject_report import build_outputs

    out, group = build_outputs(tmp_path)
    page = write_subject_report(out, "01", [group])
    dom = render_dom(page)
    expected, loaded, broken = _figure_counts(dom)
    assert loaded == expected and broken == 0, _body_attrs(dom)
    assert _body_attrs(dom)["data-script-errors"] == "0"

    methods = dom[dom.index('<section id="methods">'):dom.index('<section id="errors">')]
    assert "[@" not in methods and "# Methods" not in methods and "## References" not in methods
    assert re.search(r'<p>Each anatomical scan was converted[^<]*SynthSR \[<a class="citation" '
                     r'href="#ref-synthsr1"[^>]*>1</a>', methods), methods[:1500]
    references = re.findall(r'<li id="ref-(\w+)">', methods)
    assert references[:2] == ["synthsr1", "synthsr2"]
    assert all(f'href="#ref-{key}"' in methods for key in references)

    legend = re.findall(r'<ul class="legend">(.*?)</ul>', dom, flags=re.S)
    assert len(legend) == 1
    assert re.findall(r"</span>([^<]+)</li>", legend[0]) == ["Cerebrospinal fluid", "Gray matter", "White matter"]

    tbm = re.findall(r'<img src="([^"]*desc-logjacobian_map\.svg)"', dom)
    assert tbm == ["sub-01/figures/sub-01_space-MNI152NLin2009aSym_desc-logjacobian_map.svg"]
    assert 'class="missing-figure"' not in dom
    _png_is_not_blank(screenshot(page, tmp_path / "sub-01.png", width=1100, height=3000))

    # the check can fail: without its figure, the TBM map is named as missing
    (out / tbm[0]).unlink()
    dom = render_dom(page)
    assert f"Missing figure: {tbm[0]}" in dom


def test_reliability_maps_and_qc_flags_in_headless_chromium(tmp_path):
    """Issue 25 as a reader sees it: each scan's reliability map is drawn over its output and loads, a
    crossed QC threshold is shown as a flag beside its numbers; the group page ranks scans by QC,
    flags the worst and links it to its report."""
    import json

    import nibabel as nib
    import numpy as np

    from synthsr_nipype.bids.derivatives import build_derivative_relpath, reliability_entities
    from synthsr_nipype.reports.subject import write_subject_report
    from tests.reports.test_subject_report import build_outputs

    out, group = build_outputs(tmp_path)
    flagged, clean = group.jobs
    for job, mean, flags in ((flagged, 0.41, ["mean reliability 0.41 < 0.50"]), (clean, 0.83, [])):
        output = out / job.out_relpath
        image = nib.load(output)
        ramp = np.linspace(0, 1, image.shape[2], dtype=np.float32)[None, None, :]
        target = out / build_derivative_relpath(reliability_entities(job.entities))
        nib.Nifti1Image(np.broadcast_to(ramp, image.shape).copy(), image.affine).to_filename(target)
        sidecar = output.with_name(output.name.replace(".nii.gz", ".json"))
        meta = json.loads(sidecar.read_text())
        meta.update(ReliabilityQC={"MeanReliability": mean, "UncoveredFraction": 0.2, "TTADisagreement": 0.03},
                    QCFlags=flags)
        sidecar.write_text(json.dumps(meta))
    page = write_subject_report(out, "01", [group])
    dom = render_dom(page)
    expected, loaded, broken = _figure_counts(dom)
    assert loaded == expected and broken == 0, _body_attrs(dom)
    maps = re.findall(r'<img src="([^"]*reliability[^"]*\.svg)"', dom)
    assert len(maps) == 2, maps  # one per scan (the fused image has no map here: named as absent)
    assert dom.count("QC flag: mean reliability 0.41 &lt; 0.50") == 1
    assert "MeanReliability" in dom and "0.83" in dom
    assert "no reliability map (sub-01_desc-synthsrReliability_mask.nii.gz)" in dom

    # the check can fail: without its figure, a map is named as missing
    (out / maps[0]).unlink()
    dom = render_dom(page)
    assert f"Missing figure: {maps[0]}" in dom

    root = _cohort(_dataset(tmp_path / "group-out"), n=3)
    for sub, desc, mean, flags in (("01", "synthsrFLAIR", 0.41, ["mean reliability 0.41 < 0.50"]),
                                   ("03", "synthsrT2w", 0.9, [])):
        (root / f"sub-{sub}" / "anat" / f"sub-{sub}_desc-{desc}_T1w.json").write_text(json.dumps(
            {"ReliabilityQC": {"MeanReliability": mean, "UncoveredFraction": 0.2, "TTADisagreement": 0.03},
             "QCFlags": flags}))
    run_group_level(root)
    dom = render_dom(root / "group" / "group.html")
    rows = re.findall(r'<tr class="qc-flagged">(.*?)</tr>', dom, flags=re.S)
    assert len(rows) == 1 and '<a href="../sub-01.html">' in rows[0] and "0.41" in rows[0], rows
    assert dom.index("0.41") < dom.index("0.9")  # worst first


def test_synthseg_report_in_headless_chromium(tmp_path):
    """Issue 26 as a reader sees a SynthSeg run's sub-X.html: the segmentation contours load with their
    FreeSurfer legend, the volume table lists the tool's structures, the QC section shows every group's score
    with the groups below 0.65 flagged; a deleted contour figure is named as missing."""
    from synthsr_nipype.reports.subject import write_subject_report
    from tests.reports.test_subject_report import (
        SYNTHSEG_QC,
        build_outputs,
        with_synthseg_segmentation,
    )

    out, group = build_outputs(tmp_path)
    dseg = with_synthseg_segmentation(out, group)
    page = write_subject_report(out, "01", [group])
    dom = render_dom(page)
    expected, loaded, broken = _figure_counts(dom)
    assert loaded == expected and broken == 0, _body_attrs(dom)
    assert _body_attrs(dom)["data-script-errors"] == "0"
    contours = re.findall(r'<img src="([^"]*desc-segmentation_T1w\.svg)"', dom)
    assert contours == ["sub-01/figures/sub-01_desc-segmentation_T1w.svg"]
    legend = re.findall(r'<ul class="legend">(.*?)</ul>', dom, flags=re.S)
    names = re.findall(r"</span>([^<]+)</li>", legend[0])
    assert {"Left-Cerebral-White-Matter", "Right-Cerebral-Cortex", "CSF"} <= set(names), names
    fused = dom[dom.index('<section class="fused">'):]
    volumes = fused[fused.index("<h4>Volumes</h4>"):fused.index("<h4>Segmentation QC</h4>")]
    rows = re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td>", volumes)
    assert [name for _, name in rows] == ["left cerebral white matter", "left cerebral cortex", "csf",
                                          "right cerebral white matter", "right cerebral cortex", "TIV"], rows
    qc = fused[fused.index('<section class="segmentation-qc"'):]
    qc = qc[:qc.index("</section>")]
    scores = re.findall(r"<tr(?: class=\"qc-flagged\")?><td>([^<]*)</td><td>([^<]*)</td>", qc)
    assert dict(scores) == {k: f"{v:.4f}" for k, v in SYNTHSEG_QC.items()}
    flagged = re.findall(r'<tr class="qc-flagged"><td>([^<]*)</td>', qc)
    print(f"QC section: {len(scores)} groups, flagged {flagged}; {loaded}/{expected} figures loaded")
    assert flagged == ["cerebellum", "thalamus"] and 'data-qc-flags="2"' in qc
    _png_is_not_blank(screenshot(page, tmp_path / "sub-01.png", width=1100, height=3000))

    # the check can fail: without its figure, the contours are named as missing
    (out / contours[0]).unlink()
    dom = render_dom(page)
    assert f"Missing figure: {contours[0]}" in dom and _figure_counts(dom)[2] == 1
    assert dseg.is_file()
