"""Plausibility of measured volumes against published adult ranges, and the smallest sample for statistics.

A volume outside these ranges is not an outlier of the sample: it is implausible for any adult human head, so
it is flagged whatever the sample size (a skull-on TIV of 2,559 mL, a grey matter of 1,330 mL).  The ranges are
deliberately wide (about the published mean +- 3 SD over adult ages and both sexes), so a flag means "look at
the images", not "abnormal".  Ranges and sources: ``docs/morphometry.md`` (section "Plausibility").
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .labels import ANTS_LABELS, FREESURFER_LABELS, TIV_NAME, freesurfer_index

#: With n values, no |z| can exceed (n - 1) / sqrt(n) (sample SD): |z| > 3 is impossible below n = 11, so below
#: this n the group level shows the values, not z-scores or distributions.
MIN_N_STATISTICS = 11


@dataclass(frozen=True)
class Range:
    quantity: str  # what is measured: "TIV", "GM / TIV", ... (the column of the flags table)
    low: float
    high: float
    unit: str
    source: str


TIV_SOURCE = ("Buckner et al. 2004, NeuroImage 23:724-738 (estimated TIV of adults aged 18-93, both sexes); "
              "Matsumae et al. 1996, J Neurosurg 84:982-991 (TIV 1469 +- 102 mL in men, 1289 +- 111 mL in women, "
              "adults aged 24-80)")
TISSUE_SOURCE = ("Ge et al. 2002, AJNR 23:1327-1333 (grey and white matter fractions of intracranial volume, "
                 "adults aged 20-86)")
VENTRICLE_SOURCE = ("Walhovd et al. 2005, Neurobiology of Aging 26:1261-1270 (lateral ventricles of adults aged "
                    "19-85); Silva Junior et al., Rev Bras Neurol (all ventricles 15 +- 6 mL at 60-69, 40 +- 24 mL "
                    "above 69)")

RANGES: tuple[Range, ...] = (
    Range("TIV", 950.0, 2000.0, "mL", TIV_SOURCE),
    Range("GM / TIV", 0.25, 0.60, "fraction", TISSUE_SOURCE),
    Range("WM / TIV", 0.20, 0.50, "fraction", TISSUE_SOURCE),
    Range("CSF / TIV", 0.05, 0.55, "fraction", TISSUE_SOURCE),
    Range("lateral ventricles", 3.0, 150.0, "mL", VENTRICLE_SOURCE),
)

_ANTS_TISSUE = {name: label.tissue for label in ANTS_LABELS for name in (label.name, label.abbreviation)}
_FS_TISSUE = {label.index: label.tissue for label in FREESURFER_LABELS}
#: FreeSurfer's lateral ventricles with their inferior horns (left 4, 5; right 43, 44)
_LATERAL = {4, 5, 43, 44}


def _tissue(name: str) -> str | None:
    """Tissue class of a volume table's structure: the ants classes, else the FreeSurfer label the name
    stands for (LUT names and mri_synthseg's CSV names alike; cortical parcels have none, so the cortex,
    which they subdivide, is counted once)."""
    if name in _ANTS_TISSUE:
        return _ANTS_TISSUE[name]
    return _FS_TISSUE.get(freesurfer_index(name))


def quantities(row: pd.Series, structures: list[str]) -> dict[str, float]:
    """The quantities of :data:`RANGES` that one subject/session's volumes (mm3) allow."""
    out: dict[str, float] = {}
    tiv = row.get(TIV_NAME)
    if tiv is not None and pd.notna(tiv):
        out["TIV"] = float(tiv) / 1000.0
        for tissue in ("GM", "WM", "CSF"):
            names = [s for s in structures if _tissue(s) == tissue]
            if names and float(tiv) > 0:
                out[f"{tissue} / TIV"] = float(sum(row[n] for n in names)) / float(tiv)
    lateral = [s for s in structures if s not in _ANTS_TISSUE and freesurfer_index(s) in _LATERAL]
    if lateral:
        out["lateral ventricles"] = float(sum(row[n] for n in lateral)) / 1000.0
    return out


def plausibility_flags(wide: pd.DataFrame, id_columns: list[str]) -> pd.DataFrame:
    """One row per value outside its range: ids, quantity, value, range, unit, source."""
    structures = [c for c in wide.columns if c not in id_columns]
    rows = []
    for _, row in wide.iterrows():
        values = quantities(row, structures)
        for rng in RANGES:
            value = values.get(rng.quantity)
            if value is not None and not rng.low <= value <= rng.high:
                rows.append({**{c: row[c] for c in id_columns[:2]}, "quantity": rng.quantity, "value": round(value, 3),
                             "range": f"{rng.low:g}-{rng.high:g}", "unit": rng.unit, "source": rng.source})
    return pd.DataFrame(rows, columns=[*id_columns[:2], "quantity", "value", "range", "unit", "source"])
