"""Cortical thickness without FreeSurfer: DiReCT (antspyx ``kelly_kapowski``) from GM/WM posteriors.

DiReCT (Das et al. 2009, the thickness of antsCorticalThickness.sh) diffuses the white-matter
boundary outwards through the grey-matter posterior and measures, per voxel, how far it had to go:
a volumetric thickness, no surfaces. The table gives the mean over the grey-matter voxels of each
region where DiReCT found a thickness (> 0): the parcellation's regions when there is one, else one
region per hemisphere (the template's, warped onto the subject, for the ``ants`` backend; SynthSeg's
cortex labels 3/42 for ``synthseg``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nibabel as nb
import numpy as np
import pandas as pd

from ..atomic import atomic_write_nifti, atomic_write_tsv
from ..isolation import run_isolated

STEPS = "synthsr_nipype.morphometry.thickness_steps"
THICKNESS_COLUMNS = ["index", "name", "thickness-mm", "volume-mm3"]
#: the regions of the hemisphere table (FreeSurfer's names of the cortex labels)
HEMISPHERES = {1: "Left-Cerebral-Cortex", 2: "Right-Cerebral-Cortex"}
#: name of the all-regions row of every thickness table
CORTEX_NAME = "Cortex"
#: SynthSeg labels (FreeSurfer's) whose posteriors DiReCT takes as grey and white matter, as
#: antsCorticalThickness.sh does with its classes: the cerebral cortex as GM; the cerebral white matter with
#: the deep structures it encloses (thalamus, caudate, putamen, pallidum, hippocampus, amygdala, accumbens,
#: ventral DC) as WM, so that the cortex is measured from the white surface only. Everything else in the
#: brain (CSF, cerebellum, brain stem) bounds the cortex.
SYNTHSEG_DIRECT = {
    "GM": (3, 42),
    "WM": (2, 41, 10, 49, 11, 50, 12, 51, 13, 52, 17, 53, 18, 54, 26, 58, 28, 60),
}
#: the cortex per hemisphere in a SynthSeg segmentation (labels 3 and 42 of FreeSurfer's LUT)
SYNTHSEG_HEMISPHERES = {3: "Left-Cerebral-Cortex", 42: "Right-Cerebral-Cortex"}


class ThicknessWarning(UserWarning):
    """DiReCT measured no thickness in a segmentation (its table is n/a)."""


def cortical_thickness(
    dseg: str | os.PathLike,
    gm: str | os.PathLike,
    wm: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    regions: str | os.PathLike,
    region_names: Mapping[int, str],
    gm_label: int = 2,
    wm_label: int = 3,
    num_threads: int = 1,
    iterations: int | None = None,
    source: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Thickness map (``desc-thickness_map.nii.gz``, mm) and per-region table (``desc-thickness_morph.tsv``).

    ``dseg`` holds ``gm_label``/``wm_label``; ``gm``/``wm`` are their posteriors on its grid;
    ``regions`` is a label image on the same grid named by ``region_names``.  Where DiReCT measures nothing
    (no cortex or no white matter), the map is 0, the table n/a and a :class:`ThicknessWarning` names
    ``source`` (the segmentation ``dseg`` was made from; default ``dseg``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    extra = {} if iterations is None else {"iterations": int(iterations)}
    res = run_isolated(STEPS, "thickness", str(Path(dseg).resolve()), str(Path(gm).resolve()),
                       str(Path(wm).resolve()), str((out / "desc-thickness_map.nii.gz").resolve()),
                       num_threads=num_threads, gm_label=gm_label, wm_label=wm_label, **extra)
    if reason := res.pop("unmeasured"):
        # a subject whose segmentation has no cortex gets n/a, as a region without it does, not a failed node
        warnings.warn(f"{source or dseg}: no cortical thickness measured ({reason}); every region's thickness "
                      "is n/a", ThicknessWarning, stacklevel=2)
    table = region_table(res["thickness"], regions, region_names)
    res["thickness_tsv"] = str(atomic_write_tsv(out / "desc-thickness_morph.tsv", table))
    res["mean_thickness"] = float(table.set_index("name").at[CORTEX_NAME, "thickness-mm"])
    return res


def region_table(thickness: str | os.PathLike, regions: str | os.PathLike,
                 region_names: Mapping[int, str]) -> pd.DataFrame:
    """Mean thickness and measured volume per region, then over all of them (``Cortex``, index n/a)."""
    th_img = nb.load(thickness)
    th = np.asarray(th_img.dataobj, dtype=np.float32)
    lab = np.asarray(nb.load(regions).dataobj).astype(np.int64)
    vox = float(abs(np.linalg.det(th_img.affine[:3, :3])))
    measured = th > 0
    rows: list[tuple[int | None, str, float, float]] = []
    for index, name in region_names.items():
        sel = measured & (lab == index)
        rows.append((index, name, float(th[sel].mean()) if sel.any() else float("nan"), float(sel.sum()) * vox))
    sel = measured & np.isin(lab, list(region_names))
    rows.append((None, CORTEX_NAME, float(th[sel].mean()) if sel.any() else float("nan"), float(sel.sum()) * vox))
    table = pd.DataFrame(rows, columns=THICKNESS_COLUMNS)
    table["index"] = table["index"].astype("Int64")
    return table.round({"thickness-mm": 4, "volume-mm3": 3})


def hemisphere_regions(from_template: str | os.PathLike, reference: str | os.PathLike,
                       out_file: str | os.PathLike, *, template_resolution: int = 1) -> str:
    """The template's left (1) / right (2) hemisphere labels on the grid of ``reference``."""
    Path(out_file).parent.mkdir(parents=True, exist_ok=True)
    return run_isolated(STEPS, "hemispheres", str(Path(from_template).resolve()), str(Path(reference).resolve()),
                        str(Path(out_file).resolve()), template_resolution=template_resolution)["hemispheres"]


