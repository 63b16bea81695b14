"""SynthSeg's label, name and class tables (the ``.npy`` files mri_synthseg reads from $FREESURFER_HOME/models).

The copies in ``data/`` come from BBillot/SynthSeg (Apache-2.0, commit 66342c1f); FreeSurfer ships the same
tables.  Everything here is derived the way ``mri_synthseg`` derives it: labels sorted and made unique, the
other tables indexed with the same ``unique_idx``, the left/right swap of the flip test-time augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"
#: structures whose voxels the parcellation subdivides (left and right cerebral cortex)
CORTEX_LABELS = (3, 42)
TOTAL_NAME = "total intracranial"


def _load(name: str) -> np.ndarray:
    return np.load(DATA_DIR / f"{name}.npy")


@dataclass(frozen=True)
class Tables:
    """The tables of one run (SynthSeg 2.0 or 1.0)."""

    labels: np.ndarray  # sorted unique segmentation labels (index = network channel)
    names: np.ndarray  # one name per label
    topology: np.ndarray  # topological class per label (0: never post-processed)
    flip_indices: np.ndarray | None  # channel each channel takes after a left/right flip; None: no flip TTA
    qc_classes: np.ndarray  # QC class per label
    qc_names: tuple[str, ...]  # the QC scores' names, class 1 onwards
    n_groups: int  # denoiser groups (SynthSeg-robust)
    parc_labels: np.ndarray  # sorted unique parcellation labels (0 first)
    parc_names: np.ndarray  # names of parc_labels[1:]
    v1: bool

    @property
    def n_qc_classes(self) -> int:
        return int(np.unique(self.qc_classes).size)


def flip_indices(raw_labels: np.ndarray, n_neutral: int) -> np.ndarray:
    """For each sorted unique label, the index of its left/right twin (itself for a neutral label).

    ``raw_labels`` is the table as stored: ``n_neutral`` neutral entries, then the left labels, then their
    right twins in the same order.
    """
    n_sided = (len(raw_labels) - n_neutral) // 2
    neutral = set(raw_labels[:n_neutral].tolist())
    left = raw_labels[n_neutral:n_neutral + n_sided].tolist()
    right = raw_labels[n_neutral + n_sided:].tolist()
    twin: dict[int, int] = {}
    for a, b in zip(left, right):  # first occurrence wins, as np.unique(return_index=True) picks it
        twin.setdefault(a, b)
        twin.setdefault(b, a)
    labels = np.unique(raw_labels)
    position = {int(lab): i for i, lab in enumerate(labels)}
    out = np.arange(len(labels))
    for i, lab in enumerate(labels.tolist()):
        if lab not in neutral:
            out[i] = position[twin[lab]]
    return out


def load_tables(*, v1: bool = False, flip: bool = True) -> Tables:
    """The tables for SynthSeg 2.0 (or 1.0 with ``v1``); ``flip`` builds the flip TTA's channel swap."""
    suffix = "" if v1 else "_2.0"
    raw = _load(f"synthseg_segmentation_labels{suffix}")
    labels, unique_idx = np.unique(raw, return_index=True)
    flips = flip_indices(raw, 18 if v1 else 19) if flip else None
    qc_classes = _load(f"synthseg_qc_labels{suffix}")[unique_idx]
    qc_names_all = _load(f"synthseg_qc_names{suffix}")[unique_idx]
    qc_unique, qc_first = np.unique(qc_classes, return_index=True)
    parc_raw = _load("synthseg_parcellation_labels")
    parc_labels, parc_idx = np.unique(parc_raw, return_index=True)
    return Tables(
        labels=labels.astype(np.int32),
        names=_load(f"synthseg_segmentation_names{suffix}")[unique_idx],
        topology=_load(f"synthseg_topological_classes{suffix}")[unique_idx],
        flip_indices=flips,
        qc_classes=qc_classes,
        qc_names=tuple(str(n) for n in qc_names_all[qc_first][1:]),
        n_groups=int(np.unique(_load("synthseg_denoiser_labels_2.0")).size),
        parc_labels=parc_labels.astype(np.int32),
        parc_names=_load("synthseg_parcellation_names")[parc_idx][1:],
        v1=v1,
    )


def volume_names(tables: Tables, parc: bool) -> list[str]:
    """Column names of the volumes, in the order of :attr:`SynthSegResult.volumes` and of the CSV."""
    names = [str(n) for n in tables.names[1:]]
    if parc:
        names += [str(n) for n in tables.parc_names]
    return names if tables.v1 else [TOTAL_NAME, *names]
