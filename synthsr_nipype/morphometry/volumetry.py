"""Volumes from segmentations, and the long-format ``_desc-volume_morph.tsv`` table.

``_morph.tsv`` is a community suffix (not in the BIDS specification, listed in ``.bidsignore``):
one row per structure with ``index`` (label value, ``n/a`` for derived totals such as TIV),
``name`` and ``volume-mm3``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import nibabel as nb
import numpy as np
import pandas as pd

from .labels import TIV_NAME, Label

MORPH_COLUMNS = ["index", "name", "volume-mm3"]
#: the tables keep mm³ (the voxel-counting unit); pages and figures show mL
MM3_PER_ML = 1000.0


def format_ml(volume_mm3: float) -> str:
    """A volume as people read it, in mL: one decimal from 10 mL up, two below (0.01 mL is ten 1 mm
    voxels, finer than a synthetic image's volumes can be trusted); ``n/a`` for a missing value."""
    if pd.isna(volume_mm3) or not np.isfinite(float(volume_mm3)):
        return "n/a"
    ml = float(volume_mm3) / MM3_PER_ML
    return f"{ml:.1f}" if abs(ml) >= 10 else f"{ml:.2f}"


def voxel_volume(img: nb.spatialimages.SpatialImage) -> float:
    """Volume of one voxel in mm³ (from the affine, so oblique grids are measured right)."""
    return float(abs(np.linalg.det(img.affine[:3, :3])))


def morph_table(rows: Iterable[tuple[int | None, str, float]]) -> pd.DataFrame:
    table = pd.DataFrame(list(rows), columns=MORPH_COLUMNS)
    table["index"] = table["index"].astype("Int64")
    table["volume-mm3"] = table["volume-mm3"].astype(float).round(3)
    return table


def label_volumes(dseg: np.ndarray, vox_mm3: float, labels: Iterable[Label]) -> list[tuple[int, str, float]]:
    """Volume of every label of ``labels`` (0 mm³ for an absent one), by voxel counting.

    Rows are named by the label's abbreviation: it is the column name in the group tables.
    """
    counts = np.bincount(np.asarray(dseg, dtype=np.int64).ravel())
    return [
        (lab.index, lab.abbreviation, float(counts[lab.index] if lab.index < counts.size else 0) * vox_mm3)
        for lab in labels
    ]


def probability_volumes(
    posteriors: Mapping[str, np.ndarray], indices: Mapping[str, int], mask: np.ndarray, vox_mm3: float
) -> list[tuple[int, str, float]]:
    """Partial-volume-aware tissue volumes: sum of posterior probabilities inside ``mask``."""
    return [(indices[name], name, float(np.sum(p[mask], dtype=np.float64)) * vox_mm3) for name, p in posteriors.items()]


def with_tiv(rows: list[tuple[int | None, str, float]], tiv_mm3: float) -> list[tuple[int | None, str, float]]:
    return [*rows, (None, TIV_NAME, float(tiv_mm3))]


def tissue_fractions(table: pd.DataFrame, tissues: Iterable[str] = ("CSF", "GM", "WM")) -> dict[str, float]:
    """Fraction of each tissue in the sum of the tissues (ants tables)."""
    vols = table.set_index("name")["volume-mm3"]
    total = float(sum(vols[t] for t in tissues))
    return {t: float(vols[t]) / total for t in tissues}


def structure_reliability(table: pd.DataFrame, dseg: nb.spatialimages.SpatialImage,
                          reliability: nb.spatialimages.SpatialImage) -> pd.DataFrame:
    """``table`` with a ``mean-reliability`` column: the mean of the reliability map over each row's label in
    ``dseg`` (the map resampled onto the segmentation's grid when they differ; TIV: every labelled voxel)."""
    from nibabel.processing import resample_from_to

    labels = np.asarray(dseg.dataobj).astype(np.int64)
    if reliability.shape[:3] != labels.shape or not np.allclose(reliability.affine, dseg.affine, atol=1e-4):
        reliability = resample_from_to(reliability, (labels.shape, dseg.affine), order=1)
    values = np.asarray(reliability.dataobj, dtype=np.float64)
    sums = np.bincount(labels.ravel(), weights=values.ravel())
    counts = np.bincount(labels.ravel())
    means = []
    for index in table["index"]:
        if pd.isna(index):
            inside = labels > 0
            means.append(float(values[inside].mean()) if inside.any() else np.nan)
        elif int(index) < counts.size and counts[int(index)]:
            means.append(float(sums[int(index)] / counts[int(index)]))
        else:
            means.append(np.nan)
    out = table.copy()
    out["index"] = out["index"].astype("Int64")  # read back from TSV as float: keep the label integers
    out["mean-reliability"] = np.round(means, 4)
    return out
