"""The group level (``synthsr-bids bids_dir output_dir group``): dataset-wide volume tables,
z-scores, figures and an HTML page from the participant outputs.

Writes under ``<output_dir>/group/``::

    volumes.tsv          one row per subject/session, one column per structure (+ TIV)
    volumes_long.tsv     the same in long format
    zscores.tsv          per-structure z-scores (raw and ICV-normalised) with |z| > 3 flags
                         (n/a below plausibility.MIN_N_STATISTICS rows)
    plausibility.tsv     values outside published adult ranges (plausibility.RANGES)
    qc.tsv               every SynthSR output's and fused image's QC numbers, worst first
    segmentation_qc.tsv  SynthSeg's QC scores per subject/session and structure group, with the groups below
                         segmentation.quality.QC_THRESHOLD flagged (SynthSeg backends only)
    thickness.tsv, thickness_zscores.tsv   mean cortical thickness per region (--thickness runs)
    figures/volumes.svg, figures/volumes_icv.svg   (from MIN_N_STATISTICS rows on)
    group.html
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from ..atomic import atomic_write_tsv
from ..bids.derivatives import write_bidsignore
from ..errors import GroupError
from .derivatives import bidsignore_patterns
from .figures import plot_distributions
from .group import (
    ID_COLUMNS,
    collect_qc,
    collect_segmentation_qc,
    collect_volumes,
    wide_table,
    zscores,
)
from .labels import TIV_NAME
from .plausibility import MIN_N_STATISTICS, plausibility_flags
from .report import write_group_report

LOGGER = logging.getLogger("synthsr_nipype.group")


def run_group_level(
    output_dir: str | os.PathLike,
    *,
    seg_backend: str | None = None,
    model: str | None = None,
    participant_label: list[str] | None = None,
    session_label: list[str] | None = None,
) -> Path:
    """Run the group level on the participant outputs in ``output_dir``; returns the folder
    written (``output_dir/group``).

    Raises :class:`~synthsr_nipype.errors.GroupError` when there is nothing to collect or when
    backends / models would be mixed in one table (nothing is written then).
    """
    out = Path(output_dir)
    long = collect_volumes(out, seg_backend=seg_backend, model=model,
                           participant_label=participant_label, session_label=session_label)
    wide = wide_table(long)
    z = zscores(wide)
    group = out / "group"
    atomic_write_tsv(group / "volumes.tsv", wide)
    atomic_write_tsv(group / "volumes_long.tsv", long)
    atomic_write_tsv(group / "zscores.tsv", z)
    implausible = plausibility_flags(wide, ID_COLUMNS)
    atomic_write_tsv(group / "plausibility.tsv", implausible)
    qc = collect_qc(out, participant_label=participant_label, session_label=session_label)
    atomic_write_tsv(group / "qc.tsv", qc)
    seg_qc = collect_segmentation_qc(out, participant_label=participant_label, session_label=session_label)
    if not seg_qc.empty:
        atomic_write_tsv(group / "segmentation_qc.tsv", seg_qc)
    structures = [c for c in wide.columns if c not in ID_COLUMNS]
    backend = wide["seg_backend"].iloc[0]
    figures = {}
    if len(wide) >= MIN_N_STATISTICS:  # distributions of fewer values mislead: the page shows the values
        figures["Volumes per structure (mL); each dot one subject/session, red: |z| > 3"] = str(
            plot_distributions(wide, structures, group / "figures" / "volumes.svg", outliers=z[z["outlier"]],
                               title=f"Volumes ({backend})")
        )
    if TIV_NAME in wide.columns and len(structures) > 1 and len(wide) >= MIN_N_STATISTICS:
        tissue = [s for s in structures if s != TIV_NAME]
        figures["ICV-normalised volumes (% of TIV)"] = str(
            plot_distributions(wide, tissue, group / "figures" / "volumes_icv.svg", normalise=True,
                               outliers=z[z["outlier"]], title=f"ICV-normalised volumes ({backend})")
        )
    thickness = _thickness_tables(out, group, seg_backend=backend, model=model,
                                  participant_label=participant_label, session_label=session_label)
    if thickness is not None and len(thickness) >= MIN_N_STATISTICS:
        figures["Mean cortical thickness per region (mm; DiReCT)"] = str(
            plot_distributions(thickness, [c for c in thickness.columns if c not in ID_COLUMNS],
                               group / "figures" / "thickness.svg", title=f"Cortical thickness ({backend})",
                               unit="mm")
        )
    write_group_report(group / "group.html", wide=wide, zscores=z, figures=figures,
                       title="synthsr-nipype group volumetry", qc=qc, implausible=implausible,
                       segmentation_qc=seg_qc)
    write_bidsignore(out, bidsignore_patterns())
    n_out = int(z["outlier"].sum())
    LOGGER.info("group level: %d rows, %d structures, %d outlier volumes → %s",
                len(wide), len(structures), n_out, group)
    return group


def _thickness_tables(out: Path, group: Path, **selection) -> pd.DataFrame | None:
    """``thickness.tsv`` (wide, mm) and ``thickness_zscores.tsv`` when the participants have thickness tables."""
    try:
        long = collect_volumes(out, desc="thickness", **selection)
    except GroupError:
        return None  # no --thickness at the participant level
    wide = wide_table(long, value="thickness-mm")
    z = zscores(wide).rename(columns={"volume-mm3": "thickness-mm"}).drop(columns=["icv_fraction", "z_icv"])
    atomic_write_tsv(group / "thickness.tsv", wide)
    atomic_write_tsv(group / "thickness_zscores.tsv", z)
    return wide
