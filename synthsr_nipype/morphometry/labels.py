"""Label look-up tables of every backend and their mapping to the generic BIDS tissue labels.

``dseg.tsv`` columns (BIDS "Segmentations"): ``index``, ``name``, ``abbreviation``, ``mapping``;
``mapping`` is the integer of the BIDS common image-derived tissue labels
(1 GM, 2 WM, 3 CSF), ``n/a`` for labels that are no brain tissue.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

#: BIDS common image-derived labels for the three tissues (integer value, abbreviation)
BIDS_TISSUE = {"GM": 1, "WM": 2, "CSF": 3}

#: name used for total intracranial volume in every ``_morph.tsv``
TIV_NAME = "TIV"


@dataclass(frozen=True)
class Label:
    index: int
    name: str
    abbreviation: str
    tissue: str | None  # "GM" | "WM" | "CSF" | None


# The 3-class Atropos segmentation follows FSL FAST / sMRIPrep numbering (1 CSF, 2 GM, 3 WM).
ANTS_LABELS: tuple[Label, ...] = (
    Label(1, "Cerebrospinal fluid", "CSF", "CSF"),
    Label(2, "Gray matter", "GM", "GM"),
    Label(3, "White matter", "WM", "WM"),
)

# FreeSurfer aseg labels written by mri_synthseg, samseg and recon-all (FreeSurferColorLUT names).
# The lower-case names are those mri_synthseg writes in its --vol CSV.
_FS = (
    (2, "Left-Cerebral-White-Matter", "left cerebral white matter", "WM"),
    (3, "Left-Cerebral-Cortex", "left cerebral cortex", "GM"),
    (4, "Left-Lateral-Ventricle", "left lateral ventricle", "CSF"),
    (5, "Left-Inf-Lat-Vent", "left inferior lateral ventricle", "CSF"),
    (7, "Left-Cerebellum-White-Matter", "left cerebellum white matter", "WM"),
    (8, "Left-Cerebellum-Cortex", "left cerebellum cortex", "GM"),
    (10, "Left-Thalamus", "left thalamus", "GM"),
    (11, "Left-Caudate", "left caudate", "GM"),
    (12, "Left-Putamen", "left putamen", "GM"),
    (13, "Left-Pallidum", "left pallidum", "GM"),
    (14, "3rd-Ventricle", "3rd ventricle", "CSF"),
    (15, "4th-Ventricle", "4th ventricle", "CSF"),
    (16, "Brain-Stem", "brain-stem", "WM"),
    (17, "Left-Hippocampus", "left hippocampus", "GM"),
    (18, "Left-Amygdala", "left amygdala", "GM"),
    (24, "CSF", "csf", "CSF"),
    (26, "Left-Accumbens-area", "left accumbens area", "GM"),
    (28, "Left-VentralDC", "left ventral dc", "WM"),
    (30, "Left-vessel", "left vessel", None),
    (31, "Left-choroid-plexus", "left choroid plexus", "CSF"),
    (41, "Right-Cerebral-White-Matter", "right cerebral white matter", "WM"),
    (42, "Right-Cerebral-Cortex", "right cerebral cortex", "GM"),
    (43, "Right-Lateral-Ventricle", "right lateral ventricle", "CSF"),
    (44, "Right-Inf-Lat-Vent", "right inferior lateral ventricle", "CSF"),
    (46, "Right-Cerebellum-White-Matter", "right cerebellum white matter", "WM"),
    (47, "Right-Cerebellum-Cortex", "right cerebellum cortex", "GM"),
    (49, "Right-Thalamus", "right thalamus", "GM"),
    (50, "Right-Caudate", "right caudate", "GM"),
    (51, "Right-Putamen", "right putamen", "GM"),
    (52, "Right-Pallidum", "right pallidum", "GM"),
    (53, "Right-Hippocampus", "right hippocampus", "GM"),
    (54, "Right-Amygdala", "right amygdala", "GM"),
    (58, "Right-Accumbens-area", "right accumbens area", "GM"),
    (60, "Right-VentralDC", "right ventral dc", "WM"),
    (62, "Right-vessel", "right vessel", None),
    (63, "Right-choroid-plexus", "right choroid plexus", "CSF"),
    (72, "5th-Ventricle", "5th ventricle", "CSF"),
    (77, "WM-hypointensities", "wm hypointensities", "WM"),
    (80, "non-WM-hypointensities", "non-wm hypointensities", "GM"),
    (85, "Optic-Chiasm", "optic chiasm", "WM"),
    (165, "Skull", "skull", None),
    (251, "CC_Posterior", "cc posterior", "WM"),
    (252, "CC_Mid_Posterior", "cc mid posterior", "WM"),
    (253, "CC_Central", "cc central", "WM"),
    (254, "CC_Mid_Anterior", "cc mid anterior", "WM"),
    (255, "CC_Anterior", "cc anterior", "WM"),
    (258, "Head-ExtraCerebral", "head extracerebral", None),
    (259, "Eye-Fluid", "eye fluid", None),
)
FREESURFER_LABELS: tuple[Label, ...] = tuple(Label(i, n, n, t) for i, n, _, t in _FS)
_FS_BY_NAME = {}
for _i, _n, _s, _t in _FS:
    _FS_BY_NAME[_n.lower()] = _i
    _FS_BY_NAME[_s] = _i


def cortical_parcels() -> tuple[Label, ...]:
    """SynthSeg's cortical parcels (FreeSurfer's Desikan-Killiany ``ctx-lh-*``/``ctx-rh-*``, grey matter),
    named from the port's tables (their one home). Only for naming the labels of a ``dseg``: volume tables
    keep them apart from the aseg structures, whose cortex they subdivide."""
    from ..segmentation.tables import load_tables

    tables = load_tables()
    return tuple(Label(int(i), str(n), str(n), "GM") for i, n in zip(tables.parc_labels[1:], tables.parc_names))


def tissue_labels(labels: tuple[Label, ...] | list[Label] = FREESURFER_LABELS) -> dict[str, tuple[int, ...]]:
    """The label values of each BIDS tissue class (``GM``, ``WM``, ``CSF``), by the ``mapping`` of the dseg.tsv
    (:func:`dseg_table`): the labels a tissue's ``_probseg`` sums the posteriors of.

    >>> groups = tissue_labels()
    >>> groups["WM"][:3], 3 in groups["GM"], 24 in groups["CSF"], 165 in {i for g in groups.values() for i in g}
    ((2, 7, 16), True, True, False)
    """
    return {tissue: tuple(lab.index for lab in labels if lab.tissue == tissue) for tissue in BIDS_TISSUE}


def freesurfer_index(name: str) -> int | None:
    """Label value of a FreeSurfer structure from its LUT name or its mri_synthseg CSV name."""
    return _FS_BY_NAME.get(name.strip().lower())


def labels_for_backend(backend: str) -> tuple[Label, ...]:
    if backend == "ants":
        return ANTS_LABELS
    if backend in ("synthseg", "synthseg-fs", "recon-all", "samseg"):
        return FREESURFER_LABELS
    raise ValueError(f"unknown segmentation backend {backend!r}")


def dseg_table(labels: tuple[Label, ...] | list[Label], present: set[int] | None = None) -> pd.DataFrame:
    """The ``_dseg.tsv`` look-up table; ``present`` restricts it to the labels found in the image."""
    rows = [
        {
            "index": lab.index,
            "name": lab.name,
            "abbreviation": lab.abbreviation,
            "mapping": BIDS_TISSUE.get(lab.tissue) if lab.tissue else None,
        }
        for lab in labels
        if present is None or lab.index in present
    ]
    table = pd.DataFrame(rows, columns=["index", "name", "abbreviation", "mapping"])
    table["mapping"] = table["mapping"].astype("Int64")
    return table
