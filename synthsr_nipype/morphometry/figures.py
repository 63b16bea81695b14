"""Group figures as SVG (matplotlib, no pyplot state: safe in worker processes and threads)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..atomic import atomic_target
from .labels import TIV_NAME
from .volumetry import MM3_PER_ML

# matplotlib 3.10 replaced boxplot(vert=False) by orientation="horizontal"
_HORIZONTAL = (
    {"orientation": "horizontal"}
    if tuple(int(p) for p in matplotlib.__version__.split(".")[:2]) >= (3, 10)
    else {"vert": False}
)


def _label(row: pd.Series) -> str:
    ses = row["session_id"]
    return row["participant_id"] + ("" if ses in ("n/a", None) or pd.isna(ses) else f"/{ses}")


def _save_svg(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_target(path) as tmp:
        # no date and a fixed hash salt: the same data give the same bytes
        with matplotlib.rc_context({"svg.hashsalt": "synthsr-nipype"}):
            fig.savefig(tmp, format="svg", metadata={"Date": None})
    return path


def plot_distributions(
    wide: pd.DataFrame, structures: list[str], out_file: str | os.PathLike, *, normalise: bool = False,
    outliers: pd.DataFrame | None = None, title: str = "", unit: str = "mL",
) -> Path:
    """One panel per structure: box plot of the group with every subject/session marked.

    ``normalise`` divides by TIV (ICV-normalised volumes, in % of TIV). Subjects flagged in
    ``outliers`` (rows with participant_id, session_id, name) are drawn in red and named.
    ``unit``: ``mL`` for volumes in mm³ (shown in mL), anything else labels the values as they are.
    """
    ncols = min(4, max(1, len(structures)))
    nrows = math.ceil(len(structures) / ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.6 * nrows), layout="constrained")
    flagged = set()
    if outliers is not None and not outliers.empty:
        flagged = {(r.participant_id, r.session_id, r.name) for r in outliers.itertuples()}
    labels = wide.apply(_label, axis=1).tolist()
    for k, name in enumerate(structures):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        values = wide[name].astype(float)
        if normalise:
            values = 100.0 * values / wide[TIV_NAME].astype(float)
        elif unit == "mL":
            values = values / MM3_PER_ML  # mL reads better than mm³
        finite = values[np.isfinite(values)]
        if len(finite):
            ax.boxplot([finite.to_numpy()], widths=0.5, showfliers=False, **_HORIZONTAL)
        # deterministic jitter so that the figure is reproducible
        jitter = 1.0 + 0.15 * np.sin(np.arange(len(values)) * 2.399)
        for i, v in enumerate(values):
            is_out = (wide.at[i, "participant_id"], wide.at[i, "session_id"], name) in flagged
            ax.plot(v, jitter[i], "o", ms=5, color="tab:red" if is_out else "tab:blue", alpha=0.8)
            if is_out or len(values) <= 8:
                ax.annotate(labels[i], (v, jitter[i]), fontsize=6, xytext=(2, 3), textcoords="offset points")
        ax.set_title(name, fontsize=9)
        ax.set_yticks([])
        ax.set_xlabel("% of TIV" if normalise else unit, fontsize=8)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save_svg(fig, out_file)
