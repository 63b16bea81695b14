"""The group HTML page: summary, tables, outliers and the SVG figures."""

from __future__ import annotations

import html
import os
from pathlib import Path

import pandas as pd

from ._io import atomic_write_text


def _table(df: pd.DataFrame, float_format: str = "{:.1f}") -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for _, row in df.iterrows():
        cells = []
        for v in row:
            if isinstance(v, float):
                cells.append("<td>n/a</td>" if pd.isna(v) else f"<td>{float_format.format(v)}</td>")
            else:
                cells.append(f"<td>{html.escape(str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def write_group_report(
    out_file: str | os.PathLike, *, wide: pd.DataFrame, zscores: pd.DataFrame, figures: dict[str, str], title: str
) -> Path:
    """Self-contained page (figures linked relative to it)."""
    out = Path(out_file)
    backend = ", ".join(sorted(wide["seg_backend"].unique()))
    model = ", ".join(sorted(wide["synthsr_model"].unique()))
    flagged = zscores[zscores["outlier"]]
    outliers = (
        "<p>No volume with |z| &gt; 3.</p>" if flagged.empty
        else _table(flagged[["participant_id", "session_id", "name", "volume-mm3", "z", "z_icv"]], "{:.2f}")
    )
    figs = "".join(
        f'<figure><img src="{html.escape(os.path.relpath(path, out.parent))}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for caption, path in figures.items()
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:80em}}table{{border-collapse:collapse;font-size:85%}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}img{{max-width:100%}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{len(wide)} subject/session rows; segmentation backend: <b>{html.escape(backend)}</b>;
SynthSR model: <b>{html.escape(model)}</b>. Volumes in mm³; z-scores use the sample standard deviation.
Volumes measured on synthetic (SynthSR) images: check the images before trusting them.</p>
<h2>Outliers (|z| &gt; 3)</h2>{outliers}
<h2>Figures</h2>{figs}
<h2>Volumes</h2>{_table(wide)}
</body></html>
"""
    return atomic_write_text(out, page)