def template_regions(from_template: str | os.PathLike, reference: str | os.PathLike, labels: str | os.PathLike,
                     out_file: str | os.PathLike) -> str:
    """A label image on the template grid (``labels``, e.g. a parcellation of the template's cortex) on the
    grid of ``reference``, through the template→subject transform of the ``ants`` backend."""
    Path(out_file).parent.mkdir(parents=True, exist_ok=True)
    return run_isolated(STEPS, "template_labels", str(Path(from_template).resolve()),
                        str(Path(reference).resolve()), str(Path(labels).resolve()),
                        str(Path(out_file).resolve()))["labels"]


def synthseg_regions(dseg: str | os.PathLike) -> dict[int, str]:
    """The thickness regions of a SynthSeg segmentation: its cortical parcels present (``--synthseg-parc``,
    FreeSurfer's ``ctx-lh-*``/``ctx-rh-*`` names from the port's tables, as in the dseg.tsv), else the cortex per
    hemisphere (labels 3 and 42)."""
    from .labels import cortical_parcels

    present = {int(v) for v in np.unique(np.asarray(nb.load(dseg).dataobj))}
    parcels = {lab.index: lab.name for lab in cortical_parcels() if lab.index in present}
    return parcels or {i: n for i, n in SYNTHSEG_HEMISPHERES.items() if i in present}


def synthseg_thickness(dseg: str | os.PathLike, gm: str | os.PathLike, wm: str | os.PathLike,
                       out_dir: str | os.PathLike, *, num_threads: int = 1,
                       iterations: int | None = None) -> dict[str, Any]:
    """DiReCT thickness from a SynthSeg segmentation (``dseg``, FreeSurfer labels, with or without parcels) and
    its GM/WM posteriors summed over :data:`SYNTHSEG_DIRECT` (on the grid of ``dseg``); the table has one row
    per region of :func:`synthseg_regions` and the ``Cortex`` row."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    img = nb.load(dseg)
    lab = np.asarray(img.dataobj).astype(np.int64)
    cortex = np.isin(lab, SYNTHSEG_DIRECT["GM"]) | ((lab >= 1000) & (lab < 3000))
    # DiReCT's classes: 1 the rest of the brain, 2 cortex, 3 white matter and the deep structures
    classes = np.where(lab > 0, 1, 0).astype(np.uint8)
    classes[np.isin(lab, SYNTHSEG_DIRECT["WM"])] = 3
    classes[cortex] = 2
    seg = atomic_write_nifti(out / "direct_classes.nii.gz", nb.Nifti1Image(classes, img.affine))
    return cortical_thickness(seg, gm, wm, out, regions=dseg, region_names=synthseg_regions(dseg),
                              num_threads=num_threads, iterations=iterations, source=dseg)
