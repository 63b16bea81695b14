"""The group HTML page: summary, tables, outliers and the SVG figures.

The page checks itself when opened in a browser: a figure that fails to load is replaced by a red
"figure missing: <path>" note (class ``figure-missing``, attribute ``data-broken`` on its
``<figure>``), and once the page has loaded an inline script records on ``<body>``
``data-figures-loaded`` (images with ``naturalWidth > 0``) and ``data-figures-broken``, next to the
server-side ``data-figures-expected``. A person sees the problem; headless Chromium can assert it
(``tests/morphometry/test_report_browser.py``). Nothing is fetched from the network.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import pandas as pd

from ..atomic import atomic_write_text
from ..model.registry import model_notes
from .volumetry import format_ml

#: columns that are not volumes in the group tables
ID_COLUMNS = ("participant_id", "session_id", "seg_backend", "synthsr_model", "name")


def _table(df: pd.DataFrame, float_format: str = "{:.2f}", volumes: tuple[str, ...] = ()) -> str:
    """An HTML table; ``volumes``: columns in mm³, shown in mL (their header says so)."""
    head = "".join(f"<th>{html.escape(str(c))}{' (mL)' if c in volumes else ''}</th>" for c in df.columns)
    body = []
    for _, row in df.iterrows():
        cells = []
        for column, v in row.items():
            if column in volumes:
                cells.append(f"<td>{format_ml(v)}</td>")
            elif isinstance(v, float):
                cells.append("<td>n/a</td>" if pd.isna(v) else f"<td>{float_format.format(v)}</td>")
            else:
                cells.append(f"<td>{html.escape(str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# Inline, no external resources: the page must work offline (file://) and in headless Chromium.
_SELF_CHECK = """<script>
function figureMissing(img) {
  var fig = img.closest("figure") || img.parentNode;
  var note = document.createElement("p");
  note.className = "figure-missing";
  note.textContent = "figure missing: " + img.getAttribute("src");
  fig.setAttribute("data-broken", "");
  img.setAttribute("data-broken", "");
  img.style.display = "none";
  img.parentNode.insertBefore(note, img);
}
window.addEventListener("load", function () {
  var imgs = document.querySelectorAll("img.report-figure");
  var loaded = 0, broken = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0 && !imgs[i].hasAttribute("data-broken")) { loaded++; }
    else { broken++; if (!imgs[i].hasAttribute("data-broken")) { figureMissing(imgs[i]); } }
  }
  document.body.setAttribute("data-figures-loaded", String(loaded));
  document.body.setAttribute("data-figures-broken", String(broken));
  // only a failure is news to the reader; the counts above are for the browser test
  var status = document.getElementById("figure-status");
  if (status && broken) {
    status.textContent = broken + " of " + imgs.length + " figures failed to load.";
    status.className = "figure-missing";
    status.hidden = false;
  }
});
</script>"""


def _qc_table(qc: pd.DataFrame, out: Path) -> str:
    """Scans ranked by mean reliability (worst first), each linked to its subject's report."""
    if qc.empty:
        return "<p>No reliability QC in the participant outputs (made before this version?).</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in qc.columns)
    rows = []
    for _, row in qc.iterrows():
        cells = []
        for column, value in row.items():
            if column == "report":
                href = html.escape(os.path.relpath(out.parent.parent / str(value), out.parent))
                cells.append(f'<td><a href="{href}">{html.escape(str(value))}</a></td>')
            elif isinstance(value, float):
                cells.append("<td>n/a</td>" if pd.isna(value) else f"<td>{value:.3f}</td>")
            else:
                cells.append(f"<td>{html.escape(str(value)) if value is not None else 'n/a'}</td>")
        rows.append(f'<tr{" class=qc-flagged" if row["flags"] else ""}>' + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _segmentation_qc_table(seg_qc: pd.DataFrame, out: Path) -> str:
    """SynthSeg's QC scores, a row per subject/session (flagged first, linked to the report), a score below
    the threshold in red."""
    from ..segmentation.quality import QC_THRESHOLD, flagged_groups
    from .group import SEG_QC_ID_COLUMNS

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in seg_qc.columns if c != "segmentation")
    groups = [c for c in seg_qc.columns if c not in (*SEG_QC_ID_COLUMNS, "flags", "report")]
    rows = []
    for _, row in seg_qc.iterrows():
        low = set(flagged_groups({g: row[g] for g in groups}))
        cells = []
        for column, value in row.items():
            if column == "segmentation":
                continue
            if column == "report":
                href = html.escape(os.path.relpath(out.parent.parent / str(value), out.parent))
                cells.append(f'<td><a href="{href}">{html.escape(str(value))}</a></td>')
            elif column in groups:
                text = "n/a" if pd.isna(value) else f"{float(value):.3f}"
                cells.append(f'<td class="qc-low">{text}</td>' if column in low else f"<td>{text}</td>")
            else:
                cells.append(f"<td>{html.escape(str(value))}</td>")
        rows.append(f'<tr{" class=qc-flagged" if row["flags"] else ""}>' + "".join(cells) + "</tr>")
    n_flagged = int((seg_qc["flags"] != "").sum())
    return (f'<p class="segmentation-qc" data-flagged="{n_flagged}">{n_flagged} of {len(seg_qc)} '
            f"segmentation(s) with a structure group scoring below {QC_THRESHOLD:g} (SynthSeg's failure "
            "threshold; docs/segmentation.md): look at their contours in the subject's report.</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def write_group_report(
    out_file: str | os.PathLike, *, wide: pd.DataFrame, zscores: pd.DataFrame, figures: dict[str, str], title: str,
    qc: pd.DataFrame | None = None, implausible: pd.DataFrame | None = None,
    segmentation_qc: pd.DataFrame | None = None,
) -> Path:
    """Self-contained page (figures linked relative to it) that reports missing figures itself.

    A figure that does not load is replaced by a visible "figure missing" note, and ``<body>`` gets
    ``data-figures-loaded`` / ``data-figures-broken`` once the page has loaded (see module docstring).
    """
    from .plausibility import MIN_N_STATISTICS

    out = Path(out_file)
    small = len(wide) < MIN_N_STATISTICS
    qc = qc if qc is not None else pd.DataFrame()
    implausible = implausible if implausible is not None else pd.DataFrame()
    backend = ", ".join(sorted(wide["seg_backend"].unique()))
    models = sorted(wide["synthsr_model"].unique())
    model = ", ".join(models)
    banners = "".join(f'<div class="model-note">{html.escape(n.note)}</div>'
                      for n in (model_notes(m) for m in models) if n is not None)
    flagged = zscores[zscores["outlier"]]
    outliers = (
        f'<p class="small-sample">Only {len(wide)} subject/session row(s), fewer than {MIN_N_STATISTICS}: no '
        "z-scores, outlier flags or distribution figures (with n values no |z| can exceed (n-1)/&radic;n, so "
        "|z| &gt; 3 is impossible below n = 11). The values are in the table below.</p>" if small
        else "<p>No volume with |z| &gt; 3.</p>" if flagged.empty
        else _table(flagged[["participant_id", "session_id", "name", "volume-mm3", "z", "z_icv"]]
                    .rename(columns={"volume-mm3": "volume"}), volumes=("volume",))
    )
    plausibility = (
        "<p>Every TIV, tissue fraction and ventricle volume is inside its published adult range.</p>"
        if implausible.empty else '<p class="implausible">Outside the published adult range (look at the '
        "images before using these volumes; ranges and sources in docs/morphometry.md):</p>"
        + _table(implausible, "{:.3f}")
    )
    seg_qc_section = ("" if segmentation_qc is None or segmentation_qc.empty else
                      "<h2>Segmentation QC (SynthSeg; flagged first)</h2>"
                      + _segmentation_qc_table(segmentation_qc, out))
    figs = "".join(
        f'<figure><img class="report-figure" src="{html.escape(os.path.relpath(path, out.parent))}" '
        f'alt="{html.escape(caption)}" onerror="figureMissing(this)">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for caption, path in figures.items()
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:80em}}table{{border-collapse:collapse;font-size:85%}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}img{{max-width:100%}}
.model-note{{background:#ffecec;border:2px solid #b00;padding:.5em;font-weight:bold}}
.figure-missing{{color:#b00;font-weight:bold;border:2px solid #b00;padding:4px}}
.qc-flagged td,.implausible{{color:#b00}}td.qc-low{{background:#ffecec;font-weight:bold}}</style>
{_SELF_CHECK}</head>
<body data-figures-expected="{len(figures)}"><h1>{html.escape(title)}</h1>{banners}
<p>{len(wide)} subject/session rows; segmentation backend: <b>{html.escape(backend)}</b>;
SynthSR model: <b>{html.escape(model)}</b>. Volumes in mL (the TSV files keep mm³); z-scores use the
sample standard deviation.
Volumes measured on synthetic (SynthSR) images: check the images before trusting them.</p>
<h2>Plausibility</h2>{plausibility}
<h2>Outliers (|z| &gt; 3)</h2>{outliers}
<h2>Scan QC (worst mean reliability first; docs/qc.md)</h2>{_qc_table(qc, out)}
{seg_qc_section}<h2>Figures</h2><p id="figure-status" hidden></p>{figs}
<h2>Volumes</h2>{_table(wide, volumes=tuple(c for c in wide.columns if c not in ID_COLUMNS))}
</body></html>
"""
    return atomic_write_text(out, page)
